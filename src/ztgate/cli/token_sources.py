"""Where a caller gets its token: GitHub Actions, Kubernetes, client credentials, or a file.

This is the caller's side of the gateway. Nothing here verifies a token (the gateway does);
a token's ``exp`` is read unverified only to decide how long a cached copy may be reused.
Every failure is an :class:`HttpError` (a :class:`TokenSourceError` when the source itself
refuses) whose message is for a person and never holds a
secret or a token; a cache that cannot be written is a :class:`TokenCacheError`, which a
caller may treat as a warning since the token itself was had.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote_plus, urlencode, urlsplit

import aiohttp
import orjson

from ztgate.cli.http import HttpError, client_session, one_line, request_json, require_secure_url

DEFAULT_KUBERNETES_TOKEN_PATH = Path("/var/run/secrets/tokens/ztgate")
DEFAULT_GITHUB_AUDIENCE = "ztgate"
GITHUB_REQUEST_URL_ENV = "ACTIONS_ID_TOKEN_REQUEST_URL"
GITHUB_REQUEST_TOKEN_ENV = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"  # noqa: S105 - a variable name
CACHE_MARGIN_SECONDS = 60.0
CACHE_MARGIN_FRACTION = 0.1

_MAX_TOKEN_BYTES = 64 << 10
_TOKEN = re.compile(r"[\x21-\x7e]+")  # one printable line: it is printed for a shell to read


class TokenSourceError(HttpError):
    """No token could be had. The message is one line for a person, free of secrets."""


class TokenCacheError(Exception):
    """The token cache could not be written; the token in hand is still good."""


class CacheableSource(Protocol):
    """A source whose tokens are worth caching: fetching one costs a round trip."""

    def cache_key(self) -> str: ...

    async def fetch(self) -> str: ...


# -- files -----------------------------------------------------------------------------------


def read_token_file(path: Path) -> str:
    """A token from a file, read on every call: its writer (the kubelet, a sidecar) rotates it."""
    try:
        with path.open("rb") as file:
            raw = file.read(_MAX_TOKEN_BYTES + 1)
    except FileNotFoundError:
        raise TokenSourceError(f"no token file at {path}") from None
    except OSError as exc:
        raise TokenSourceError(f"cannot read the token file {path}: {exc.strerror}") from None
    if len(raw) > _MAX_TOKEN_BYTES:
        raise TokenSourceError(f"{path} is larger than any token ({_MAX_TOKEN_BYTES} bytes)")
    try:
        text = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        raise TokenSourceError(f"{path} does not hold a token (not ASCII)") from None
    return _checked_token(text, f"{path}")


def kubernetes_token(path: Path = DEFAULT_KUBERNETES_TOKEN_PATH) -> str:
    """A projected service-account token; never cached, since the kubelet refreshes the file."""
    if not path.exists():
        raise TokenSourceError(
            f"no Kubernetes service-account token at {path}: mount a projected "
            "serviceAccountToken volume there (with the gateway's audience), or name another "
            "path (--from kubernetes=PATH)"
        )
    return read_token_file(path)


# -- GitHub Actions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GitHubActionsSource:
    """The job's OIDC token, asked of the runner with the job's request token."""

    request_url: str
    request_token: str = field(repr=False)
    audience: str = DEFAULT_GITHUB_AUDIENCE

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], audience: str = DEFAULT_GITHUB_AUDIENCE
    ) -> GitHubActionsSource:
        missing = [
            name for name in (GITHUB_REQUEST_URL_ENV, GITHUB_REQUEST_TOKEN_ENV) if not env.get(name)
        ]
        if missing:
            raise TokenSourceError(
                f"{' and '.join(missing)} not set: not running in GitHub Actions "
                "with `permissions: id-token: write`?"
            )
        return cls(env[GITHUB_REQUEST_URL_ENV], env[GITHUB_REQUEST_TOKEN_ENV], audience)

    def cache_key(self) -> str:
        # The request token is job-specific: on a shared self-hosted runner, one job must never
        # be handed another job's token.
        return _digest(
            source="github-actions",
            url=self.request_url,
            request_token=self.request_token,
            audience=self.audience,
        )

    def token_request_url(self) -> str:
        """The request URL with ``audience`` set, whether or not it already has a query."""
        parts = urlsplit(self.request_url)
        kept = [p for p in parts.query.split("&") if p and p.partition("=")[0] != "audience"]
        query = "&".join([*kept, urlencode({"audience": self.audience})])
        return parts._replace(query=query).geturl()

    async def fetch(self) -> str:
        url = self.token_request_url()
        require_secure_url(url, GITHUB_REQUEST_URL_ENV)
        what = f"GitHub Actions OIDC token request to {urlsplit(url).netloc}"
        headers = {"Authorization": f"bearer {self.request_token}", "Accept": "application/json"}
        async with client_session() as session:
            answer = await request_json(
                session,
                "GET",
                url,
                what=what,
                headers=headers,
                secrets=[self.request_token],
                explain=_oauth_error,
            )
        return _checked_token(answer.get("value"), what)


# -- OAuth 2.0 client credentials ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientCredentialsSource:
    """An access token for a confidential client, at the token endpoint the issuer publishes."""

    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    resource: str | None = None  # RFC 8707
    audience: str | None = None  # Auth0 and others ask for this instead of a resource

    def __post_init__(self) -> None:
        require_secure_url(self.issuer, "the issuer")
        if not self.client_id:
            raise TokenSourceError("no client id")
        if not self.client_secret:
            raise TokenSourceError("no client secret")

    def cache_key(self) -> str:
        # The secret is part of the digest: whoever holds a wrong, revoked or rotated secret is
        # never served the token fetched with the right one. Only the hash is written down.
        return _digest(
            source="client-credentials",
            issuer=self.issuer,
            client_id=self.client_id,
            client_secret=self.client_secret,
            scope=self.scope,
            resource=self.resource,
            audience=self.audience,
        )

    async def fetch(self) -> str:
        async with client_session() as session:
            endpoint = await self._token_endpoint(session)
            what = f"token endpoint {endpoint}"
            answer = await request_json(
                session,
                "POST",
                endpoint,
                what=what,
                headers={"Authorization": self._basic_auth(), "Accept": "application/json"},
                form=self._form(),
                secrets=[self.client_secret],
                explain=_oauth_error,
            )
        return _checked_token(answer.get("access_token"), what)

    async def _token_endpoint(self, session: aiohttp.ClientSession) -> str:
        url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
        what = f"OIDC discovery at {url}"
        document = await request_json(
            session, "GET", url, what=what, headers={}, secrets=[], explain=_oauth_error
        )
        named = document.get("issuer")
        if not isinstance(named, str) or named.rstrip("/") != self.issuer.rstrip("/"):
            # OIDC Discovery 4.3: a document for another issuer is a mix-up, not a detail.
            raise TokenSourceError(f"{what}: the document is for issuer {named!r}, not this one")
        endpoint = document.get("token_endpoint")
        if not isinstance(endpoint, str) or not endpoint:
            raise TokenSourceError(f"{what}: the document has no token_endpoint")
        require_secure_url(endpoint, "the token endpoint")
        return endpoint

    def _basic_auth(self) -> str:
        # client_secret_basic, RFC 6749 2.3.1: each part form-urlencoded before base64.
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}"
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    def _form(self) -> dict[str, str]:
        form = {"grant_type": "client_credentials"}
        optional = {"scope": self.scope, "resource": self.resource, "audience": self.audience}
        form.update({name: value for name, value in optional.items() if value})
        return form


# -- the cache -------------------------------------------------------------------------------


def unverified_claims(token: str) -> dict[str, Any] | None:
    """A JWT's claims without checking anything; None when the token is not a readable JWS."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = orjson.loads(payload)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def reuse_until(token: str, fetched_at: float) -> float | None:
    """Until when a token may be served from the cache; None if it must not be cached at all.

    The margin is 60 s or 10% of the lifetime, whichever is larger, so that a token handed
    out from the cache still has time to cross the network and be checked with clock skew.
    """
    claims = unverified_claims(token)
    expires = None if claims is None else _number(claims.get("exp"))
    if claims is None or expires is None:
        return None
    issued = _number(claims.get("iat"))
    start = issued if issued is not None and issued <= expires else fetched_at
    margin = max(CACHE_MARGIN_SECONDS, CACHE_MARGIN_FRACTION * max(expires - start, 0.0))
    return expires - margin


