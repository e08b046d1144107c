"""Shared state in Redis: every replica's counters and claims in one place, fast.

Redis unreachable fails closed (ServiceUnavailable, 503): a quota that cannot be counted or a
one-time token that cannot be checked is not waved through.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ztgate.core.errors import ServiceUnavailable

_PREFIX = "ztgate:claim:"
SOCKET_TIMEOUT = 2.0  # seconds: what a slow or unreachable Redis costs a caller, once
MAX_CONNECTIONS = 64  # per process: far above what the gateway uses (19 to 36 at 1,000 streams)


class RedisState:
    kind = "redis"

    def __init__(self, url: str) -> None:
        # One immediate retry on a broken connection only: after a Redis restart, pooled
        # connections are dead, and the first command should reconnect rather than refuse a
        # request. Not on a timeout (redis-py's Retry retries those by default): a Redis slower
        # than the socket timeout would then hold each caller for two timeouts, not one.
        # A bounded pool: a slow Redis holds every connection for up to the timeout, and an
        # unbounded pool would answer each new caller with a new connection to it (more load
        # on a server already slow, up to its maxclients). Past the bound a caller waits up to
        # the same timeout for a free connection, then is refused (ConnectionError: 503).
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=SOCKET_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
            retry_on_error=[redis.exceptions.ConnectionError],
        )
        self._redis = aioredis.Redis.from_pool(pool)

    async def add(self, items: Sequence[tuple[str, int, int]]) -> list[int]:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key, amount, ttl in items:
                    pipe.incrby(key, amount)
                    pipe.expire(key, ttl, nx=True)
                results = await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            raise _unavailable() from exc
        return [int(v) for v in results[::2]]

    async def claim(self, key: str, value: str, ttl: float) -> str:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(_PREFIX + key, value, px=max(1, int(ttl * 1000)), nx=True)
                pipe.get(_PREFIX + key)
                _, held = await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            raise _unavailable() from exc
        return value if held is None else _text(held)

    async def holder(self, key: str) -> str | None:
        try:
            held = await self._redis.get(_PREFIX + key)
        except (redis.exceptions.RedisError, OSError) as exc:
            raise _unavailable() from exc
        return None if held is None else _text(held)

    async def close(self) -> None:
        await self._redis.aclose()


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "the shared state (Redis) is unavailable; requests are refused until it is back",
        retry_after=5,
    )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
