"""HTTPS served by ztgate itself, with the real SDK and a CA made here: plain TLS, client
certificates (required, or optional and read by policy), and a certificate renewed under load
without a failed request; a bad renewal keeps the last good certificate and says so."""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anthropic
import httpx2 as httpx
import pytest

from tests.datapath.tlsfiles import CertificateAuthority
from tests.stackrunner import RunningStack

MODEL = "claude-haiku-5-5"
CI_CERT = "URI:spiffe://acme/ci/deploy"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("tls"))


def verify(ca: CertificateAuthority) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca.ca_file))


def client(
    running: RunningStack, ca: CertificateAuthority, cert: tuple[Path, Path] | None = None
) -> anthropic.Anthropic:
    context = verify(ca)
    if cert is not None:
        context.load_cert_chain(*map(str, cert))
    return anthropic.Anthropic(
        base_url=running.url,
        auth_token=running.token("alice", claims={"groups": ["people"]}),
        max_retries=0,
        http_client=anthropic.DefaultHttpxClient(verify=context),
    )


def ask(sdk: anthropic.Anthropic) -> str:
    reply = sdk.messages.create(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hello over TLS"}]
    )
    return reply.content[0].text  # type: ignore[union-attr]


def tls_stack(ca: CertificateAuthority, folder: Path, **tls: Any) -> RunningStack:
    cert, key = ca.issue(f"server-{folder.name}", "ztgate", server=True)
    live_cert, live_key = folder / "server.pem", folder / "server.key"
    shutil.copy(cert, live_cert)
    shutil.copy(key, live_key)
    settings = {"cert_file": str(live_cert), "key_file": str(live_key), **tls}
    policy = {
        "rules": [
            {"id": "people", "effect": "allow", "when": {"groups": ["people"]}},
            {
                "id": "ci-with-its-certificate",
                "effect": "allow",
                "when": {"groups": ["ci"], "client_certificates": ["URI:spiffe://acme/ci/*"]},
            },
        ]
    }
    return RunningStack(server={"tls": settings}, policy=policy)


@pytest.fixture
def https(ca: CertificateAuthority, tmp_path: Path) -> Iterator[RunningStack]:
    running = tls_stack(ca, tmp_path, reload_interval="0.2s")
    yield running
    running.close()


def test_the_sdk_talks_https_to_ztgate(https: RunningStack, ca: CertificateAuthority) -> None:
    assert https.url.startswith("https://")
    with client(https, ca) as sdk:
        assert ask(sdk).startswith("Simulated reply")
    # Plain HTTP to the HTTPS port is not served.
    with pytest.raises(httpx.HTTPError):
        httpx.get(https.url.replace("https://", "http://") + "/healthz", timeout=5)


def test_a_client_that_does_not_trust_the_ca_is_refused_the_handshake(
    https: RunningStack,
) -> None:
    with (
        anthropic.Anthropic(base_url=https.url, auth_token=https.token(), max_retries=0) as sdk,
        pytest.raises(anthropic.APIConnectionError),
    ):
        ask(sdk)


def test_required_client_certificates(ca: CertificateAuthority, tmp_path: Path) -> None:
    running = tls_stack(
        ca, tmp_path, client_ca_file=str(ca.ca_file), client_certificates="required"
    )
    try:
        with client(running, ca) as sdk, pytest.raises(anthropic.APIConnectionError):
            ask(sdk)
        cert = ca.issue("alice", "alice", server=False)
        with client(running, ca, cert) as sdk:
            assert ask(sdk).startswith("Simulated reply")
    finally:
        running.close()


def test_policy_reads_the_client_certificate_beside_the_token(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    running = tls_stack(ca, tmp_path, client_ca_file=str(ca.ca_file))
    try:
        token = running.token("ci-deploy", claims={"groups": ["ci"]})
        context = verify(ca)
        plain = anthropic.Anthropic(
            base_url=running.url, auth_token=token, max_retries=0,
            http_client=anthropic.DefaultHttpxClient(verify=context),
        )  # fmt: skip
        with plain, pytest.raises(anthropic.PermissionDeniedError) as info:
            ask(plain)
        assert "no rule allows this request" in str(info.value)
        cert = ca.issue("ci", "ci-runner", server=False, uris=("spiffe://acme/ci/deploy",))
        context.load_cert_chain(*map(str, cert))
        with anthropic.Anthropic(
            base_url=running.url, auth_token=token, max_retries=0,
            http_client=anthropic.DefaultHttpxClient(verify=context),
        ) as sdk:  # fmt: skip
            assert ask(sdk).startswith("Simulated reply")
        # A certificate from another CA is not a certificate at all.
        stranger = CertificateAuthority.create(tmp_path / "stranger", "someone else")
        foreign = stranger.issue("ci", "ci-runner", server=False, uris=("spiffe://acme/ci/x",))
        context = verify(ca)
        context.load_cert_chain(*map(str, foreign))
        with (
            anthropic.Anthropic(
                base_url=running.url, auth_token=token, max_retries=0,
                http_client=anthropic.DefaultHttpxClient(verify=context),
            ) as sdk,
            pytest.raises(anthropic.APIConnectionError),
        ):  # fmt: skip
            ask(sdk)
    finally:
        running.close()


def served_common_name(running: RunningStack, ca: CertificateAuthority) -> str:
    host, port = running.url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        verify(ca).wrap_socket(raw, server_hostname=host) as tls,
    ):
        cert: Any = tls.getpeercert()
    return str(dict(item[0] for item in cert["subject"])["commonName"])


def test_a_renewed_certificate_is_served_without_a_failed_request(
    https: RunningStack, ca: CertificateAuthority, tmp_path: Path
) -> None:
    assert served_common_name(https, ca) == "ztgate"
    renewed = ca.issue("renewed", "ztgate-renewed", server=True)
    failures: list[BaseException] = []
    done = 0

    def load(sdk_factory: Callable[[], anthropic.Anthropic]) -> None:
        nonlocal done
        deadline = time.monotonic() + 3
        with sdk_factory() as sdk:
            while time.monotonic() < deadline:
                try:
                    ask(sdk)
                    done += 1
                except BaseException as exc:  # every failure counts
                    failures.append(exc)

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(load, lambda: client(https, ca)) for _ in range(4)]
        time.sleep(0.5)
        # The way a renewal lands: the key first, then the chain (a moment when they disagree).
        shutil.copy(renewed[1], tmp_path / "server.key")
        time.sleep(0.3)
        shutil.copy(renewed[0], tmp_path / "server.pem")
        for worker in workers:
            worker.result()
    assert failures == []
    assert done > 20
    deadline = time.monotonic() + 5
    while served_common_name(https, ca) != "ztgate-renewed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served_common_name(https, ca) == "ztgate-renewed"


def test_a_bad_renewal_keeps_the_last_good_certificate_and_says_so(
    https: RunningStack, ca: CertificateAuthority, tmp_path: Path
) -> None:
    (tmp_path / "server.pem").write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    context = verify(ca)
    deadline = time.monotonic() + 5
    warnings: list[str] = []
    while not warnings and time.monotonic() < deadline:
        time.sleep(0.1)
        ready = httpx.get(https.url + "/readyz", verify=context, timeout=5)
        assert ready.status_code == 200
        warnings = ready.json().get("warnings", [])
    assert warnings
    assert "the last good one is served" in warnings[0]
    with client(https, ca) as sdk:
        assert ask(sdk).startswith("Simulated reply")
    assert served_common_name(https, ca) == "ztgate"
