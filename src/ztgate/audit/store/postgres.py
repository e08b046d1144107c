"""The PostgreSQL audit store (asyncpg), for several replicas sharing one chain.

An append takes ``pg_advisory_xact_lock`` and only then reads the chain's head, in the same
transaction: under READ COMMITTED each statement sees what was committed before it began, so
the head read after the lock is the head the previous appender committed, and replicas
appending at once produce one chain that verifies. The lock is released by the commit.

A pooled connection that died (PostgreSQL restarted) is found on first use; the operation is
retried once on fresh connections when nothing can have been committed, so service resumes
with the first request after the database returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

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
    redact_url,
    review_from_row,
    review_row,
    scrub,
    session_from_row,
)
from ztgate.audit.store.migrations import migrations
from ztgate.config.model import Durability
from ztgate.core.reviews import Grant, Review, ReviewQuery

T = TypeVar("T")

# Advisory lock keys ("zt" + purpose), so no other application's lock collides by accident.
_APPEND_LOCK = 0x7A74_0001_A0D1_7001
_MIGRATE_LOCK = 0x7A74_0001_A0D1_7002
# The lock is taken in the same round trip as BEGIN; the head is read by the next statement,
# whose snapshot is taken after the lock is held.
_BEGIN_APPEND = f"BEGIN; SELECT pg_advisory_xact_lock({_APPEND_LOCK})"
_INSERT_EVENTS = (
    f"INSERT INTO events ({EVENT_COLUMNS}) SELECT * FROM unnest($1::bigint[], $2::text[], "
    "$3::float8[], $4::text[], $5::text[], $6::bytea[], $7::bytea[], $8::bytea[], $9::bytea[])"
)
# A dead connection: retried once on a fresh one (when nothing can have been committed).
_CONNECTION_LOST = (
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.AdminShutdownError,
    ConnectionError,
)
_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
# An event's data as JSON (json, not jsonb: jsonb refuses "\u0000" in any string).
_DATA = "(convert_from(body, 'UTF8')::json -> 'data')"
_EIGHT = ", ".join(f"${n}" for n in range(1, 9))  # a review row's placeholders
_REVIEWS_CHANNEL = "ztgate_reviews"  # NOTIFY: a review changed (its id)
_NOTIFY = "SELECT pg_notify($1, $2)"


class PostgresStore:
    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 8,
        connect_timeout: float = 5.0,
        command_timeout: float = 30.0,
        lock_timeout: float = 5.0,
        durability: Durability = "fsync",
    ) -> None:
        """``lock_timeout``: how long a statement waits for a lock (the chain's, a review's
        row) before it fails, which bounds what a caller waits behind a stuck writer."""
        self._url = url
        self.target = redact_url(url)
        self._password = urlsplit(url).password or ""
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        # "process": the commit returns before its WAL record is flushed; the server writes it
        # within wal_writer_delay. A crash of ztgate loses nothing; one of the database host may.
        self._settings = {
            "synchronous_commit": "on" if durability == "fsync" else "off",
            "lock_timeout": f"{max(1, round(lock_timeout * 1000))}ms",
        }
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"PostgresStore({self.target!r})"

    # -- plumbing: pooled connections, one retry on a dead one, every failure StoreUnavailable

    def _unavailable(self, what: str, exc: BaseException) -> StoreUnavailable:
        """The failure as the writer sees it: StoreFull when the server answered that it had
        no room (SQLSTATE 53100: the statement, so its transaction, failed; never a lost
        connection, after which a commit may have happened)."""
        detail = scrub(f"{type(exc).__name__}: {exc}", {"***": self._password})
        message = f"audit store {self.target}: {what} failed: {detail}"
        if isinstance(exc, asyncpg.exceptions.DiskFullError):
            return StoreFull(message, retry_after=5)
        return StoreUnavailable(message, retry_after=5)

    async def _get_pool(self) -> asyncpg.Pool:
        if self._closed:
            raise StoreUnavailable(f"audit store {self.target}: the store is closed")
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._url,
                    min_size=1,
                    max_size=self._max_connections,
                    timeout=self._connect_timeout,
                    command_timeout=self._command_timeout,
                    server_settings=self._settings,
                )
            return self._pool

    async def _run(
        self,
        what: str,
        work: Callable[[PoolConnectionProxy[asyncpg.Record]], Awaitable[T]],
    ) -> T:
        """Run ``work`` on a pooled connection. ``work`` must raise StoreUnavailable itself
        for a failure after which a retry could repeat a commit.

        Only a failure of ``work`` (or of getting a connection) is retried, never one of
        handing the connection back: the pool resets it on release (a query), which fails
        when the connection died just after ``work`` ended, and retrying then would run a
        committed append again (the same events twice in the chain, for a caller answered
        once: seen when PostgreSQL connections were reset under load)."""
        for attempt in (1, 2):
            try:
                pool = await self._get_pool()
                connection = await pool.acquire(timeout=self._connect_timeout)
            except _CONNECTION_LOST as exc:
                if attempt == 2:
                    raise self._unavailable(what, exc) from exc
                await self._expire_connections()
                continue
            except _FAILURES as exc:
                raise self._unavailable(what, exc) from exc
            try:
                result = await work(connection)
            except BaseException as exc:
                await _release(pool, connection)
                if isinstance(exc, _CONNECTION_LOST) and attempt == 1:
                    await self._expire_connections()
                    continue
                if isinstance(exc, _FAILURES):
                    raise self._unavailable(what, exc) from exc
                raise
            await _release(pool, connection)
            return result
        raise AssertionError("unreachable")

    async def _expire_connections(self) -> None:
        """A connection was found dead: so are its siblings, likely (a restart, a failover)."""
        if self._pool is not None:
            await self._pool.expire_connections()

    async def _fetch(self, what: str, sql: str, *args: Any) -> list[Any]:
        async def work(connection: PoolConnectionProxy[asyncpg.Record]) -> list[Any]:
            return list(await connection.fetch(sql, *args))

        return await self._run(what, work)

    async def _write(self, what: str, sql: str, *args: Any) -> str:
        """One idempotent statement in its own transaction (its status, e.g. ``UPDATE 3``):
        idempotent, because a lost connection retries it."""

        async def work(connection: PoolConnectionProxy[asyncpg.Record]) -> str:
            return await connection.execute(sql, *args)

        return await self._run(what, work)

    # -- the contract

    async def migrate(self) -> list[str]:
        async def work(connection: PoolConnectionProxy[asyncpg.Record]) -> list[str]:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
                await connection.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations "
                    "(name TEXT PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
                )
                rows = await connection.fetch("SELECT name FROM schema_migrations")
                done = {row[0] for row in rows}
                applied = []
                for migration in migrations("postgres"):
                    if migration.name in done:
                        continue
                    for statement in migration.statements:
                        await connection.execute(statement)
                    await connection.execute(
                        "INSERT INTO schema_migrations VALUES ($1, $2)",
                        migration.name,
                        time.time(),
                    )
                    applied.append(migration.name)
                return applied

        return await self._run("migrating the schema", work)

    async def close(self) -> None:
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=self._connect_timeout)
            except (TimeoutError, *_FAILURES):
                pool.terminate()

    async def ping(self) -> None:
        # A standby, or a database whose sessions default to read-only, refuses every append.
        rows = await self._fetch(
            "ping",
            "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only') = 'on', "
            "to_regclass('events')",
        )
        if rows[0][0]:
            raise StoreUnavailable(f"audit store {self.target}: the database is read-only")
        if rows[0][1] is None:
            raise StoreUnavailable(f"audit store {self.target}: the schema is not migrated")

    async def append(
        self, events: Sequence[AuditEvent], recordings: Sequence[StoredRecording] = ()
    ) -> list[StoredEvent]:
        if not events:
            if recordings:
                await self.put_recordings(recordings)
            return []

        async def work(connection: PoolConnectionProxy[asyncpg.Record]) -> list[StoredEvent]:
            # Four round trips: BEGIN with the lock, the head, the rows, COMMIT (a fifth for
            # recordings riding along).
            await connection.execute(_BEGIN_APPEND)
            try:
                head = await connection.fetchrow(
                    "SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1"
                )
                stored = chain_events(None if head is None else (head[0], head[1]), events)
                await connection.execute(_INSERT_EVENTS, *zip(*map(event_row, stored), strict=True))
                if recordings:
                    await connection.executemany(_UPSERT_RECORDING, _recording_rows(recordings))
            except Exception:  # (a cancelled append is rolled back as the pool resets it)
                if not connection.is_closed():
                    with contextlib.suppress(*_FAILURES):
                        await connection.execute("ROLLBACK")
                raise
            try:
                await connection.execute("COMMIT")
            except _FAILURES as exc:  # perhaps committed: never retried
                raise self._unavailable("committing to the audit chain", exc) from exc
            return stored

        return await self._run("appending to the audit chain", work)

    async def head(self) -> StoredEvent | None:
        rows = await self._fetch(
            "reading the chain's head",
            f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq DESC LIMIT 1",
        )
        return event_from_row(rows[0]) if rows else None

    async def events(self, *, after_seq: int = 0) -> AsyncIterator[StoredEvent]:
        cursor = after_seq
        while True:
            rows = await self._fetch(
                "reading the audit chain",
                f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
                cursor,
                PAGE,
            )
            for row in rows:
                yield event_from_row(row)
            if len(rows) < PAGE:
                return
            cursor = rows[-1][0]

    async def search(self, query: AuditQuery) -> list[StoredEvent]:
        sql, params = _search_sql(query)
        rows = await self._fetch("searching the audit chain", sql, *params)
        return [event_from_row(row) for row in rows]

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        await self._write(
            "storing a checkpoint",
            f"INSERT INTO checkpoints ({CHECKPOINT_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT DO NOTHING",
            checkpoint.seq,
            checkpoint.hash,
            checkpoint.at,
            checkpoint.key_id,
            checkpoint.signature,
        )

    async def checkpoints(self) -> list[Checkpoint]:
        rows = await self._fetch(
            "reading checkpoints",
            f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints ORDER BY seq, key_id",
        )
        return [checkpoint_from_row(row) for row in rows]

    async def put_recordings(self, recordings: Sequence[StoredRecording]) -> None:
        rows = _recording_rows(recordings)

        async def work(connection: PoolConnectionProxy[asyncpg.Record]) -> None:
            # Idempotent (an upsert per request id), so a lost connection may retry it.
            async with connection.transaction():
                await connection.executemany(_UPSERT_RECORDING, rows)

        await self._run("storing recordings", work)

    async def put_recording(self, recording: StoredRecording) -> None:
        await self.put_recordings([recording])

    async def recordings(self, session_id: str) -> list[StoredRecording]:
        rows = await self._fetch(
            "reading recordings",
            f"SELECT {RECORDING_COLUMNS} FROM recordings WHERE session_id = $1 "
            "ORDER BY started_at, request_id",
            session_id,
        )
        return [recording_from_row(row) for row in rows]

    async def sessions(self, query: SessionQuery) -> list[SessionSummary]:
        where = _Where()
        where.time("started_at", query.since, query.until)
        if query.principal is not None:
            where.add("principal = {}", query.principal)
        limit = where.param(query.limit)
        rows = await self._fetch(
            "listing sessions",
            "SELECT session_id, principal, MIN(started_at), MAX(started_at), COUNT(*) "
            f"FROM recordings {where.sql()} GROUP BY session_id, principal "
            f"ORDER BY MAX(started_at) DESC, session_id LIMIT {limit}",
            *where.params,
        )
        return [session_from_row(row) for row in rows]

    async def purge(
        self, before: float, *, events: bool = True, recordings: bool = True
    ) -> PurgeReport:
        """Drop event bodies and recording blobs older than ``before`` (``events`` or
        ``recordings`` False keeps that kind), in batches so appends keep flowing."""
        purged = {"events": 0, "recordings": 0}
        statements = []
        if events:
            statements.append(
                (
                    "events",
                    "UPDATE events SET body = NULL WHERE seq IN (SELECT seq FROM events "
                    "WHERE at < $1 AND body IS NOT NULL LIMIT $2)",
                )
            )
        if recordings:
            statements.append(
                (
                    "recordings",
                    "UPDATE recordings SET blob = NULL WHERE request_id IN (SELECT request_id "
                    "FROM recordings WHERE started_at < $1 AND blob IS NOT NULL LIMIT $2)",
                )
            )
        for table, sql in statements:
            while True:
                status = await self._write(f"purging {table}", sql, float(before), PURGE_BATCH)
                count = int(status.rsplit(" ", 1)[-1])
                purged[table] += count
                if count < PURGE_BATCH:
                    break
        return PurgeReport(events=purged["events"], recordings=purged["recordings"])

    # -- reviews

    async def add_review(self, review: Review) -> Review:
        await self._write(
            "adding a review",
            f"INSERT INTO reviews ({REVIEW_COLUMNS}) VALUES ({_EIGHT}) ON CONFLICT DO NOTHING",
            *review_row(review),
        )
        return await self.open_review(review.requester, review.fingerprint) or review

    async def review(self, review_id: str) -> Review | None:
        found = await self._reviews("WHERE id = $1", review_id)
        return found[0] if found else None

    async def reviews(self, query: ReviewQuery) -> list[Review]:
        where = _Where()
        if query.state is not None:
            where.add("state = {}", query.state.value)
        if query.requester is not None:
            where.add("requester = {}", query.requester)
        if query.since is not None:
            where.add("created_at >= {}", float(query.since))
        limit = where.param(query.limit)
        return await self._reviews(
            f"{where.sql()} ORDER BY created_at DESC LIMIT {limit}", *where.params
        )

    async def decided_reviews(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        rows = await self._fetch(
            "reading reviews",
            "SELECT id FROM reviews WHERE id = ANY($1::text[]) AND state <> 'pending'",
            list(ids),
        )
        return [row[0] for row in rows]

    async def open_review(self, requester: str, fingerprint: str) -> Review | None:
        found = await self._reviews(
            "WHERE requester = $1 AND fingerprint = $2 AND state IN ('pending', 'approved') "
            "ORDER BY created_at DESC LIMIT 1",
            requester,
            fingerprint,
        )
        return found[0] if found else None

    async def change_review(self, review_id: str, change: ReviewChange) -> Review | None:
        async def work(connection: PoolConnectionProxy[asyncpg.Record]) -> Review | None:
            try:
                async with connection.transaction():
                    row = await connection.fetchrow(
                        f"SELECT {REVIEW_COLUMNS} FROM reviews WHERE id = $1 FOR UPDATE",
                        review_id,
                    )
                    if row is None:
                        return None
                    changed = change(review_from_row(row))
                    await connection.execute(
                        f"UPDATE reviews SET ({REVIEW_COLUMNS}) = ({_EIGHT}) WHERE id = $9",
                        *review_row(changed),
                        review_id,
                    )
                    await connection.execute(
                        "SELECT pg_notify($1, $2)", _REVIEWS_CHANNEL, review_id
                    )
                    return changed
            except _CONNECTION_LOST as exc:
                # The commit may have landed: retrying could apply the change twice.
                raise self._unavailable("changing a review", exc) from exc

        return await self._run("changing a review", work)

    async def add_grant(self, grant: Grant) -> None:
        await self._write(
            "adding a grant",
            "INSERT INTO review_grants VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            *grant,
        )

    async def grant(self, requester: str, grant_key: str, now: float) -> Grant | None:
        rows = await self._fetch(
            "reading grants",
            "SELECT requester, grant_key, review_id, until FROM review_grants "
            "WHERE requester = $1 AND grant_key = $2 AND until > $3 ORDER BY until DESC LIMIT 1",
            requester,
            grant_key,
            now,
        )
        return Grant(*rows[0]) if rows else None

    async def due_reviews(self, now: float) -> list[Review]:
        return await self._reviews(
            "WHERE state = 'pending' AND expires_at <= $1 ORDER BY expires_at", now
        )

    async def listen_reviews(
        self, changed: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]] | None:
        """A connection of its own that LISTENs: every change on any replica calls back."""
        try:
            connection = await asyncpg.connect(self._url, timeout=self._connect_timeout)
            await connection.add_listener(
                _REVIEWS_CHANNEL, lambda _conn, _pid, _channel, payload: changed(payload)
            )
        except _FAILURES as exc:
            raise self._unavailable("listening for reviews", exc) from exc

        async def close() -> None:
            with contextlib.suppress(*_FAILURES):
                await connection.close()

        return close

    async def _reviews(self, clause: str, *args: Any) -> list[Review]:
        rows = await self._fetch(
            "reading reviews", f"SELECT {REVIEW_COLUMNS} FROM reviews {clause}", *args
        )
        return [review_from_row(row) for row in rows]


class _Where:
    """Conditions with numbered parameters (``{}`` in a condition becomes ``$n``)."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def param(self, value: Any) -> str:
        self.params.append(value)
        return f"${len(self.params)}"

    def add(self, condition: str, *values: Any) -> None:
        self.conditions.append(condition.format(*(self.param(v) for v in values)))

    def time(self, column: str, since: float | None, until: float | None) -> None:
        if since is not None:
            self.add(f"{column} >= {{}}", float(since))
        if until is not None:
            self.add(f"{column} <= {{}}", float(until))

    def sql(self) -> str:
        return f"WHERE {' AND '.join(self.conditions)}" if self.conditions else ""


