"""The ``mask`` obligation: its shape, how rules combine it, and detector names checked at load."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tests.policy.test_engine import batch, inner, policy, request
from ztgate.core.findings import Finding
from ztgate.policy.loader import PolicyError, Serving, build_policy

EMAIL = Finding("email", "pii", "EMAIL", 0, 1)
JWT = Finding("jwt", "secret", "JWT", 0, 1)
WORD = Finding("codename", "custom", "CODENAME", 0, 1)


def allow(rule_id: str, mask: dict[str, Any] | None, **when: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"id": rule_id, "effect": "allow", "when": when}
    if mask is not None:
        rule["mask"] = mask
    return rule


def test_categories_default_to_all_and_detectors_beat_their_category() -> None:
    decision = policy(
        allow("r", {"action": "redact", "detectors": {"email": "pseudonymize"}})
    ).evaluate(request())
    assert decision.mask is not None
    assert decision.mask.action_for(EMAIL) == "pseudonymize"
    assert decision.mask.action_for(JWT) == "redact"
    assert decision.mask.action_for(WORD) == "redact"


def test_listed_categories_only() -> None:
    decision = policy(allow("r", {"categories": ["secret"], "action": "hash"})).evaluate(request())
    assert decision.mask is not None
    assert decision.mask.action_for(JWT) == "hash"
    assert decision.mask.action_for(EMAIL) is None


def test_every_matching_rule_contributes_and_the_strictest_action_wins() -> None:
    decision = policy(
        allow("everyone", {"detectors": {"email": "pseudonymize", "jwt": "report"}}),
        allow("contractors", {"categories": ["pii"], "action": "redact"}, groups=["contractors"]),
        {"id": "cards", "effect": "review", "when": {"findings": ["payment_card"]}},
    ).evaluate(request(groups={"contractors"}))
    assert decision.mask is not None
    assert decision.mask.action_for(EMAIL) == "redact"
    assert decision.mask.action_for(JWT) == "report"
    assert decision.rule_ids == ("everyone", "contractors")


def test_a_review_rule_carries_its_mask_and_a_rule_without_mask_adds_none() -> None:
    compiled = policy(
        allow("plain", None),
        {
            "id": "cards",
            "effect": "review",
            "when": {"findings": ["payment_card"]},
            "mask": {"detectors": {"payment_card": "redact"}},
        },
    )
    assert compiled.evaluate(request()).mask is None
    reviewed = compiled.evaluate(request(findings={"payment_card"}))
    assert reviewed.mask is not None
    assert reviewed.mask.action_for(Finding("payment_card", "pii", "X", 0, 1)) == "redact"


def test_a_batch_combines_the_masks_of_its_requests() -> None:
    compiled = policy(
        allow("batches", {"detectors": {"email": "hash"}}, endpoints=["batches"]),
        allow("secrets", {"categories": ["secret"], "action": "block"}, endpoints=["batches"]),
    )
    decision = compiled.decide(batch(inner("a"), inner("b")))
    assert decision.mask is not None
    assert decision.mask.action_for(EMAIL) == "hash"
    assert decision.mask.action_for(JWT) == "block"


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        ({}, "name an action"),
        ({"categories": ["pii"]}, "categories need an action"),
        ({"categories": [], "action": "redact"}, "ambiguous"),
        ({"action": "erase"}, "Input should be"),
        ({"detectors": {"email": "shred"}}, "Input should be"),
        ({"action": "redact", "extra": 1}, "Extra inputs"),
    ],
)
def test_a_malformed_mask_is_refused(mask: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        policy(allow("r", mask))


def test_deny_rules_take_no_mask() -> None:
    with pytest.raises(ValidationError, match="not deny"):
        policy({"id": "d", "effect": "deny", "mask": {"action": "redact"}})


def test_unknown_detectors_are_errors_when_the_gateway_knows_its_detectors() -> None:
    document = {
        "rules": [
            allow("r", {"detectors": {"emial": "block"}}),
            {"id": "f", "effect": "review", "when": {"findings": ["credit_card"]}},
        ]
    }
    build_policy(document)  # without the catalogue (``ztgate policy check``): shape only
    with pytest.raises(PolicyError) as info:
        build_policy(document, serving=Serving(frozenset({"email", "payment_card"})))
    assert "rule 'r': unknown detector or guardrail check 'emial'" in str(info.value)
    assert "rule 'f': unknown detector or guardrail check 'credit_card'" in str(info.value)
    with pytest.raises(PolicyError, match="switched off"):
        build_policy(document, serving=Serving(frozenset()))
