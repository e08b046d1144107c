"""Audit events: what is appended to the hash chain, and what the store gives back.

Plain data. An event's ``data`` never holds a token, a key or an unmasked value: builders
(``audit/record.py``) copy only names, counts and decisions into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

EventKind = Literal[
    "request",  # a request as decided (written before it goes upstream)
    "outcome",  # how it ended: status, usage, latency, stream end
    "startup",  # configuration loaded, gateway started
    "policy_reload",  # a policy file applied or rejected
    "key_refresh_failure",  # an issuer's signing keys could not be fetched
    "review",  # a review opened, decided, expired, used or run (docs/approvals.md)
]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """An event before the store gives it its place (``seq``) in the chain."""

    kind: EventKind
    at: float  # seconds since the epoch, UTC
    data: Mapping[str, Any]
    request_id: str | None = None
    principal: str | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event in the chain. ``body`` is the canonical bytes that were hashed (None once
    purged by retention; ``body_digest`` stays, so the chain still verifies)."""

    seq: int
    kind: str
    at: float
    request_id: str | None
    principal: str | None
    body: bytes | None
    body_digest: bytes
    prev_hash: bytes
    hash: bytes

    def data(self) -> dict[str, Any]:
        """The event's data, or ``{}`` when its body was purged."""
        if self.body is None:
            return {}
        document = orjson.loads(self.body)
        data = document.get("data")
        return data if isinstance(data, dict) else {}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement "the chain's event ``seq`` has hash ``hash``", kept in the store and
    exportable, so truncation up to it and rewrites before it can be proven."""

    seq: int
    hash: bytes
    at: float
    key_id: str
    signature: bytes


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """What ``ztgate audit search`` and the admin API filter on. None: no restriction."""

    principal: str | None = None
    group: str | None = None
    since: float | None = None
    until: float | None = None
    kinds: tuple[str, ...] = ()
    decision: str | None = None  # allow | deny | review
    model: str | None = None
    skill: str | None = None
    finding: str | None = None  # detector id
    request_id: str | None = None
    limit: int = 100
    extra: Mapping[str, Any] = field(default_factory=dict)
