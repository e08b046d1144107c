"""Quotas: requests and tokens per principal or group, per minute and per day.

Counters live in process memory for one replica, or in Redis so that several replicas share
one budget. Redis unreachable fails closed (503): a quota that cannot be counted is not waved
through. A request is admitted while the counter, before it, is under the limit; tokens are
charged an estimate up front and corrected by the usage the response reports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ztgate.core.decision import LimitCheck
from ztgate.core.errors import RateLimited, ServiceUnavailable

_WINDOWS = {"minute": 60, "day": 86400}


class Counters(Protocol):
    async def add(self, items: Sequence[tuple[str, int, int]]) -> list[int]:
        """Add ``amount`` to each ``key`` (expiring after ``ttl`` s); the new values."""
        ...

    async def close(self) -> None: ...


class MemoryCounters:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._values: dict[str, tuple[int, float]] = {}
        self._clock = clock

    async def add(self, items: Sequence[tuple[str, int, int]]) -> list[int]:
        now = self._clock()
        if len(self._values) > 100_000:
            self._values = {k: v for k, v in self._values.items() if v[1] > now}
        out = []
        for key, amount, ttl in items:
            value, expires = self._values.get(key, (0, now + ttl))
            if expires <= now:
                value, expires = 0, now + ttl
            self._values[key] = (value + amount, expires)
            out.append(value + amount)
        return out

    async def close(self) -> None:
        return None


class RedisCounters:
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
            raise ServiceUnavailable(
                "quota store unavailable; requests are refused until it is back", retry_after=5
            ) from exc
        return [int(v) for v in results[::2]]

    async def close(self) -> None:
        await self._redis.aclose()


@dataclass
class Admission:
    """What a request was charged, so the response can correct the token estimate."""

    token_keys: list[tuple[str, int]] = field(default_factory=list)
    estimate: int = 0


class Quotas:
    def __init__(self, counters: Counters, clock: Callable[[], float] = time.time) -> None:
        self._counters = counters
        self._clock = clock

    def _key(self, check: LimitCheck, now: float) -> tuple[str, int, float]:
        size = _WINDOWS[check.window]
        bucket = int(now // size)
        key = f"ztgate:quota:{check.owner}:{check.metric}:{check.window}:{bucket}"
        return key, size, (bucket + 1) * size - now

    async def admit(self, checks: Sequence[LimitCheck], estimated_tokens: int) -> Admission:
        """Charge the request against every counter, or refuse it with 429 and undo the charge."""
        admission = Admission(estimate=estimated_tokens)
        if not checks:
            return admission
        now = self._clock()
        items, waits = [], []
        for check in checks:
            key, ttl, wait = self._key(check, now)
            amount = 1 if check.metric == "requests" else estimated_tokens
            items.append((key, amount, ttl))
            waits.append(wait)
        values = await self._counters.add(items)
        for check, (key, amount, ttl), value, wait in zip(
            checks, items, values, waits, strict=True
        ):
            if value - amount >= check.limit:  # the counter was already full before this request
                await self._counters.add([(k, -a, t) for k, a, t in items])
                raise RateLimited(
                    f"quota exceeded: {check.metric} per {check.window} (rule {check.rule_id})",
                    retry_after=max(1, math.ceil(wait)),
                )
            if check.metric == "tokens":
                admission.token_keys.append((key, ttl))
        return admission

    async def settle(self, admission: Admission, actual_tokens: int | None) -> None:
        """Replace the token estimate with what the response reported."""
        if actual_tokens is None or not admission.token_keys:
            return
        delta = actual_tokens - admission.estimate
        if delta:
            await self._counters.add([(key, delta, ttl) for key, ttl in admission.token_keys])

    async def close(self) -> None:
        await self._counters.close()


def quotas_from_url(redis_url: str | None) -> Quotas:
    return Quotas(RedisCounters(redis_url) if redis_url else MemoryCounters())
