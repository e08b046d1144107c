"""The AuditStore contract, against SQLite and the real PostgreSQL alike."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.audit.store.backends import RawDatabase
from ztgate.audit.chain import sign_checkpoint, verify_chain_async
from ztgate.audit.events import AuditEvent, AuditQuery, StoredEvent
from ztgate.audit.signing import SigningKey
from ztgate.audit.store.base import AuditStore, SessionQuery, StoredRecording, StoreUnavailable
from ztgate.audit.store.factory import open_store
from ztgate.audit.store.migrations import migrations
from ztgate.audit.store.postgres import PostgresStore
from ztgate.audit.store.sqlite import SQLiteStore

KEY = SigningKey.generate()
KEYS = {KEY.key_id: KEY.public_key()}
T0 = 1_750_000_000.0


def request_event(
    i: int,
    *,
    principal: str = "github/acme/api",
    groups: tuple[str, ...] = ("ci",),
    effect: str = "allow",
    model: str = "claude-haiku-4-5",
    skills: tuple[str, ...] = (),
    findings: dict[str, int] | None = None,
) -> AuditEvent:
    return AuditEvent(
        kind="request",
        at=T0 + i,
        request_id=f"req_{i}",
        principal=principal,
        data={
            "principal": principal,
            "issuer": "github",
            "subject": "repo:acme/api:ref:refs/heads/main",
            "groups": list(groups),
            "client_ip": "10.1.2.3",
            "user_agent": "anthropic-python/1.0",
            "method": "POST",
            "path": "/v1/messages",
            "endpoint": "messages",
            "model": model,
            "skills": list(skills),
            "tools": [],
            "stream": False,
            "session_id": "s-1",
            "decision": {"effect": effect, "reason": "rule", "rule_ids": ["r1"]},
            "findings": findings or {},
            "bytes_in": 512,
            "policy_input": [],
        },
    )


def outcome_event(i: int) -> AuditEvent:
    return AuditEvent(
        kind="outcome",
        at=T0 + i + 0.5,
        request_id=f"req_{i}",
        principal="github/acme/api",
        data={"status": 200, "usage": {"input_tokens": 10}, "latency_ms": 12.5},
    )


async def all_events(opened: AuditStore, after: int = 0) -> list[StoredEvent]:
    return [event async for event in opened.events(after_seq=after)]


def _migration_names(store_url: str) -> list[str]:
    backend = "sqlite" if store_url.startswith("sqlite") else "postgres"
    return [migration.name for migration in migrations(backend)]


async def verify(opened: AuditStore) -> None:
    report = await verify_chain_async(opened.events(), await opened.checkpoints(), KEYS)
    assert report.ok, report.problem


async def test_migrate_is_idempotent_and_records_what_it_applied(
    store: AuditStore, store_url: str
) -> None:
    assert await store.migrate() == []  # the fixture applied them
    rows = await RawDatabase(store_url).fetch("SELECT name FROM schema_migrations ORDER BY name")
    assert rows == [(name,) for name in _migration_names(store_url)]


async def test_two_stores_migrating_at_once_apply_each_migration_once(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    try:
        results = await asyncio.gather(first.migrate(), second.migrate())
    finally:
        await first.close()
        await second.close()
    assert sorted(results) == [[], _migration_names(store_url)]


async def test_append_chains_after_the_head_and_reads_back(store: AuditStore) -> None:
    assert await store.head() is None
    first = await store.append([request_event(1), outcome_event(1)])
    second = await store.append([request_event(2)])
    assert [e.seq for e in first + second] == [1, 2, 3]
    assert second[0].prev_hash == first[-1].hash
    assert await store.head() == second[0]
    assert await all_events(store) == first + second
    assert await all_events(store, after=2) == second
    assert first[0].data()["decision"] == {"effect": "allow", "reason": "rule", "rule_ids": ["r1"]}
    assert await store.append([]) == []
    await store.ping()
    await verify(store)


async def test_reading_the_chain_pages_through_it(store: AuditStore) -> None:
    await store.append([request_event(i) for i in range(2500)])
    seqs = [event.seq async for event in store.events()]
    assert seqs == list(range(1, 2501))
    await verify(store)


async def test_search_filters_in_the_database(store: AuditStore) -> None:
    await store.append(
        [
            request_event(1, principal="alice", groups=("data", "ci"), skills=("xlsx",)),
            outcome_event(1),
            request_event(2, principal="bob", effect="deny", findings={"email": 2}),
            request_event(3, principal="alice", model="claude-opus-4-5", groups=("data",)),
            request_event(4, principal="carol", effect="review", skills=("pdf", "xlsx")),
            AuditEvent(kind="startup", at=T0 + 5, data={"version": "0.1.0"}),
        ]
    )

    async def seqs(**filters: object) -> list[int]:
        return [event.seq for event in await store.search(AuditQuery(**filters))]  # type: ignore[arg-type]

    assert await seqs() == [6, 5, 4, 3, 2, 1]
    assert await seqs(limit=2) == [6, 5]
    assert await seqs(principal="alice") == [4, 1]
    assert await seqs(principal="alice", kinds=("request",)) == [4, 1]
    assert await seqs(kinds=("outcome", "startup")) == [6, 2]
    assert await seqs(group="data") == [4, 1]
    assert await seqs(group="dat") == []
    assert await seqs(decision="deny") == [3]
    assert await seqs(decision="review") == [5]
    assert await seqs(model="claude-opus-4-5") == [4]
    assert await seqs(skill="xlsx") == [5, 1]
    assert await seqs(finding="email") == [3]
    assert await seqs(finding="phone") == []
    assert await seqs(request_id="req_1") == [2, 1]
    assert await seqs(since=T0 + 2, until=T0 + 4) == [5, 4, 3]
    assert await seqs(since=T0 + 4.5) == [6]
    assert await seqs(extra={"version": "0.1.0"}) == [6]
    assert await seqs(extra={"stream": False}, principal="bob") == [3]
    assert await seqs(extra={"status": 200}) == [2]
    with pytest.raises(ValueError, match="not a data key"):
        await seqs(extra={"a'b": 1})
    with pytest.raises(ValueError, match="string, number or boolean"):
        await seqs(extra={"groups": ["ci"]})


async def test_search_survives_purged_and_mangled_bodies(store: AuditStore, store_url: str) -> None:
    await store.append([request_event(i, groups=("ci",)) for i in range(1, 4)])
    await store.purge(T0 + 1.5)
    assert [e.seq for e in await store.search(AuditQuery(group="ci"))] == [3, 2]
    assert [e.seq for e in await store.search(AuditQuery(principal="github/acme/api"))] == [
        3,
        2,
        1,
    ]
    if not store_url.startswith("sqlite:"):
        return  # PostgreSQL refuses to parse a mangled body (search fails; verify names it)
    await RawDatabase(store_url).execute("UPDATE events SET body = ? WHERE seq = 3", b"{oops")
    assert [e.seq for e in await store.search(AuditQuery(group="ci"))] == [2]


async def test_checkpoints_are_kept_once_per_seq_and_key(store: AuditStore) -> None:
    stored = await store.append([request_event(1), request_event(2)])
    first = sign_checkpoint(stored[0], KEY.private_key, KEY.key_id, T0)
    second = sign_checkpoint(stored[1], KEY.private_key, KEY.key_id, T0 + 1)
    await store.add_checkpoint(second)
    await store.add_checkpoint(first)
    await store.add_checkpoint(sign_checkpoint(stored[1], KEY.private_key, KEY.key_id, T0 + 2))
    assert await store.checkpoints() == [first, second]


def recording(
    request_id: str, session: str, at: float, principal: str = "alice"
) -> StoredRecording:
    return StoredRecording(
        request_id=request_id,
        session_id=session,
        principal=principal,
        started_at=at,
        size=11,
        truncated=False,
        sealed=True,
        blob=b"sealed-blob",
    )


async def test_recordings_and_sessions(store: AuditStore) -> None:
    await store.put_recording(recording("r2", "s1", T0 + 2))
    await store.put_recording(recording("r1", "s1", T0 + 1))
    await store.put_recording(recording("r3", "s2", T0 + 5, principal="bob"))
    await store.put_recording(recording("r4", "s3", T0 + 3))
    again = dataclasses.replace(recording("r4", "s3", T0 + 3), blob=None, size=0)
    await store.put_recording(again)  # stored twice: the last one wins
    assert await store.recordings("s3") == [again]
    assert [r.request_id for r in await store.recordings("s1")] == ["r1", "r2"]
    assert await store.recordings("nope") == []
    [got] = await store.recordings("s2")
    assert got == recording("r3", "s2", T0 + 5, principal="bob")
    sessions = await store.sessions(SessionQuery())
    assert [(s.session_id, s.requests) for s in sessions] == [("s2", 1), ("s3", 1), ("s1", 2)]
    s1 = sessions[-1]
    assert (s1.principal, s1.first_at, s1.last_at) == ("alice", T0 + 1, T0 + 2)
    assert [s.session_id for s in await store.sessions(SessionQuery(principal="alice"))] == [
        "s3",
        "s1",
    ]
    assert [s.session_id for s in await store.sessions(SessionQuery(since=T0 + 2.5))] == [
        "s2",
        "s3",
    ]
    assert [s.session_id for s in await store.sessions(SessionQuery(limit=1))] == ["s2"]


async def test_purge_drops_bodies_and_blobs_but_keeps_every_hash(store: AuditStore) -> None:
    await store.append([request_event(i) for i in range(1, 7)])
    await store.put_recording(recording("r1", "s1", T0 + 1))
    await store.put_recording(recording("r5", "s1", T0 + 5))
    head = await store.head()
    assert head is not None
    await store.add_checkpoint(sign_checkpoint(head, KEY.private_key, KEY.key_id, T0 + 9))
    report = await store.purge(T0 + 4)
    assert (report.events, report.recordings) == (3, 1)
    events = await all_events(store)
    assert [e.body is None for e in events] == [True, True, True, False, False, False]
    assert all(len(e.body_digest) == 32 and len(e.hash) == 32 for e in events)
    assert [r.blob for r in await store.recordings("s1")] == [None, b"sealed-blob"]
    await verify(store)
    again = await store.purge(T0 + 4)
    assert (again.events, again.recordings) == (0, 0)
    only_recordings = await store.purge(T0 + 100, events=False)
    assert (only_recordings.events, only_recordings.recordings) == (0, 1)
    assert [e.body is None for e in await all_events(store)].count(True) == 3


async def test_two_stores_appending_at_once_form_one_chain(
    store: AuditStore, store_url: str
) -> None:
    stores = [open_store(store_url) for _ in range(3)]
    try:

        async def producer(opened: AuditStore, base: int) -> None:
            for i in range(25):
                await opened.append([request_event(base + i), outcome_event(base + i)])

        await asyncio.gather(*(producer(s, 1000 * n) for n, s in enumerate(stores)))
        events = await all_events(stores[0])
        assert [e.seq for e in events] == list(range(1, 151))
        await verify(stores[0])
    finally:
        for opened in stores:
            await opened.close()


APPENDER = """
import asyncio, sys, time
from ztgate.audit.events import AuditEvent
from ztgate.audit.store.factory import open_store

