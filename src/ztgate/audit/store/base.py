"""What an audit store does, whatever the database: the contract both backends meet.

Every method is a coroutine (SQLite's run on a thread of its own). A failure to reach or
write the database raises :class:`StoreUnavailable`, which the data path turns into 503; a
write the database had no room for raises its subclass :class:`StoreFull`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ztgate.audit.events import AuditEvent, AuditQuery, Checkpoint, StoredEvent
from ztgate.core.errors import ServiceUnavailable
from ztgate.core.reviews import Grant, Review, ReviewQuery

ReviewChange = Callable[[Review], Review]


class StoreUnavailable(ServiceUnavailable):
    """The audit store cannot record: nothing may go upstream unrecorded."""


class StoreFull(StoreUnavailable):
    """The store had no room for what it was given (a full disk), and wrote none of it.

    Told apart from other failures because the size of the write matters: a recording (up to
    ``audit.recordings.max_bytes``) may not fit where a request's few-KB events still do, so
    the writer retries the events without the recordings they were committed with, rather
    than refusing callers whose events would have fit. Raised only when the database said so
    and the transaction is known not to have committed."""


@dataclass(frozen=True, slots=True)
class StoredRecording:
    """A recording as kept: metadata in the clear, the body as one blob (sealed when a key
    is configured; None once purged by retention)."""

    request_id: str
    session_id: str
    principal: str
    started_at: float
    size: int
    truncated: bool
    sealed: bool
    blob: bytes | None


@dataclass(frozen=True, slots=True)
class SessionQuery:
    principal: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session_id: str
    principal: str
    first_at: float
    last_at: float
    requests: int


@dataclass(frozen=True, slots=True)
class PurgeReport:
    events: int  # event bodies dropped (their digests and hashes stay)
    recordings: int  # recording blobs dropped


class AuditStore(Protocol):
    async def migrate(self) -> list[str]:
        """Apply pending schema migrations; the names of those applied."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store can be written now: a real write (of one
        row), so a full disk or a read-only database shows as down, as the next append
        would find it."""
        ...

    async def append(
        self, events: Sequence[AuditEvent], recordings: Sequence[StoredRecording] = ()
    ) -> list[StoredEvent]:
        """Chain and durably commit ``events`` in one transaction, in order, after the chain's
        current head (also when other processes append to the same store); ``recordings``
        are stored in the same transaction (one commit for both)."""
        ...

    async def head(self) -> StoredEvent | None: ...

    def events(self, *, after_seq: int = 0) -> AsyncIterator[StoredEvent]:
        """Every event after ``after_seq``, in chain order."""
        ...

    async def search(self, query: AuditQuery) -> list[StoredEvent]:
        """Newest first, at most ``query.limit``."""
        ...

    async def add_checkpoint(self, checkpoint: Checkpoint) -> None: ...

    async def checkpoints(self) -> list[Checkpoint]: ...

    async def put_recording(self, recording: StoredRecording) -> None: ...

    async def put_recordings(self, recordings: Sequence[StoredRecording]) -> None:
        """Several recordings in one transaction (the writer batches them)."""
        ...

    async def recordings(self, session_id: str) -> list[StoredRecording]:
        """A session's recordings, oldest first."""
        ...

    async def sessions(self, query: SessionQuery) -> list[SessionSummary]:
        """Newest first."""
        ...

    async def purge(
        self, before: float, *, events: bool = True, recordings: bool = True
    ) -> PurgeReport:
        """Drop event bodies and recording blobs older than ``before``; keep every hash.
        ``events=False`` or ``recordings=False`` leaves that kind alone."""
        ...

    # -- reviews (docs/approvals.md): kept beside the audit, in the same database

    async def add_review(self, review: Review) -> Review:
        """Keep ``review`` unless its request already has an open one (pending or approved);
        the open review for the request either way, so racing retries share one."""
        ...

    async def review(self, review_id: str) -> Review | None: ...

    async def reviews(self, query: ReviewQuery) -> list[Review]:
        """Newest first, at most ``query.limit``."""
        ...

    async def decided_reviews(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` no longer pending: what requests held on them wait to hear. (Only
        ids: held requests poll every second, and a review's document is not small.)"""
        ...

    async def open_review(self, requester: str, fingerprint: str) -> Review | None:
        """The newest review of this request by this requester still pending or approved."""
        ...

    async def change_review(self, review_id: str, change: ReviewChange) -> Review | None:
        """Apply ``change`` to the review as stored, atomically: no other change (another
        process, another replica) lands in between. ``change`` may raise to change nothing;
        None when there is no such review. Waiting replicas are told (PostgreSQL)."""
        ...

    async def add_grant(self, grant: Grant) -> None: ...

    async def grant(self, requester: str, grant_key: str, now: float) -> Grant | None:
        """A grant of this kind for this requester still open at ``now``."""
        ...

    async def due_reviews(self, now: float) -> list[Review]:
        """Pending reviews whose time ran out by ``now``."""
        ...

    async def listen_reviews(
        self, changed: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]] | None:
        """Call ``changed`` with a review's id whenever any process changes it; the closer,
        or None when the database cannot tell (SQLite: waiting requests poll)."""
        ...
