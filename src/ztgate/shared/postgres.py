"""Shared state in PostgreSQL: every replica on the audit store's database agrees, with no
Redis to run. Each operation is one statement (an upsert that decides atomically under the
row's lock), so concurrent replicas never both win a claim or lose an addition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ztgate.core.errors import ServiceUnavailable

# The tables come with the audit store's migrations (0003_shared_state.sql), which run under
# its migration lock before any replica serves.
_ADD = (
    "INSERT INTO ztgate_shared_counters AS c (key, value, expires_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (key) DO UPDATE SET "
    "value = CASE WHEN c.expires_at <= $4 THEN excluded.value ELSE c.value + excluded.value END, "
    "expires_at = CASE WHEN c.expires_at <= $4 THEN excluded.expires_at ELSE c.expires_at END "
    "RETURNING value"
)
# Always an update on conflict, so the row is locked and RETURNING gives its latest committed
# holder, even one inserted by a transaction this statement's snapshot cannot see.
_CLAIM = (
    "INSERT INTO ztgate_shared_claims AS c (key, value, expires_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (key) DO UPDATE SET "
    "value = CASE WHEN c.expires_at <= $4 THEN excluded.value ELSE c.value END, "
    "expires_at = CASE WHEN c.expires_at <= $4 THEN excluded.expires_at ELSE c.expires_at END "
    "RETURNING value"
)
_HOLDER = "SELECT value FROM ztgate_shared_claims WHERE key = $1 AND expires_at > $2"
_PURGE_EVERY = 60.0
_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class PostgresState:
    kind = "postgresql"

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self._clock = clock
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._connecting = asyncio.Lock()  # the first callers at once open one pool, not many
        self._purged_at = 0.0

    async def add(self, items: Sequence[tuple[str, int, int]]) -> list[int]:
        now = self._clock()
        pool = await self._connected()
        try:
            async with pool.acquire() as connection, connection.transaction():
                values = [
                    int(await connection.fetchval(_ADD, key, amount, now + ttl, now))
                    for key, amount, ttl in items
                ]
                await self._purge(connection, now)
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        return values

    async def claim(self, key: str, value: str, ttl: float) -> str:
        now = self._clock()
        pool = await self._connected()
        try:
            held = await pool.fetchval(_CLAIM, key, value, now + ttl, now)
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        return str(held)

    async def holder(self, key: str) -> str | None:
        pool = await self._connected()
        try:
            held = await pool.fetchval(_HOLDER, key, self._clock())
        except _FAILURES as exc:
            raise _unavailable(exc) from exc
        return None if held is None else str(held)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _connected(self) -> asyncpg.Pool[asyncpg.Record]:
        async with self._connecting:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._url, min_size=1, max_size=4, timeout=5
                    )
                except _FAILURES as exc:
                    raise _unavailable(exc) from exc
            return self._pool

    async def _purge(self, connection: PoolConnectionProxy[asyncpg.Record], now: float) -> None:
        if now - self._purged_at < _PURGE_EVERY:
            return
        self._purged_at = now
        await connection.execute("DELETE FROM ztgate_shared_counters WHERE expires_at <= $1", now)
        await connection.execute("DELETE FROM ztgate_shared_claims WHERE expires_at <= $1", now)


def _unavailable(exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"the shared state (PostgreSQL) is unavailable: {type(exc).__name__}", retry_after=5
    )
