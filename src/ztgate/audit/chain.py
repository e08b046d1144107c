"""The hash chain: how events are linked, how checkpoints are signed, and how both are checked.

Pure functions over plain data; the stores call :func:`chain_events` inside their append
transaction, and ``ztgate audit verify`` calls :func:`verify_chain` over what a store returns.

An event's canonical body is ``orjson`` of ``{seq, kind, at, request_id, principal, data}``
with sorted keys; ``body_digest = sha256(body)``;
``hash = sha256(prev_hash || seq as 8 bytes big-endian || body_digest)``; the first event's
``prev_hash`` is 32 zero bytes. Hashing the digest rather than the body lets retention drop a
body and keep its digest: the chain still verifies without the personal data.

What verification proves, and what it cannot (also in docs/audit.md):

- Any change to a stored event (body, a column, a digest, a hash) is found at that event,
  unless the attacker also rewrote every later hash; such a consistent rewrite is found only at
  the next signed checkpoint after it (``bad_checkpoint``), never before it.
- Deleting events leaves a gap (or, when later events were renumbered, events that claim other
  places); deleting the newest events is found only when a checkpoint (stored or exported) was
  signed past them (``truncated``). Truncation after the last checkpoint is undetectable, and
  so is a well-formed forged event appended after it: checkpoints sign what existed, and an
  attacker holding the database but not the signing key can extend the chain as the gateway
  would.
- The kind of a problem is the most plausible explanation of the first inconsistency, judged
  from that event and the next one; a determined attacker can make one kind look like another.
  That something was tampered with, and where the chain first stops being trustworthy, is what
  is proven.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ztgate.audit.events import AuditEvent, Checkpoint, StoredEvent

GENESIS = bytes(32)
_CHECKPOINT_DOMAIN = b"ztgate audit checkpoint v1\x00"
_HASHED_FIELDS = ("kind", "at", "request_id", "principal")

ProblemKind = Literal["modified", "deleted", "inserted", "reordered", "truncated", "bad_checkpoint"]


# -- building the chain ------------------------------------------------------------------------


def canonical_body(seq: int, event: AuditEvent) -> bytes:
    """The exact bytes that are hashed and stored for ``event`` at ``seq``."""
    if not math.isfinite(event.at):
        raise ValueError("an audit event's time must be a finite number")
    document = {
        "seq": seq,
        "kind": event.kind,
        "at": float(event.at),
        "request_id": event.request_id,
        "principal": event.principal,
        "data": event.data if isinstance(event.data, dict) else dict(event.data),
    }
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def link(prev_hash: bytes, seq: int, body_digest: bytes) -> bytes:
    """An event's hash: it commits to its place, its content, and everything before it."""
    return hashlib.sha256(prev_hash + seq.to_bytes(8, "big") + body_digest).digest()


def chain_events(head: tuple[int, bytes] | None, events: Sequence[AuditEvent]) -> list[StoredEvent]:
    """Place ``events`` after ``head`` (its seq and hash; None for an empty chain)."""
    seq, prev = head if head is not None else (0, GENESIS)
    stored = []
    for event in events:
        seq += 1
        body = canonical_body(seq, event)
        digest = hashlib.sha256(body).digest()
        current = link(prev, seq, digest)
        stored.append(
            StoredEvent(
                seq=seq,
                kind=event.kind,
                at=float(event.at),
                request_id=event.request_id,
                principal=event.principal,
                body=body,
                body_digest=digest,
                prev_hash=prev,
                hash=current,
            )
        )
        prev = current
    return stored


# -- checkpoints -------------------------------------------------------------------------------


def checkpoint_message(seq: int, hash_: bytes, at: float, key_id: str) -> bytes:
    """What a checkpoint signs: fixed-width fields after a domain tag, so that no other
    signature by the same key (and no other field split) can be taken for a checkpoint's."""
    key = key_id.encode()
    return (
        _CHECKPOINT_DOMAIN
        + seq.to_bytes(8, "big")
        + len(hash_).to_bytes(1, "big")
        + hash_
        + struct.pack(">d", at)
        + len(key).to_bytes(1, "big")
        + key
    )


def sign_checkpoint(
    event: StoredEvent, private_key: Ed25519PrivateKey, key_id: str, at: float
) -> Checkpoint:
    """A signed statement that the chain's event ``event.seq`` has ``event.hash``."""
    signature = private_key.sign(checkpoint_message(event.seq, event.hash, at, key_id))
    return Checkpoint(seq=event.seq, hash=event.hash, at=at, key_id=key_id, signature=signature)


