"""The hash chain as pure functions: its exact encoding, checkpoints, and what verification
finds after each kind of tampering (in memory here; tests/audit/store/test_tamper.py does the same
through real databases)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.audit.chain import (
    GENESIS,
    canonical_body,
    chain_events,
    checkpoint_from_json,
    checkpoint_message,
    checkpoint_to_json,
    link,
    sign_checkpoint,
    verify_chain,
    verify_chain_async,
)
from ztgate.audit.events import AuditEvent, Checkpoint, StoredEvent
from ztgate.audit.signing import SigningKey

KEY = SigningKey.generate()
KEYS = {KEY.key_id: KEY.public_key()}


def event(i: int, **data: object) -> AuditEvent:
    return AuditEvent(
        kind="request",
        at=1_750_000_000.0 + i / 8,
        data={"model": "claude-haiku-4-5", "n": i, "groups": ["ci"], **data},
        request_id=f"req_{i}",
        principal=f"github/org/repo-{i % 3}",
    )


def build(count: int) -> list[StoredEvent]:
    return chain_events(None, [event(i) for i in range(1, count + 1)])


def checkpoint(chain: list[StoredEvent], seq: int, key: SigningKey = KEY) -> Checkpoint:
    return sign_checkpoint(chain[seq - 1], key.private_key, key.key_id, 1_750_000_100.0)


def renumber(stored: StoredEvent, seq: int) -> StoredEvent:
    return dataclasses.replace(stored, seq=seq)


def problem(
    chain: list[StoredEvent], checkpoints: list[Checkpoint] | None = None
) -> tuple[str, int]:
    report = verify_chain(chain, checkpoints or [], KEYS)
    assert report.problem is not None, "tampering went unnoticed"
    return report.problem.kind, report.problem.seq


def test_the_encoding_is_exactly_as_documented() -> None:
    source = AuditEvent(
        kind="request", at=1.5, data={"b": 1, "a": {"z": 1, "y": 2}}, request_id="r", principal="p"
    )
    body = canonical_body(7, source)
    assert body == (
        b'{"at":1.5,"data":{"a":{"y":2,"z":1},"b":1},"kind":"request","principal":"p",'
        b'"request_id":"r","seq":7}'
    )
    [stored] = chain_events((6, b"\x01" * 32), [source])
    assert stored.seq == 7
    assert stored.body == body
    assert stored.body_digest == hashlib.sha256(body).digest()
    assert stored.prev_hash == b"\x01" * 32
    expected = hashlib.sha256(b"\x01" * 32 + (7).to_bytes(8, "big") + stored.body_digest).digest()
    assert stored.hash == expected == link(b"\x01" * 32, 7, stored.body_digest)
    assert stored.data() == {"a": {"y": 2, "z": 1}, "b": 1}


def test_the_first_event_links_to_32_zero_bytes_and_each_to_the_previous() -> None:
    chain = build(3)
    assert chain[0].prev_hash == GENESIS == bytes(32)
    assert [e.seq for e in chain] == [1, 2, 3]
    assert chain[1].prev_hash == chain[0].hash
    assert chain[2].prev_hash == chain[1].hash


def test_a_non_finite_time_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        canonical_body(1, AuditEvent(kind="startup", at=float("nan"), data={}))


def test_an_intact_chain_with_checkpoints_verifies() -> None:
    chain = build(10)
    report = verify_chain(chain, [checkpoint(chain, 4), checkpoint(chain, 10)], KEYS)
    assert report.ok
    assert (report.events, report.head_seq, report.head_hash) == (10, 10, chain[-1].hash)
    assert (report.checkpoints, report.signed_seq, report.unsigned) == (2, 10, 0)


def test_an_empty_chain_verifies_and_events_after_the_last_checkpoint_are_counted() -> None:
    assert verify_chain([], [], KEYS).ok
    chain = build(6)
    report = verify_chain(chain, [checkpoint(chain, 4)], KEYS)
    assert report.ok
    assert report.unsigned == 2


def test_an_edited_column_or_body_is_modified_at_that_event() -> None:
    chain = build(8)
    edited = chain.copy()
    edited[3] = dataclasses.replace(chain[3], principal="someone/else")
    assert problem(edited) == ("modified", 4)
    body = chain[3].body
    assert body is not None
    edited[3] = dataclasses.replace(chain[3], body=body.replace(b"haiku", b"opus!"))
    assert problem(edited) == ("modified", 4)
    edited[3] = dataclasses.replace(chain[3], hash=bytes(32))
    assert problem(edited) == ("modified", 4)


def test_an_event_rewritten_with_its_own_hashes_fixed_is_found_by_the_next_link() -> None:
    chain = build(8)
    forged = chain_events((3, chain[2].hash), [event(4, model="claude-opus-4-5")])[0]
    edited = [*chain[:3], forged, *chain[4:]]
    assert problem(edited) == ("modified", 4)


def test_a_consistent_rewrite_is_caught_only_at_the_next_checkpoint() -> None:
    chain = build(10)
    signed = [checkpoint(chain, 8)]
    rewritten = chain_events(
        (3, chain[2].hash), [event(4, model="claude-opus-4-5"), *(event(i) for i in range(5, 11))]
    )
    tampered = [*chain[:3], *rewritten]
    assert problem(tampered, signed) == ("bad_checkpoint", 8)
    # Without a checkpoint after the edit, a rewrite of everything after it is undetectable.
    assert verify_chain(tampered, [checkpoint(chain, 3)], KEYS).ok


def test_a_missing_event_is_deleted_at_its_seq() -> None:
    chain = build(8)
    assert problem(chain[:4] + chain[5:]) == ("deleted", 5)
    assert problem(chain[1:]) == ("deleted", 1)
    assert problem(chain[:2] + chain[5:]) == ("deleted", 3)


def test_a_deletion_hidden_by_renumbering_is_still_a_deletion() -> None:
    chain = build(8)
    renumbered = chain[:4] + [renumber(e, e.seq - 1) for e in chain[5:]]
    assert problem(renumbered) == ("deleted", 5)
    last_gone = [*chain[:6], renumber(chain[7], 7)]
    assert problem(last_gone) == ("deleted", 7)


def test_an_inserted_event_is_inserted_at_its_seq() -> None:
    chain = build(8)
    forged = chain_events((3, chain[2].hash), [event(99)])[0]  # well formed, linked to event 3
    shifted = [renumber(e, e.seq + 1) for e in chain[3:]]
    assert problem([*chain[:3], forged, *shifted]) == ("inserted", 4)
    garbage = dataclasses.replace(forged, hash=bytes(32))
    assert problem([*chain[:3], garbage, *shifted]) == ("inserted", 4)


def test_swapped_events_are_reordered() -> None:
    chain = build(8)
    for i, j in [(2, 6), (4, 5), (1, 8), (7, 8)]:
        swapped = chain.copy()
        swapped[i - 1] = renumber(chain[j - 1], i)
        swapped[j - 1] = renumber(chain[i - 1], j)
        assert problem(swapped) == ("reordered", i), (i, j)


def test_truncation_is_found_only_up_to_a_checkpoint_stored_or_exported() -> None:
    chain = build(10)
    signed = checkpoint(chain, 9)
    assert problem(chain[:7], [signed]) == ("truncated", 8)
    assert problem([], [signed]) == ("truncated", 1)
    # The stored checkpoints were deleted too: an exported one still proves it.
    report = verify_chain(chain[:7], [], KEYS, exported=[signed])
    assert report.problem is not None
    assert report.problem.kind == "truncated"
    # After the last checkpoint, truncation cannot be seen.
    assert verify_chain(chain[:9], [signed], KEYS).ok


def test_checkpoints_that_are_forged_unknown_or_wrong_are_bad() -> None:
    chain = build(6)
    good = checkpoint(chain, 5)
    forged = dataclasses.replace(good, hash=chain[3].hash)
    assert problem(chain, [forged]) == ("bad_checkpoint", 5)
    other = SigningKey.generate()
    assert problem(chain, [checkpoint(chain, 5, other)]) == ("bad_checkpoint", 5)
    resigned = dataclasses.replace(good, signature=b"\x00" * 64)
    assert problem(chain, [resigned]) == ("bad_checkpoint", 5)
    # A forged checkpoint beyond the head proves no truncation: it is bad.
    beyond = dataclasses.replace(checkpoint(chain, 6), seq=9)
    assert problem(chain, [beyond]) == ("bad_checkpoint", 9)


def test_the_first_problem_is_reported() -> None:
    chain = build(10)
    tampered = chain.copy()
    tampered[2] = dataclasses.replace(chain[2], kind="outcome")
    del tampered[6]
    report = verify_chain(tampered, [checkpoint(chain, 10)], KEYS)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq, report.events) == ("modified", 3, 2)


def test_purged_bodies_verify_from_their_digest_but_edits_are_still_found() -> None:
    chain = [dataclasses.replace(e, body=None) if e.seq < 5 else e for e in build(8)]
    assert verify_chain(chain, [checkpoint(chain, 8)], KEYS).ok
    assert chain[0].data() == {}
    chain[1] = dataclasses.replace(chain[1], body_digest=hashlib.sha256(b"x").digest())
    assert problem(chain) == ("modified", 2)


def test_checkpoint_message_is_domain_separated_and_fixed_width() -> None:
    message = checkpoint_message(5, b"\xaa" * 32, 1.0, "0123456789abcdef")
    assert message.startswith(b"ztgate audit checkpoint v1\x00")
    assert checkpoint_message(5, b"\xaa" * 32, 1.0, "0123456789abcdeg") != message
    assert checkpoint_message(6, b"\xaa" * 32, 1.0, "0123456789abcdef") != message
    assert checkpoint_message(5, b"\xaa" * 32, 1.5, "0123456789abcdef") != message


def test_exported_checkpoints_round_trip() -> None:
    signed = checkpoint(build(3), 3)
    document = orjson.loads(orjson.dumps(checkpoint_to_json(signed)))
    assert checkpoint_from_json(document) == signed
    with pytest.raises(ValueError, match="not an exported checkpoint"):
        checkpoint_from_json({"seq": 1})


async def test_the_async_verifier_streams_a_long_chain() -> None:
    chain = build(3000)

    async def events() -> AsyncIterator[StoredEvent]:
        for stored in chain:
            yield stored

    report = await verify_chain_async(events(), [checkpoint(chain, 3000)], KEYS)
    assert report.ok
    assert report.events == 3000


# -- properties: any single edit, deletion or swap is found --------------------------------

FIELDS = ["kind", "at", "request_id", "principal", "body", "body_digest", "prev_hash", "hash"]


def _edit(stored: StoredEvent, field: str, salt: int) -> StoredEvent:
    value = getattr(stored, field)
    if field == "at":
        return dataclasses.replace(stored, at=value + 1 + salt)
    if isinstance(value, bytes):
        position = salt % len(value)
        changed = bytes([value[position] ^ (1 + salt % 255)])
        return dataclasses.replace(
            stored, **{field: value[:position] + changed + value[position + 1 :]}
        )
    return dataclasses.replace(stored, **{field: f"{value}-{salt}"})


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 30),
    data=st.data(),
    field=st.sampled_from(FIELDS),
    salt=st.integers(0, 10_000),
    signed=st.booleans(),
)
def test_any_single_edit_is_found(
    size: int, data: st.DataObject, field: str, salt: int, signed: bool
) -> None:
    chain = build(size)
    index = data.draw(st.integers(0, size - 1))
    tampered = chain.copy()
    tampered[index] = _edit(chain[index], field, salt)
    report = verify_chain(tampered, [checkpoint(chain, size)] if signed else [], KEYS)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("modified", index + 1)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 30), data=st.data(), renumbered=st.booleans())
def test_any_single_deletion_is_found_under_a_checkpoint_at_the_head(
    size: int, data: st.DataObject, renumbered: bool
) -> None:
    chain = build(size)
    index = data.draw(st.integers(0, size - 1))
    rest = chain[index + 1 :]
    if renumbered:
        rest = [renumber(e, e.seq - 1) for e in rest]
    report = verify_chain(chain[:index] + rest, [checkpoint(chain, size)], KEYS)
    assert report.problem is not None
    expected = "truncated" if index == size - 1 else "deleted"
    assert (report.problem.kind, report.problem.seq) == (expected, index + 1)


@settings(max_examples=200, deadline=None)
@given(size=st.integers(2, 30), data=st.data())
def test_any_swap_is_found_as_reordered(size: int, data: st.DataObject) -> None:
    chain = build(size)
    i = data.draw(st.integers(0, size - 2))
    j = data.draw(st.integers(i + 1, size - 1))
    swapped = chain.copy()
    swapped[i], swapped[j] = renumber(chain[j], i + 1), renumber(chain[i], j + 1)
    report = verify_chain(swapped, [], KEYS)
    assert report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("reordered", i + 1)


def test_signatures_from_an_unrelated_key_type_are_not_accepted() -> None:
    chain = build(2)
    stranger = Ed25519PrivateKey.generate()
    forged = sign_checkpoint(chain[1], stranger, KEY.key_id, 1.0)  # claims our key id
    assert problem(chain, [forged]) == ("bad_checkpoint", 2)
