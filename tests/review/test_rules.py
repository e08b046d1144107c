"""The rules of a review, as pure functions: who may decide, when it is approved, which request
it is for, what an approval covers."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.policy.test_engine import request
from ztgate.core.decision import PolicyRequest
from ztgate.core.errors import InvalidRequest, PermissionDenied
from ztgate.core.reviews import (
    Review,
    ReviewRequirement,
    ReviewState,
    review_document,
    review_from_document,
)
from ztgate.review import rules

NOW = 1_800_000_000.0
ALICE = "demo/alice"


def requirement(**fields: Any) -> ReviewRequirement:
    values: dict[str, Any] = {
        "rule_id": "r1",
        "message": "needs a person",
        "approvers": frozenset({"security"}),
    }
    return ReviewRequirement(**(values | fields))


def review(*requirements: ReviewRequirement, **fields: Any) -> Review:
    chosen = requirements or (requirement(),)
    values: dict[str, Any] = {
        "id": "rev_" + "0" * 24,
        "requester": ALICE,
        "fingerprint": "f" * 64,
        "grant_key": "g" * 64,
        "request_id": "req_1",
        "requirements": chosen,
        "summary": {"model": "claude-opus-5"},
        "state": ReviewState.PENDING,
        "created_at": NOW,
        "expires_at": NOW + 3600,
        "approvers": rules.approver_groups(chosen, ()),
    }
    return Review(**(values | fields))


def decide(
    target: Review, by: str, *groups: str, verdict: Any = "approve", at: float = NOW
) -> Review:
    return rules.decide(
        target, by=by, groups=frozenset(groups), verdict=verdict, reason="ok", now=at
    )


# -- who decides ---------------------------------------------------------------------------------


def test_a_requester_never_approves_their_own_request() -> None:
    with pytest.raises(PermissionDenied, match="a requester never decides their own request"):
        decide(review(), ALICE, "security")


def test_only_members_of_the_approver_groups_decide() -> None:
    with pytest.raises(PermissionDenied, match="only members of security decide"):
        decide(review(), "demo/bob", "developers")
    with pytest.raises(PermissionDenied):
        decide(review(), "demo/bob", "developers", verdict="deny")


def test_one_approval_from_any_group_is_enough_by_default() -> None:
    target = review(requirement(approvers=frozenset({"security", "leads"})))
    approved = decide(target, "demo/bob", "leads")
    assert approved.state is ReviewState.APPROVED
    assert approved.decided_at == NOW
    assert approved.decisions[-1].groups == ("leads",)


def test_all_needs_an_approval_from_a_member_of_each_group() -> None:
    target = review(requirement(approvers=frozenset({"security", "leads"}), require="all"))
    half = decide(target, "demo/bob", "leads")
    assert half.state is ReviewState.PENDING
    assert half.decided_at is None
    with pytest.raises(InvalidRequest, match="has decided on it already"):
        decide(half, "demo/bob", "leads")
    assert decide(half, "demo/carol", "security").state is ReviewState.APPROVED


def test_a_count_needs_that_many_different_approvers() -> None:
    target = review(requirement(require="2"))
    first = decide(target, "demo/bob", "security")
    assert first.state is ReviewState.PENDING
    assert decide(first, "demo/carol", "security").state is ReviewState.APPROVED


def test_every_rule_that_asked_must_be_satisfied() -> None:
    target = review(
        requirement(rule_id="cards", approvers=frozenset({"payments"})),
        requirement(rule_id="opus", approvers=frozenset({"finance"})),
    )
    assert target.approvers == {"payments", "finance"}
    half = decide(target, "demo/bob", "payments")
    assert half.state is ReviewState.PENDING
    assert decide(half, "demo/carol", "finance").state is ReviewState.APPROVED


def test_a_rule_naming_no_approvers_takes_the_configured_ones() -> None:
    target = review(requirement(approvers=frozenset()))
    assert rules.approver_groups(target.requirements, ("oncall",)) == {"oncall"}
    approved = rules.decide(
        target,
        by="demo/bob",
        groups=frozenset({"oncall"}),
        verdict="approve",
        reason="ok",
        now=NOW,
        default_approvers=("oncall",),
    )
    assert approved.state is ReviewState.APPROVED


def test_one_denial_ends_the_review() -> None:
    target = review(requirement(require="all", approvers=frozenset({"security", "leads"})))
    half = decide(target, "demo/bob", "leads")
    denied = decide(half, "demo/carol", "security", verdict="deny")
    assert denied.state is ReviewState.DENIED
    with pytest.raises(InvalidRequest, match="is denied: it takes no decision"):
        decide(denied, "demo/dave", "security")


def test_an_expired_review_cannot_be_approved() -> None:
    target = review()
    with pytest.raises(InvalidRequest, match="has expired"):
        decide(target, "demo/bob", "security", at=target.expires_at)
    expired = rules.expire(target, target.expires_at)
    assert expired.state is ReviewState.EXPIRED
    with pytest.raises(InvalidRequest, match="is expired"):
        decide(expired, "demo/bob", "security", at=NOW)
    with pytest.raises(InvalidRequest, match="not due to expire"):
        rules.expire(target, NOW)


def test_only_the_requester_cancels_and_a_cancelled_review_takes_no_approval() -> None:
    with pytest.raises(PermissionDenied, match="only the requester may cancel"):
        decide(review(), "demo/bob", "security", verdict="cancel")
    cancelled = decide(review(), ALICE, verdict="cancel")
    assert cancelled.state is ReviewState.CANCELLED
    with pytest.raises(InvalidRequest, match="is cancelled"):
        decide(cancelled, "demo/bob", "security")


# -- running once --------------------------------------------------------------------------------


def test_an_approved_review_runs_once() -> None:
    approved = decide(review(), "demo/bob", "security")
    done = rules.execute(approved, NOW + 1)
    assert (done.state, done.executed_at) == (ReviewState.EXECUTED, NOW + 1)
    with pytest.raises(PermissionDenied, match="has already run this request once"):
        rules.execute(done, NOW + 2)
    with pytest.raises(PermissionDenied, match="is pending"):
        rules.execute(review(), NOW)


def test_a_grant_window_needs_every_rule_to_grant_and_takes_the_shortest() -> None:
    both = review(
        requirement(rule_id="a", grant_for=600.0), requirement(rule_id="b", grant_for=60.0)
    )
    assert decide(both, "demo/bob", "security").grant_until == NOW + 60
    one = review(requirement(rule_id="a", grant_for=600.0), requirement(rule_id="b"))
    assert decide(one, "demo/bob", "security").grant_until is None


# -- which request -------------------------------------------------------------------------------

# What a parsed body holds (orjson reads integers past 64 bits as floats).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    body=st.dictionaries(st.text(max_size=6), JSON, max_size=4), other=JSON, key=st.text(max_size=6)
)
def test_a_changed_body_is_another_request(body: dict[str, Any], other: Any, key: str) -> None:
    """An approval binds the exact body: any change anywhere gives another fingerprint."""
    changed = body | {key: other}
    same = rules.fingerprint(ALICE, "POST", "/v1/messages", b"", body)
    assert (
        rules.fingerprint(ALICE, "POST", "/v1/messages", b"", dict(reversed(body.items()))) == same
    )
    if changed != body:
        assert rules.fingerprint(ALICE, "POST", "/v1/messages", b"", changed) != same


def test_the_fingerprint_binds_requester_path_query_and_upload() -> None:
    base = rules.fingerprint(ALICE, "POST", "/v1/messages", b"", {"a": 1})
    assert rules.fingerprint("demo/bob", "POST", "/v1/messages", b"", {"a": 1}) != base
    assert rules.fingerprint(ALICE, "POST", "/v1/messages/count_tokens", b"", {"a": 1}) != base
    assert rules.fingerprint(ALICE, "POST", "/v1/messages", b"beta=true", {"a": 1}) != base
    upload = rules.fingerprint(ALICE, "POST", "/v1/files", b"", None, upload="text/plain; 10")
    assert (
        rules.fingerprint(ALICE, "POST", "/v1/files", b"", None, upload="text/plain; 11") != upload
    )


def _request(**fields: Any) -> PolicyRequest:
    return request(**({"model": "claude-opus-5", "tools": ("Bash",)} | fields))


def test_a_grant_covers_the_same_rules_model_skills_and_tools_only() -> None:
    kind = rules.grant_key(ALICE, ["r1"], [_request()])
    # Another prompt, another max_tokens: the same kind of request.
    assert rules.grant_key(ALICE, ["r1"], [_request(max_tokens=10, stream=True)]) == kind
    assert rules.grant_key("demo/bob", ["r1"], [_request()]) != kind
    assert rules.grant_key(ALICE, ["r2"], [_request()]) != kind
    assert rules.grant_key(ALICE, ["r1"], [_request(model="claude-haiku-5")]) != kind
    assert rules.grant_key(ALICE, ["r1"], [_request(tools=("Bash", "Write"))]) != kind
    assert rules.grant_key(ALICE, ["r1"], [_request(skills=("xlsx",))]) != kind


def test_a_review_survives_its_document() -> None:
    approved = decide(review(requirement(grant_for=60.0)), "demo/bob", "security")
    assert review_from_document(review_document(approved)) == approved
