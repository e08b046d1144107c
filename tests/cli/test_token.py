"""`ztgate token` as a helper runs it: a real process, against real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from ztgate.cli.token_sources import GitHubActionsSource, TokenCache, reuse_until

ZTGATE_TOKEN = [sys.executable, "-m", "ztgate", "token"]
REQUEST_TOKEN = "gha-request-token-" + uuid.uuid4().hex
CLIENT_ID = "ci-runner@acme"  # '@' and the secret's ':', '/', '+' must be form-urlencoded
CLIENT_SECRET = "s3cr3t:with/odd+chars-" + uuid.uuid4().hex
REPO_ROOT = Path(__file__).resolve().parents[2]

Serve = Callable[[web.Application], Awaitable[str]]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


class Minter:
    """Real ES256 JWTs from a throwaway key, as an IdP would sign them."""

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())

    def mint(self, ttl: int = 600, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {"iss": "https://idp.test", "sub": "repo:acme/app:ref"}
        payload.update({"iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex, **claims})
        return jwt.encode(payload, self._key, algorithm="ES256")


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts aiohttp apps on 127.0.0.1 in the test's own loop; all are cleaned up after."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    """Only what the command needs: no CI variables, proxies or secrets from the outer shell."""
    home = tmp_path / "home"
    home.mkdir()
    return {"PATH": os.environ["PATH"], "HOME": str(home), "XDG_CACHE_HOME": str(tmp_path / "xdg")}


def cache_dir(env: dict[str, str]) -> Path:
    return Path(env["XDG_CACHE_HOME"]) / "ztgate" / "tokens"


async def ztgate_token(*args: str, env: dict[str, str]) -> Result:
    process = await asyncio.create_subprocess_exec(
        *ZTGATE_TOKEN,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def printed(result: Result) -> str:
    """The token, after checking that it is all stdout holds and that the command succeeded."""
    assert result.code == 0, result.stderr
    assert result.stdout.endswith("\n")
    assert result.stdout.count("\n") == 1
    return result.stdout[:-1]


def failed(result: Result) -> str:
    assert result.code == 1, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, "the message must be one line"
    return result.stderr


# -- GitHub Actions --------------------------------------------------------------------------


@dataclass
class FakeGitHubRunner:
    """The runner's ID-token endpoint: checks the request token and the audience parameter."""

    minter: Minter = field(default_factory=Minter)
    requests: int = 0
    audiences: list[str] = field(default_factory=list)
    status: int = 200
    ttl: int = 600

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/idtoken", self._idtoken)
        return app

    async def _idtoken(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"bearer {REQUEST_TOKEN}":
            return web.json_response({"message": "bad request token"}, status=401)
        audiences = request.query.getall("audience", [])
        assert len(audiences) == 1, request.query_string
        self.audiences.append(audiences[0])
        if self.status != 200:
            return web.json_response({"message": "Forbidden"}, status=self.status)
        return web.json_response({"value": self.minter.mint(self.ttl, aud=audiences[0])})


@pytest.fixture
async def github(serve: Serve, base_env: dict[str, str]) -> tuple[FakeGitHubRunner, dict[str, str]]:
    runner = FakeGitHubRunner()
    url = await serve(runner.app())
    env = {
        **base_env,
        "ACTIONS_ID_TOKEN_REQUEST_URL": f"{url}/idtoken?api-version=2.0",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_TOKEN,
    }
    return runner, env


async def test_github_actions_token_is_printed_then_served_from_the_cache(
    github: tuple[FakeGitHubRunner, dict[str, str]],
) -> None:
    runner, env = github
    token = printed(await ztgate_token("--from", "github-actions", env=env))
    assert claims_of(token)["aud"] == "ztgate"
    assert runner.audiences == ["ztgate"]

    assert printed(await ztgate_token("--from", "github-actions", env=env)) == token
    assert runner.requests == 1, "the second call must come from the cache"

    fresh = printed(await ztgate_token("--from", "github-actions", "--no-cache", env=env))
    assert runner.requests == 2
    assert fresh != token

    files = list(cache_dir(env).iterdir())
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(cache_dir(env).stat().st_mode) == 0o700
    assert REQUEST_TOKEN not in files[0].name


async def test_github_actions_audience_is_url_encoded_with_or_without_a_query(
    github: tuple[FakeGitHubRunner, dict[str, str]], tmp_path: Path
) -> None:
    runner, env = github
    audience = "https://ztgate.internal/a b&c=d"
    bare = {
        **env,
        "ACTIONS_ID_TOKEN_REQUEST_URL": env["ACTIONS_ID_TOKEN_REQUEST_URL"].split("?")[0],
    }
    custom = tmp_path / "custom-cache"
    for variant in (env, bare):
        args = ["--from", "github-actions", "--audience", audience, "--cache-dir", str(custom)]
        token = printed(await ztgate_token(*args, env=variant))
        assert claims_of(token)["aud"] == audience
    assert runner.audiences == [audience, audience]
    assert len(list(custom.iterdir())) == 2, "one cache file per request URL and audience"
    assert not cache_dir(env).exists()


async def test_github_actions_without_its_environment_gives_the_hint(
    base_env: dict[str, str],
) -> None:
    message = failed(await ztgate_token("--from", "github-actions", env=base_env))
    assert "ACTIONS_ID_TOKEN_REQUEST_URL" in message
    assert "not running in GitHub Actions with `permissions: id-token: write`?" in message


async def test_github_actions_refusal_reports_the_status(
    github: tuple[FakeGitHubRunner, dict[str, str]],
) -> None:
    runner, env = github
    runner.status = 403
    message = failed(await ztgate_token("--from", "github-actions", env=env))
    assert "403" in message
    assert REQUEST_TOKEN not in message
    assert not cache_dir(env).exists()


async def test_tokens_about_to_expire_are_not_cached(
    github: tuple[FakeGitHubRunner, dict[str, str]],
) -> None:
    runner, env = github
    runner.ttl = 30  # inside the 60 s margin: usable once, not worth keeping
    for _ in range(2):
        printed(await ztgate_token("--from", "github-actions", env=env))
    assert runner.requests == 2
    assert not cache_dir(env).exists() or not list(cache_dir(env).iterdir())


async def test_corrupt_or_expired_cache_entries_are_replaced(
    github: tuple[FakeGitHubRunner, dict[str, str]],
) -> None:
    runner, env = github
    printed(await ztgate_token("--from", "github-actions", env=env))
    (entry,) = cache_dir(env).iterdir()

    entry.write_text("{not json")
    token = printed(await ztgate_token("--from", "github-actions", env=env))
    assert runner.requests == 2
    assert json.loads(entry.read_text())["token"] == token

    expired = runner.minter.mint(ttl=-10, aud="ztgate")
    entry.write_text(json.dumps({"token": expired, "fetched_at": time.time() - 700}))
    fresh = printed(await ztgate_token("--from", "github-actions", env=env))
    assert fresh != expired
    assert runner.requests == 3
    assert json.loads(entry.read_text())["token"] == fresh
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert [p.name for p in cache_dir(env).iterdir()] == [entry.name], "no temp files left"


# -- files: Kubernetes and plain -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["kubernetes", "file"])
async def test_file_sources_are_read_again_on_every_call(
    kind: str, tmp_path: Path, base_env: dict[str, str]
) -> None:
    path = tmp_path / "token"
    path.write_text("first.token.value\n")
    assert printed(await ztgate_token("--from", f"{kind}={path}", env=base_env)) == (
        "first.token.value"
    )
    path.write_text("second.token.value")  # the kubelet rotated it
    assert printed(await ztgate_token("--from", f"{kind}={path}", env=base_env)) == (
        "second.token.value"
    )
    assert not cache_dir(base_env).exists()


async def test_a_missing_token_file_is_a_one_line_error(
    tmp_path: Path, base_env: dict[str, str]
) -> None:
    missing = tmp_path / "nope"
    kube, plain = await asyncio.gather(
        ztgate_token("--from", f"kubernetes={missing}", env=base_env),
        ztgate_token("--from", f"file={missing}", env=base_env),
    )
    assert "projected serviceAccountToken" in failed(kube)
    assert str(missing) in failed(plain)


# -- OAuth 2.0 client credentials ------------------------------------------------------------


@dataclass
class FakeIdP:
    """Discovery and a token endpoint doing client_secret_basic, as an IdP would check it."""

    minter: Minter = field(default_factory=Minter)
    issuer: str = ""
    token_requests: int = 0
    opaque: bool = False
    forms: list[dict[str, str]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_post("/oauth/token", self._token)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"issuer": self.issuer, "token_endpoint": f"{self.issuer}/oauth/token"}
        )

    async def _token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = {name: str(value) for name, value in (await request.post()).items()}
        self.forms.append(form)
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        if scheme != "Basic" or (unquote_plus(user), unquote_plus(password)) != (
            CLIENT_ID,
            CLIENT_SECRET,
        ):
            # A careless IdP that echoes what it was sent: the secret must still not be shown.
            return web.json_response(
                {
                    "error": "invalid_client",
                    "error_description": f"authentication failed for {unquote_plus(password)}",
                },
                status=401,
            )
        if form.get("grant_type") != "client_credentials" or "client_secret" in form:
            return web.json_response({"error": "invalid_request"}, status=400)
        if self.opaque:
            access_token = "opaque-" + uuid.uuid4().hex
        else:
            access_token = self.minter.mint(
                iss=self.issuer, sub=CLIENT_ID, aud=form.get("resource"), scope=form.get("scope")
            )
        return web.json_response(
            {"access_token": access_token, "token_type": "Bearer", "expires_in": 600}
        )