class TokenCache:
    """Tokens kept until shortly before they expire: one 0600 file per source and parameters."""

    def __init__(self, directory: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._clock = clock

    @staticmethod
    def default_directory(env: Mapping[str, str]) -> Path:
        """``$XDG_CACHE_HOME/ztgate/tokens``, or ``~/.cache/ztgate/tokens``."""
        base = env.get("XDG_CACHE_HOME", "")
        root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
        return root / "ztgate" / "tokens"

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The cached token if it is still good; anything odd about the file is a miss."""
        try:
            fd = os.open(self.path(key), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if info.st_uid != os.getuid() or info.st_mode & 0o077:
                return None  # not written by us: someone could have planted a token
            raw = file.read(_MAX_TOKEN_BYTES * 2)
        try:
            entry = orjson.loads(raw)
            token, fetched_at = entry["token"], entry["fetched_at"]
        except (ValueError, TypeError, KeyError):
            return None
        fetched = _number(fetched_at)
        if not isinstance(token, str) or not _TOKEN.fullmatch(token) or fetched is None:
            return None
        until = reuse_until(token, fetched)
        return token if until is not None and self._clock() < until else None

    def put(self, key: str, token: str) -> bool:
        """Keep a token if it carries an ``exp`` worth waiting for; True when it was kept."""
        now = self._clock()
        until = reuse_until(token, now)
        if until is None or until <= now:
            return False
        try:
            self._ensure_directory()
            self._write_atomically(
                self.path(key), orjson.dumps({"token": token, "fetched_at": now})
            )
        except OSError as exc:
            raise TokenCacheError(
                f"cannot write the token cache in {self.directory}: {exc.strerror or exc}"
            ) from None
        return True

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(self.directory)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise TokenCacheError(f"the token cache {self.directory} is not a directory of yours")
        if info.st_mode & 0o077:
            os.chmod(self.directory, 0o700)

    def _write_atomically(self, path: Path, data: bytes) -> None:
        # mkstemp creates the file 0600; the rename means a reader sees the old or the new file.
        fd, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


# -- helpers ---------------------------------------------------------------------------------


def _digest(**parameters: str | None) -> str:
    return hashlib.sha256(orjson.dumps(parameters, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _number(value: object) -> float | None:
    """A JSON number as a float; booleans, strings and the rest are not numbers here."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _checked_token(value: object, what: str) -> str:
    """Refuse anything that is not one printable line; the value itself is never echoed."""
    if not isinstance(value, str) or not value.strip():
        raise TokenSourceError(f"{what}: no token in the answer")
    token = value.strip()
    if len(token) > _MAX_TOKEN_BYTES or not _TOKEN.fullmatch(token):
        raise TokenSourceError(f"{what}: the token is not a single line of printable ASCII")
    return token


def _oauth_error(document: Mapping[str, Any] | None, secrets: Collection[str]) -> str:
    """``: error: description`` from an RFC 6749 5.2 error answer, cleaned for one line."""
    if document is None or not isinstance(document.get("error"), str):
        return ""
    text = document["error"]
    description = document.get("error_description")
    if isinstance(description, str) and description:
        text = f"{text}: {description}"
    return f": {one_line(text, secrets)}"
