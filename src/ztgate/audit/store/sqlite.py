"""The embedded audit store: one SQLite file, one connection on one thread of its own.

WAL mode with ``synchronous=FULL``: a committed append survives a power cut (``durability:
process``: ``NORMAL``, it survives a crash of ztgate but not of the machine). Appends run in
``BEGIN IMMEDIATE`` and read the chain's head inside that transaction, so several processes
appending to the same file (``serve --workers N``) still form one chain: SQLite lets one
writer in at a time, and each sees the head the previous one left.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ztgate.audit.chain import chain_events
from ztgate.audit.events import AuditEvent, AuditQuery, Checkpoint, StoredEvent
from ztgate.audit.store.base import (
    PurgeReport,
    ReviewChange,
    SessionQuery,
    SessionSummary,
    StoredRecording,
    StoreFull,
    StoreUnavailable,
)
from ztgate.audit.store.common import (
    CHECKPOINT_COLUMNS,
    EVENT_COLUMNS,
    PAGE,
    PURGE_BATCH,
    RECORDING_COLUMNS,
    REVIEW_COLUMNS,
    checkpoint_from_row,
    event_from_row,
    event_row,
    extra_filters,
    recording_from_row,
    review_from_row,
    review_row,
    session_from_row,
)
from ztgate.audit.store.migrations import migrations
from ztgate.config.model import Durability
from ztgate.core.reviews import Grant, Review, ReviewQuery

T = TypeVar("T")

# An event's body as JSON text, or NULL when purged or not JSON (a tampered body must not
# make every search fail).
_EIGHT = ", ".join("?" * 8)  # a review row's placeholders
_DOC = "(CASE WHEN json_valid(CAST(body AS TEXT)) THEN CAST(body AS TEXT) END)"
# What a readiness ping writes beside its row: a few pages, as many as a small append writes
# (its events' row and three index entries), so a store with no room for those is not ready.
_PING_BYTES = 16 * 1024


class SQLiteStore:
    def __init__(
        self, path: str | Path, *, busy_timeout: float = 5.0, durability: Durability = "fsync"
    ) -> None:
        """``busy_timeout``: how long an operation waits for another writer's lock before it
        fails (StoreUnavailable), which bounds what a caller waits on a locked file."""
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        # In WAL mode NORMAL syncs at checkpoints only: a commit is in the WAL file (the OS
        # has it, so a killed process loses nothing) but may not be on disk yet.
        self._synchronous = "FULL" if durability == "fsync" else "NORMAL"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ztgate-sqlite")
        self._connection: sqlite3.Connection | None = None  # used on the executor thread only
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- plumbing: every call runs on the store's thread; every failure is StoreUnavailable

    async def _run(self, what: str, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StoreUnavailable(f"audit store {self.path}: {what} failed: the store is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._call, work)
        except (sqlite3.Error, OSError) as exc:
            failure = StoreFull if _no_room(exc) else StoreUnavailable
            raise failure(f"audit store {self.path}: {what} failed: {exc}", retry_after=5) from exc

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        connection = self._connection or self._connect()
        try:
            return work(connection)
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.rollback()
            raise

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        try:
            self._use_wal(connection)
            connection.execute(f"PRAGMA synchronous={self._synchronous}")
        except sqlite3.Error:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _use_wal(self, connection: sqlite3.Connection) -> None:
        """Switch a new database to WAL. Switching needs the database to itself and SQLite
        does not wait for that (two workers starting on a fresh file collide), so retry."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @staticmethod
    @contextlib.contextmanager
    def _write(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes SQLite's single writer lock up front."""
        connection.execute("BEGIN IMMEDIATE")
        yield connection
        connection.execute("COMMIT")

    # -- the contract

    async def migrate(self) -> list[str]:
        def work(connection: sqlite3.Connection) -> list[str]:
            with self._write(connection):
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
                )
                done = {row[0] for row in connection.execute("SELECT name FROM schema_migrations")}
                applied = []
                for migration in migrations("sqlite"):
                    if migration.name in done:
                        continue
                    for statement in migration.statements:
                        connection.execute(statement)
                    connection.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?)", (migration.name, time.time())
                    )
                    applied.append(migration.name)
            return applied

        return await self._run("migrating the schema", work)

    async def close(self) -> None:
        if self._closed:
            return

        def work(connection: sqlite3.Connection) -> None:
            connection.close()
            self._connection = None

        with contextlib.suppress(StoreUnavailable):
            if self._connection is not None:
                await self._run("closing", work)
        self._closed = True
        self._executor.shutdown(wait=False)

    async def ping(self) -> None:
        """Rewrite the one row of ``health`` (migration ``0003_health``), with about as many
        pages as a small append writes: taking the write lock alone is let through by a full
        disk or a read-only file, and a smaller write can fit in the tail of the WAL where a
        request's events no longer do, so readiness would say ready while every request is
        refused."""

        def work(connection: sqlite3.Connection) -> None:
            with self._write(connection):
                connection.execute(
                    "INSERT OR REPLACE INTO health (id, at, pad) VALUES (1, ?, zeroblob(?))",
                    (time.time(), _PING_BYTES),
                )

        await self._run("ping", work)

    async def append(
        self, events: Sequence[AuditEvent], recordings: Sequence[StoredRecording] = ()
    ) -> list[StoredEvent]:
        if not events:
            if recordings:
                await self.put_recordings(recordings)
            return []

        def work(connection: sqlite3.Connection) -> list[StoredEvent]:
            with self._write(connection):
                head = connection.execute(
                    "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
                ).fetchone()
                stored = chain_events(None if head is None else (head[0], head[1]), events)
                connection.executemany(
                    f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [event_row(event) for event in stored],
                )
                if recordings:
                    _insert_recordings(connection, recordings)
            return stored

        return await self._run("appending to the audit chain", work)

    async def head(self) -> StoredEvent | None:
        def work(connection: sqlite3.Connection) -> StoredEvent | None:
            row = connection.execute(
                f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            return None if row is None else event_from_row(row)

        return await self._run("reading the chain's head", work)

    async def events(self, *, after_seq: int = 0) -> AsyncIterator[StoredEvent]:
        cursor = after_seq
        while True:

            def work(connection: sqlite3.Connection, after: int = cursor) -> list[StoredEvent]:
                rows = connection.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after, PAGE),
                ).fetchall()
                return [event_from_row(row) for row in rows]

            page = await self._run("reading the audit chain", work)
            for event in page:
                yield event
            if len(page) < PAGE:
                return
            cursor = page[-1].seq

    async def search(self, query: AuditQuery) -> list[StoredEvent]:
        sql, params = _search_sql(query)

        def work(connection: sqlite3.Connection) -> list[StoredEvent]:
            return [event_from_row(row) for row in connection.execute(sql, params)]

        return await self._run("searching the audit chain", work)

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        def work(connection: sqlite3.Connection) -> None:
            with self._write(connection):
                connection.execute(
                    f"INSERT OR IGNORE INTO checkpoints ({CHECKPOINT_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        checkpoint.seq,
                        checkpoint.hash,
                        checkpoint.at,
                        checkpoint.key_id,
                        checkpoint.signature,
                    ),
                )

        await self._run("storing a checkpoint", work)

    async def checkpoints(self) -> list[Checkpoint]:
        def work(connection: sqlite3.Connection) -> list[Checkpoint]:
            rows = connection.execute(
                f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY seq, key_id"
            )
            return [checkpoint_from_row(row) for row in rows]

        return await self._run("reading checkpoints", work)

    async def put_recordings(self, recordings: Sequence[StoredRecording]) -> None:
        def work(connection: sqlite3.Connection) -> None:
            with self._write(connection):
                _insert_recordings(connection, recordings)

        await self._run("storing recordings", work)

    async def put_recording(self, recording: StoredRecording) -> None:
        await self.put_recordings([recording])

    async def recordings(self, session_id: str) -> list[StoredRecording]:
        def work(connection: sqlite3.Connection) -> list[StoredRecording]:
            rows = connection.execute(
                f"SELECT {RECORDING_COLUMNS} FROM recordings WHERE session_id = ? "
                "ORDER BY started_at, request_id",
                (session_id,),
            )
            return [recording_from_row(row) for row in rows]

        return await self._run("reading recordings", work)

    async def sessions(self, query: SessionQuery) -> list[SessionSummary]:
        conditions, params = _time_conditions("started_at", query.since, query.until)
        if query.principal is not None:
            conditions.append("principal = ?")
            params.append(query.principal)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        sql = (
            "SELECT session_id, principal, MIN(started_at), MAX(started_at), COUNT(*) "
            f"FROM recordings {where} GROUP BY session_id, principal "
            "ORDER BY MAX(started_at) DESC, session_id LIMIT ?"
        )
        params.append(query.limit)

        def work(connection: sqlite3.Connection) -> list[SessionSummary]:
            return [session_from_row(row) for row in connection.execute(sql, params)]

        return await self._run("listing sessions", work)

    async def purge(
        self, before: float, *, events: bool = True, recordings: bool = True
    ) -> PurgeReport:
        """Drop event bodies and recording blobs older than ``before`` (``events`` or
        ``recordings`` False keeps that kind), in batches so appends keep flowing."""
        purged = {"events": 0, "recordings": 0}
        batches = []
        if events:
            batches.append(
                (
                    "events",
                    "UPDATE events SET body = NULL WHERE seq IN (SELECT seq FROM events "
                    "WHERE at < ? AND body IS NOT NULL LIMIT ?)",
                )
            )
        if recordings:
            batches.append(
                (
                    "recordings",
                    "UPDATE recordings SET blob = NULL WHERE request_id IN (SELECT request_id "
                    "FROM recordings WHERE started_at < ? AND blob IS NOT NULL LIMIT ?)",
                )
            )
        for table, sql in batches:
            while True:

                def work(connection: sqlite3.Connection, statement: str = sql) -> int:
                    with self._write(connection):
                        return connection.execute(statement, (before, PURGE_BATCH)).rowcount

                count = await self._run(f"purging {table}", work)
                purged[table] += count
                if count < PURGE_BATCH:
                    break
        return PurgeReport(events=purged["events"], recordings=purged["recordings"])

    # -- reviews

    async def add_review(self, review: Review) -> Review:
        def work(connection: sqlite3.Connection) -> None:
            with self._write(connection):
                connection.execute(
                    f"INSERT INTO reviews ({REVIEW_COLUMNS}) VALUES ({_EIGHT}) "
                    "ON CONFLICT DO NOTHING",
                    review_row(review),
                )

        await self._run("adding a review", work)
        return await self.open_review(review.requester, review.fingerprint) or review

    async def review(self, review_id: str) -> Review | None:
        found = await self._reviews("WHERE id = ?", (review_id,), "reading a review")
        return found[0] if found else None

    async def reviews(self, query: ReviewQuery) -> list[Review]:
        conditions, params = [], []
        for column, value in (("state", query.state), ("requester", query.requester)):
            if value is not None:
                conditions.append(f"{column} = ?")
                params.append(str(value))
        if query.since is not None:
            conditions.append("created_at >= ?")
            params.append(str(query.since))
        where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
        return await self._reviews(
            where + "ORDER BY created_at DESC LIMIT ?", (*params, query.limit), "listing reviews"
        )

    async def decided_reviews(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))

        def work(connection: sqlite3.Connection) -> list[str]:
            sql = f"SELECT id FROM reviews WHERE id IN ({marks}) AND state <> 'pending'"
            return [row[0] for row in connection.execute(sql, tuple(ids)).fetchall()]

        return await self._run("reading reviews", work)

    async def open_review(self, requester: str, fingerprint: str) -> Review | None:
        found = await self._reviews(
            "WHERE requester = ? AND fingerprint = ? AND state IN ('pending', 'approved') "
            "ORDER BY created_at DESC LIMIT 1",
            (requester, fingerprint),
            "finding a review",
        )
        return found[0] if found else None

    async def change_review(self, review_id: str, change: ReviewChange) -> Review | None:
        def work(connection: sqlite3.Connection) -> Review | None:
            with self._write(connection):
                row = connection.execute(
                    f"SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = ?", (review_id,)
                ).fetchone()
                if row is None:
                    return None
                changed = change(review_from_row(row))
                connection.execute(
                    f"UPDATE reviews SET ({REVIEW_COLUMNS}) = ({_EIGHT}) WHERE id = ?",
                    (*review_row(changed), review_id),
                )
                return changed

        return await self._run("changing a review", work)

    async def add_grant(self, grant: Grant) -> None:
        def work(connection: sqlite3.Connection) -> None:
            with self._write(connection):
                connection.execute(
                    "INSERT OR REPLACE INTO review_grants VALUES (?, ?, ?, ?)", tuple(grant)
                )

        await self._run("adding a grant", work)

    async def grant(self, requester: str, grant_key: str, now: float) -> Grant | None:
        def work(connection: sqlite3.Connection) -> Grant | None:
            row = connection.execute(
                "SELECT requester, grant_key, review_id, until FROM review_grants "
                "WHERE requester = ? AND grant_key = ? AND until > ? ORDER BY until DESC LIMIT 1",
                (requester, grant_key, now),
            ).fetchone()
            return None if row is None else Grant(*row)

        return await self._run("reading grants", work)

    async def due_reviews(self, now: float) -> list[Review]:
        return await self._reviews(
            "WHERE state = 'pending' AND expires_at <= ? ORDER BY expires_at",
            (now,),
            "finding expired reviews",
        )

    async def listen_reviews(
        self, changed: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]] | None:
        return None  # SQLite cannot tell other processes: waiting requests poll

    async def _reviews(self, clause: str, params: Sequence[Any], what: str) -> list[Review]:
        def work(connection: sqlite3.Connection) -> list[Review]:
            rows = connection.execute(
                f"SELECT {REVIEW_COLUMNS} FROM reviews {clause}", tuple(params)
            ).fetchall()
            return [review_from_row(row) for row in rows]

        return await self._run(what, work)


