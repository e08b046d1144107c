"""Deciding a case with the real engine and comparing the decision with what it expects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ztgate.config.model import IssuerConfig
from ztgate.core.context import RequestContext
from ztgate.core.decision import Decision, LimitCheck
from ztgate.offline.build import build_context, build_identity
from ztgate.offline.cases import Case, CaseError, Expectation
from ztgate.policy.engine import Policy
from ztgate.policy.request import from_context


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    passed: bool
    detail: str  # why it failed, or the decision it got
    decision: Decision | None = None


def decide(policy: Policy, ctx: RequestContext) -> Decision:
    """The gateway's decision for this context."""
    return policy.decide(from_context(ctx))


def run_case(
    policy: Policy, case: Case, issuers: Sequence[IssuerConfig] | None = None
) -> CaseResult:
    """Decide one case and compare the decision with what it expects."""
    try:
        ctx = build_context(build_identity(case.identity, issuers), case.request)
    except CaseError as exc:
        return CaseResult(case, False, str(exc))
    decision = decide(policy, ctx)
    return CaseResult(case, *_compare(policy, case.expect, decision), decision)


def _compare(policy: Policy, expect: Expectation, decision: Decision) -> tuple[bool, str]:
    got = describe(decision)
    if expect.rule is not None and expect.rule not in {r.rule.id for r in policy.rules}:
        return False, f"expected rule {expect.rule!r} is not in the policy; got {got}"
    wanted = expect.effect + (f" by {expect.rule}" if expect.rule else "")
    if decision.effect.value != expect.effect or (
        expect.rule is not None and expect.rule not in decision.rule_ids
    ):
        return False, f"expected {wanted}, got {got}"
    if expect.reason is not None and expect.reason not in decision.reason:
        return False, f"expected a reason containing {expect.reason!r}, got {got}"
    if expect.max_tokens is not None and decision.max_tokens != expect.max_tokens:
        cap = "no cap" if decision.max_tokens is None else f"a cap of {decision.max_tokens}"
        return False, f"expected a max_tokens cap of {expect.max_tokens}, got {cap}"
    return True, got


def describe(decision: Decision) -> str:
    """``allow by ci-summaries (allowed by rule ci-summaries)``, for one line of output."""
    by = ", ".join(decision.rule_ids) if decision.rule_ids else "default"
    return f"{decision.effect.value} by {by} ({decision.reason})"


def describe_limit(check: LimitCheck) -> str:
    return (
        f"{check.metric} per {check.window} <= {check.limit} for {check.owner} "
        f"(rule {check.rule_id})"
    )
