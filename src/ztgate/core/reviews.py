"""A review in plain data: a request held for people to approve, what they need to judge it,
and every decision taken on it. The rules that move a review between states are pure functions
in ``review/rules.py``; where reviews are kept is the audit store's business."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal, NamedTuple

Wait = Literal["hold", "async"]


class ReviewRequirement(NamedTuple):
    """What one review rule asks before a request may run: who approves, and how many.

    ``require`` is ``any`` (one approval from a member of any group), ``all`` (an approval from
    a member of each group) or a number (that many different approvers from the groups)."""

    rule_id: str
    message: str
    approvers: frozenset[str]  # groups; empty: the configured default approvers
    require: str = "any"
    expires_in: float = 3600.0  # seconds a review waits for its decision
    grant_for: float | None = None  # seconds the approval also covers requests of its kind
    wait: Wait = "hold"
    caller_chooses_wait: bool = False  # the caller's ``ztgate-review-wait`` header may pick


class ReviewState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    EXECUTED = "executed"  # approved, and the request has run
    CANCELLED = "cancelled"


OPEN = (ReviewState.PENDING, ReviewState.APPROVED)


@dataclass(frozen=True, slots=True)
class ReviewDecision:
    """One person's word on a review."""

    by: str  # the approver's principal
    verdict: Literal["approve", "deny", "cancel"]
    reason: str
    at: float
    groups: tuple[str, ...] = ()  # the approver groups this person belonged to then


@dataclass(frozen=True, slots=True)
class Review:
    """A request held for approval. ``summary`` is what an approver sees (masked), never the
    request itself; ``fingerprint`` binds the review to the exact request and its requester."""

    id: str
    requester: str
    fingerprint: str
    grant_key: str  # the kind of request an approval's grant window covers
    request_id: str  # the request that asked first
    requirements: tuple[ReviewRequirement, ...]
    summary: Mapping[str, Any]
    state: ReviewState
    created_at: float
    expires_at: float
    decisions: tuple[ReviewDecision, ...] = ()
    decided_at: float | None = None
    executed_at: float | None = None
    grant_until: float | None = None
    approvers: frozenset[str] = field(default_factory=frozenset)  # every group that may decide

    def with_decision(self, decision: ReviewDecision, state: ReviewState) -> Review:
        decided = self.decided_at if state is ReviewState.PENDING else decision.at
        return replace(self, decisions=(*self.decisions, decision), state=state, decided_at=decided)


class ReviewQuery(NamedTuple):
    state: ReviewState | None = None
    requester: str | None = None
    since: float | None = None
    limit: int = 100


class Grant(NamedTuple):
    """An approval's window: the requester may repeat this kind of request until ``until``."""

    requester: str
    grant_key: str
    review_id: str
    until: float


def review_document(review: Review) -> dict[str, Any]:
    """A review as JSON data, as stored and as the admin API shows it."""
    return {
        "id": review.id,
        "state": review.state.value,
        "requester": review.requester,
        "fingerprint": review.fingerprint,
        "grant_key": review.grant_key,
        "request_id": review.request_id,
        "requirements": [
            r._asdict() | {"approvers": sorted(r.approvers)} for r in review.requirements
        ],
        "summary": dict(review.summary),
        "created_at": review.created_at,
        "expires_at": review.expires_at,
        "decided_at": review.decided_at,
        "executed_at": review.executed_at,
        "grant_until": review.grant_until,
        "approvers": sorted(review.approvers),
        "decisions": [
            {
                "by": d.by,
                "verdict": d.verdict,
                "reason": d.reason,
                "at": d.at,
                "groups": list(d.groups),
            }
            for d in review.decisions
        ],
    }


def review_from_document(document: Mapping[str, Any]) -> Review:
    return Review(
        id=document["id"],
        requester=document["requester"],
        fingerprint=document["fingerprint"],
        grant_key=document["grant_key"],
        request_id=document["request_id"],
        requirements=tuple(
            ReviewRequirement(**{**r, "approvers": frozenset(r["approvers"])})
            for r in document["requirements"]
        ),
        summary=document["summary"],
        state=ReviewState(document["state"]),
        created_at=document["created_at"],
        expires_at=document["expires_at"],
        decisions=tuple(
            ReviewDecision(d["by"], d["verdict"], d["reason"], d["at"], tuple(d["groups"]))
            for d in document["decisions"]
        ),
        decided_at=document["decided_at"],
        executed_at=document["executed_at"],
        grant_until=document["grant_until"],
        approvers=frozenset(document["approvers"]),
    )