async def _release(pool: asyncpg.Pool, connection: PoolConnectionProxy[asyncpg.Record]) -> None:
    """Give ``connection`` back. A reset that fails has the pool close it, and changes
    nothing of what was done on it, so the failure is not the caller's."""
    with contextlib.suppress(*_FAILURES):
        await pool.release(connection)


def _search_sql(query: AuditQuery) -> tuple[str, list[Any]]:
    """Newest first. Data filters read the body's JSON (a body altered into invalid JSON
    makes such a search fail, and ``ztgate audit verify`` says which event)."""
    where = _Where()
    where.time("at", query.since, query.until)
    if query.principal is not None:
        where.add("principal = {}", query.principal)
    if query.request_id is not None:
        where.add("request_id = {}", query.request_id)
    if query.kinds:
        where.add("kind = ANY({}::text[])", list(query.kinds))
    if query.decision is not None:
        where.add(f"{_DATA} -> 'decision' ->> 'effect' = {{}}", query.decision)
    if query.model is not None:
        where.add(f"{_DATA} ->> 'model' = {{}}", query.model)
    for array, value in (("groups", query.group), ("skills", query.skill)):
        if value is not None:
            elements = (
                f"CASE WHEN json_typeof({_DATA} -> '{array}') = 'array' "
                f"THEN {_DATA} -> '{array}' END"
            )
            where.add(
                f"EXISTS (SELECT 1 FROM json_array_elements_text({elements}) AS e(v) "
                "WHERE e.v = {})",
                value,
            )
    if query.finding is not None:
        where.add(f"({_DATA} -> 'findings' -> {{}}::text) IS NOT NULL", query.finding)
    for key, wanted in extra_filters(query):
        if wanted is None:
            where.add(f"json_typeof({_DATA} -> {{}}::text) = 'null'", key)
        else:
            where.add(
                f"({_DATA} -> {{}}::text)::jsonb = {{}}::jsonb", key, orjson.dumps(wanted).decode()
            )
    limit = where.param(query.limit)
    sql = f"SELECT {EVENT_COLUMNS} FROM events {where.sql()} ORDER BY seq DESC LIMIT {limit}"
    return sql, where.params


_UPSERT_RECORDING = (
    f"INSERT INTO recordings ({RECORDING_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
    "ON CONFLICT (request_id) DO UPDATE SET "
    + ", ".join(f"{column} = EXCLUDED.{column}" for column in RECORDING_COLUMNS.split(", ")[1:])
)


def _recording_rows(recordings: Sequence[StoredRecording]) -> list[tuple[Any, ...]]:
    return [
        (r.request_id, r.session_id, r.principal, r.started_at, r.size, r.truncated, r.sealed,
         r.blob)
        for r in recordings
    ]  # fmt: skip
