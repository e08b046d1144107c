"""The rules of a review, as pure functions: which request a review is for, who may decide
it, when it is approved, and what an approval covers. Nothing here reads a clock or a store.

- A review is bound to one request of one requester: the ``fingerprint`` hashes the
  requester, the method, the path, the query and the body as it would go upstream (masked).
  An approval of a request whose body then changed does not apply to the changed one.
- Only members of the approver groups decide, never the requester; one denial ends the
  review; an expired, cancelled or already decided review takes no more decisions.
- It is approved when every rule that asked is satisfied: ``any`` (one approval from a member
  of any of its groups), ``all`` (an approval from a member of each group) or a number (that
  many different approvers from its groups).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Literal

import orjson

from ztgate.core.decision import PolicyRequest
from ztgate.core.errors import InvalidRequest, NotFound, PermissionDenied
from ztgate.core.reviews import (
    Review,
    ReviewDecision,
    ReviewRequirement,
    ReviewState,
)

Verdict = Literal["approve", "deny", "cancel"]


def new_review_id() -> str:
    return "rev_" + secrets.token_hex(12)


def fingerprint(
    requester: str, method: str, path: str, query: bytes, body: Any, upload: str | None = None
) -> str:
    """The request as it would go upstream, bound to who sends it. ``body`` is the parsed
    (masked) payload, hashed with sorted keys; an upload is described by ``upload``."""
    document = {
        "requester": requester,
        "method": method,
        "path": path,
        "query": query.decode("ascii"),
        "body": body,
        "upload": upload,
    }
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


def grant_key(requester: str, rule_ids: Iterable[str], requests: Sequence[PolicyRequest]) -> str:
    """The kind of request a grant window covers: the same rules, model, skills and tools."""
    kind = {
        "requester": requester,
        "rules": sorted(set(rule_ids)),
        "models": sorted({r.model or "" for r in requests}),
        "skills": sorted({s for r in requests for s in r.skills}),
        "tools": sorted({t for r in requests for t in r.tools}),
    }
    return hashlib.sha256(orjson.dumps(kind, option=orjson.OPT_SORT_KEYS)).hexdigest()


def approver_groups(
    requirements: Sequence[ReviewRequirement], default: Iterable[str]
) -> frozenset[str]:
    """Every group whose members may decide (a rule naming none takes the defaults)."""
    fallback = frozenset(default)
    return frozenset(g for r in requirements for g in (r.approvers or fallback))


def satisfied(
    requirement: ReviewRequirement, approvals: Sequence[ReviewDecision], default: Iterable[str]
) -> bool:
    groups = requirement.approvers or frozenset(default)
    counting = [a for a in approvals if groups.intersection(a.groups)]
    if requirement.require == "all":
        return all(any(group in a.groups for a in counting) for group in groups)
    if requirement.require == "any":
        return bool(counting)
    return len({a.by for a in counting}) >= int(requirement.require)


def decide(
    review: Review,
    *,
    by: str,
    groups: frozenset[str],
    verdict: Verdict,
    reason: str,
    now: float,
    default_approvers: Iterable[str] = (),
) -> Review:
    """The review after one person's word, or a refusal that says why it does not count."""
    if verdict == "cancel":
        if by != review.requester:
            raise PermissionDenied(f"only the requester may cancel review {review.id}")
        _still_open(review, now, ReviewState.PENDING, ReviewState.APPROVED)
        decision = ReviewDecision(by, "cancel", reason, now)
        return review.with_decision(decision, ReviewState.CANCELLED)
    if by == review.requester:
        raise PermissionDenied(f"review {review.id}: a requester never decides their own request")
    counting = frozenset(groups & approver_groups(review.requirements, default_approvers))
    if not counting:
        raise PermissionDenied(
            f"review {review.id}: only members of {', '.join(sorted(review.approvers))} decide"
        )
    _still_open(review, now, ReviewState.PENDING)
    if any(d.by == by for d in review.decisions):
        raise InvalidRequest(f"review {review.id}: {by} has decided on it already")
    decision = ReviewDecision(by, verdict, reason, now, tuple(sorted(counting)))
    if verdict == "deny":
        return review.with_decision(decision, ReviewState.DENIED)
    approvals = [*(d for d in review.decisions if d.verdict == "approve"), decision]
    done = all(satisfied(r, approvals, default_approvers) for r in review.requirements)
    approved = review.with_decision(decision, ReviewState.APPROVED if done else review.state)
    grant_for = [r.grant_for for r in review.requirements if r.grant_for is not None]
    if done and grant_for and len(grant_for) == len(review.requirements):
        approved = replace(approved, grant_until=now + min(grant_for))
    return approved


def expire(review: Review, now: float) -> Review:
    """A pending review whose time ran out (raises if it is no longer pending)."""
    if review.state is not ReviewState.PENDING or review.expires_at > now:
        raise InvalidRequest(f"review {review.id} is not due to expire")
    return replace(review, state=ReviewState.EXPIRED, decided_at=now)


def execute(review: Review, now: float) -> Review:
    """An approved review's request runs: exactly once (raises if it may not run now)."""
    if review.state is not ReviewState.APPROVED:
        raise PermissionDenied(_not_runnable(review))
    return replace(review, state=ReviewState.EXECUTED, executed_at=now)


def _still_open(review: Review, now: float, *states: ReviewState) -> None:
    if review.state is ReviewState.PENDING and review.expires_at <= now:
        raise InvalidRequest(f"review {review.id} has expired and can no longer be decided")
    if review.state not in states:
        raise InvalidRequest(f"review {review.id} is {review.state.value}: it takes no decision")


def _not_runnable(review: Review) -> str:
    if review.state is ReviewState.EXECUTED:
        return f"review {review.id} has already run this request once; it needs a new review"
    return f"review {review.id} is {review.state.value}"


def missing(review_id: str) -> NotFound:
    return NotFound(f"there is no review {review_id}")
