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


class RedisState:
    kind = "redis"

    def __init__(self, url: str) -> None:
        # One immediate retry on a broken connection: after a Redis restart, pooled connections
        # are dead, and the first command should reconnect rather than refuse a request.
        self._redis = aioredis.Redis.from_url(
            url,
            socket_timeout=2,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[redis.exceptions.ConnectionError],
        )

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
