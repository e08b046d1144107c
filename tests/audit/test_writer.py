"""Group commit on SQLite and the real PostgreSQL: batching, checkpoints, failures reaching
every waiter, and service resuming when the database returns."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from tests.audit.store import backends
from ztgate.audit.chain import checkpoint_signature_problem, verify_chain_async
from ztgate.audit.events import AuditEvent, StoredEvent
from ztgate.audit.signing import SigningKey
from ztgate.audit.store.base import AuditStore, StoredRecording, StoreFull, StoreUnavailable
from ztgate.audit.store.postgres import PostgresStore
from ztgate.audit.store.sqlite import SQLiteStore
from ztgate.audit.writer import AuditWriter
from ztgate.config import parse_config

# Both backends, as in tests/audit/store.
pg_database = backends.pg_database
store_url = backends.store_url
store = backends.store

KEY = SigningKey.generate()
KEYS = {KEY.key_id: KEY.public_key()}


def event(i: int) -> AuditEvent:
    return AuditEvent(
        kind="request", at=time.time(), request_id=f"req_{i}", principal="p", data={"n": i}
    )


async def verify(opened: AuditStore) -> None:
    report = await verify_chain_async(opened.events(), await opened.checkpoints(), KEYS)
    assert report.ok, report.problem


@pytest.fixture
async def writer(store: AuditStore) -> AsyncIterator[AuditWriter]:
    started = AuditWriter(store, KEY, checkpoint_every=1_000_000, checkpoint_interval=3600)
    await started.start()
    yield started
    await started.close()


async def test_concurrent_writes_are_batched_into_few_transactions(
    writer: AuditWriter, store: AuditStore
) -> None:
    results = await asyncio.gather(*(writer.write([event(i), event(-i)]) for i in range(300)))
    assert writer.events_written == 600
    assert writer.transactions < 300 / 4, writer.transactions
    for i, stored in enumerate(results):  # each caller's events, in order, side by side
        assert [e.data()["n"] for e in stored] == [i, -i]
        assert stored[1].seq == stored[0].seq + 1
    assert sorted(e.seq for batch in results for e in batch) == list(range(1, 601))
    await writer.close()
    await verify(store)


async def test_a_write_returns_only_once_committed(writer: AuditWriter, store: AuditStore) -> None:
    [stored] = await writer.write([event(1)])
    assert await store.head() == stored


async def test_large_writes_are_split_across_transactions_but_never_one_write(
    store: AuditStore,
) -> None:
    writer = AuditWriter(store, KEY, max_batch=10)
    await writer.start()
    try:
        results = await asyncio.gather(*(writer.write([event(i)] * 4) for i in range(10)))
        big = await writer.write([event(99)] * 25)
    finally:
        await writer.close()
    assert writer.transactions >= 5  # at most two writes of 4 fit in 10
    assert [e.seq for e in big] == list(range(41, 66))
    assert all(r[-1].seq - r[0].seq == 3 for r in results)


async def test_checkpoints_every_n_events_and_at_close(store: AuditStore) -> None:
    writer = AuditWriter(store, KEY, checkpoint_every=10, checkpoint_interval=3600)
    await writer.start()
    for i in range(25):
        await writer.write([event(i)])
    assert [c.seq for c in await store.checkpoints()] == [10, 20]
    await writer.close()
    checkpoints = await store.checkpoints()
    assert [c.seq for c in checkpoints] == [10, 20, 25]
    assert all(checkpoint_signature_problem(c, KEYS) is None for c in checkpoints)
    await verify(store)


async def test_checkpoints_every_interval_only_when_the_head_moved(store: AuditStore) -> None:
    writer = AuditWriter(store, KEY, checkpoint_every=1000, checkpoint_interval=0.2)
    await writer.start()
    try:
        await writer.write([event(1), event(2), event(3)])
        await asyncio.sleep(0.6)
        assert [c.seq for c in await store.checkpoints()] == [3]
        await asyncio.sleep(0.4)
        assert [c.seq for c in await store.checkpoints()] == [3]  # the head did not move
        # Another writer (a replica) moves the head: the interval checkpoint covers it.
        await store.append([event(4)])
        await asyncio.sleep(0.5)
        assert [c.seq for c in await store.checkpoints()] == [3, 4]
    finally:
        await writer.close()
    assert [c.seq for c in await store.checkpoints()] == [3, 4]  # nothing new to sign


async def test_a_restarted_writer_resumes_after_the_stored_checkpoints(store: AuditStore) -> None:
    first = AuditWriter(store, KEY, checkpoint_every=5)
    await first.start()
    for i in range(5):
        await first.write([event(i)])
    await first.close()
    second = AuditWriter(store, KEY, checkpoint_every=5)
    await second.start()
    await second.close()
    assert [c.seq for c in await store.checkpoints()] == [5]


async def test_close_drains_what_is_queued_then_refuses(store: AuditStore) -> None:
    writer = AuditWriter(store, KEY)
    await writer.start()
    pending = [asyncio.create_task(writer.write([event(i)])) for i in range(50)]
    await asyncio.sleep(0)
    await writer.close()
    assert len({(await task)[0].seq for task in pending}) == 50
    with pytest.raises(StoreUnavailable, match="not running"):
        await writer.write([event(51)])
    assert [c.seq for c in await store.checkpoints()] == [50]


async def test_recordings_go_to_the_store(writer: AuditWriter, store: AuditStore) -> None:
    recording = StoredRecording("req_1", "s1", "p", 1.0, 3, False, False, b"abc")
    await writer.put_recording(recording)
    assert await store.recordings("s1") == [recording]


async def test_deferred_events_ride_with_the_next_transaction(
    writer: AuditWriter, store: AuditStore
) -> None:
    outcome = asyncio.create_task(writer.write([event(1)], within=5.0))
    await asyncio.sleep(0.05)
    assert writer.transactions == 0  # nobody waits on it: it has not started a transaction
    [urgent] = await writer.write([event(2)])
    [deferred] = await outcome
    assert writer.transactions == 1
    assert (deferred.seq, urgent.seq) == (1, 2)
    alone = await asyncio.wait_for(writer.write([event(3)], within=0.05), 2)
    assert alone[0].seq == 3  # with nothing else coming, it is committed after ``within``
    await verify(store)


async def test_waiting_recordings_ride_in_the_next_events_transaction(
    writer: AuditWriter, store: AuditStore
) -> None:
    """One commit for a group's events and the recordings that waited meanwhile, not two."""
    recording = StoredRecording("req_r", "s-ride", "p", 1.0, 3, False, False, b"abc")
    stored = asyncio.create_task(writer.put_recording(recording, within=5.0))
    await asyncio.sleep(0.05)
    assert await store.recordings("s-ride") == []  # waiting for a transaction to join
    await writer.write([event(1)])
    await asyncio.wait_for(stored, 1)  # long before its own 5 s
    assert writer.transactions == 1
    assert await store.recordings("s-ride") == [recording]
    await verify(store)