@pytest.fixture
async def idp(serve: Serve, base_env: dict[str, str]) -> tuple[FakeIdP, dict[str, str]]:
    fake = FakeIdP()
    fake.issuer = await serve(fake.app())
    env = {**base_env, "ZTGATE_CLIENT_ID": CLIENT_ID, "ZTGATE_CLIENT_SECRET": CLIENT_SECRET}
    return fake, env


def client_credentials(idp: FakeIdP, *extra: str) -> list[str]:
    return ["--from", "client-credentials", "--issuer", idp.issuer, *extra]


async def test_client_credentials_token_with_scope_and_resource(
    idp: tuple[FakeIdP, dict[str, str]],
) -> None:
    fake, env = idp
    args = client_credentials(
        fake,
        "--scope",
        "gateway.use",
        "--resource",
        "https://ztgate.internal",
        "--audience",
        "aud1",
    )
    result = await ztgate_token(*args, env=env)
    token = printed(result)
    assert CLIENT_SECRET not in result.stdout + result.stderr
    claims = claims_of(token)
    assert (claims["iss"], claims["aud"], claims["scope"]) == (
        fake.issuer,
        "https://ztgate.internal",
        "gateway.use",
    )
    assert fake.forms == [
        {
            "grant_type": "client_credentials",
            "scope": "gateway.use",
            "resource": "https://ztgate.internal",
            "audience": "aud1",
        }
    ]
    assert printed(await ztgate_token(*args, env=env)) == token
    assert fake.token_requests == 1, "the second call must come from the cache"
    (entry,) = cache_dir(env).iterdir()
    assert CLIENT_SECRET not in entry.name + entry.read_text()


