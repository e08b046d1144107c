"""Issuer signing keys: fetched, pinned to algorithms, cached, refreshed, kept through outages.

Unlike PyJWT's ``PyJWKClient``, a failed refresh keeps the last good keys (up to a bounded
staleness), an unknown ``kid`` triggers at most one refetch per interval, and the key type
pins the algorithm, so a token can never pick how its own key is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidKeyError

from ztgate.config.model import IssuerConfig, is_loopback_host
from ztgate.core.errors import AuthenticationFailed, ServiceUnavailable

log = logging.getLogger("ztgate.identity")

_ALGORITHMS = get_default_algorithms()
_MAX_DOCUMENT_BYTES = 1024 * 1024
_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Which algorithms a key can serve follows from its type and curve, never from the token.
_EC_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})


class KeyFetchError(Exception):
    """An issuer's keys could not be fetched or understood; the message is safe to log."""


@dataclass(frozen=True, slots=True)
class VerificationKey:
    key_id: str
    kid: str | None
    algorithms: frozenset[str]
    key: Any

    def verify(self, alg: str, signing_input: bytes, signature: bytes) -> bool:
        return alg in self.algorithms and bool(
            _ALGORITHMS[alg].verify(signing_input, self.key, signature)
        )


@dataclass(frozen=True, slots=True)
class KeySet:
    """An immutable snapshot of one issuer's keys; refreshes swap in a new one."""

    keys: tuple[VerificationKey, ...]
    fetched_at: float
    by_kid: Mapping[str, VerificationKey] = field(init=False)
    key_ids: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_kid", {k.kid: k for k in self.keys if k.kid is not None})
        object.__setattr__(self, "key_ids", frozenset(k.key_id for k in self.keys))

    def candidates(self, kid: str | None, alg: str) -> list[VerificationKey]:
        if kid is not None:
            key = self.by_kid.get(kid)
            return [key] if key is not None and alg in key.algorithms else []
        return [k for k in self.keys if alg in k.algorithms]


def build_key_set(document: object, allowed: frozenset[str], fetched_at: float) -> KeySet:
    """Turn a JWKS document into verification keys, dropping any a token could abuse."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeyFetchError("the JWKS document has no 'keys' list")
    keys: list[VerificationKey] = []
    for jwk in document["keys"]:
        key = _verification_key(jwk, allowed)
        if key is not None:
            keys.append(key)
    if not keys:
        raise KeyFetchError("the JWKS document holds no usable public signing key")
    return KeySet(tuple(keys), fetched_at)


def _verification_key(jwk: object, allowed: frozenset[str]) -> VerificationKey | None:
    if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig" or "d" in jwk:
        return None  # encryption keys and leaked private keys are never used to verify
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        algorithms = _RSA_ALGORITHMS
    elif kty == "EC" and crv in _EC_CURVES:
        algorithms = frozenset({_EC_CURVES[crv]})
    elif kty == "OKP" and crv in ("Ed25519", "Ed448"):
        algorithms = frozenset({"EdDSA"})
    else:
        return None  # "oct" (shared secrets) above all: that is RS/HS key confusion
    declared = jwk.get("alg")
    if declared is not None:
        algorithms = algorithms & {declared}
    algorithms = algorithms & allowed
    if not algorithms:
        return None
    alg = next(iter(algorithms))
    try:
        key = _ALGORITHMS[alg].from_jwk(jwk)
    except (InvalidKeyError, ValueError, TypeError, KeyError):
        return None
    kid = jwk.get("kid")
    kid = kid if isinstance(kid, str) else None
    key_id = kid or hashlib.sha256(orjson.dumps(jwk, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return VerificationKey(key_id, kid, algorithms, key)


Fetcher = Callable[[], Awaitable[object]]


class IssuerKeys:
    """One issuer's key cache: background refresh, rate-limited refetch, bounded staleness."""

    def __init__(
        self,
        config: IssuerConfig,
        fetch: Fetcher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._fetch = fetch
        self._clock = clock
        self._allowed = frozenset(config.algorithms)
        self._current: KeySet | None = None
        self._last_attempt = -float("inf")
        self._lock = asyncio.Lock()
        self.last_error: str | None = None
        # Told (issuer name, error) of every failed refresh: the audit records them.
        self.on_failure: Callable[[str, str], None] | None = None

    @property
    def current(self) -> KeySet | None:
        """The keys still fit to serve, or None when none were loaded or they are too stale."""
        keys = self._current
        if keys is None or self._clock() - keys.fetched_at > self.config.key_max_staleness:
            return None
        return keys

    async def refresh(self) -> None:
        """Fetch once; on failure keep the last good keys and remember why."""
        async with self._lock:
            await self._refresh_locked()

    async def _refresh_locked(self) -> None:
        self._last_attempt = self._clock()
        try:
            document = await self._fetch()
            self._current = build_key_set(document, self._allowed, self._clock())
        except KeyFetchError as exc:
            self.last_error = str(exc)
            log.warning(
                "key refresh failed",
                extra={
                    "event": "key_refresh_failed",
                    "issuer": self.config.name,
                    "error": str(exc),
                },
            )
            if self.on_failure is not None:
                self.on_failure(self.config.name, str(exc))
        else:
            self.last_error = None

    async def _refetch_if_allowed(self) -> bool:
        """Refetch on a key miss, at most once per interval; concurrent misses share one fetch."""
        seen = self._last_attempt
        async with self._lock:
            if self._last_attempt != seen:
                return True
            if self._clock() - self._last_attempt < self.config.key_refetch_min_interval:
                return False
            await self._refresh_locked()
            return True

    async def candidates(self, kid: str | None, alg: str) -> list[VerificationKey]:
        keys = self.current
        if keys is not None:
            found = keys.candidates(kid, alg)
            if found:
                return found
        if await self._refetch_if_allowed():
            keys = self.current
        if keys is None:
            raise ServiceUnavailable(
                f"signing keys for issuer {self.config.name!r} are not available yet",
                retry_after=max(1, int(self.config.key_refetch_min_interval)),
            )
        found = keys.candidates(kid, alg)
        if not found:
            raise AuthenticationFailed("token signing key not recognised")
        return found

    async def run_refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.key_refresh_interval)
            await self.refresh()


