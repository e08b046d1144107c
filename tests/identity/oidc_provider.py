"""A real OpenID provider for tests: the npm `oidc-provider`, run with the machine's node.

`tools/oidc/provider.mjs` serves it on 127.0.0.1 with two static clients (`ci-runner` with scopes
`skill:xlsx skill:pdf messages`, `data-agent` with `skill:xlsx`), client-credentials only,
`client_secret_basic` authentication. Access tokens are RS256 JWTs (RFC 9068, header
`typ: at+jwt`) for the audience `https://ztgate.internal` unless a `resource` is asked for.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "tools" / "oidc" / "provider.mjs"
PACKAGE = REPO_ROOT / "tools" / "node_modules" / "oidc-provider"
AUDIENCE = "https://ztgate.internal"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
# Loopback only: never send these requests through an http_proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class OidcError(RuntimeError):
    """The provider answered with an HTTP error (e.g. `invalid_client`, `invalid_scope`)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.error = str(body.get("error", ""))
        self.body = body
        super().__init__(f"oidc-provider answered {status}: {body}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OidcProvider:
    """A real oidc-provider (npm) process issuing RS256 JWT access tokens by client credentials."""

    def __init__(self, workdir: Path, port: int | None = None, *, ttl: int = 600) -> None:
        self.workdir = workdir
        self.port = port if port is not None else _free_port()
        self.ttl = ttl  # access token lifetime in seconds: exp - iat
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.audience = AUDIENCE
        self.token_endpoint = f"{self.issuer}/token"
        self.discovery_url = f"{self.issuer}/.well-known/openid-configuration"
        self.jwks_path = workdir / "oidc-jwks.json"
        self.log_path = workdir / "oidc-provider.log"
        self._kid: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def kid(self) -> str:
        """The id of the one key the provider signs with now."""
        if self._kid is None:
            raise RuntimeError("OidcProvider has no signing key yet: call start() first")
        return self._kid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, rotate: bool = False) -> None:
        """Starts node; the first start (or `rotate=True`) makes a new RSA key, served alone."""
        if self.running:
            raise RuntimeError("OidcProvider is already started: stop() it first")
        self.stop()  # reaps a process that died on its own
        if not (PACKAGE / "package.json").is_file():
            raise RuntimeError(f"{PACKAGE} is missing: run `make setup` (npm ci in tools/)")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH: the OpenID provider needs Node.js")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if rotate or self._kid is None:
            self._write_new_key()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                [
                    node,
                    str(SCRIPT),
                    "--port",
                    str(self.port),
                    "--jwks",
                    str(self.jwks_path),
                    "--ttl",
                    str(self.ttl),
                ],
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL if needed. Safe to call when not running."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def token(
        self,
        client_id: str = "ci-runner",
        client_secret: str = "ci-runner-secret",
        scope: str | None = None,
        resource: str | None = None,
    ) -> str:
        """Client-credentials grant; without `scope` the client gets all of its scopes."""
        return str(self.token_response(client_id, client_secret, scope, resource)["access_token"])

    def token_response(
        self,
        client_id: str = "ci-runner",
        client_secret: str = "ci-runner-secret",
        scope: str | None = None,
        resource: str | None = None,
    ) -> dict[str, Any]:
        """The whole token endpoint answer (access_token, expires_in, scope, token_type)."""
        form = {"grant_type": "client_credentials"}
        if scope is not None:
            form["scope"] = scope
        if resource is not None:
            form["resource"] = resource
        basic = base64.b64encode(
            f"{urllib.parse.quote(client_id)}:{urllib.parse.quote(client_secret)}".encode()
        ).decode()
        request = urllib.request.Request(  # noqa: S310 - our own loopback http issuer
            self.token_endpoint,
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            method="POST",
        )
        return self._json(request)

    def discovery(self) -> dict[str, Any]:
        """The provider's `/.well-known/openid-configuration` document."""
        return self.get_json(self.discovery_url)

    def get_json(self, url: str) -> dict[str, Any]:
        """GETs a JSON document from the provider (discovery, jwks_uri)."""
        return self._json(urllib.request.Request(url, headers={"Accept": "application/json"}))  # noqa: S310

    def output(self) -> str:
        """What the node process printed (stdout and stderr) so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> OidcProvider:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_new_key(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        kid = uuid.uuid4().hex[:16]
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
        jwk.update(kid=kid, alg="RS256", use="sig")
        self.jwks_path.write_text(json.dumps({"keys": [jwk]}))
        self.jwks_path.chmod(0o600)
        self._kid = kid

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + READY_TIMEOUT
        ready = f"READY {self.issuer}"
        while time.monotonic() < deadline:
            if any(line.strip() == ready for line in self.output().splitlines()):
                return
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise RuntimeError(f"oidc-provider exited with {code}:\n{self.output()}")
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"oidc-provider not ready in {READY_TIMEOUT:.0f} s:\n{self.output()}")

    @staticmethod
    def _json(request: urllib.request.Request) -> dict[str, Any]:
        try:
            with _OPENER.open(request, timeout=10) as response:
                body: dict[str, Any] = json.load(response)
                return body
        except urllib.error.HTTPError as error:
            with error:
                raw = error.read()
            try:
                detail = json.loads(raw)
            except ValueError:
                detail = {"error": "non_json", "body": raw.decode(errors="replace")}
            raise OidcError(error.code, detail) from None
