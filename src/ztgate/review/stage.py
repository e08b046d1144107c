"""The review stage: a request policy sends to review waits for people, then runs once.

``hold`` (the default, and what unchanged clients need): a streamed request gets its response
headers at once and a ``ping`` every ``reviews.ping_interval`` while it waits, then the real
stream on approval, or an ``error`` event on denial or expiry; a request that is not streamed
waits up to ``reviews.hold_timeout``, then gets 403 with the review's id (it stays pending:
sending the same request again waits on the same review). ``async``: 403 at once with the
review's id and where to approve it; once approved, the same requester sending the same
request again runs it, exactly once. An approval with a grant window lets the requester repeat
that kind of request without a new review until the window ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ztgate.core.context import RequestContext
from ztgate.core.decision import Decision, Effect
from ztgate.core.errors import PermissionDenied, ServiceUnavailable
from ztgate.core.reviews import Review, ReviewState, Wait
from ztgate.core.stages import HeldResponse
from ztgate.review import rules
from ztgate.review.broker import Closing
from ztgate.review.service import ReviewService
from ztgate.review.summary import Redact, summarize

WAIT_HEADER = b"ztgate-review-wait"
API_PATH = "/ztgate/api/v1/reviews/"


class ReviewPending(PermissionDenied):
    """The request waits for approval: its review's id, and where to approve it."""

    def __init__(self, review: Review, *, waited: bool) -> None:
        url = str(review.summary.get("url", ""))
        what = "waited for approval and is still pending" if waited else "needs approval"
        super().__init__(
            f"this request {what}: review {review.id} ({_rules(review)}); approve it at "
            f"{url} or with `ztgate reviews approve {review.id}`, then send the request again"
        )
        self.review_id = review.id
        self.url = url

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            *super().headers(),
            (b"ztgate-review-id", self.review_id.encode()),
            (b"ztgate-review-url", self.url.encode()),
        ]


def _rules(review: Review) -> str:
    """Which rules asked and why; for one rule, the decision's reason, which names the request
    of a batch that needs the review."""
    if len(review.requirements) == 1:
        reason = review.summary.get("reason") or review.requirements[0].message
        return f"rule {review.requirements[0].rule_id}: {reason}"
    return "; ".join(f"rule {r.rule_id}: {r.message}" for r in review.requirements)


def _refused(review: Review) -> PermissionDenied:
    last = review.decisions[-1] if review.decisions else None
    if review.state is ReviewState.DENIED and last is not None:
        return PermissionDenied(f"review {review.id} was denied by {last.by}: {last.reason}")
    if review.state is ReviewState.EXPIRED:
        return PermissionDenied(f"review {review.id} expired before anyone approved it")
    if review.state is ReviewState.CANCELLED:
        return PermissionDenied(f"review {review.id} was cancelled by its requester")
    return PermissionDenied(f"review {review.id} is {review.state.value}")


class HoldingReviewer:
    def __init__(
        self,
        service: ReviewService,
        redact: Redact,
        *,
        hold_timeout: float,
        ping_interval: float,
        max_held: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.service = service
        self._redact = redact
        self._hold_timeout = hold_timeout
        self._ping_interval = ping_interval
        self._max_held = max_held
        self._clock = clock

    async def hold(self, ctx: RequestContext, held: HeldResponse) -> None:
        decision = ctx.decision
        if decision is None or decision.effect is not Effect.REVIEW:
            return
        assert ctx.identity is not None
        requester = ctx.identity.principal
        kind = rules.grant_key(requester, decision.rule_ids, ctx.policy_input)
        grant = await self.service.use_grant(requester, kind, ctx.request_id)
        if grant is not None:
            ctx.review_id = grant.review_id
            return
        review = await self.service.open(
            requester=requester,
            fingerprint=rules.fingerprint(
                requester,
                ctx.method,
                ctx.path,
                ctx.forwarded_query,
                ctx.payload,
                upload=_upload(ctx),
            ),
            grant_key=kind,
            request_id=ctx.request_id,
            requirements=decision.reviews,
            summary=summarize(ctx, decision, self._redact),
            url=lambda review_id: f"{ctx.base_url}{API_PATH}{review_id}",
        )
        ctx.review_id = review.id
        if review.state is ReviewState.PENDING:
            # Held requests each keep a connection and some memory: past the limit, the
            # answer is the async one (the review goes on; the caller sends again later).
            if _wait(ctx, decision) == "async" or self.service.broker.waiting >= self._max_held:
                raise ReviewPending(review, waited=False)
            review = await self._wait(ctx, review, held)
        if review.state is ReviewState.PENDING:
            raise ReviewPending(review, waited=True)
        if review.state is not ReviewState.APPROVED:
            raise _refused(review)
        await self.service.execute(review, ctx.request_id)

    async def _wait(self, ctx: RequestContext, review: Review, held: HeldResponse) -> Review:
        if ctx.streaming:
            await held.begin()
            until = review.expires_at  # the caller keeps listening: the pings see to that
        else:
            until = min(review.expires_at, self._clock() + self._hold_timeout)
        try:
            return await self.service.broker.wait(
                review,
                until=until,
                fetch=self.service.fetch,
                tick=held.ping if ctx.streaming else None,
                every=self._ping_interval,
            )
        except Closing:
            raise restarting(review.id) from None


def restarting(review_id: str | None) -> ServiceUnavailable:
    """What a held request hears when the gateway shuts down while it waits."""
    return ServiceUnavailable(
        f"the gateway is restarting; review {review_id} stays pending: send the request again "
        "to keep waiting on it",
        retry_after=1,
    )


def _wait(ctx: RequestContext, decision: Decision) -> Wait:
    """The rule's way to wait, or the caller's where every rule that asked allows a choice."""
    chosen = ctx.header(WAIT_HEADER)
    if chosen in (b"hold", b"async") and all(r.caller_chooses_wait for r in decision.reviews):
        return "hold" if chosen == b"hold" else "async"
    return decision.reviews[0].wait if decision.reviews else "hold"


def _upload(ctx: RequestContext) -> str | None:
    """An upload is not read before it goes upstream: its review is bound to what it says it
    is (type and length)."""
    if ctx.payload is not None:
        return None
    kind = (ctx.header(b"content-type") or b"").decode("latin-1")
    return f"{kind}; {ctx.header(b'content-length') or b''!r}"