def checkpoint_signature_problem(
    checkpoint: Checkpoint, public_keys: Mapping[str, Ed25519PublicKey]
) -> str | None:
    """Why the checkpoint's signature cannot be trusted, or None when it is valid."""
    key = public_keys.get(checkpoint.key_id)
    if key is None:
        return f"checkpoint at seq {checkpoint.seq} is signed by unknown key {checkpoint.key_id}"
    if checkpoint.seq < 1 or len(checkpoint.hash) != 32 or not math.isfinite(checkpoint.at):
        return f"checkpoint at seq {checkpoint.seq} is malformed"
    message = checkpoint_message(checkpoint.seq, checkpoint.hash, checkpoint.at, checkpoint.key_id)
    try:
        key.verify(checkpoint.signature, message)
    except InvalidSignature:
        return f"checkpoint at seq {checkpoint.seq} has an invalid signature"
    return None


# -- verification ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    kind: ProblemKind
    seq: int  # the first event (or checkpoint position) that cannot be trusted
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyReport:
    events: int  # events checked before the first problem (all of them when ok)
    head_seq: int  # the last event checked: 0 for an empty chain
    head_hash: bytes
    checkpoints: int  # distinct checkpoints (stored and exported) whose signature is valid
    signed_seq: int  # the last seq covered by a valid checkpoint that matched the chain
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def unsigned(self) -> int:
        """Events after the last matching checkpoint: trustworthy only as the database is."""
        return max(0, self.head_seq - self.signed_seq)


@dataclass(frozen=True, slots=True)
class _Row:
    """An event as read back, with what its own bytes say about it."""

    event: StoredEvent
    claimed: int  # the seq the body says (the column's for a purged body)
    flaw: str | None  # why the row contradicts itself


def _inspect(event: StoredEvent) -> _Row:
    claimed = event.seq
    if event.body is not None:
        if hashlib.sha256(event.body).digest() != event.body_digest:
            return _Row(event, claimed, f"event {event.seq}'s body does not match its digest")
        try:
            document = orjson.loads(event.body)
        except orjson.JSONDecodeError:
            return _Row(event, claimed, f"event {event.seq}'s body is not JSON")
        if not isinstance(document, dict) or type(document.get("seq")) is not int:
            return _Row(event, claimed, f"event {event.seq}'s body has no seq")
        claimed = document["seq"]
        for name in _HASHED_FIELDS:
            if document.get(name) != getattr(event, name):
                return _Row(
                    event, claimed, f"event {event.seq}'s {name} differs from its hashed body"
                )
    if event.hash != link(event.prev_hash, claimed, event.body_digest):
        return _Row(event, claimed, f"event {event.seq}'s hash does not match its content")
    return _Row(event, claimed, None)