def http_fetcher(config: IssuerConfig, session: aiohttp.ClientSession) -> Fetcher:
    """Fetch keys from ``jwks_uri``, or find it by OIDC discovery, or read ``jwks_file``."""
    if config.jwks_file is not None:
        path = Path(config.jwks_file)

        async def read_file() -> object:
            try:
                return orjson.loads(await asyncio.to_thread(path.read_bytes))
            except (OSError, orjson.JSONDecodeError) as exc:
                raise KeyFetchError(f"cannot read JWKS file {path}: {exc}") from exc

        return read_file

    async def fetch() -> object:
        jwks_uri = config.jwks_uri or await _discover_jwks_uri(config, session)
        return await _get_json(session, jwks_uri)

    return fetch


async def _discover_jwks_uri(config: IssuerConfig, session: aiohttp.ClientSession) -> str:
    url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = await _get_json(session, url)
    if not isinstance(document, dict) or document.get("issuer") != config.issuer:
        raise KeyFetchError(f"discovery at {url} names a different issuer")
    jwks_uri = document.get("jwks_uri")
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
        raise KeyFetchError(f"discovery at {url} has no jwks_uri")
    host = urlsplit(jwks_uri).hostname or ""
    if not jwks_uri.startswith("https://") and not is_loopback_host(host):
        raise KeyFetchError(f"discovery at {url} points at a non-https jwks_uri")
    return jwks_uri


async def _get_json(session: aiohttp.ClientSession, url: str) -> object:
    try:
        async with session.get(url, timeout=_FETCH_TIMEOUT, allow_redirects=False) as response:
            if response.status != 200:
                raise KeyFetchError(f"GET {url} answered {response.status}")
            body = await _read_bounded(response, url)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise KeyFetchError(f"GET {url} failed: {type(exc).__name__}") from exc
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise KeyFetchError(f"GET {url} did not return JSON") from exc


async def _read_bounded(response: aiohttp.ClientResponse, url: str) -> bytes:
    """The whole body, refused once past ``_MAX_DOCUMENT_BYTES``.

    One ``read(n)`` returns what has arrived so far, not ``n`` bytes: a document that comes
    in pieces (slowly, over TLS, through a proxy that flushes early) would be cut short and
    fail as "not JSON", and the limit would never be what refuses a huge one. So the body is
    read piece by piece to its end, and the fetch stops as soon as it is too long (a declared
    ``Content-Length`` over the limit stops it before reading anything)."""
    too_long = KeyFetchError(f"GET {url} returned more than {_MAX_DOCUMENT_BYTES} bytes")
    if (response.content_length or 0) > _MAX_DOCUMENT_BYTES:
        raise too_long
    body = bytearray()
    async for piece in response.content.iter_any():
        body += piece
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise too_long
    return bytes(body)
