"""What approvers (and webhooks) see of a held request: enough to judge, never a value
inspection finds, wherever in the prompt or the last tool result it sits."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.inspection.test_inspector import context
from tests.inspection.test_masking import ANTHROPIC, EMAIL, full_scanner
from ztgate.core.decision import Decision, Effect, PolicyRequest
from ztgate.core.reviews import ReviewRequirement
from ztgate.inspection.inspector import ScanningInspector
from ztgate.review.summary import EXCERPT, summarize

SECRETS = [ANTHROPIC, EMAIL, "AKIAQYLPMN5HHHFPZAM2", "4111 1111 1111 1111"]
DECISION = Decision(
    Effect.REVIEW,
    "needs a lead",
    ("r1",),
    reviews=(ReviewRequirement("r1", "needs a lead", frozenset({"leads"})),),
)
INSPECTOR = ScanningInspector(full_scanner())
FILLER = st.text(alphabet="abcdefghij klmnop\n.,", max_size=2 * EXCERPT)


def _summary(payload: dict[str, Any]) -> dict[str, Any]:
    ctx = context(payload)
    INSPECTOR.inspect_request(ctx)
    ctx.policy_input = (
        PolicyRequest("demo/a", "demo", frozenset(), frozenset(), {}, "messages", "POST", "m"),
    )
    return summarize(ctx, DECISION, INSPECTOR.redacted)


@settings(max_examples=60, deadline=None)
@given(before=FILLER, after=FILLER, secret=st.sampled_from(SECRETS))
def test_no_value_inspection_finds_reaches_an_approver(
    before: str, after: str, secret: str
) -> None:
    """A value anywhere, including across the excerpt's cut, is redacted whole."""
    text = f"{before} {secret} {after}"
    payload = {
        "model": "m",
        "messages": [
            {"role": "user", "content": text},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "x",
                                               "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",
                                          "content": [{"type": "text", "text": text}]}]},
        ],
    }  # fmt: skip
    summary = _summary(payload)
    shown = f"{summary['prompt_excerpt']}\n{summary['tool_result_excerpt']}"
    assert secret not in shown
    for piece in secret.split():
        if len(piece) >= 8:
            assert piece not in shown
    assert len(summary["tool_result_excerpt"]) <= EXCERPT + 1


def test_the_summary_names_what_an_approver_judges_by() -> None:
    summary = _summary({"model": "m", "messages": [{"role": "user", "content": "plain text"}]})
    assert summary["prompt_excerpt"] == "plain text"
    assert summary["tool_result_excerpt"] is None
    assert summary["rules"] == [{"id": "r1", "message": "needs a lead", "approvers": ["leads"]}]
    assert (summary["method"], summary["path"], summary["endpoint"]) == (
        "POST",
        "/v1/messages",
        "messages",
    )
