"""Properties of policy evaluation over random policies and requests.

Rules draw random subsets of conditions from small vocabularies, so that rules and requests
meet often: a property tested only on rules that never match would prove nothing.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ztgate.core.decision import Decision, Effect, PolicyRequest
from ztgate.policy.document import ENDPOINTS, PolicyDocument
from ztgate.policy.engine import CompiledRule, Policy

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

GROUPS = ("ci", "data", "platform")
PRINCIPALS = ("demo/ci-1", "demo/data-1", "gh/acme/api", "demo/alice")
MODELS = ("claude-haiku-4-5", "claude-opus-4-5", "claude-sonnet-4-5")
SKILLS = ("xlsx", "pdf", "pptx", "skill_01AbCd")
TOOLS = ("code_execution_20250825", "bash_20250124", "Bash", "web_search_20250305")
MCP = ("https://mcp.example.com/sse", "https://evil.test/sse")
BETAS = ("skills-2025-10-02", "files-api-2025-04-14")
SCOPES = ("skill:xlsx", "skill:pdf", "admin")
FINDINGS = ("email", "api_key")


def some(values: tuple[str, ...] | list[str], max_size: int = 2) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=max_size, unique=True)


CONDITIONS: dict[str, st.SearchStrategy[Any]] = {
    "groups": some(GROUPS),
    "principals": some(["demo/ci-*", "demo/*", "demo/data-1", "gh/*"]),
    "issuers": some(["demo", "gh"], 1),
    "claims": st.fixed_dictionaries({"team": st.sampled_from(["data", "ci", "*"])}),
    "scopes": some(SCOPES),
    "endpoints": some(ENDPOINTS, 3),
    "methods": some(["GET", "POST", "DELETE"]),
    "models": some(["claude-haiku-*", "claude-opus-*", "*"]),
    "skills": some(["xlsx", "pdf", "skill_*", "*"]),
    "tools": some(["code_execution_*", "bash_*", "Bash", "web_search_*", "*"], 3),
    "mcp_servers": some(["https://mcp.example.com/*", "https://*/*"], 1),
    "betas": some(["skills-*", "files-api-*"]),
    "stream": st.booleans(),
    "max_tokens_above": st.sampled_from([100, 1000]),
    "thinking_budget_above": st.sampled_from([1024, 8000]),
    "request_bytes_above": st.sampled_from([1000]),
    "skills_outside_token_scope": st.booleans(),
    "findings": some(FINDINGS),
}
LIMITS = st.fixed_dictionaries(
    {},
    optional={
        "max_tokens": st.sampled_from([100, 500]),
        "requests_per_minute": st.sampled_from([1, 10, 60]),
        "tokens_per_day": st.sampled_from([1000, 50_000]),
    },
)


@st.composite
def rules(draw: st.DrawFn, rule_id: str, effect: str | None = None) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(sorted(CONDITIONS)), max_size=3, unique=True))
    when = {name: draw(CONDITIONS[name]) for name in names}
    chosen = effect or draw(st.sampled_from(["allow", "deny", "review"]))
    rule: dict[str, Any] = {"id": rule_id, "when": when, "effect": chosen}
    if chosen == "deny":
        if draw(st.booleans()):
            rule["message"] = f"message of {rule_id}"
    elif draw(st.booleans()):
        per = "group" if "groups" in when and draw(st.booleans()) else "principal"
        rule["limits"] = {**draw(LIMITS), "per": per}
    return rule


@st.composite
def documents(draw: st.DrawFn, max_rules: int = 8) -> dict[str, Any]:
    count = draw(st.integers(0, max_rules))
    return {
        "default": draw(st.sampled_from(["deny", "allow"])),
        "rules": [draw(rules(f"r{i}")) for i in range(count)],
    }


def items(values: tuple[str, ...]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values), max_size=2, unique=True).map(tuple)


@st.composite
def single_requests(
    draw: st.DrawFn, endpoint: str | None = None, label: str | None = None
) -> PolicyRequest:
    chosen = endpoint or draw(st.sampled_from(ENDPOINTS))
    has_body = chosen in ("messages", "count_tokens", "batches")
    body = has_body and (chosen != "batches" or label is not None)
    return PolicyRequest(
        principal=draw(st.sampled_from(PRINCIPALS)),
        issuer=draw(st.sampled_from(["demo", "gh"])),
        groups=frozenset(draw(st.lists(st.sampled_from(GROUPS), max_size=2))),
        scopes=frozenset(draw(st.lists(st.sampled_from(SCOPES), max_size=2))),
        claims=draw(st.sampled_from([{}, {"team": "data"}, {"team": "ci"}])),
        endpoint=chosen,
        method="POST" if body else draw(st.sampled_from(["GET", "POST", "DELETE"])),
        model=draw(st.sampled_from(MODELS)) if body else None,
        skills=draw(items(SKILLS)) if body else (),
        tools=draw(items(TOOLS)) if body else (),
        mcp_servers=draw(items(MCP)) if body else (),
        betas=draw(items(BETAS)),
        stream=draw(st.booleans()) if body else False,
        max_tokens=draw(st.sampled_from([None, 50, 500, 5000])) if body else None,
        thinking_budget=draw(st.sampled_from([None, 2048, 16000])) if body else None,
        request_bytes=draw(st.sampled_from([0, 500, 5000])),
        findings=frozenset(draw(st.lists(st.sampled_from(FINDINGS), max_size=2))),
        label=label,
    )


@st.composite
def request_lists(draw: st.DrawFn) -> list[PolicyRequest]:
    """One request, or a batch as ``from_context`` gives it (the batch, then its requests)."""
    if draw(st.integers(0, 3)):
        return [draw(single_requests())]
    head = draw(single_requests(endpoint="batches"))
    count = draw(st.integers(1, 3))
    inner = [draw(single_requests(endpoint="batches", label=f"b{i}")) for i in range(count)]
    same_caller = {
        "principal": head.principal,
        "issuer": head.issuer,
        "groups": head.groups,
        "scopes": head.scopes,
        "claims": head.claims,
        "betas": head.betas,
    }
    return [head, *(req._replace(**same_caller) for req in inner)]


def compile_policy(document: dict[str, Any]) -> Policy:
    return Policy(PolicyDocument.model_validate(document))


def comparable(decision: Decision) -> tuple[Any, ...]:
    """What must not depend on rule order: the effect, the rules, the obligations' values.

    ``reason`` names the first decisive rule in file order, and a limit tied between two rules
    is attributed to the first of them; neither changes what the gateway enforces.
    """
    return (
        decision.effect,
        frozenset(decision.rule_ids),
        decision.max_tokens,
        tuple((c.owner, c.metric, c.window, c.limit) for c in decision.limits),
    )


@PROPERTY
@given(
    document=documents(),
    deny=rules("added-deny", effect="deny"),
    position=st.integers(0, 8),
    requests=request_lists(),
)
def test_adding_a_deny_rule_never_allows_more(
    document: dict[str, Any], deny: dict[str, Any], position: int, requests: list[PolicyRequest]
) -> None:
    before = compile_policy(document).decide(requests)
    rules_after = list(document["rules"])
    rules_after.insert(position, deny)
    after = compile_policy({**document, "rules": rules_after}).decide(requests)
    assert after == before or after.effect is Effect.DENY
    if before.effect is Effect.DENY:
        assert after.effect is Effect.DENY
    if after.effect is Effect.ALLOW:
        assert before.effect is Effect.ALLOW


@PROPERTY
@given(data=st.data(), document=documents(), requests=request_lists())
def test_rule_order_never_changes_a_decision(
    data: st.DataObject, document: dict[str, Any], requests: list[PolicyRequest]
) -> None:
    shuffled = data.draw(st.permutations(document["rules"]))
    original = compile_policy(document).decide(requests)
    reordered = compile_policy({**document, "rules": shuffled}).decide(requests)
    assert comparable(reordered) == comparable(original)


NEVER = st.sampled_from(
    [{"principals": ["nobody-*"]}, {"groups": ["nobody"]}, {"issuers": ["nobody"]}]
)


@PROPERTY
@given(
    document=documents(),
    extra=rules("never"),
    never=NEVER,
    position=st.integers(0, 8),
    requests=request_lists(),
)
def test_a_rule_that_matches_nothing_changes_nothing(
    document: dict[str, Any],
    extra: dict[str, Any],
    never: dict[str, Any],
    position: int,
    requests: list[PolicyRequest],
) -> None:
    dead = {**extra, "when": {**extra["when"], **never}}
    rules_after = list(document["rules"])
    rules_after.insert(position, dead)
    before = compile_policy(document).decide(requests)
    after = compile_policy({**document, "rules": rules_after}).decide(requests)
    assert after == before


def applies(compiled: CompiledRule, req: PolicyRequest) -> bool:
    """A rule's whole test, without the index: its scope (endpoints, groups), then the rest."""
    when = compiled.rule.when
    if when.endpoints is not None and req.endpoint not in when.endpoints:
        return False
    if when.groups is not None and req.groups.isdisjoint(when.groups):
        return False
    return compiled.matches(req)


