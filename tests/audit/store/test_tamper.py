"""Tampering through the database itself, as someone with write access to it would, on
SQLite and PostgreSQL: each kind is found, at the right event, by verifying what the store
gives back."""

from __future__ import annotations

import time

from tests.audit.store.backends import RawDatabase
from ztgate.audit.chain import VerifyReport, chain_events, sign_checkpoint, verify_chain_async
from ztgate.audit.events import AuditEvent
from ztgate.audit.signing import SigningKey
from ztgate.audit.store.base import AuditStore

KEY = SigningKey.generate()
KEYS = {KEY.key_id: KEY.public_key()}
COLUMNS = "kind, at, request_id, principal, body, body_digest, prev_hash, hash"


def event(i: int) -> AuditEvent:
    return AuditEvent(
        kind="request",
        at=time.time(),
        request_id=f"req_{i}",
        principal="github/acme/api",
        data={"model": "claude-haiku-4-5", "decision": {"effect": "allow"}, "n": i},
    )


async def ten_events(store: AuditStore, *, checkpoint_at: int | None = None) -> None:
    stored = await store.append([event(i) for i in range(1, 11)])
    if checkpoint_at is not None:
        signed = sign_checkpoint(stored[checkpoint_at - 1], KEY.private_key, KEY.key_id, 1.0)
        await store.add_checkpoint(signed)


async def verify(store: AuditStore) -> VerifyReport:
    return await verify_chain_async(store.events(), await store.checkpoints(), KEYS)


async def found(store: AuditStore) -> tuple[str, int]:
    report = await verify(store)
    assert report.problem is not None, "tampering went unnoticed"
    return report.problem.kind, report.problem.seq


async def test_an_untouched_store_verifies(store: AuditStore) -> None:
    await ten_events(store, checkpoint_at=10)
    report = await verify(store)
    assert report.ok
    assert (report.events, report.signed_seq) == (10, 10)


async def test_an_edited_column_is_found(store: AuditStore, store_url: str) -> None:
    await ten_events(store)
    await RawDatabase(store_url).execute("UPDATE events SET principal = ? WHERE seq = 4", "mallory")
    assert await found(store) == ("modified", 4)


async def test_an_edited_body_is_found(store: AuditStore, store_url: str) -> None:
    await ten_events(store)
    raw = RawDatabase(store_url)
    [(body,)] = await raw.fetch("SELECT body FROM events WHERE seq = 6")
    edited = bytes(body).replace(b'"allow"', b'"deny!"')
    await raw.execute("UPDATE events SET body = ? WHERE seq = 6", edited)
    assert await found(store) == ("modified", 6)


async def test_a_deleted_row_is_found(store: AuditStore, store_url: str) -> None:
    await ten_events(store)
    await RawDatabase(store_url).execute("DELETE FROM events WHERE seq = 5")
    assert await found(store) == ("deleted", 5)


async def test_an_inserted_row_is_found(store: AuditStore, store_url: str) -> None:
    await ten_events(store)
    raw = RawDatabase(store_url)
    [(prev_hash,)] = await raw.fetch("SELECT hash FROM events WHERE seq = 3")
    forged = chain_events((3, bytes(prev_hash)), [event(99)])[0]
    # Make room at seq 4 (in two steps: the primary key is checked row by row), then insert.
    await raw.execute("UPDATE events SET seq = -seq WHERE seq >= 4")
    await raw.execute("UPDATE events SET seq = 1 - seq WHERE seq < 0")
    await raw.execute(
        f"INSERT INTO events (seq, {COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
        4,
        forged.kind,
        forged.at,
        forged.request_id,
        forged.principal,
        forged.body,
        forged.body_digest,
        forged.prev_hash,
        forged.hash,
    )
    assert await found(store) == ("inserted", 4)


async def test_swapped_rows_are_found(store: AuditStore, store_url: str) -> None:
    await ten_events(store)
    raw = RawDatabase(store_url)
    rows = {
        row[0]: row[1:]
        for row in await raw.fetch(f"SELECT seq, {COLUMNS} FROM events WHERE seq IN (3, 7)")  # noqa: S608
    }
    assignments = ", ".join(f"{column} = ?" for column in COLUMNS.split(", "))
    for seq, other in ((3, 7), (7, 3)):
        await raw.execute(f"UPDATE events SET {assignments} WHERE seq = ?", *rows[other], seq)  # noqa: S608
    assert await found(store) == ("reordered", 3)


async def test_truncation_before_a_checkpoint_is_found(store: AuditStore, store_url: str) -> None:
    await ten_events(store, checkpoint_at=9)
    await RawDatabase(store_url).execute("DELETE FROM events WHERE seq > 6")
    assert await found(store) == ("truncated", 7)


async def test_truncation_with_the_checkpoints_gone_is_found_by_an_exported_one(
    store: AuditStore, store_url: str
) -> None:
    await ten_events(store, checkpoint_at=9)
    exported = await store.checkpoints()
    raw = RawDatabase(store_url)
    await raw.execute("DELETE FROM events WHERE seq > 6")
    await raw.execute("DELETE FROM checkpoints")
    assert (await verify(store)).ok  # the store alone can no longer tell
    report = await verify_chain_async(store.events(), await store.checkpoints(), KEYS, exported)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("truncated", 7)


async def test_a_rewritten_checkpoint_is_found(store: AuditStore, store_url: str) -> None:
    await ten_events(store, checkpoint_at=8)
    raw = RawDatabase(store_url)
    [(hash_,)] = await raw.fetch("SELECT hash FROM events WHERE seq = 5")
    await raw.execute("UPDATE checkpoints SET hash = ?, seq = 5", bytes(hash_))
    assert await found(store) == ("bad_checkpoint", 5)


async def test_a_purged_store_still_verifies(store: AuditStore) -> None:
    await ten_events(store, checkpoint_at=10)
    report = await store.purge(time.time() + 60)
    assert report.events == 10
    verified = await verify(store)
    assert verified.ok
    assert verified.events == 10
