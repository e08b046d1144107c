"""Guardrail conditions and rule packs in a policy: pure evaluation over plain facts, and
every mistake refused at load with the rule or check named."""

from __future__ import annotations

from typing import Any

import pytest

from ztgate.core.decision import Effect, PolicyRequest, policy_input_json
from ztgate.core.guardrails import GuardrailHit
from ztgate.offline.simulate import policy_requests
from ztgate.policy.loader import PolicyError, Serving, build_policy

BASE = PolicyRequest("demo/a", "demo", frozenset(), frozenset(), {}, "messages", "POST")


def request(*hits: GuardrailHit) -> PolicyRequest:
    return BASE._replace(guardrails=hits)


def hit(category: str, where: str, score: float, *checks: str) -> GuardrailHit:
    return GuardrailHit(category, where, score, frozenset(checks or {"c"}))


def decide(when: dict[str, Any], req: PolicyRequest) -> Effect:
    policy, _ = build_policy(
        {"rules": [{"id": "all", "effect": "allow"}, {"id": "g", "effect": "deny", "when": when}]}
    )
    return policy.evaluate(req).effect


def test_a_list_names_categories_at_the_default_threshold() -> None:
    when = {"guardrails": ["prompt_injection"]}
    assert decide(when, request(hit("prompt_injection", "user", 0.5))) is Effect.DENY
    assert decide(when, request(hit("prompt_injection", "user", 0.49))) is Effect.ALLOW
    assert decide(when, request(hit("jailbreak", "user", 0.9))) is Effect.ALLOW
    assert decide(when, request()) is Effect.ALLOW


def test_places_and_thresholds() -> None:
    when = {
        "guardrails": {"any": ["indirect_injection"], "in": ["tool_result"], "score_at_least": 0.8}
    }
    assert decide(when, request(hit("indirect_injection", "tool_result", 0.8))) is Effect.DENY
    assert decide(when, request(hit("indirect_injection", "document", 0.9))) is Effect.ALLOW
    assert decide(when, request(hit("indirect_injection", "tool_result", 0.79))) is Effect.ALLOW


def test_a_check_can_be_named_instead_of_a_category() -> None:
    when = {"guardrails": ["exfiltration.markdown_image"]}
    found = hit("exfiltration", "output", 0.6, "exfiltration.markdown_image")
    assert decide(when, request(found)) is Effect.DENY
    assert decide(when, request(hit("exfiltration", "user", 0.9, "other"))) is Effect.ALLOW


def pack(**check: Any) -> dict[str, Any]:
    return {"guardrails": {"packs": [{"id": "p", "checks": [{"message": "m", **check}]}]}}


def rule(**when: Any) -> dict[str, Any]:
    return {"rules": [{"id": "r", "effect": "deny", "when": when}]}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"guardrails": {"disable": ["nope"]}}, "'nope' is not a built-in check"),
        (
            pack(id="injection.ignore_instructions", category="jailbreak", words=["x"]),
            "shadows a built-in check",
        ),
        (pack(id="p.bad", category="jailbreak", patterns=["a+"]), "'p.bad'"),
        (pack(id="p.none", category="jailbreak"), "patterns or words"),
        (pack(id="p.x", category="pii", words=["x"]), "category"),
        (rule(guardrails=[]), "at least one"),
        (rule(guardrails={"any": ["x"], "in": ["moon"]}), "when.guardrails.in.0"),
    ],
)
def test_mistakes_are_refused_at_load(document: dict[str, Any], problem: str) -> None:
    with pytest.raises(PolicyError, match="invalid") as info:
        build_policy(document)
    assert problem in str(info.value)


def test_a_misspelt_check_is_refused_when_the_gateway_knows_its_checks() -> None:
    document = {"rules": [{"id": "r", "effect": "deny", "when": {"guardrails": ["jailbreak.dna"]}}]}
    with pytest.raises(PolicyError, match=r"unknown detector or guardrail check 'jailbreak\.dna'"):
        build_policy(document, serving=Serving(frozenset({"email", "jailbreak.dan"})))
    document["rules"][0]["when"]["guardrails"] = ["jailbreak.dan", "jailbreak"]
    build_policy(document, serving=Serving(frozenset({"email", "jailbreak.dan"})))


def test_a_pack_check_longer_than_the_holdback_is_refused() -> None:
    check = {"id": "p.long", "category": "jailbreak", "message": "m", "patterns": ["(?:ab ){100}"]}
    document = {"guardrails": {"packs": [{"id": "p", "checks": [check]}]}}
    build_policy(document)
    with pytest.raises(PolicyError, match=r"p\.long"):
        build_policy(document, serving=Serving(frozenset({"email"}), holdback=128))


def test_hits_are_recorded_and_replayed_exactly() -> None:
    req = request(hit("indirect_injection", "tool_result", 0.91, "a", "b"))
    (again,) = policy_requests(policy_input_json([req]))
    assert again == req
