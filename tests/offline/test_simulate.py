"""`policy simulate`'s core: recorded requests decided again by a new policy, on a table of
policy changes. Events are built as the gateway records them: the facts come from the same
context-to-facts converter, the recorded decision from the old policy."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from ztgate.audit.events import StoredEvent
from ztgate.core.decision import PolicyRequest, policy_input_json
from ztgate.core.identity import Identity
from ztgate.offline.build import build_context
from ztgate.offline.cases import parse_request
from ztgate.offline.simulate import PolicyInputError, policy_requests, simulate
from ztgate.policy.engine import Policy
from ztgate.policy.loader import build_policy
from ztgate.policy.request import from_context

OLD_RULES: list[dict[str, Any]] = [
    {
        "id": "dev-sonnet",
        "when": {"groups": ["dev"], "models": ["claude-sonnet-*"], "tools": ["*"]},
        "effect": "allow",
    },
    {"id": "ci-haiku", "when": {"groups": ["ci"], "models": ["claude-haiku-*"]}, "effect": "allow"},
    {"id": "batches", "when": {"groups": ["dev"], "endpoints": ["batches"]}, "effect": "allow"},
    {"id": "no-computer", "when": {"tools": ["computer_*"]}, "effect": "deny"},
]

DEV = Identity("demo", "https://idp", "alice", {"sub": "alice"}, 0.0, frozenset({"dev"}))
CI = Identity(
    "github", "https://gh", "repo:acme/app", {"sub": "repo:acme/app"}, 0.0, frozenset({"ci"})
)


def _policy(rules: list[dict[str, Any]], default: str = "deny") -> Policy:
    return build_policy({"default": default, "rules": rules})[0]


def _messages(model: str, *, tools: tuple[str, ...] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    }
    if tools:
        body["tools"] = [{"type": t, "name": t.split("_")[0]} for t in tools]
    return {"method": "POST", "path": "/v1/messages", "body": body}


def _batch(*models: str) -> dict[str, Any]:
    requests = [
        {"custom_id": f"r{i}", "params": _messages(m)["body"]} for i, m in enumerate(models)
    ]
    return {"method": "POST", "path": "/v1/messages/batches", "body": {"requests": requests}}


def _recorded(seq: int, identity: Identity, request: dict[str, Any], old: Policy) -> StoredEvent:
    """A request event as the gateway writes it: the facts and the decision it took."""
    facts = from_context(build_context(identity, parse_request(request)))
    decision = old.decide(facts)
    data = {
        "principal": identity.principal,
        "model": request["body"].get("model"),
        "decision": {
            "effect": decision.effect.value,
            "reason": decision.reason,
            "rule_ids": list(decision.rule_ids),
        },
        "policy_input": policy_input_json(facts),
    }
    body = orjson.dumps({"kind": "request", "data": data})
    return StoredEvent(
        seq, "request", 1_750_000_000.0 + seq, f"req_{seq}", identity.principal,
        body, b"d", b"p", b"h",
    )  # fmt: skip


TRAFFIC = [
    (DEV, _messages("claude-sonnet-5-5")),
    (DEV, _messages("claude-sonnet-5-5", tools=("bash_20250124",))),
    (CI, _messages("claude-haiku-5-5")),
    (DEV, _messages("claude-opus-5")),  # denied by default under the old policy
    (DEV, _batch("claude-sonnet-5-5", "claude-sonnet-5-5")),
]


def _events(old: Policy) -> list[StoredEvent]:
    return [_recorded(i + 1, who, what, old) for i, (who, what) in enumerate(TRAFFIC)]


def _rules(*, drop: str | None = None, **replace: dict[str, Any]) -> list[dict[str, Any]]:
    return [replace.get(r["id"].replace("-", "_"), r) for r in OLD_RULES if r["id"] != drop]


DEV_OPUS = {"id": "dev-opus", "when": {"groups": ["dev"], "models": ["*opus*"]}, "effect": "allow"}
REVIEW_SONNET = {"id": "review-sonnet", "when": {"models": ["claude-sonnet-*"]}, "effect": "review"}
NO_SONNET_BATCHES = {
    "id": "no-sonnet-batches",
    "when": {"endpoints": ["batches"], "models": ["claude-sonnet-*"]},
    "effect": "deny",
}


NO_BASH = {"id": "no-bash", "when": {"tools": ["bash_*"]}, "effect": "deny"}

# (name, new rules, {seq: (old effect, new effect)}, a fragment of the first change's "why")
CHANGES: list[tuple[str, list[dict[str, Any]], dict[int, tuple[str, str]], str]] = [
    ("the same policy", OLD_RULES, {}, ""),
    (
        "a new deny rule",
        [*OLD_RULES, NO_BASH],
        {2: ("allow", "deny")},
        "rule dev-sonnet (allow) still matches, but deny by no-bash takes precedence",
    ),
    (
        "an allow rule removed",
        _rules(drop="ci-haiku"),
        {3: ("allow", "deny")},
        "rule ci-haiku is no longer in the policy",
    ),
    (
        "models narrowed",
        _rules(
            dev_sonnet={
                "id": "dev-sonnet",
                "when": {"groups": ["dev"], "models": ["claude-sonnet-4*"], "tools": ["*"]},
                "effect": "allow",
            }
        ),
        # the batch's requests are still allowed by the batches rule, and dev-sonnet still
        # matches the batch itself (it has no model): the same decision by the same rules
        {1: ("allow", "deny"), 2: ("allow", "deny")},
        "rule dev-sonnet no longer matches: models: rule wants [\"claude-sonnet-4*\"], "
        'request has "claude-sonnet-5-5"',
    ),
    (
        "a group moved",
        _rules(
            ci_haiku={
                "id": "ci-haiku",
                "when": {"groups": ["ci-prod"], "models": ["claude-haiku-*"]},
                "effect": "allow",
            }
        ),
        {3: ("allow", "deny")},
        "groups ['ci-prod'], caller has ['ci']",
    ),
    (
        "opus allowed",
        [*OLD_RULES, DEV_OPUS],
        # a batch has no model of its own, and model conditions do not restrict such requests
        {4: ("deny", "allow"), 5: ("allow", "allow")},
        "rule dev-opus (allow) now decides",
    ),
    (
        "a rule renamed: same effect, other rules",
        _rules(
            ci_haiku={
                "id": "ci-haiku-v2",
                "when": {"groups": ["ci"], "models": ["claude-haiku-*"]},
                "effect": "allow",
            }
        ),
        {3: ("allow", "allow")},
        "rule ci-haiku is no longer in the policy",
    ),
    (
        "a review rule",
        [*OLD_RULES, REVIEW_SONNET],
        {1: ("allow", "review"), 2: ("allow", "review"), 5: ("allow", "review")},
        "review by review-sonnet takes precedence",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("name", "rules", "expected", "why"), CHANGES, ids=[c[0] for c in CHANGES])
def test_policy_changes(
    name: str, rules: list[dict[str, Any]], expected: dict[int, tuple[str, str]], why: str
) -> None:
    old = _policy(OLD_RULES)
    result = simulate(_policy(rules), _events(old))
    assert result.considered == len(TRAFFIC)
    got = {c.seq: (c.old.effect, c.new.effect.value) for c in result.changes}
    assert got == expected
    assert result.unchanged == len(TRAFFIC) - len(expected)
    assert result.changed is bool(expected)
    if expected:
        assert any(why in line for line in result.changes[0].why), result.changes[0].why


def test_a_batch_is_decided_as_the_gateway_decides_it() -> None:
    old = _policy(OLD_RULES)
    events = _events(old)
    [change] = simulate(_policy([*OLD_RULES, NO_SONNET_BATCHES]), events).changes
    assert change.seq == 5
    assert change.new.reason.startswith("batch request 'r0': ")
    assert change.model == "claude-sonnet-5-5"  # the batch has none; its first request has
    assert set(change.old.rule_ids) == {"batches", "dev-sonnet"}
    assert change.new.rule_ids == ("no-sonnet-batches",)


def test_transitions_and_details() -> None:
    old = _policy(OLD_RULES)
    result = simulate(_policy([*OLD_RULES, NO_BASH, DEV_OPUS]), _events(old))
    assert result.transitions() == {
        ("allow", "deny"): 1,
        ("deny", "allow"): 1,
        ("allow", "allow"): 1,
    }
    change = next(c for c in result.changes if c.seq == 4)
    assert (change.request_id, change.principal, change.model) == (
        "req_4",
        "demo/alice",
        "claude-opus-5",
    )
    assert change.at == 1_750_000_004.0
    assert change.effect_changed
    assert change.old.rule_ids == ()
    assert change.why[-1] == "new reason: allowed by rule dev-opus"


def test_default_applies_when_no_rule_decides() -> None:
    old = _policy(OLD_RULES)
    result = simulate(_policy([]), _events(old)[:1])
    assert "no rule decides now: the default (deny) applies" in result.changes[0].why


def test_events_that_cannot_be_decided_again_are_skipped_and_counted() -> None:
    old = _policy(OLD_RULES)
    good = _events(old)[0]
    purged = StoredEvent(2, "request", 1.0, "req_2", "x", None, b"d", b"p", b"h")
    no_facts = StoredEvent(
        3, "request", 1.0, "req_3", "x",
        orjson.dumps({"data": {"decision": {"effect": "allow", "rule_ids": []}}}), b"d", b"p", b"h",
    )  # fmt: skip
    outcome = StoredEvent(
        4, "outcome", 1.0, "req_1", "x", orjson.dumps({"data": {}}), b"", b"", b""
    )
    result = simulate(old, [good, purged, no_facts, outcome])
    assert (result.considered, result.unchanged, result.changes) == (1, 1, [])
    assert [(s.seq, s.reason) for s in result.skipped] == [
        (2, "its body was purged by retention"),
        (3, "policy_input must be a non-empty list"),
    ]


def test_policy_input_round_trips_exactly() -> None:
    identity = Identity(
        "demo", "https://idp", "bob", {"sub": "bob", "nested": {"a": [1, 2]}}, 0.0,
        frozenset({"dev", "ops"}), frozenset({"skill:xlsx", "read"}),
    )  # fmt: skip
    request = _messages("claude-sonnet-5-5", tools=("bash_20250124", "web_fetch_20250910"))
    request["headers"] = {"anthropic-beta": "a-1, b-2"}
    request["body"]["container"] = {"skills": [{"type": "anthropic", "skill_id": "xlsx"}]}
    facts = from_context(build_context(identity, parse_request(request)))
    wire = orjson.loads(orjson.dumps(policy_input_json(facts)))
    assert wire[0]["groups"] == ["dev", "ops"]
    assert wire[0]["tools"] == ["bash_20250124", "web_fetch_20250910"]
    assert policy_requests(wire) == facts


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, "policy_input must be a non-empty list"),
        ([], "policy_input must be a non-empty list"),
        (["x"], "policy_input[0] must be an object"),
        ([{"principal": "p", "issuer": "i", "endpoint": "messages"}], "policy_input[0].method"),
        (
            [{"principal": "p", "issuer": "i", "endpoint": "e", "method": "GET", "groups": "dev"}],
            "policy_input[0].groups must be a list of strings",
        ),
        (
            [{"principal": "p", "issuer": "i", "endpoint": "e", "method": "GET", "colour": 1}],
            "unknown field 'colour'",
        ),
    ],
)
def test_malformed_policy_input_is_refused(data: object, message: str) -> None:
    with pytest.raises(PolicyInputError, match=None) as caught:
        policy_requests(data)
    assert message in str(caught.value)


def test_policy_requests_default_what_was_not_recorded() -> None:
    [req] = policy_requests(
        [{"principal": "p", "issuer": "i", "endpoint": "models", "method": "GET"}]
    )
    assert req == PolicyRequest("p", "i", frozenset(), frozenset(), {}, "models", "GET")