def _time_conditions(
    column: str, since: float | None, until: float | None
) -> tuple[list[str], list[Any]]:
    conditions: list[str] = []
    params: list[Any] = []
    if since is not None:
        conditions.append(f"{column} >= ?")
        params.append(since)
    if until is not None:
        conditions.append(f"{column} <= ?")
        params.append(until)
    return conditions, params


def _search_sql(query: AuditQuery) -> tuple[str, list[Any]]:
    conditions, params = _time_conditions("at", query.since, query.until)
    for column in ("principal", "request_id"):
        value = getattr(query, column)
        if value is not None:
            conditions.append(f"{column} = ?")
            params.append(value)
    if query.kinds:
        conditions.append(f"kind IN ({', '.join('?' for _ in query.kinds)})")
        params.extend(query.kinds)
    for path, value in (("$.data.decision.effect", query.decision), ("$.data.model", query.model)):
        if value is not None:
            conditions.append(f"json_extract({_DOC}, '{path}') = ?")
            params.append(value)
    for array, value in (("$.data.groups", query.group), ("$.data.skills", query.skill)):
        if value is not None:
            conditions.append(
                f"EXISTS (SELECT 1 FROM json_each({_DOC}, '{array}') WHERE value = ?)"
            )
            params.append(value)
    if query.finding is not None:
        conditions.append(
            f"EXISTS (SELECT 1 FROM json_each({_DOC}, '$.data.findings') WHERE key = ?)"
        )
        params.append(query.finding)
    for key, value in extra_filters(query):
        path = f"'$.data.{key}'"
        if value is None:
            conditions.append(f"json_type({_DOC}, {path}) = 'null'")
        else:
            conditions.append(f"json_extract({_DOC}, {path}) = ?")
            params.append(int(value) if isinstance(value, bool) else value)
    where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
    params.append(query.limit)
    return f"SELECT {EVENT_COLUMNS} FROM events {where} ORDER BY seq DESC LIMIT ?", params


def _insert_recordings(
    connection: sqlite3.Connection, recordings: Sequence[StoredRecording]
) -> None:
    connection.executemany(
        f"INSERT OR REPLACE INTO recordings ({RECORDING_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r.request_id,
                r.session_id,
                r.principal,
                r.started_at,
                r.size,
                int(r.truncated),
                int(r.sealed),
                r.blob,
            )
            for r in recordings
        ],
    )


def _no_room(exc: sqlite3.Error | OSError) -> bool:
    """Whether SQLite (SQLITE_FULL, also as an extended code) or the OS (ENOSPC, EDQUOT) said
    there was no room: the transaction was rolled back, nothing of it committed."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL
