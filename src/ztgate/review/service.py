"""Reviews over the store: opening one, deciding, running an approved request exactly once,
expiring what nobody decided, and telling whoever waits.

Every change goes through the store's ``change_review``, which applies a pure rule from
``rules.py`` atomically (one writer at a time on SQLite, a row lock on PostgreSQL): two
approvals landing on two replicas at once, or fifty retries racing to run one approved request,
see one state each and only one of them wins. Every change is an audit event, and wakes the
requests waiting on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from ztgate.core.errors import GatewayError, RateLimited
from ztgate.core.reviews import (
    Grant,
    Review,
    ReviewQuery,
    ReviewRequirement,
    ReviewState,
)
from ztgate.review import rules
from ztgate.review.broker import ReviewBroker
from ztgate.review.notify import Notifier

log = logging.getLogger("ztgate.review")

_SWEEP_EVERY = 5.0  # seconds between looks for reviews whose time ran out


class ReviewStore(Protocol):
    """What reviews need of a store (the audit store provides it)."""

    async def add_review(self, review: Review) -> Review: ...

    async def review(self, review_id: str) -> Review | None: ...

    async def reviews(self, query: ReviewQuery) -> list[Review]: ...

    async def decided_reviews(self, ids: Sequence[str]) -> list[str]: ...

    async def open_review(self, requester: str, fingerprint: str) -> Review | None: ...

    async def change_review(
        self, review_id: str, change: Callable[[Review], Review]
    ) -> Review | None: ...

    async def add_grant(self, grant: Grant) -> None: ...

    async def grant(self, requester: str, grant_key: str, now: float) -> Grant | None: ...

    async def due_reviews(self, now: float) -> list[Review]: ...

    async def listen_reviews(
        self, changed: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]] | None: ...


class ReviewEvents(Protocol):
    """Where reviews leave their audit events (the audit trail)."""

    async def review_event(
        self, review: Review, action: str, *, by: str | None, reason: str | None, request_id: str
    ) -> None: ...


class ReviewService:
    def __init__(
        self,
        store: ReviewStore,
        events: ReviewEvents,
        notifier: Notifier,
        *,
        default_approvers: Iterable[str] = (),
        poll_interval: float = 1.0,
        max_pending_per_requester: int = 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._max_pending = max_pending_per_requester
        self._events = events
        self._notifier = notifier
        self.default_approvers = frozenset(default_approvers)
        self._clock = clock
        self.broker = ReviewBroker(store, poll_interval=poll_interval, clock=clock)
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.broker.start()
        self._sweeper = asyncio.create_task(self._sweep())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self.broker.close()
        await self._notifier.close()

    # --- reading -------------------------------------------------------------------------------

    async def get(self, review_id: str) -> Review:
        review = await self.store.review(review_id)
        if review is None:
            raise rules.missing(review_id)
        return review

    async def list(self, query: ReviewQuery) -> list[Review]:
        return await self.store.reviews(query)

    def may_see(self, review: Review, principal: str, groups: frozenset[str]) -> bool:
        """Its requester and those who may decide it see a review (admins see all)."""
        return principal == review.requester or bool(groups & review.approvers)

    # --- opening, running, deciding ------------------------------------------------------------

    async def open(
        self,
        *,
        requester: str,
        fingerprint: str,
        grant_key: str,
        request_id: str,
        requirements: Sequence[ReviewRequirement],
        summary: Mapping[str, Any],
        url: Callable[[str], str],
    ) -> Review:
        """The review this request waits on: the open one for the same request, or a new one
        (people are told). A pending review whose time ran out is expired first."""
        now = self._clock()
        review = await self.store.open_review(requester, fingerprint)
        if review is not None and review.state is ReviewState.PENDING and review.expires_at <= now:
            await self._expire(review)
            review = None
        if review is not None:
            return review
        await self._within_pending_limit(requester)
        review_id = rules.new_review_id()
        review = Review(
            id=review_id,
            requester=requester,
            fingerprint=fingerprint,
            grant_key=grant_key,
            request_id=request_id,
            requirements=tuple(requirements),
            summary=dict(summary) | {"url": url(review_id)},
            state=ReviewState.PENDING,
            created_at=now,
            expires_at=now + min(r.expires_in for r in requirements),
            approvers=rules.approver_groups(requirements, self.default_approvers),
        )
        kept = await self.store.add_review(review)
        if kept.id != review.id:  # a retry elsewhere opened it a moment ago
            return kept
        await self._events.review_event(
            review, "created", by=requester, reason=None, request_id=request_id
        )
        self._notifier.review_waiting(review, url(review.id))
        return review

    async def _within_pending_limit(self, requester: str) -> None:
        """A requester cannot flood approvers (or the store) with reviews to decide."""
        query = ReviewQuery(ReviewState.PENDING, requester, None, self._max_pending)
        pending = await self.store.reviews(query)
        now = self._clock()
        if sum(1 for r in pending if r.expires_at > now) >= self._max_pending:
            raise RateLimited(
                f"{requester} has {self._max_pending} reviews waiting already "
                "(reviews.max_pending_per_requester): cancel some, or wait until they are "
                "decided",
                retry_after=60,
            )

    async def use_grant(self, requester: str, grant_key: str, request_id: str) -> Grant | None:
        """An approval's window that covers this kind of request now (its use is recorded)."""
        grant = await self.store.grant(requester, grant_key, self._clock())
        if grant is not None:
            review = await self.store.review(grant.review_id)
            if review is not None:
                await self._events.review_event(
                    review, "granted", by=requester, reason=None, request_id=request_id
                )
        return grant

    async def execute(self, review: Review, request_id: str) -> Review:
        """Run an approved review's request: once, whoever else tries at the same moment."""
        now = self._clock()
        done = await self.store.change_review(review.id, lambda r: rules.execute(r, now))
        if done is None:
            raise rules.missing(review.id)
        self.broker.changed(review.id)
        await self._events.review_event(
            done, "executed", by=done.requester, reason=None, request_id=request_id
        )
        return done

    async def decide(
        self,
        review_id: str,
        *,
        by: str,
        groups: frozenset[str],
        verdict: rules.Verdict,
        reason: str,
    ) -> Review:
        now = self._clock()

        def change(review: Review) -> Review:
            return rules.decide(
                review,
                by=by,
                groups=groups,
                verdict=verdict,
                reason=reason,
                now=now,
                default_approvers=self.default_approvers,
            )

        review = await self.store.change_review(review_id, change)
        if review is None:
            raise rules.missing(review_id)
        self.broker.changed(review.id)
        await self._events.review_event(
            review, verdict, by=by, reason=reason, request_id=review.request_id
        )
        if review.state is ReviewState.APPROVED and review.grant_until is not None:
            grant = Grant(review.requester, review.grant_key, review.id, review.grant_until)
            await self.store.add_grant(grant)
        return review

    async def fetch(self, review_id: str) -> Review | None:
        return await self.store.review(review_id)

    # --- expiry --------------------------------------------------------------------------------

    async def _expire(self, review: Review) -> None:
        now = self._clock()
        try:
            expired = await self.store.change_review(review.id, lambda r: rules.expire(r, now))
        except GatewayError:
            return  # decided or expired meanwhile, here or elsewhere
        if expired is not None:
            self.broker.changed(review.id)
            await self._events.review_event(
                expired, "expired", by=None, reason=None, request_id=review.request_id
            )

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_EVERY)
            try:
                for review in await self.store.due_reviews(self._clock()):
                    await self._expire(review)
            except Exception:  # the next sweep tries again; a waiting request expires itself
                log.exception("expiring reviews failed")
