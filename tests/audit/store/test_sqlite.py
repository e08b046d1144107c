"""SQLite-only behaviour of the embedded store."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

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