async def test_recordings_arriving_together_share_a_transaction(
    writer: AuditWriter, store: AuditStore
) -> None:
    stored = [
        StoredRecording(f"req_{i:02}", "s1", "p", 1.0 + i, 3, False, False, b"abc")
        for i in range(20)
    ]
    await asyncio.gather(*(writer.put_recording(r, within=0.05) for r in stored))
    assert await store.recordings("s1") == stored


class CrampedStore(SQLiteStore):
    """A store with room for events and small recordings, not for a big one: a transaction
    holding a recording of more than ``ROOM`` bytes fails as a full disk fails it."""

    ROOM = 100

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.full = 0  # transactions refused for lack of room

    def _check(self, recordings: Sequence[StoredRecording]) -> None:
        if any(len(r.blob or b"") > self.ROOM for r in recordings):
            self.full += 1
            raise StoreFull("audit store: database or disk is full", retry_after=5)

    async def append(
        self, events: Sequence[AuditEvent], recordings: Sequence[StoredRecording] = ()
    ) -> list[StoredEvent]:
        self._check(recordings)
        return await super().append(events, recordings)

    async def put_recordings(self, recordings: Sequence[StoredRecording]) -> None:
        self._check(recordings)
        await super().put_recordings(recordings)


def recording(request_id: str, size: int) -> StoredRecording:
    return StoredRecording(request_id, "s-room", "p", 1.0, size, False, False, b"x" * size)


@pytest.fixture
async def cramped(tmp_path: Path) -> AsyncIterator[tuple[AuditWriter, CrampedStore]]:
    store = CrampedStore(tmp_path / "audit.db")
    await store.migrate()
    writer = AuditWriter(store, KEY, checkpoint_every=1_000_000, checkpoint_interval=3600)
    await writer.start()
    yield writer, store
    await writer.close()
    await store.close()


async def test_a_recording_without_room_is_lost_alone_not_the_events_it_rode_with(
    cramped: tuple[AuditWriter, CrampedStore],
) -> None:
    """A full disk with room for events: the events a big recording rode with are committed
    without it (the callers waiting on them are not refused), the small recordings riding
    with it are stored, and only the big one's waiter learns it was lost (StoreFull)."""
    writer, store = cramped
    waiting = {
        request_id: asyncio.create_task(writer.put_recording(recording(request_id, size), within=5))
        for request_id, size in (("small-1", 10), ("big", 1000), ("small-2", 20))
    }
    await asyncio.sleep(0.05)
    assert writer.recordings_waiting == 3
    stored = await asyncio.gather(*(writer.write([event(i)]) for i in range(5)))
    assert [batch[0].data()["n"] for batch in stored] == list(range(5))
    outcomes = await asyncio.gather(*waiting.values(), return_exceptions=True)
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], StoreFull)
    assert [r.request_id for r in await store.recordings("s-room")] == ["small-1", "small-2"]
    assert writer.recordings_waiting == 0
    assert not writer.failing  # the events went in: the store is not down
    assert store.full >= 2  # with its events, then alone
    await writer.close()
    await verify(store)


