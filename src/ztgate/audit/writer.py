"""Group commit: many requests' events, one transaction, one fsync.

"No audit, no access": a request goes upstream only after its event is durably committed, so
every request waits for a commit. Committing each on its own would cap the gateway at the
disk's fsyncs per second; instead one background task takes everything that queued while the
previous transaction ran (up to ``max_batch`` events) and appends it in one transaction. Each
caller's ``write`` returns once its own events are committed, or raises StoreUnavailable,
which the data path answers with 503.

Recordings waiting for a commit ride along with the next transaction of events. A recording
can be megabytes where a request's events are a few KB, so when the store has no room for the
transaction (:class:`StoreFull`: a full disk) the events are committed again alone and the
recordings tried one by one: a recording that does not fit is lost (its waiter is told, and
the recorder logs it), never the events it rode with.

The writer also signs checkpoints: every ``checkpoint_every`` events it appended, every
``checkpoint_interval`` seconds when the chain's head moved (on PostgreSQL, other replicas
move it too), and when it closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ztgate.audit.chain import sign_checkpoint
from ztgate.audit.events import AuditEvent, Checkpoint, StoredEvent
from ztgate.audit.signing import SigningKey, load_signing_key
from ztgate.audit.store.base import AuditStore, StoredRecording, StoreFull, StoreUnavailable
from ztgate.config.model import GatewayConfig

log = logging.getLogger("ztgate.audit")


@dataclass(slots=True)
class _Pending:
    events: Sequence[AuditEvent]
    done: asyncio.Future[list[StoredEvent]]


class AuditWriter:
    def __init__(
        self,
        store: AuditStore,
        signing_key: SigningKey,
        *,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 60.0,
        max_batch: int = 1024,
        recording_retention: float | None = None,
        retention_check: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._key = signing_key
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval = checkpoint_interval
        self._max_batch = max_batch
        self._clock = clock
        self._queue: deque[_Pending] = deque()
        self._deferred: asyncio.TimerHandle | None = None  # wakes the writer for deferred events
        self._recordings: list[tuple[StoredRecording, asyncio.Future[None]]] = []
        self._recordings_timer: asyncio.TimerHandle | None = None
        self._storing: set[asyncio.Task[None]] = set()
        self._recordings_waiting = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retention = recording_retention
        self._retention_check = retention_check
        self._retention_task: asyncio.Task[None] | None = None
        self._closing = False
        self._checkpointed_seq = 0
        self._since_checkpoint = 0
        self._next_checkpoint_at = 0.0
        # The last append failed and none has succeeded since: refusals are then recorded in
        # the background rather than making their callers wait out the store again.
        self.failing = False
        self.transactions = 0  # append transactions committed
        self.events_written = 0
        self._on_commit: Callable[[float, int, int], None] | None = None
        self._on_failure: Callable[[int], None] | None = None

    @classmethod
    def from_config(cls, config: GatewayConfig, store: AuditStore) -> AuditWriter:
        """The writer ``serve`` runs: the configured (or embedded) signing key, checkpoint
        cadence and recording retention. ConfigError when there is no usable key."""
        audit = config.audit
        days = audit.recordings.retention_days
        return cls(
            store,
            load_signing_key(audit, config.store.url),
            checkpoint_every=audit.checkpoint_every,
            checkpoint_interval=audit.checkpoint_interval,
            recording_retention=None if days is None else days * 86400.0,
        )

    def observe(
        self, committed: Callable[[float, int, int], None], failed: Callable[[int], None]
    ) -> None:
        """Tell ``committed(seconds, events, still queued)`` of every group commit and
        ``failed(queued)`` of every failed one (for the metrics)."""
        self._on_commit, self._on_failure = committed, failed

    @property
    def signing_key_id(self) -> str:
        """Which key signs this writer's checkpoints (never the key)."""
        return self._key.key_id

    @property
    def public_key(self) -> Ed25519PublicKey:
        """What verifies this writer's checkpoints."""
        return self._key.public_key()

    # -- lifecycle

    async def start(self) -> None:
        """Start the committing task; the last stored checkpoint tells where signing resumes."""
        if self._task is not None:
            return
        self._closing = False
        with contextlib.suppress(StoreUnavailable):  # the store may come back later
            checkpoints = await self.store.checkpoints()
            self._checkpointed_seq = max((c.seq for c in checkpoints), default=0)
        self._next_checkpoint_at = time.monotonic() + self._checkpoint_interval
        self._task = asyncio.create_task(self._run(), name="ztgate-audit-writer")
        if self._retention is not None:
            self._retention_task = asyncio.create_task(
                self._purge_recordings(self._retention), name="ztgate-audit-retention"
            )

    async def close(self) -> None:
        """Commit what is queued, sign a last checkpoint, stop. Writes after this are refused."""
        task = self._task
        if task is None:
            return
        self._closing = True
        self._wakeup.set()
        if self._recordings_timer is not None:
            self._recordings_timer.cancel()
        self._flush_recordings()
        await asyncio.gather(*self._storing, return_exceptions=True)
        if self._retention_task is not None:
            self._retention_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retention_task
            self._retention_task = None
        await task
        self._task = None
        await asyncio.gather(*self._storing, return_exceptions=True)  # recordings retried alone
        await self._checkpoint(head=None)

    # -- writing

    async def write(
        self, events: Sequence[AuditEvent], *, within: float = 0.0
    ) -> list[StoredEvent]:
        """Return once ``events`` are durably committed (in order, consecutively), with their
        place in the chain; StoreUnavailable when they could not be.

        ``within`` (seconds) lets events that nobody is waiting on (a response's outcome)
        ride along with the next transaction instead of starting one of their own; they are
        committed at the latest that much later."""
        if self._task is None or self._closing:
            raise StoreUnavailable("the audit writer is not running")
        if not events:
            return []
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[StoredEvent]] = loop.create_future()
        self._queue.append(_Pending(events, done))
        if within <= 0:
            self._wakeup.set()
        elif self._deferred is None or loop.time() + within < self._deferred.when():
            if self._deferred is not None:
                self._deferred.cancel()
            self._deferred = loop.call_later(within, self._wake_deferred)
        return await done

    def _wake_deferred(self) -> None:
        self._deferred = None
        self._wakeup.set()

    @property
    def recordings_waiting(self) -> int:
        """Recordings handed to the writer and not yet stored or given up (for the metrics:
        bounded by the requests that finished in the last moments, unless the store is slow)."""
        return self._recordings_waiting

    async def put_recording(self, recording: StoredRecording, *, within: float = 0.0) -> None:
        """Store a request's recording beside the chain. With ``within`` (seconds), the
        recordings that arrive meanwhile share one transaction, stored that much later.
        StoreUnavailable (StoreFull when there was no room for it) when it was not stored."""
        self._recordings_waiting += 1
        try:
            if within <= 0:
                await self.store.put_recordings([recording])
                return
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            self._recordings.append((recording, done))
            if self._recordings_timer is None:
                self._recordings_timer = loop.call_later(within, self._flush_recordings)
            await done
        finally:
            self._recordings_waiting -= 1

    def _flush_recordings(self) -> None:
        self._recordings_timer = None
        batch, self._recordings = self._recordings, []
        if batch:
            self._store_in_background(batch)

    def _store_in_background(
        self, batch: list[tuple[StoredRecording, asyncio.Future[None]]], *, each: bool = False
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._store_recordings(batch, each=each))
        self._storing.add(task)
        task.add_done_callback(self._storing.discard)

    async def _store_recordings(
        self, batch: list[tuple[StoredRecording, asyncio.Future[None]]], *, each: bool = False
    ) -> None:
        """Store ``batch`` in one transaction (or, with ``each``, one transaction per
        recording). When the store has no room for them all, each is tried on its own: one
        recording too large for what is left must not lose the others."""
        if each:
            for one in batch:
                await self._store_recordings([one])
            return
        try:
            await self.store.put_recordings([recording for recording, _ in batch])
        except StoreFull as exc:
            if len(batch) == 1:
                _settle(batch, exc)
            else:
                await self._store_recordings(batch, each=True)
        except Exception as exc:  # every waiter learns
            _settle(batch, _as_unavailable(exc))
        else:
            _settle(batch, None)

    async def checkpoint(self) -> Checkpoint | None:
        """Sign and store a checkpoint of the chain's head now, if it moved since the last."""
        return await self._checkpoint(head=None)

    async def _purge_recordings(self, retention: float) -> None:
        """Drop recording blobs older than ``retention`` seconds, now and every so often
        (every replica does; purging is idempotent). Event bodies are kept."""
        while True:
            try:
                report = await self.store.purge(self._clock() - retention, events=False)
            except Exception as exc:
                log.warning(
                    "audit retention purge failed",
                    extra={"event": "audit_purge_failed", "error": f"{type(exc).__name__}: {exc}"},
                )
            else:
                if report.recordings:
                    log.info(
                        "audit recordings purged",
                        extra={"event": "audit_purged", "recordings": report.recordings},
                    )
            await asyncio.sleep(self._retention_check)

    # -- the committing task

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                timeout = max(0.0, self._next_checkpoint_at - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout)
                if not self._queue:
                    if time.monotonic() >= self._next_checkpoint_at:
                        await self._checkpoint(head=None)
                    continue
            batch = self._take_batch()
            if self._deferred is not None:  # what it would have woken for goes now
                self._deferred.cancel()
                self._deferred = None
            # Recordings waiting for their own transaction ride along with this one instead:
            # one commit for both (under load there always is one).
            riding, self._recordings = self._recordings, []
            if self._recordings_timer is not None:
                self._recordings_timer.cancel()
                self._recordings_timer = None
            began = time.perf_counter()
            try:
                stored, without = await self._append([e for p in batch for e in p.events], riding)
            except Exception as exc:  # every waiter learns; later writes try the store again
                failure = _as_unavailable(exc)
                self.failing = True
                if self._on_failure is not None:
                    self._on_failure(sum(len(p.events) for p in self._queue))
                self._fail(batch, failure)
                _settle(riding, failure)
                continue
            self.failing = False
            if self._on_commit is not None:
                queued = sum(len(p.events) for p in self._queue)
                self._on_commit(time.perf_counter() - began, len(stored), queued)
            if without is None:
                _settle(riding, None)
            else:
                self._recordings_without_room(riding, without)
            self.transactions += 1
            self.events_written += len(stored)
            offset = 0
            for pending in batch:
                count = len(pending.events)
                if not pending.done.done():
                    pending.done.set_result(stored[offset : offset + count])
                offset += count
            self._since_checkpoint += len(stored)
            if self._since_checkpoint >= self._checkpoint_every:
                await self._checkpoint(head=stored[-1])
            elif time.monotonic() >= self._next_checkpoint_at:
                await self._checkpoint(head=None)

    async def _append(
        self,
        events: list[AuditEvent],
        riding: list[tuple[StoredRecording, asyncio.Future[None]]],
    ) -> tuple[list[StoredEvent], StoreFull | None]:
        """Commit ``events`` with the recordings riding along; when the store had no room for
        them all, the events again alone. What was stored, and the StoreFull that left the
        recordings out (None when they were stored).

        A recording is up to ``audit.recordings.max_bytes``, a request's events a few KB: on a
        disk with room for the events but not for a recording, committing them together would
        refuse callers whose events fit (503) and lose outcomes of answered requests. The
        events are the promise ("no audit, no access"); a recording is kept when it fits."""
        try:
            return await self.store.append(events, [r for r, _ in riding]), None
        except StoreFull as exc:
            if not riding:
                raise
            return await self.store.append(events), exc

    def _recordings_without_room(
        self, riding: list[tuple[StoredRecording, asyncio.Future[None]]], failure: StoreFull
    ) -> None:
        """The recordings left out of a commit for lack of room: one is lost (its waiter
        says so); several are tried again one by one, in the background, so that the one
        that did not fit takes no other with it."""
        if len(riding) == 1:
            _settle(riding, failure)
        else:
            self._store_in_background(riding, each=True)

    def _take_batch(self) -> list[_Pending]:
        """Everything queued, up to ``max_batch`` events (a larger single write goes alone)."""
        batch = [self._queue.popleft()]
        size = len(batch[0].events)
        while self._queue and size + len(self._queue[0].events) <= self._max_batch:
            pending = self._queue.popleft()
            batch.append(pending)
            size += len(pending.events)
        return batch

    def _fail(self, batch: list[_Pending], failure: StoreUnavailable) -> None:
        """Fail the batch and everyone who queued while the store was failing."""
        log.error(
            "audit store unavailable",
            extra={"event": "audit_store_unavailable", "error": failure.message},
        )
        waiting = batch + list(self._queue)
        self._queue.clear()
        for pending in waiting:
            if not pending.done.done():
                pending.done.set_exception(failure)

    async def _checkpoint(self, head: StoredEvent | None) -> Checkpoint | None:
        """Sign ``head`` (or the store's head) unless it is already checkpointed. A failure is
        logged, not raised: the next trigger tries again, and events stay committed."""
        self._next_checkpoint_at = time.monotonic() + self._checkpoint_interval
        try:
            if head is None:
                head = await self.store.head()
            if head is None or head.seq <= self._checkpointed_seq:
                return None
            checkpoint = sign_checkpoint(
                head, self._key.private_key, self._key.key_id, self._clock()
            )
            await self.store.add_checkpoint(checkpoint)
        except Exception as exc:
            log.warning(
                "audit checkpoint not stored",
                extra={"event": "audit_checkpoint_failed", "error": f"{type(exc).__name__}: {exc}"},
            )
            return None
        self._checkpointed_seq = checkpoint.seq
        self._since_checkpoint = 0
        return checkpoint


def _as_unavailable(exc: Exception) -> StoreUnavailable:
    """Any failure of the store as what the data path answers 503 to."""
    if isinstance(exc, StoreUnavailable):
        return exc
    return StoreUnavailable(f"the audit store failed: {type(exc).__name__}: {exc}")


def _settle(
    recordings: list[tuple[StoredRecording, asyncio.Future[None]]],
    failure: StoreUnavailable | None,
) -> None:
    """Tell everyone waiting on these recordings how their store went."""
    for _, done in recordings:
        if not done.done():
            if failure is None:
                done.set_result(None)
            else:
                done.set_exception(failure)
