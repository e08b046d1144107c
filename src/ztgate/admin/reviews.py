"""The reviews part of the admin API: list, show, approve, deny, cancel, and Slack's buttons.

Open to every verified identity, not only to ``admin.groups``: a review is seen by its
requester, by members of the groups that may decide it, and by admins; it is decided only by
members of those groups (never by its requester), and cancelled only by its requester. The
rules themselves are ``review/rules.py``; here they meet HTTP.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ztgate.admin.parameters import REVIEWS, is_number, read_query
from ztgate.audit.search import QueryError, parse_time
from ztgate.config.model import SlackConfig
from ztgate.core.errors import AuthenticationFailed, InvalidRequest
from ztgate.core.identity import Identity
from ztgate.core.reviews import ReviewQuery, ReviewState, review_document
from ztgate.review import rules, slack
from ztgate.review.service import ReviewService

MAX_REASON = 2000


@dataclass(frozen=True, slots=True)
class Caller:
    identity: Identity
    admin: bool  # a member of admin.groups: sees every review


class ReviewsAPI:
    def __init__(
        self,
        service: ReviewService,
        slack_config: SlackConfig | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._service = service
        self._slack = slack_config
        self._clock = clock

    async def list(self, caller: Caller, query: Mapping[str, str]) -> Any:
        """The reviews ``caller`` may see, by the filters of ``parameters.REVIEWS`` (checked
        again here, so that no caller of this reaches the store with an unchecked one)."""
        query = read_query(REVIEWS, query)
        state = ReviewState(query["state"]) if "state" in query else None
        limit = int(query.get("limit", "100"))
        since = _since(query["since"], self._clock()) if "since" in query else None
        found = await self._service.list(ReviewQuery(state, query.get("requester"), since, limit))
        shown = [r for r in found if caller.admin or self._may_see(caller, r)]
        return {"reviews": [review_document(r) for r in shown], "count": len(shown)}

    async def get(self, caller: Caller, review_id: str) -> Any:
        review = await self._service.get(review_id)
        if not (caller.admin or self._may_see(caller, review)):
            raise rules.missing(review_id)  # what one may not see does not exist for one
        return review_document(review)

    async def decide(
        self, caller: Caller, review_id: str, verdict: rules.Verdict, body: bytes
    ) -> Any:
        review = await self._service.decide(
            review_id,
            by=caller.identity.principal,
            groups=caller.identity.groups,
            verdict=verdict,
            reason=_reason(body),
        )
        return review_document(review)

    async def slack_action(self, headers: dict[bytes, bytes], body: bytes) -> Any:
        """A click on a Slack message's Approve or Deny button, signed by Slack."""
        if self._slack is None:
            raise InvalidRequest("no Slack app is configured for reviews (reviews.slack)")
        secret = self._slack.signing_secret.get_secret_value().encode()
        timestamp = headers.get(b"x-slack-request-timestamp", b"").decode("latin-1")
        signature = headers.get(b"x-slack-signature", b"").decode("latin-1")
        if not slack.verify(secret, timestamp, signature, body, now=self._clock()):
            raise AuthenticationFailed("the Slack signature does not match, or is too old")
        action = slack.parse_action(body)
        if action is None:
            raise InvalidRequest("not a click on a review's Approve or Deny button")
        approver = self._slack.users.get(action.user)
        if approver is None:
            raise AuthenticationFailed("this Slack user is not named under reviews.slack.users")
        review = await self._service.decide(
            action.review_id,
            by=approver.principal,
            groups=frozenset(approver.groups),
            verdict="approve" if action.verdict == "approve" else "deny",
            reason=f"via Slack ({action.user})",
        )
        return {
            "response_type": "ephemeral",
            "text": f"Review {review.id} is {review.state.value}.",
        }

    def _may_see(self, caller: Caller, review: Any) -> bool:
        identity = caller.identity
        return self._service.may_see(review, identity.principal, identity.groups)


def _since(text: str, now: float) -> float:
    """Seconds since the epoch as a number, or a look-back or ISO 8601 time as the audit's
    filters take them (``1d``, ``2025-06-01``)."""
    if is_number(text):
        seconds = float(text)
        if not math.isfinite(seconds):
            raise InvalidRequest(f"since: {text!r} is not a finite number of seconds")
        return seconds
    try:
        return parse_time(text, now)
    except QueryError as exc:
        raise InvalidRequest(f"since: {exc}") from None


def _reason(body: bytes) -> str:
    """The decision's reason: ``{"reason": "..."}``, required (who decided is not enough)."""
    try:
        document = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        raise InvalidRequest('the body must be JSON: {"reason": "..."}') from None
    reason = document.get("reason") if isinstance(document, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidRequest('say why: {"reason": "..."}')
    if len(reason) > MAX_REASON:
        raise InvalidRequest(f"reason: at most {MAX_REASON} characters")
    return reason.strip()