async def test_a_lone_recording_without_room_fails_its_waiter_only(
    cramped: tuple[AuditWriter, CrampedStore],
) -> None:
    writer, store = cramped
    big = asyncio.create_task(writer.put_recording(recording("big", 1000), within=5))
    await asyncio.sleep(0.05)
    [[stored]] = await asyncio.gather(writer.write([event(1)]))
    with pytest.raises(StoreFull):
        await big
    assert stored.seq == 1
    # Stored on their own (no events to ride with): the big one alone is lost.
    outcomes = await asyncio.gather(
        writer.put_recording(recording("big-2", 1000), within=0.02),
        writer.put_recording(recording("small", 10), within=0.02),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], StoreFull)
    assert outcomes[1] is None
    assert [r.request_id for r in await store.recordings("s-room")] == ["small"]


async def test_events_without_room_are_refused(cramped: tuple[AuditWriter, CrampedStore]) -> None:
    """No room for the events themselves: their callers are refused, as for any failure."""
    writer, store = cramped

    async def full(*args: object, **kwargs: object) -> list[StoredEvent]:
        raise StoreFull("audit store: database or disk is full", retry_after=5)

    store.append = full  # type: ignore[method-assign]
    with pytest.raises(StoreFull):
        await writer.write([event(1)])
    assert writer.failing


async def test_sqlite_failure_reaches_every_waiter_and_service_resumes(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    store = SQLiteStore(path, busy_timeout=0.3)
    await store.migrate()
    writer = AuditWriter(store, KEY)
    await writer.start()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        await writer.write([event(0)])
        holder.execute("BEGIN EXCLUSIVE")  # another process holds the database
        outcomes = await asyncio.gather(
            *(writer.write([event(i)]) for i in range(1, 21)), return_exceptions=True
        )
        assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
        assert "locked" in str(outcomes[0])
        holder.execute("ROLLBACK")
        [stored] = await writer.write([event(21)])
        assert stored.seq == 2
    finally:
        holder.close()
        await writer.close()
        await store.close()


@pytest.mark.disrupts_postgres
async def test_postgres_outage_reaches_every_waiter_and_service_resumes(pg_database: str) -> None:
    """STOPS THE MACHINE'S POSTGRESQL for a few seconds (and starts it again, whatever
    happens): writes during the outage fail, writes after it succeed on the same writer."""
    store = PostgresStore(pg_database, connect_timeout=2)
    await store.migrate()
    writer = AuditWriter(store, KEY)
    await writer.start()
    try:
        [first] = await writer.write([event(0)])
        try:
            await asyncio.to_thread(backends.pg_cluster, "stop")
            outcomes = await asyncio.gather(
                *(writer.write([event(i)]) for i in range(1, 11)), return_exceptions=True
            )
            assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
            assert "appending to the audit chain failed" in str(outcomes[0])
        finally:
            await asyncio.to_thread(backends.ensure_postgres)
        [stored] = await writer.write([event(11)])  # the pool's dead connections are replaced
        assert stored.seq == first.seq + 1
        await writer.close()
        await verify(store)
    finally:
        await writer.close()
        await store.close()


async def test_from_config_uses_the_configured_cadence_and_embedded_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/audit.db"
    config = parse_config(
        "policy: p.yaml\nupstream: {api_key: k}\n"
        "identity: {issuers: [{name: a, issuer: 'https://idp.example.com', audiences: [z]}]}\n"
        f"store: {{url: '{url}'}}\n"
        "audit: {checkpoint_every: 3, checkpoint_interval: 1h}\n",
        environ={},
    )
    store = SQLiteStore(tmp_path / "audit.db")
    await store.migrate()
    writer = AuditWriter.from_config(config, store)
    await writer.start()
    try:
        for i in range(7):
            await writer.write([event(i)])
    finally:
        await writer.close()
        checkpoints = await store.checkpoints()
        await store.close()
    key = SigningKey.from_pem((tmp_path / "audit.db.signing-key.pem").read_bytes())
    assert [c.seq for c in checkpoints] == [3, 6, 7]
    assert {c.key_id for c in checkpoints} == {key.key_id}


async def test_recording_blobs_are_purged_after_their_retention(store: AuditStore) -> None:
    now = time.time()
    old = StoredRecording("req_old", "s1", "p", now - 3 * 86400, 3, False, False, b"old")
    new = StoredRecording("req_new", "s1", "p", now - 3600, 3, False, False, b"new")
    await store.put_recording(old)
    await store.put_recording(new)
    writer = AuditWriter(store, KEY, recording_retention=2 * 86400, retention_check=0.05)
    await writer.start()
    try:
        [stored] = await writer.write([AuditEvent(kind="startup", at=now - 5 * 86400, data={})])
        await asyncio.sleep(0.3)  # a few retention rounds
        assert [r.blob for r in await store.recordings("s1")] == [None, b"new"]
        [kept] = [e async for e in store.events()]
        assert kept.body == stored.body  # event bodies are not the recordings' retention
    finally:
        await writer.close()