class ChainVerifier:
    """Checks a chain event by event in O(1) memory (plus the checkpoints): feed events in
    seq order, then :meth:`finish`. Stops at the first problem. One event of look-ahead tells
    a swap from a deletion and an insertion from an edit."""

    def __init__(
        self,
        checkpoints: Iterable[Checkpoint],
        public_keys: Mapping[str, Ed25519PublicKey],
        exported: Iterable[Checkpoint] = (),
    ) -> None:
        self._checkpoints: dict[int, list[tuple[Checkpoint, str | None]]] = {}
        seen: set[tuple[int, bytes, str, bytes]] = set()
        for checkpoint in (*checkpoints, *exported):
            identity = (checkpoint.seq, checkpoint.hash, checkpoint.key_id, checkpoint.signature)
            if identity in seen:
                continue
            seen.add(identity)
            flaw = checkpoint_signature_problem(checkpoint, public_keys)
            self._checkpoints.setdefault(checkpoint.seq, []).append((checkpoint, flaw))
        self._valid = sum(1 for c in self._checkpoints.values() for _, flaw in c if flaw is None)
        self._expected = 1
        self._prev = GENESIS
        self._count = 0
        self._signed = 0
        self._pending: _Row | None = None
        self.problem: Problem | None = None

    def feed(self, event: StoredEvent) -> Problem | None:
        """Take the next event; the first problem once one is known (then ignore the rest)."""
        if self.problem is None:
            row = _inspect(event)
            if self._pending is not None:
                self.problem = self._judge(self._pending, row)
            self._pending = row
        return self.problem

    def finish(self) -> VerifyReport:
        if self.problem is None and self._pending is not None:
            self.problem = self._judge(self._pending, None)
            self._pending = None
        if self.problem is None:
            self.problem = self._beyond_head()
        return VerifyReport(
            events=self._count,
            head_seq=self._expected - 1,
            head_hash=self._prev,
            checkpoints=self._valid,
            signed_seq=self._signed,
            problem=self.problem,
        )

    def _judge(self, row: _Row, after: _Row | None) -> Problem | None:
        """Accept ``row`` as the next event, or say why not (``after`` is the next row)."""
        event, seq = row.event, row.event.seq
        if seq > self._expected:
            missing = f"{self._expected}" + (f"..{seq - 1}" if seq - 1 > self._expected else "")
            return Problem("deleted", self._expected, f"event {missing} missing before {seq}")
        if seq < self._expected:
            return Problem("reordered", seq, f"event {seq} appears out of order")
        # The next row holds this place's event and links to the previous one: this row was
        # put in between.
        displaced = after is not None and (
            after.claimed == seq and after.event.prev_hash == self._prev
        )
        if row.flaw is not None:
            if displaced:
                return Problem("inserted", seq, f"event {seq} was inserted ({row.flaw})")
            return Problem("modified", seq, row.flaw)
        if row.claimed > seq:
            continues = after is None or (
                after.event.prev_hash == event.hash and after.claimed == row.claimed + 1
            )
            if continues:  # later events were renumbered down to close a gap
                return Problem(
                    "deleted", seq, f"events {seq}..{row.claimed - 1} missing (later renumbered)"
                )
            return Problem("reordered", seq, f"event {seq} holds event {row.claimed}'s content")
        if row.claimed < seq:
            return Problem("reordered", seq, f"event {seq} holds event {row.claimed}'s content")
        if displaced:
            return Problem("inserted", seq, f"event {seq} was inserted (later renumbered)")
        if event.prev_hash != self._prev:
            return Problem(
                "modified",
                seq - 1,
                f"event {seq - 1} was rewritten: event {seq} links to a different hash",
            )
        for checkpoint, flaw in self._checkpoints.get(seq, ()):
            if flaw is not None:
                return Problem("bad_checkpoint", seq, flaw)
            if checkpoint.hash != event.hash:
                return Problem(
                    "bad_checkpoint",
                    seq,
                    f"the chain differs from what was signed at seq {seq}: events at or "
                    "before it were rewritten",
                )
            self._signed = seq
        self._prev = event.hash
        self._expected = seq + 1
        self._count += 1
        return None

    def _beyond_head(self) -> Problem | None:
        head = self._expected - 1
        for seq in sorted(s for s in self._checkpoints if s > head):
            for _, flaw in self._checkpoints[seq]:
                if flaw is not None:
                    return Problem("bad_checkpoint", seq, flaw)
            return Problem(
                "truncated",
                head + 1,
                f"the chain ends at seq {head} but a checkpoint was signed at seq {seq}",
            )
        return None


def verify_chain(
    events: Iterable[StoredEvent],
    checkpoints: Iterable[Checkpoint],
    public_keys: Mapping[str, Ed25519PublicKey],
    exported: Sequence[Checkpoint] = (),
) -> VerifyReport:
    """Recompute the whole chain (from seq 1, in seq order) and report its first problem.

    ``exported`` are checkpoints kept outside the store (they prove truncation even when the
    stored checkpoints were deleted too). ``events`` is consumed lazily."""
    verifier = ChainVerifier(checkpoints, public_keys, exported)
    for event in events:
        if verifier.feed(event) is not None:
            break
    return verifier.finish()


async def verify_chain_async(
    events: AsyncIterable[StoredEvent],
    checkpoints: Iterable[Checkpoint],
    public_keys: Mapping[str, Ed25519PublicKey],
    exported: Sequence[Checkpoint] = (),
) -> VerifyReport:
    """:func:`verify_chain` over a store's ``events()`` without holding the chain in memory."""
    verifier = ChainVerifier(checkpoints, public_keys, exported)
    async for event in events:
        if verifier.feed(event) is not None:
            break
    return verifier.finish()


def checkpoint_to_json(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint as exported (hex for bytes): what to keep outside the store."""
    return {
        "seq": checkpoint.seq,
        "hash": checkpoint.hash.hex(),
        "at": checkpoint.at,
        "key_id": checkpoint.key_id,
        "signature": checkpoint.signature.hex(),
    }


def checkpoint_from_json(document: Mapping[str, Any]) -> Checkpoint:
    """The inverse of :func:`checkpoint_to_json`; ValueError when malformed."""
    try:
        return Checkpoint(
            seq=int(document["seq"]),
            hash=bytes.fromhex(document["hash"]),
            at=float(document["at"]),
            key_id=str(document["key_id"]),
            signature=bytes.fromhex(document["signature"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an exported checkpoint: {exc}") from None
