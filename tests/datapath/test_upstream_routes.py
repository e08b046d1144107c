"""How requests reach the upstream: with their team's own key (from the config or from a file
rotated under load), through an HTTPS egress proxy (CONNECT), verified with a custom CA."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.datapath.tlsfiles import CertificateAuthority
from tests.stackrunner import RunningStack
from ztgate.config import validate_config
from ztgate.devtools.stack import SIMULATOR_KEY

MODEL = "claude-haiku-5-5"
TEAM_A = "sk-ant-team-a-key-000001"
TEAM_B = "sk-ant-team-b-key-000002"
TEAM_B_NEXT = "sk-ant-team-b-key-000003"


def ask(running: RunningStack, groups: list[str]) -> str:
    with anthropic.Anthropic(
        base_url=running.url,
        auth_token=running.token("caller", claims={"groups": groups}),
        max_retries=0,
    ) as sdk:
        reply = sdk.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    return reply.content[0].text  # type: ignore[union-attr]


def last_key(running: RunningStack) -> str:
    return str(running.received("/v1/messages")[-1].headers["x-api-key"])


@pytest.fixture
def teams(tmp_path: Path) -> Iterator[tuple[RunningStack, Path]]:
    key_file = tmp_path / "team-b.key"
    key_file.write_text(TEAM_B + "\n")
    running = RunningStack(
        upstream={
            "team_keys": [
                {"name": "team-a", "groups": ["team-a"], "api_key": TEAM_A},
                {"name": "team-b", "groups": ["team-b", "contractors"], "key_file": str(key_file)},
            ]
        }
    )
    running.stack.simulator.workspace_keys.update({TEAM_A, TEAM_B, TEAM_B_NEXT})
    yield running, key_file
    running.close()


def test_each_team_goes_upstream_with_its_own_key(teams: tuple[RunningStack, Path]) -> None:
    running, _ = teams
    ask(running, ["team-a"])
    assert last_key(running) == TEAM_A
    ask(running, ["contractors"])
    assert last_key(running) == TEAM_B
    ask(running, ["someone-else"])
    assert last_key(running) == SIMULATOR_KEY
    # First match wins, in configuration order.
    ask(running, ["team-b", "team-a"])
    assert last_key(running) == TEAM_A


def test_the_audit_names_the_key_never_shows_it(teams: tuple[RunningStack, Path]) -> None:
    running, _ = teams
    ask(running, ["team-a"])

    async def events() -> list[Any]:
        return [e async for e in running.stack.gateway.audit_store.events()]

    deadline = time.monotonic() + 5
    outcomes: list[dict[str, Any]] = []
    while not outcomes and time.monotonic() < deadline:
        outcomes = [e.data() for e in running.run(events()) if e.kind == "outcome"]
        time.sleep(0.05)
    assert outcomes[-1]["upstream_key"] == "team-a"
    assert TEAM_A not in json.dumps(outcomes)


def test_a_rotated_key_file_is_used_without_a_restart(teams: tuple[RunningStack, Path]) -> None:
    running, key_file = teams
    ask(running, ["team-b"])
    assert last_key(running) == TEAM_B
    key_file.write_text(TEAM_B_NEXT)
    ask(running, ["team-b"])
    assert last_key(running) == TEAM_B_NEXT
    key_file.write_text("")  # a rotation caught half-way: the last good key stays
    ask(running, ["team-b"])
    assert last_key(running) == TEAM_B_NEXT


def test_a_team_key_echoed_by_the_upstream_is_scrubbed(teams: tuple[RunningStack, Path]) -> None:
    running, _ = teams
    with (
        anthropic.Anthropic(
            base_url=running.url,
            auth_token=running.token("caller", claims={"groups": ["team-a"]}),
            max_retries=0,
        ) as sdk,
        pytest.raises(anthropic.APIStatusError) as info,
    ):
        sdk.messages.create(
            model="sim-echo-key", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert TEAM_A not in json.dumps(info.value.body)
    assert TEAM_A not in str(info.value.response.headers)


@pytest.mark.parametrize(
    ("team", "problem"),
    [
        ({"name": "x", "groups": ["g"]}, "either api_key or key_file"),
        ({"name": "x", "groups": ["g"], "key_file": "/nonexistent/key"}, "cannot be read"),
        ({"name": "x", "groups": [], "api_key": "k"}, "groups"),
        ({"name": "x", "groups": ["g"], "api_key": "has space"}, "printable ASCII"),
    ],
)
def test_team_keys_that_cannot_work_refuse_the_config(team: dict[str, Any], problem: str) -> None:
    data = {
        "upstream": {"url": "http://127.0.0.1:1", "api_key": "k", "team_keys": [team]},
        "identity": {"issuers": [{"name": "i", "issuer": "https://i.example", "audiences": ["a"]}]},
        "policy": {"rules": []},
    }
    with pytest.raises(Exception, match=problem):
        validate_config(data, source="test")


# --- an egress proxy and a private CA ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def egress_proxy() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """proxy.py, a real HTTP proxy, on a port of its own."""
    port = free_port()
    command = [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", str(port),
               "--num-workers", "1", "--num-acceptors", "1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port, process
    finally:
        process.terminate()
        process.wait(10)


def test_upstream_over_https_through_an_egress_proxy_with_a_private_ca(
    egress_proxy: tuple[int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port, proxy = egress_proxy
    ca = CertificateAuthority.create(tmp_path / "ca", "egress CA")
    cert, key = ca.issue("upstream", "localhost", server=True)
    running = RunningStack(
        upstream={"proxy": f"http://127.0.0.1:{port}", "ca_file": str(ca.ca_file)},
        simulator_tls=(str(cert), str(key)),
    )
    try:
        assert running.stack.simulator.base_url.startswith("https://")
        assert ask(running, ["people"]).startswith("Simulated reply")
        # The path goes through the proxy: without it (its tunnels gone with it), the
        # upstream is out of reach.
        proxy.terminate()
        proxy.wait(10)
        with pytest.raises(anthropic.APIStatusError) as info:
            ask(running, ["people"])
        assert info.value.status_code == 502
    finally:
        running.close()


def test_an_upstream_whose_certificate_the_ca_file_does_not_trust_is_unreachable(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca", "upstream CA")
    other = CertificateAuthority.create(tmp_path / "other", "another CA")
    cert, key = ca.issue("upstream", "localhost", server=True)
    running = RunningStack(
        upstream={"ca_file": str(other.ca_file)}, simulator_tls=(str(cert), str(key))
    )
    try:
        with pytest.raises(anthropic.APIStatusError) as info:
            ask(running, ["people"])
        assert info.value.status_code == 502
    finally:
        running.close()
    shutil.rmtree(tmp_path / "ca")
