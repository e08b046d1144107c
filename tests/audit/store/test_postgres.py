"""PostgreSQL-only behaviour of the store: what is retried on a dead connection, and what is not."""

from __future__ import annotations

import time

import pytest
from asyncpg.pool import PoolConnectionHolder

from tests.audit.store.backends import _reset
from ztgate.audit.events import AuditEvent
from ztgate.audit.store.postgres import PostgresStore


def event(n: int) -> AuditEvent:
    return AuditEvent(
        kind="request", at=time.time(), request_id=f"req_{n}", principal="p", data={"n": n}
    )


async def test_a_connection_lost_on_release_does_not_repeat_a_committed_append(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool resets a connection as it takes it back; when the connection dies just after
    the commit (a failover resetting every connection), that reset fails. The append was
    committed: it is not run again (its events would be in the chain twice, the caller
    answered once), and the caller gets what was stored."""
    await _reset(pg_database)
    store = PostgresStore(pg_database)
    try:
        await store.migrate()
        await store.append([event(0)])
        failed: list[bool] = []
        release = PoolConnectionHolder.release

        async def dies_on_release(holder: PoolConnectionHolder, timeout: float | None) -> None:
            if failed:
                return await release(holder, timeout)
            failed.append(True)  # as asyncpg does when its reset fails: terminate, re-raise
            holder._con.terminate()
            raise ConnectionResetError(104, "Connection reset by peer")

        monkeypatch.setattr(PoolConnectionHolder, "release", dies_on_release)
        [stored] = await store.append([event(1)])
        assert failed
        chain = [e async for e in store.events()]
        assert [e.request_id for e in chain] == ["req_0", "req_1"]
        assert stored == chain[-1]
        [again] = await store.append([event(2)])
        assert again.seq == stored.seq + 1
    finally:
        await store.close()


async def test_a_connection_lost_before_the_commit_is_retried_once(pg_database: str) -> None:
    """Dead pooled connections (PostgreSQL restarted) cost nothing: the append runs again on a
    fresh one, since nothing of it can have been committed."""
    await _reset(pg_database)
    store = PostgresStore(pg_database)
    try:
        await store.migrate()
        await store.append([event(0)])
        pool = await store._get_pool()
        for holder in pool._holders:  # every pooled connection dies under it
            if holder._con is not None:
                holder._con._transport.abort()
        [stored] = await store.append([event(1)])
        assert [e.request_id async for e in store.events()] == ["req_0", "req_1"]
        assert stored.seq == 2
    finally:
        await store.close()
