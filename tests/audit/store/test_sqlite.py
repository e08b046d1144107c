"""SQLite-only behaviour of the embedded store."""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.reliability.faults import fill, tmpfs
from ztgate.audit.events import AuditEvent
from ztgate.audit.store.base import StoreFull, StoreUnavailable
from ztgate.audit.store.sqlite import SQLiteStore


def test_workers_opening_a_fresh_database_at_once_all_get_wal(tmp_path: Path) -> None:
    # `serve --workers 4` on a new file: switching to WAL needs the database to itself, and
    # SQLite can answer "database is locked" at once rather than wait. (Before the store
    # retried, about one race in forty failed here.)
    failures: list[BaseException] = []
    for trial in range(200):
        path = tmp_path / f"audit-{trial}.db"
        stores = [SQLiteStore(path) for _ in range(4)]
        start = threading.Barrier(len(stores))

        def open_it(store: SQLiteStore, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                store._connect().close()  # the connection's set-up is the point
            except sqlite3.Error as exc:
                failures.append(exc)

        threads = [threading.Thread(target=open_it, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert not failures, failures[0]


async def test_a_full_disk_is_store_full_and_makes_the_ping_fail(tmp_path: Path) -> None:
    """On a disk with no room left for an append, the store says so (StoreFull: the writer
    then retries events without their recordings), and the readiness ping fails as well,
    however little room is left: a ping writing less than an append could still fit where the
    append did not (it did here, at 4, 8 and 64 KB left, before the ping wrote a padded row).
    Space given back: both work again."""
    with tmpfs(tmp_path / "disk", "8m") as disk:
        for leave in (0, 4096, 8192, 16384, 65536, 200_000):
            store = SQLiteStore(disk / f"audit-{leave}.db")
            try:
                await store.migrate()
                await store.append([event(0)])
                filler = fill(disk, leave=leave, name=f"filler-{leave}")
                assert "database or disk is full" in str(await append_until_full(store))
                for _ in range(3):
                    with pytest.raises(StoreUnavailable):
                        await store.ping()
                filler.unlink()
                await store.ping()
                await store.append([event(10_000)])
            finally:
                await store.close()
            for path in disk.iterdir():
                path.unlink()


async def append_until_full(store: SQLiteStore) -> StoreFull:
    for n in range(1, 10_000):
        try:
            await store.append([event(n)])
        except StoreFull as exc:
            return exc
    raise AssertionError("10,000 appends fitted")


def event(n: int) -> AuditEvent:
    """A request event as the gateway writes one: a random request id (a page of its own in
    the request-id index), a decision, a few hundred bytes."""
    return AuditEvent(
        kind="request",
        at=time.time(),
        request_id=f"req_ztg_{secrets.token_hex(12)}",
        principal=f"demo/p{n % 50}",
        data={
            "method": "POST",
            "path": "/v1/messages",
            "model": "claude-haiku-4-5",
            "decision": {"effect": "allow", "rule_ids": ["counted"], "reason": "x" * 200},
            "bytes_in": 512,
        },
    )