async def test_a_wrong_secret_fails_without_showing_it(
    idp: tuple[FakeIdP, dict[str, str]],
) -> None:
    fake, env = idp
    wrong = "wrong-secret-" + uuid.uuid4().hex
    result = await ztgate_token(
        *client_credentials(fake), env={**env, "ZTGATE_CLIENT_SECRET": wrong}
    )
    message = failed(result)
    assert "401" in message
    assert "invalid_client" in message
    assert wrong not in result.stdout + result.stderr
    assert CLIENT_SECRET not in result.stdout + result.stderr


async def test_client_credentials_refuses_what_it_cannot_do_safely(
    idp: tuple[FakeIdP, dict[str, str]],
) -> None:
    fake, env = idp
    no_secret = {k: v for k, v in env.items() if k != "ZTGATE_CLIENT_SECRET"}
    missing, plain_http = await asyncio.gather(
        ztgate_token(*client_credentials(fake), env=no_secret),
        ztgate_token("--from", "client-credentials", "--issuer", "http://idp.example.com", env=env),
    )
    assert "ZTGATE_CLIENT_SECRET is not set" in failed(missing)
    assert "https" in failed(plain_http)
    assert fake.token_requests == 0


async def test_opaque_access_tokens_are_never_cached(
    idp: tuple[FakeIdP, dict[str, str]],
) -> None:
    fake, env = idp
    fake.opaque = True
    first = printed(await ztgate_token(*client_credentials(fake), env=env))
    second = printed(await ztgate_token(*client_credentials(fake), env=env))
    assert first.startswith("opaque-")
    assert first != second
    assert fake.token_requests == 2


