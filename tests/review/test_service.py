"""Reviews over the real stores (SQLite, and PostgreSQL shared by several "replicas"), with the
real audit trail: one review per request whatever races, an approved request run exactly once,
decisions that reach a waiter on another replica, expiry, grant windows, audit events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.audit.store.backends import pg_database, store_url
from ztgate.audit.events import AuditQuery, StoredEvent
from ztgate.audit.signing import SigningKey
from ztgate.audit.store.base import AuditStore
from ztgate.audit.store.factory import open_store
from ztgate.audit.trail import AuditTrail
from ztgate.core.errors import GatewayError, InvalidRequest, PermissionDenied
from ztgate.core.reviews import Review, ReviewRequirement, ReviewState
from ztgate.devtools.stack import demo_config
from ztgate.review.broker import Closing
from ztgate.review.notify import Notifier
from ztgate.review.service import ReviewService

__all__ = ["pg_database", "store_url"]

ALICE = "demo/alice"
RULE = ReviewRequirement("opus", "Opus needs a lead", frozenset({"leads"}))


class Replica:
    """One gateway's worth of reviews: its own store connection, trail and service."""

    def __init__(self, trail: AuditTrail, service: ReviewService, http: aiohttp.ClientSession):
        self.trail, self.service, self._http = trail, service, http

    @classmethod
    async def start(
        cls, url: str, tmp_path: Path, *, poll: float = 60.0, clock: Callable[[], float] = time.time
    ) -> Replica:
        key = tmp_path / "signing.pem"
        if not key.exists():
            key.write_bytes(SigningKey.generate().private_pem())
        config = demo_config(
            "http://127.0.0.1:9",
            "http://127.0.0.1:9",
            store={"url": url},
            audit={"signing_key_file": str(key)},
        )
        store: AuditStore = open_store(url)
        trail = await AuditTrail.open(config, store)
        http = aiohttp.ClientSession()
        service = ReviewService(store, trail, Notifier([], http), poll_interval=poll, clock=clock)
        await service.start()
        return cls(trail, service, http)

    async def close(self) -> None:
        await self.service.close()
        await self._http.close()
        await self.trail.close()

    async def open(self, fingerprint: str = "f1", *rules: ReviewRequirement) -> Review:
        return await self.service.open(
            requester=ALICE,
            fingerprint=fingerprint,
            grant_key="kind-1",
            request_id=f"req_{fingerprint}",
            requirements=rules or (RULE,),
            summary={"model": "claude-opus-5"},
            url=lambda review_id: f"https://ztgate.test/reviews/{review_id}",
        )

    async def approve(self, review: Review, by: str = "demo/lead") -> Review:
        return await self.service.decide(
            review.id, by=by, groups=frozenset({"leads"}), verdict="approve", reason="ok"
        )

    async def actions(self, review: Review) -> list[str]:
        """The audit's review events for ``review``, oldest first (committed before the
        service returns: nothing to wait for)."""
        events = await self.trail.store.search(AuditQuery(kinds=("review",), limit=1000))
        mine = sorted((e for e in events if e.data()["review_id"] == review.id), key=_seq)
        return [e.data()["action"] for e in mine]


def _seq(event: StoredEvent) -> int:
    return event.seq


@pytest.fixture
async def replicas(store_url: str, tmp_path: Path) -> AsyncIterator[list[Replica]]:
    """Two replicas on one store (for SQLite: one file, as two workers share it)."""
    started = [await Replica.start(store_url, tmp_path) for _ in range(2)]
    yield started
    for replica in started:
        await replica.close()


async def test_retries_racing_on_two_replicas_share_one_review(replicas: list[Replica]) -> None:
    a, b = replicas
    opened = await asyncio.gather(*(r.open() for r in [a, b] * 10))
    assert len({review.id for review in opened}) == 1
    assert await a.actions(opened[0]) == ["created"]


async def test_an_approved_request_runs_once_however_many_retries_race(
    replicas: list[Replica],
) -> None:
    a, b = replicas
    review = await a.approve(await a.open())
    results = await asyncio.gather(
        *(r.service.execute(review, f"req_retry_{i}") for i, r in enumerate([a, b] * 25)),
        return_exceptions=True,
    )
    ran = [r for r in results if isinstance(r, Review)]
    refused = [r for r in results if isinstance(r, PermissionDenied)]
    assert len(ran) == 1, results
    assert len(refused) == 49, results
    assert ran[0].state is ReviewState.EXECUTED
    assert "has already run this request once" in str(refused[0])
    assert await a.actions(review) == ["created", "approve", "executed"]
    # The same request again is a new review.
    again = await b.open()
    assert again.id != review.id
    assert again.state is ReviewState.PENDING


