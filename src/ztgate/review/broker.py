"""Waiting for a review's decision, wherever it is taken.

A held request waits here. A decision taken in this process wakes it at once; one taken on
another replica arrives as a PostgreSQL ``NOTIFY`` (the store's ``listen_reviews``); and one
poll loop, one query for all waited reviews every ``poll_interval``, covers the rest (other
workers on SQLite, a lost notification). At shutdown every waiter is told, so held requests
end with a clear answer instead of being cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from ztgate.core.reviews import Review, ReviewState

log = logging.getLogger("ztgate.review")


class Closing(Exception):
    """The gateway is shutting down: a held request stops waiting."""


class _Store(Protocol):
    async def decided_reviews(self, ids: Sequence[str]) -> list[str]: ...

    async def listen_reviews(
        self, changed: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]] | None: ...


class ReviewBroker:
    def __init__(
        self, store: _Store, *, poll_interval: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._poll_interval = poll_interval
        self._clock = clock
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._closing = False
        self._stop_listening: Callable[[], Awaitable[None]] | None = None
        self._poller: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """How many requests are held right now."""
        return sum(len(events) for events in self._waiters.values())

    async def start(self) -> None:
        try:
            self._stop_listening = await self._store.listen_reviews(self.changed)
        except Exception:  # polling alone still finds every decision, a moment later
            log.exception("cannot listen for review decisions; polling for them")
        self._poller = asyncio.create_task(self._poll())

    async def close(self) -> None:
        self._closing = True
        for events in self._waiters.values():
            for event in events:
                event.set()
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        if self._stop_listening is not None:
            await self._stop_listening()

    def changed(self, review_id: str) -> None:
        """A review changed (here, or anywhere the store says): wake who waits on it."""
        for event in self._waiters.get(review_id, ()):
            event.set()

    async def wait(
        self,
        review: Review,
        *,
        until: float,
        fetch: Callable[[str], Awaitable[Review | None]],
        tick: Callable[[], Awaitable[None]] | None = None,
        every: float = 10.0,
    ) -> Review:
        """The review once it leaves ``pending``, or as it is at ``until``. ``tick`` runs every
        ``every`` seconds meanwhile (a held stream's ping). Raises Closing at shutdown."""
        event = asyncio.Event()
        self._waiters.setdefault(review.id, set()).add(event)
        try:
            # The first tick comes early by a random part of ``every``: requests held together
            # (a burst of arrivals, a restart) do not all ping at the same instant ever after.
            next_tick = self._clock() + every * random.uniform(0.5, 1.0)  # noqa: S311
            while review.state is ReviewState.PENDING:
                if self._closing:
                    raise Closing
                now = self._clock()
                if now >= until:
                    return review
                deadline = min(until, next_tick) if tick is not None else until
                # asyncio.timeout, not wait_for: no task per wake-up, with a thousand held
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, deadline - now)):
                        await event.wait()
                if self._closing:
                    raise Closing
                if event.is_set():
                    event.clear()
                    review = await fetch(review.id) or review
                if tick is not None and self._clock() >= next_tick:
                    await tick()
                    next_tick = self._clock() + every
            return review
        finally:
            events = self._waiters.get(review.id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[review.id]

    async def _poll(self) -> None:
        """One query for every waited review; wake the ones that are no longer pending."""
        while True:
            await asyncio.sleep(self._poll_interval)
            ids = list(self._waiters)
            if not ids:
                continue
            try:
                decided = await self._store.decided_reviews(ids)
            except Exception:
                log.exception("cannot poll the store for review decisions")
                continue
            for review_id in decided:
                self.changed(review_id)