# -- the library's pure parts ---------------------------------------------------------------


def test_reuse_margin_is_60_s_or_a_tenth_of_the_lifetime() -> None:
    minter, now = Minter(), time.time()
    hour = minter.mint(ttl=3600)
    assert reuse_until(hour, now) == claims_of(hour)["exp"] - 360
    ten_minutes = minter.mint(ttl=600)
    assert reuse_until(ten_minutes, now) == claims_of(ten_minutes)["exp"] - 60
    no_iat = minter.mint(ttl=3600, iat=None)  # lifetime counted from when it was fetched
    assert reuse_until(no_iat, claims_of(no_iat)["exp"] - 1000) == claims_of(no_iat)["exp"] - 100
    assert reuse_until(minter.mint(exp=None), now) is None
    assert reuse_until("opaque-token", now) is None


def test_an_existing_audience_parameter_is_replaced_not_repeated() -> None:
    source = GitHubActionsSource(
        "https://runner.test/id?audience=old&api-version=2.0", REQUEST_TOKEN, "new/x"
    )
    assert source.token_request_url() == "https://runner.test/id?api-version=2.0&audience=new%2Fx"
    assert REQUEST_TOKEN not in repr(source), "tracebacks and logs must not show it"


def test_the_cache_refuses_files_others_could_have_planted(tmp_path: Path) -> None:
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o755)
    cache = TokenCache(directory)
    token = Minter().mint()
    assert cache.put("k", token)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700, "a loose directory is tightened"
    assert cache.get("k") == token
    cache.path("k").chmod(0o644)
    assert cache.get("k") is None
    assert TokenCache(directory, clock=lambda: time.time() + 600).get("k") is None


# -- against a real OpenID provider ----------------------------------------------------------


def test_client_credentials_against_a_real_openid_provider(
    tmp_path: Path, base_env: dict[str, str]
) -> None:
    """node-oidc-provider, when its harness and package are installed (tools/node_modules)."""
    if not (REPO_ROOT / "tools" / "node_modules" / "oidc-provider").is_dir():
        pytest.skip("oidc-provider is not installed under tools/node_modules")
    harness = pytest.importorskip("tests.identity.oidc_provider")
    env = {**base_env, "ZTGATE_CLIENT_SECRET": "ci-runner-secret"}
    with harness.OidcProvider(tmp_path / "oidc") as provider:
        args = [
            "--from",
            "client-credentials",
            "--issuer",
            provider.issuer,
            "--client-id",
            "ci-runner",
        ]
        runs = [
            subprocess.run(
                [*ZTGATE_TOKEN, *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            for _ in range(2)
        ]
    first, second = (printed(Result(r.returncode, r.stdout, r.stderr)) for r in runs)
    assert second == first, "an RFC 9068 access token with exp is cached"
    claims = claims_of(first)
    assert claims["iss"] == provider.issuer
    assert claims["client_id"] == "ci-runner"
    audience = claims["aud"]
    assert "https://ztgate.internal" in (audience if isinstance(audience, list) else [audience])
    for run in runs:
        assert "ci-runner-secret" not in run.stdout + run.stderr