async def test_approvals_landing_on_two_replicas_at_once_count_once(
    replicas: list[Replica],
) -> None:
    a, b = replicas
    review = await a.open()
    results = await asyncio.gather(
        a.approve(review, "demo/lead-1"), b.approve(review, "demo/lead-2"), return_exceptions=True
    )
    decided = [r for r in results if isinstance(r, Review)]
    assert len(decided) == 1
    assert isinstance(next(r for r in results if not isinstance(r, Review)), InvalidRequest)
    stored = await a.service.get(review.id)
    assert [d.by for d in stored.decisions] == [decided[0].decisions[0].by]


async def test_a_decision_on_one_replica_releases_a_request_held_on_another(
    pg_database: str, tmp_path: Path
) -> None:
    """PostgreSQL: the decision's NOTIFY reaches the replica holding the request."""
    a = await Replica.start(pg_database, tmp_path)
    b = await Replica.start(pg_database, tmp_path)
    try:
        review = await a.open(f"f-{time.time()}")
        waiting = asyncio.create_task(
            a.service.broker.wait(review, until=time.time() + 30, fetch=a.service.fetch)
        )
        await asyncio.sleep(0.2)
        assert a.service.broker.waiting == 1
        started = time.monotonic()
        await b.approve(review)
        released = await asyncio.wait_for(waiting, 10)
        # Polling runs once a minute here: only the notification can have been this quick.
        assert time.monotonic() - started < 5
        assert released.state is ReviewState.APPROVED
        assert a.service.broker.waiting == 0
    finally:
        await a.close()
        await b.close()


async def test_polling_finds_a_decision_taken_by_another_worker(tmp_path: Path) -> None:
    """SQLite cannot notify: workers sharing its file find each other's decisions by polling."""
    url = f"sqlite:///{tmp_path}/audit.db"
    a = await Replica.start(url, tmp_path, poll=0.2)
    b = await Replica.start(url, tmp_path)
    try:
        review = await a.open()
        waiting = asyncio.create_task(
            a.service.broker.wait(review, until=time.time() + 30, fetch=a.service.fetch)
        )
        await asyncio.sleep(0.1)
        await b.approve(review)
        assert (await asyncio.wait_for(waiting, 10)).state is ReviewState.APPROVED
    finally:
        await a.close()
        await b.close()


async def test_shutdown_tells_every_held_request(replicas: list[Replica]) -> None:
    a, _ = replicas
    review = await a.open()
    waiting = asyncio.create_task(
        a.service.broker.wait(review, until=time.time() + 30, fetch=a.service.fetch)
    )
    await asyncio.sleep(0.1)
    await a.service.broker.close()
    with pytest.raises(Closing):
        await asyncio.wait_for(waiting, 5)
    assert (await a.service.get(review.id)).state is ReviewState.PENDING  # it stays pending


async def test_a_review_nobody_decides_expires_and_the_request_gets_a_new_one(
    store_url: str, tmp_path: Path
) -> None:
    now = [time.time()]
    replica = await Replica.start(store_url, tmp_path, clock=lambda: now[0])
    try:
        short = RULE._replace(expires_in=60.0)
        review = await replica.open("f1", short)
        now[0] += 61
        with pytest.raises(InvalidRequest, match="has expired and can no longer be decided"):
            await replica.approve(review)
        assert [r.id for r in await replica.trail.store.due_reviews(now[0])] == [review.id]
        again = await replica.open("f1", short)
        assert again.id != review.id
        assert (await replica.service.get(review.id)).state is ReviewState.EXPIRED
        assert await replica.actions(review) == ["created", "expired"]
    finally:
        await replica.close()


async def test_a_grant_window_covers_the_same_kind_of_request_until_it_ends(
    store_url: str, tmp_path: Path
) -> None:
    now = [time.time()]
    replica = await Replica.start(store_url, tmp_path, clock=lambda: now[0])
    try:
        assert await replica.service.use_grant(ALICE, "kind-1", "req_0") is None
        review = await replica.approve(await replica.open("f1", RULE._replace(grant_for=600.0)))
        assert review.grant_until == pytest.approx(now[0] + 600)
        grant = await replica.service.use_grant(ALICE, "kind-1", "req_1")
        assert grant is not None
        assert grant.review_id == review.id
        assert await replica.service.use_grant("demo/mallory", "kind-1", "req_2") is None
        assert await replica.service.use_grant(ALICE, "kind-2", "req_3") is None
        now[0] += 601
        assert await replica.service.use_grant(ALICE, "kind-1", "req_4") is None
        assert await replica.actions(review) == ["created", "approve", "granted"]
    finally:
        await replica.close()


async def test_refusals_change_nothing(replicas: list[Replica]) -> None:
    a, _ = replicas
    review = await a.open()
    attempts: list[dict[str, Any]] = [
        {"by": ALICE, "groups": frozenset({"leads"})},  # self-approval
        {"by": "demo/bob", "groups": frozenset({"developers"})},  # not a member
    ]
    for attempt in attempts:
        with pytest.raises(GatewayError):
            await a.service.decide(review.id, verdict="approve", reason="x", **attempt)
    stored = await a.service.get(review.id)
    assert (stored.state, stored.decisions) == (ReviewState.PENDING, ())
    assert await a.actions(review) == ["created"]