class BruteForce(Policy):
    """The same policy deciding by trying every rule, as the index must agree with."""

    def matching(self, req: PolicyRequest) -> list[CompiledRule]:
        return [compiled for compiled in self.rules if applies(compiled, req)]


@PROPERTY
@given(document=documents(max_rules=12), requests=request_lists())
def test_the_index_agrees_with_trying_every_rule(
    document: dict[str, Any], requests: list[PolicyRequest]
) -> None:
    parsed = PolicyDocument.model_validate(document)
    indexed, brute = Policy(parsed), BruteForce(parsed)
    for req in requests:
        assert [c.rule.id for c in indexed.matching(req)] == [
            c.rule.id for c in brute.matching(req)
        ]
    assert indexed.decide(requests) == brute.decide(requests)


@PROPERTY
@given(document=documents(), requests=request_lists())
def test_a_batch_is_denied_exactly_when_one_of_its_parts_is(
    document: dict[str, Any], requests: list[PolicyRequest]
) -> None:
    compiled = compile_policy(document)
    parts = [compiled.evaluate(req).effect for req in requests]
    decision = compiled.decide(requests)
    assert (decision.effect is Effect.DENY) == (Effect.DENY in parts)
    if Effect.DENY not in parts:
        assert (decision.effect is Effect.REVIEW) == (Effect.REVIEW in parts)
