"""Shared state in a SQLite file beside the audit store: one machine's workers agree.

``serve --workers N`` on the default store runs N processes; their quotas, one-time tokens and
container owners must be one set, so they live in a file every worker opens (its own file, not
the audit's, so a quota check never waits behind an audit commit). Each operation is one
``BEGIN IMMEDIATE`` transaction: SQLite lets one writer in at a time, so additions and claims
are atomic across the processes. ``synchronous=NORMAL``: a crash of ztgate loses nothing; a
power cut may lose the last moments of counting (never the audit).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from ztgate.core.errors import ServiceUnavailable

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters "
    "(key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS claims "
    "(key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL NOT NULL)",
)
_ADD = (
    "INSERT INTO counters AS c (key, value, expires_at) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (key) DO UPDATE SET "
    "value = CASE WHEN c.expires_at <= ?4 THEN excluded.value ELSE c.value + excluded.value END, "
    "expires_at = CASE WHEN c.expires_at <= ?4 THEN excluded.expires_at ELSE c.expires_at END "
    "RETURNING value"
)
_CLAIM = (
    "INSERT INTO claims AS c (key, value, expires_at) VALUES (?1, ?2, ?3) "
    "ON CONFLICT (key) DO UPDATE SET "
    "value = CASE WHEN c.expires_at <= ?4 THEN excluded.value ELSE c.value END, "
    "expires_at = CASE WHEN c.expires_at <= ?4 THEN excluded.expires_at ELSE c.expires_at END "
    "RETURNING value"
)
_HOLDER = "SELECT value FROM claims WHERE key = ? AND expires_at > ?"
_PURGE_EVERY = 60.0  # seconds between sweeps of expired rows


class SQLiteState:
    kind = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ztgate-state")
        self._connection: sqlite3.Connection | None = None  # the executor thread's only
        self._purged_at = 0.0

    async def add(self, items: Sequence[tuple[str, int, int]]) -> list[int]:
        now = self._clock()

        def work(connection: sqlite3.Connection) -> list[int]:
            return [
                connection.execute(_ADD, (key, amount, now + ttl, now)).fetchone()[0]
                for key, amount, ttl in items
            ]

        return await self._run(work, now)

    async def claim(self, key: str, value: str, ttl: float) -> str:
        now = self._clock()

        def work(connection: sqlite3.Connection) -> str:
            return str(connection.execute(_CLAIM, (key, value, now + ttl, now)).fetchone()[0])

        return await self._run(work, now)

    async def holder(self, key: str) -> str | None:
        now = self._clock()

        def work(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(_HOLDER, (key, now)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(work, now, write=False)

    async def close(self) -> None:
        def work() -> None:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        with contextlib.suppress(Exception):
            await asyncio.get_running_loop().run_in_executor(self._executor, work)
        self._executor.shutdown(wait=False)

    async def _run(
        self, work: Callable[[sqlite3.Connection], T], now: float, *, write: bool = True
    ) -> T:
        def call() -> T:
            connection = self._connection or self._connect()
            if not write:
                return work(connection)
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
                if now - self._purged_at >= _PURGE_EVERY:
                    self._purged_at = now
                    connection.execute("DELETE FROM counters WHERE expires_at <= ?", (now,))
                    connection.execute("DELETE FROM claims WHERE expires_at <= ?", (now,))
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
            return result

        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except (sqlite3.Error, OSError) as exc:
            raise ServiceUnavailable(
                f"the shared state ({self.path}) is unavailable: {exc}", retry_after=5
            ) from exc

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            deadline = time.monotonic() + self._busy_timeout
            while True:  # several workers opening a new file at once collide on the switch
                try:
                    connection.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            connection.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                connection.execute(statement)
        except sqlite3.Error:
            connection.close()
            raise
        self._connection = connection
        return connection