async def main(url, name):
    store = open_store(url)
    try:
        for i in range(40):
            event = AuditEvent(kind="request", at=time.time(), data={"by": name, "i": i})
            await store.append([event, event])
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_two_processes_appending_at_once_form_one_chain(
    store: AuditStore, store_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "appender.py"
    script.write_text(APPENDER)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(script), store_url, name, stderr=subprocess.PIPE
        )
        for name in ("a", "b", "c")
    ]
    for process in processes:
        _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()[-2000:]
    events = await all_events(store)
    assert [e.seq for e in events] == list(range(1, 241))
    assert {e.data()["by"] for e in events} == {"a", "b", "c"}
    await verify(store)


async def test_an_unreachable_postgres_is_store_unavailable_without_the_password() -> None:
    unreachable = PostgresStore(
        "postgresql://auditor:s3cr3t-pw@127.0.0.1:1/ztgate", connect_timeout=2
    )
    try:
        for attempt in (unreachable.migrate(), unreachable.append([request_event(1)])):
            with pytest.raises(StoreUnavailable) as info:
                await attempt
            assert "s3cr3t-pw" not in info.value.message
            assert "postgresql://auditor@127.0.0.1:1/ztgate" in info.value.message
    finally:
        await unreachable.close()


async def test_a_wrong_postgres_password_is_store_unavailable_without_it(pg_database: str) -> None:
    wrong = PostgresStore(pg_database.replace("postgres@", "nobody:hunter2-pw@"))
    try:
        with pytest.raises(StoreUnavailable) as info:
            await wrong.head()
        assert "hunter2-pw" not in str(info.value)
    finally:
        await wrong.close()


async def test_an_unwritable_sqlite_path_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    unwritable = SQLiteStore(blocker / "audit.db")
    try:
        with pytest.raises(StoreUnavailable, match="migrating the schema failed"):
            await unwritable.migrate()
    finally:
        await unwritable.close()


async def test_an_unmigrated_store_is_unavailable(store_url: str) -> None:
    fresh = open_store(store_url)
    try:
        with pytest.raises(StoreUnavailable):
            await fresh.ping()
        with pytest.raises(StoreUnavailable, match="appending"):
            await fresh.append([request_event(1)])
    finally:
        await fresh.close()
    with pytest.raises(StoreUnavailable, match="closed"):
        await fresh.head()


async def test_a_busy_sqlite_file_is_unavailable_then_recovers(tmp_path: Path) -> None:
    opened = SQLiteStore(tmp_path / "audit.db", busy_timeout=0.2)
    await opened.migrate()
    holder = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked"):
            await opened.append([request_event(1)])
        assert time.monotonic() - started < 5
        holder.execute("ROLLBACK")
        assert [e.seq for e in await opened.append([request_event(1)])] == [1]
    finally:
        holder.close()
        await opened.close()
