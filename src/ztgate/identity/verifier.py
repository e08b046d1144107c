"""The authentication backend: a token in, a verified :class:`Identity` out, or an error."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ztgate.config.model import IdentityConfig, IssuerConfig
from ztgate.core.errors import AuthenticationFailed
from ztgate.core.identity import Identity
from ztgate.identity.claims import IssuerRules, scopes
from ztgate.identity.jwt import ClaimRules, check_claims, parse_token
from ztgate.identity.keys import IssuerKeys, http_fetcher
from ztgate.shared.base import SharedState
from ztgate.shared.memory import MemoryState


@dataclass(frozen=True, slots=True)
class _CachedIdentity:
    identity: Identity
    keys: IssuerKeys
    key_id: str


class TokenVerifier:
    """Verifies tokens against the configured issuers, caching each verified token until expiry.

    A cache hit still requires the signing key to be in the issuer's current key set, so a key
    the issuer withdraws stops its tokens at the next refresh.
    """

    def __init__(
        self,
        config: IdentityConfig,
        issuer_keys: dict[str, IssuerKeys],
        clock: Callable[[], float] = time.time,
        shared: SharedState | None = None,
    ) -> None:
        """``shared`` holds the one-time tokens' ``jti``s where every process sees them
        (memory, one process, when None)."""
        self._max_token_bytes = config.max_token_bytes
        self._cache_size = config.token_cache_size
        self._cache: dict[bytes, _CachedIdentity] = {}
        self._clock = clock
        self._issuers = {keys.config.issuer: keys for keys in issuer_keys.values()}
        self._rules = {
            keys.config.issuer: _claim_rules(keys.config) for keys in issuer_keys.values()
        }
        self._issuer_rules = {
            keys.config.issuer: IssuerRules(keys.config) for keys in issuer_keys.values()
        }
        guard = ReplayGuard(shared if shared is not None else MemoryState())
        self._replay_guards = {
            keys.config.issuer: guard
            for keys in issuer_keys.values()
            if keys.config.one_time_tokens
        }
        self.issuer_keys = issuer_keys
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_config(
        cls, config: IdentityConfig, session: aiohttp.ClientSession, shared: SharedState
    ) -> TokenVerifier:
        keys = {i.name: IssuerKeys(i, http_fetcher(i, session)) for i in config.issuers}
        return cls(config, keys, shared=shared)

    def on_key_refresh_failure(self, callback: Callable[[str, str], None]) -> None:
        """Call ``callback(issuer name, error)`` whenever an issuer's keys fail to refresh."""
        for keys in self._issuers.values():
            keys.on_failure = callback

    async def start(self) -> None:
        """Load every issuer's keys once, then keep them fresh in the background.

        An unreachable issuer does not stop start-up: its callers get 503 until keys arrive,
        and ``/readyz`` says so.
        """
        await asyncio.gather(*(keys.refresh() for keys in self.issuer_keys.values()))
        self._tasks = [
            asyncio.create_task(keys.run_refresh_loop()) for keys in self.issuer_keys.values()
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def verify(self, token: str) -> Identity:
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None:
            current = cached.keys.current
            if now < cached.identity.expires_at and current and cached.key_id in current.key_ids:
                return cached.identity
            del self._cache[digest]
        parsed = parse_token(token, max_bytes=self._max_token_bytes)
        iss = parsed.claims.get("iss")
        keys = self._issuers.get(iss) if isinstance(iss, str) else None
        if keys is None:
            raise AuthenticationFailed("token issuer is not trusted")
        if parsed.alg not in keys.config.algorithms:
            raise AuthenticationFailed("token signing algorithm not accepted")
        candidates = await keys.candidates(parsed.kid, parsed.alg)
        key = next(
            (k for k in candidates if k.verify(parsed.alg, parsed.signing_input, parsed.signature)),
            None,
        )
        if key is None:
            raise AuthenticationFailed("token signature is invalid")
        expires_at = check_claims(parsed.claims, self._rules[keys.config.issuer], now)
        rules = self._issuer_rules[keys.config.issuer]
        rules.check(parsed.claims)
        identity = Identity(
            issuer_name=keys.config.name,
            issuer=keys.config.issuer,
            subject=parsed.claims["sub"],
            claims=parsed.claims,
            expires_at=expires_at,
            groups=rules.groups(parsed.claims),
            scopes=scopes(parsed.claims),
        )
        guard = self._replay_guards.get(keys.config.issuer)
        if guard is not None:
            await guard.use(keys.config.issuer, parsed.claims.get("jti"), expires_at, now)
        else:  # a one-time token must never be served from the cache
            self._remember(digest, _CachedIdentity(identity, keys, key.key_id), now)
        return identity

    def _remember(self, digest: bytes, entry: _CachedIdentity, now: float) -> None:
        if self._cache_size == 0:
            return
        if len(self._cache) >= self._cache_size:
            for stale in [d for d, e in self._cache.items() if e.identity.expires_at <= now]:
                del self._cache[stale]
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
        self._cache[digest] = entry

    @property
    def cached_tokens(self) -> int:
        """Verified tokens remembered (at most ``identity.token_cache_size``)."""
        return len(self._cache)

    def status(self) -> dict[str, dict[str, Any]]:
        """Per-issuer key health for ``/readyz``; holds no key material."""
        report: dict[str, dict[str, Any]] = {}
        for name, keys in self.issuer_keys.items():
            current = keys.current
            report[name] = {
                "ready": current is not None,
                "keys": 0 if current is None else len(current.keys),
                "last_error": keys.last_error,
            }
        return report

    @property
    def ready(self) -> bool:
        return all(keys.current is not None for keys in self.issuer_keys.values())


class ReplayGuard:
    """Refuses a second use of a ``jti`` until the token expires: for one-time tokens.

    Each use claims the ``jti`` in the shared state with a value of its own; only the first
    claim gets its value back, on whichever replica or worker it ran (``ztgate.shared``)."""

    def __init__(self, shared: SharedState) -> None:
        self._shared = shared

    async def use(self, issuer: str, jti: object, expires_at: float, now: float) -> None:
        if not isinstance(jti, str) or not jti:
            raise AuthenticationFailed("one-time tokens must carry a jti")
        mine = os.urandom(12).hex()
        key = "jti:" + hashlib.sha256(f"{issuer}\n{jti}".encode()).hexdigest()
        if await self._shared.claim(key, mine, max(1.0, expires_at - now)) != mine:
            raise AuthenticationFailed("token was already used")


def _claim_rules(config: IssuerConfig) -> ClaimRules:
    return ClaimRules(
        issuer=config.issuer,
        audiences=frozenset(config.audiences),
        clock_skew=config.clock_skew,
        max_lifetime=config.max_token_lifetime,
    )
