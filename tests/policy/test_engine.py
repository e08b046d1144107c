"""The policy engine, table by table: every condition, every effect and how they combine.

Pure: documents and requests are built by hand, nothing runs a server. Each table row is one
rule's conditions, one request and whether the rule matches it.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ztgate.core.context import Endpoint, RequestContext
from ztgate.core.decision import Decision, Effect, LimitCheck, PolicyRequest
from ztgate.core.identity import Identity
from ztgate.policy.document import ENDPOINTS, PolicyDocument
from ztgate.policy.engine import Policy
from ztgate.policy.request import ENDPOINT_NAMES, from_context
from ztgate.wire.routes import match_route

PRINCIPAL = "demo/alice"
HAIKU = "claude-haiku-4-5-20251001"
SET_FIELDS = ("groups", "scopes", "findings")
TUPLE_FIELDS = ("skills", "tools", "mcp_servers", "betas")


def request(**fields: Any) -> PolicyRequest:
    """A messages request from demo/alice for haiku, with ``fields`` replaced (lists welcome)."""
    values: dict[str, Any] = {
        "principal": PRINCIPAL,
        "issuer": "demo",
        "groups": frozenset(),
        "scopes": frozenset(),
        "claims": {},
        "endpoint": "messages",
        "method": "POST",
        "model": HAIKU,
    }
    values.update(fields)
    for name in SET_FIELDS:
        values[name] = frozenset(values.get(name, ()))
    for name in TUPLE_FIELDS:
        values[name] = tuple(values.get(name, ()))
    return PolicyRequest(**values)


def policy(*rules: dict[str, Any], default: str = "deny", **document: Any) -> Policy:
    return Policy(
        PolicyDocument.model_validate({"default": default, "rules": list(rules), **document})
    )


def rule_matches(when: dict[str, Any], effect: str, req: PolicyRequest, **document: Any) -> bool:
    """Whether a one-rule policy's rule applies to ``req``."""
    compiled = policy({"id": "r", "when": when, "effect": effect}, **document)
    return [m.rule.id for m in compiled.matching(req)] == ["r"]


EFFECTS = ("allow", "deny", "review")


# --------------------------------------------------------------------------- who asks

GROUPS = [
    pytest.param(["ci"], {"ci"}, True, id="member"),
    pytest.param(["ci"], {"data", "ci"}, True, id="one-of-several-groups"),
    pytest.param(["ci", "data"], {"data"}, True, id="any-listed-group"),
    pytest.param(["ci"], {"data"}, False, id="other-group"),
    pytest.param(["ci"], set(), False, id="no-groups"),
    pytest.param(["CI"], {"ci"}, False, id="case-sensitive"),
    pytest.param(["ci-*"], {"ci-nightly"}, False, id="names-not-globs"),
]


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(("groups", "member_of", "expected"), GROUPS)
def test_groups(groups: list[str], member_of: set[str], expected: bool, effect: str) -> None:
    assert rule_matches({"groups": groups}, effect, request(groups=member_of)) is expected


PRINCIPALS = [
    pytest.param(["demo/alice"], "demo/alice", True, id="exact"),
    pytest.param(["demo/alice"], "demo/alice2", False, id="whole-name-only"),
    pytest.param(["demo/*"], "demo/ci/job-1", True, id="star-crosses-slashes"),
    pytest.param(["demo/ci-*"], "demo/ci-7", True, id="prefix-glob"),
    pytest.param(["demo/ci-*"], "demo/data-7", False, id="prefix-glob-miss"),
    pytest.param(["other/*"], "demo/alice", False, id="other-issuer"),
    pytest.param(["demo/al?ce"], "demo/alice", True, id="question-mark"),
    pytest.param(["demo/[ab]*"], "demo/bob", True, id="character-class"),
    pytest.param(["demo/[ab]*"], "demo/carol", False, id="character-class-miss"),
    pytest.param(["Demo/*"], "demo/alice", False, id="case-sensitive"),
    pytest.param(["x/*", "demo/alice"], "demo/alice", True, id="any-pattern"),
]


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(("patterns", "principal", "expected"), PRINCIPALS)
def test_principals(patterns: list[str], principal: str, expected: bool, effect: str) -> None:
    assert rule_matches({"principals": patterns}, effect, request(principal=principal)) is expected


ISSUERS = [
    pytest.param(["demo"], "demo", True, id="listed"),
    pytest.param(["github"], "demo", False, id="not-listed"),
    pytest.param(["demo", "github"], "github", True, id="any-listed"),
    pytest.param(["dem*"], "demo", False, id="names-not-globs"),
]


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(("issuers", "issuer", "expected"), ISSUERS)
def test_issuers(issuers: list[str], issuer: str, expected: bool, effect: str) -> None:
    assert rule_matches({"issuers": issuers}, effect, request(issuer=issuer)) is expected


CLAIMS = [
    pytest.param({"team": "data"}, {"team": "data"}, True, id="equal"),
    pytest.param({"team": "data"}, {"team": "ci"}, False, id="different"),
    pytest.param({"team": "data"}, {}, False, id="missing"),
    pytest.param({"team": ["data", "ml"]}, {"team": "ml"}, True, id="pattern-list-any"),
    pytest.param({"repository": "acme/*"}, {"repository": "acme/api"}, True, id="glob"),
    pytest.param({"repository": "acme/*"}, {"repository": "evil/api"}, False, id="glob-miss"),
    pytest.param({"org.team": "data"}, {"org": {"team": "data"}}, True, id="dotted-path"),
    pytest.param(
        {"kubernetes.io.namespace": "prod-*"},
        {"kubernetes.io": {"namespace": "prod-eu"}},
        True,
        id="key-with-dots",
    ),
    pytest.param({"org.team": "data"}, {"org": "data"}, False, id="path-through-a-string"),
    pytest.param({"roles": "admin"}, {"roles": ["dev", "admin"]}, True, id="list-claim-any"),
    pytest.param({"roles": "admin"}, {"roles": ["dev"]}, False, id="list-claim-none"),
    pytest.param(
        {"team": "data", "env": "prod"}, {"team": "data", "env": "dev"}, False, id="all-must-match"
    ),
    pytest.param({"verified": "true"}, {"verified": True}, True, id="boolean-as-text"),
    pytest.param({"run_attempt": "1"}, {"run_attempt": 1}, True, id="number-as-text"),
    pytest.param({"nested": "*"}, {"nested": {"a": "x"}}, False, id="objects-never-match"),
]


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(("wanted", "claims", "expected"), CLAIMS)
def test_claims(
    wanted: dict[str, Any], claims: dict[str, Any], expected: bool, effect: str
) -> None:
    assert rule_matches({"claims": wanted}, effect, request(claims=claims)) is expected


SCOPES = [
    pytest.param(["messages:write"], {"messages:write", "skill:xlsx"}, True, id="held"),
    pytest.param(["admin"], {"read"}, False, id="not-held"),
    pytest.param(["admin", "read"], {"read"}, True, id="any-listed"),
    pytest.param(["admin"], set(), False, id="no-scopes"),
    pytest.param(["skill:*"], {"skill:xlsx"}, False, id="names-not-globs"),
]


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(("scopes", "held", "expected"), SCOPES)
def test_scopes(scopes: list[str], held: set[str], expected: bool, effect: str) -> None:
    assert rule_matches({"scopes": scopes}, effect, request(scopes=held)) is expected


# --------------------------------------------------------------------------- what for

ENDPOINT_CASES = [
    pytest.param(["messages"], "messages", True, id="messages"),
    pytest.param(["messages"], "count_tokens", False, id="messages-not-count"),
    pytest.param(["messages", "count_tokens"], "count_tokens", True, id="count_tokens"),
    pytest.param(["models"], "models", True, id="models"),
    pytest.param(["models"], "messages", False, id="models-not-messages"),
    pytest.param(["batches"], "batches", True, id="batches"),
    pytest.param(["batches"], "messages", False, id="batches-not-messages"),
    pytest.param(["files"], "files", True, id="files"),
    pytest.param(["skills-admin"], "skills-admin", True, id="skills-admin"),
    pytest.param(["skills-admin"], "files", False, id="skills-admin-not-files"),
]


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(("endpoints", "endpoint", "expected"), ENDPOINT_CASES)
def test_endpoints(endpoints: list[str], endpoint: str, expected: bool, effect: str) -> None:
    req = request(
        endpoint=endpoint, model=HAIKU if endpoint in ("messages", "count_tokens") else None
    )
    assert rule_matches({"endpoints": endpoints}, effect, req) is expected


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_rule_without_endpoints_applies_to_every_endpoint(endpoint: str) -> None:
    assert rule_matches({}, "deny", request(endpoint=endpoint, model=None))
    assert rule_matches({"groups": ["ci"]}, "allow", request(endpoint=endpoint, groups={"ci"}))


def test_unknown_endpoint_names_are_rejected_at_load() -> None:
    with pytest.raises(ValidationError):
        policy({"id": "r", "when": {"endpoints": ["admin"]}, "effect": "allow"})


METHODS = [
    pytest.param(["GET"], "GET", True, id="get"),
    pytest.param(["GET"], "POST", False, id="get-not-post"),
    pytest.param(["GET", "DELETE"], "DELETE", True, id="any-listed"),
]


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(("methods", "method", "expected"), METHODS)
def test_methods(methods: list[str], method: str, expected: bool, effect: str) -> None:
    req = request(endpoint="files", method=method, model=None)
    assert rule_matches({"methods": methods}, effect, req) is expected


MODELS = [
    pytest.param("allow", ["claude-haiku-*"], HAIKU, True, id="allow-glob"),
    pytest.param("allow", ["claude-haiku-*"], "claude-opus-4-5", False, id="allow-glob-miss"),
    pytest.param("allow", ["claude-haiku-*"], None, True, id="allow-no-model-unrestricted"),
    pytest.param("allow", ["claude-haiku-4-5"], HAIKU, False, id="allow-whole-name-only"),
    pytest.param(
        "allow",
        ["claude-sonnet-4-5-2025????"],
        "claude-sonnet-4-5-20250929",
        True,
        id="allow-question-marks",
    ),
    pytest.param(
        "allow",
        ["claude-haiku-*", "claude-sonnet-*"],
        "claude-sonnet-4-5",
        True,
        id="allow-any-pattern",
    ),
    pytest.param("allow", ["Claude-*"], HAIKU, False, id="allow-case-sensitive"),
    pytest.param("allow", ["*"], "anything", True, id="allow-star"),
    pytest.param("deny", ["claude-opus-*"], "claude-opus-4-1", True, id="deny-glob"),
    pytest.param("deny", ["claude-opus-*"], HAIKU, False, id="deny-glob-miss"),
    pytest.param("deny", ["claude-opus-*"], None, False, id="deny-needs-a-model"),
    pytest.param("review", ["claude-opus-*"], "claude-opus-4-5", True, id="review-glob"),
    pytest.param("review", ["*"], None, False, id="review-needs-a-model"),
]


@pytest.mark.parametrize(("effect", "models", "model", "expected"), MODELS)
def test_models(effect: str, models: list[str], model: str | None, expected: bool) -> None:
    assert rule_matches({"models": models}, effect, request(model=model)) is expected


# Skills, tools and MCP servers: on allow rules they are grants (every requested item must be
# named; naming nothing grants nothing), on deny and review rules triggers (any named item).

SKILLS = [
    pytest.param("allow", ["xlsx"], ["xlsx"], True, id="allow-granted"),
    pytest.param("allow", ["xlsx"], ["xlsx", "pptx"], False, id="allow-every-skill-granted"),
    pytest.param("allow", ["xlsx", "pptx"], ["pptx", "xlsx"], True, id="allow-all-granted"),
    pytest.param("allow", ["skill_01*"], ["skill_01AbCd"], True, id="allow-custom-skill-glob"),
    pytest.param("allow", ["*"], ["skill_01AbCd", "pdf"], True, id="allow-star"),
    pytest.param("allow", None, ["xlsx"], False, id="allow-nothing-named-nothing-granted"),
    pytest.param("allow", None, [], True, id="allow-no-skills-requested"),
    pytest.param("allow", ["xlsx"], [], True, id="allow-grant-not-a-requirement"),
    pytest.param("deny", ["pptx"], ["xlsx", "pptx"], True, id="deny-any-triggers"),
    pytest.param("deny", ["pptx"], ["xlsx"], False, id="deny-other-skill"),
    pytest.param("deny", ["pptx"], [], False, id="deny-no-skills"),
    pytest.param("deny", None, ["xlsx"], True, id="deny-omitted-does-not-restrict"),
    pytest.param("review", ["skill_*"], ["skill_01AbCd"], True, id="review-glob"),
    pytest.param("review", ["skill_*"], ["xlsx"], False, id="review-glob-miss"),
]


@pytest.mark.parametrize(("effect", "patterns", "skills", "expected"), SKILLS)
def test_skills(effect: str, patterns: list[str] | None, skills: list[str], expected: bool) -> None:
    when = {} if patterns is None else {"skills": patterns}
    assert rule_matches(when, effect, request(skills=skills)) is expected


TOOLS = [
    pytest.param(
        "allow",
        ["code_execution_*"],
        ["code_execution_20250825"],
        True,
        id="allow-server-tool-by-type",
    ),
    pytest.param(
        "allow",
        ["code_execution_*"],
        ["code_execution_20250825", "bash_20250124"],
        False,
        id="allow-every-tool-granted",
    ),
    pytest.param("allow", ["Bash"], ["Bash"], True, id="allow-custom-tool-by-name"),
    pytest.param("allow", ["bash_*"], ["Bash"], False, id="allow-server-grant-not-custom"),
    pytest.param("allow", ["bash"], ["Bash"], False, id="allow-case-sensitive"),
    pytest.param("allow", ["lookup"], ["<unnamed tool>"], False, id="allow-unnamed-never"),
    pytest.param("allow", None, ["Bash"], False, id="allow-nothing-named-nothing-granted"),
    pytest.param("allow", None, [], True, id="allow-no-tools-requested"),
    pytest.param(
        "deny",
        ["bash_*", "Bash", "computer_*"],
        ["web_search_20250305", "computer_20250124"],
        True,
        id="deny-any-triggers",
    ),
    pytest.param(
        "deny",
        ["bash_*", "Bash", "computer_*"],
        ["web_search_20250305"],
        False,
        id="deny-other-tools",
    ),
    pytest.param("deny", ["Bash"], ["bash_20250124"], False, id="deny-custom-name-not-server"),
    pytest.param("deny", ["bash_*"], ["bash_20250124"], True, id="deny-server-tool"),
    pytest.param("deny", None, ["bash_20250124"], True, id="deny-omitted-does-not-restrict"),
    pytest.param("review", ["web_fetch_*"], ["web_fetch_20250910"], True, id="review-trigger"),
    pytest.param("review", ["web_fetch_*"], [], False, id="review-no-tools"),
]


@pytest.mark.parametrize(("effect", "patterns", "tools", "expected"), TOOLS)
def test_tools(effect: str, patterns: list[str] | None, tools: list[str], expected: bool) -> None:
    when = {} if patterns is None else {"tools": patterns}
    assert rule_matches(when, effect, request(tools=tools)) is expected


EXAMPLE_MCP = "https://mcp.example.com/sse"
MCP_SERVERS = [
    pytest.param("allow", ["https://mcp.example.com/*"], [EXAMPLE_MCP], True, id="allow"),
    pytest.param(
        "allow",
        ["https://mcp.example.com/*"],
        ["https://mcp.evil.com/sse"],
        False,
        id="allow-other-host",
    ),
    pytest.param(
        "allow",
        ["https://mcp.example.com/*"],
        ["https://mcp.example.com.evil.com/sse"],
        False,
        id="allow-lookalike-host",
    ),
    pytest.param(
        "allow",
        ["https://mcp.example.com/*"],
        [EXAMPLE_MCP, "https://x.test/"],
        False,
        id="allow-every-server-granted",
    ),
    pytest.param("allow", None, [EXAMPLE_MCP], False, id="allow-nothing-named-nothing-granted"),
    pytest.param("allow", None, [], True, id="allow-no-servers"),
    pytest.param("deny", ["https://*.evil.com/*"], ["https://a.evil.com/sse"], True, id="deny"),
    pytest.param("deny", ["https://*.evil.com/*"], [EXAMPLE_MCP], False, id="deny-miss"),
    pytest.param("review", ["http://*/*"], ["http://plain.example.com/sse"], True, id="review"),
    pytest.param(
        "allow",
        ["https://*.example.com/*"],
        ["https://evil.test/x.example.com/sse"],
        False,
        id="allow-star-stays-in-the-host",
    ),
    pytest.param(
        "allow",
        ["https://*.example.com/*"],
        ["https://a.b.example.com/sse"],
        True,
        id="allow-subdomain-glob",
    ),
    pytest.param(
        "allow",
        ["https://mcp.example.com/*"],
        ["HTTPS://MCP.Example.com/sse"],
        True,
        id="allow-scheme-and-host-ignore-case",
    ),
    pytest.param(
        "allow",
        ["https://mcp.example.com/*"],
        ["https://mcp.example.com/SSE"],
        True,
        id="allow-path-glob",
    ),
    pytest.param(
        "allow",
        ["https://mcp.example.com/sse"],
        ["https://mcp.example.com/SSE"],
        False,
        id="allow-path-keeps-case",
    ),
    pytest.param(
        "allow",
        ["https://mcp.example.com/*"],
        ["http://mcp.example.com/sse"],
        False,
        id="allow-scheme-counts",
    ),
    pytest.param(
        "allow",
        ["https://mcp.example.com/*"],
        ["https://mcp.example.com:8443/sse"],
        False,
        id="allow-other-port",
    ),
    pytest.param(
        "deny",
        ["https://*.evil.com/*"],
        ["https://x.test/a.evil.com/sse"],
        False,
        id="deny-host-glob-not-in-path",
    ),
]


@pytest.mark.parametrize(("effect", "patterns", "servers", "expected"), MCP_SERVERS)
def test_mcp_servers(
    effect: str, patterns: list[str] | None, servers: list[str], expected: bool
) -> None:
    when = {} if patterns is None else {"mcp_servers": patterns}
    assert rule_matches(when, effect, request(mcp_servers=servers)) is expected


SKILLS_BETA, CODE_BETA, FILES_BETA = (
    "skills-2025-10-02",
    "code-execution-2025-08-25",
    "files-api-2025-04-14",
)
BETAS = [
    pytest.param(
        "allow",
        [SKILLS_BETA, "code-execution-*"],
        [SKILLS_BETA, CODE_BETA],
        True,
        id="allow-all-named",
    ),
    pytest.param(
        "allow", [SKILLS_BETA], [SKILLS_BETA, FILES_BETA], False, id="allow-every-beta-named"
    ),
    pytest.param("allow", [SKILLS_BETA], [], True, id="allow-no-betas"),
    pytest.param("allow", None, [FILES_BETA], True, id="allow-omitted-does-not-restrict"),
    pytest.param("deny", ["files-api-*"], [SKILLS_BETA, FILES_BETA], True, id="deny-any"),
    pytest.param("deny", ["files-api-*"], [SKILLS_BETA], False, id="deny-miss"),
    pytest.param("deny", ["files-api-*"], [], False, id="deny-no-betas"),
    pytest.param("review", ["context-1m-*"], ["context-1m-2025-08-07"], True, id="review"),
]


@pytest.mark.parametrize(("effect", "patterns", "betas", "expected"), BETAS)
def test_betas(effect: str, patterns: list[str] | None, betas: list[str], expected: bool) -> None:
    when = {} if patterns is None else {"betas": patterns}
    assert rule_matches(when, effect, request(betas=betas)) is expected


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(
    ("wanted", "stream", "expected"),
    [(True, True, True), (True, False, False), (False, False, True), (False, True, False)],
)
def test_stream(wanted: bool, stream: bool, expected: bool, effect: str) -> None:
    assert rule_matches({"stream": wanted}, effect, request(stream=stream)) is expected


ABOVE = [
    pytest.param("max_tokens_above", "max_tokens", 4096, 4097, True, id="max-tokens-above"),
    pytest.param("max_tokens_above", "max_tokens", 4096, 4096, False, id="max-tokens-equal"),
    pytest.param("max_tokens_above", "max_tokens", 4096, None, False, id="max-tokens-absent"),
    pytest.param("max_tokens_above", "max_tokens", 0, 1, True, id="max-tokens-above-zero"),
    pytest.param(
        "thinking_budget_above", "thinking_budget", 8000, 16000, True, id="thinking-above"
    ),
    pytest.param(
        "thinking_budget_above", "thinking_budget", 8000, 8000, False, id="thinking-equal"
    ),
    pytest.param("thinking_budget_above", "thinking_budget", 8000, None, False, id="thinking-off"),
    pytest.param(
        "request_bytes_above", "request_bytes", 1_000_000, 1_000_001, True, id="bytes-above"
    ),
    pytest.param("request_bytes_above", "request_bytes", 1000, 10, False, id="bytes-below"),
    pytest.param("request_bytes_above", "request_bytes", 0, 0, False, id="bytes-empty"),
]


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(("condition", "field", "limit", "value", "expected"), ABOVE)
def test_thresholds(
    condition: str, field: str, limit: int, value: int | None, expected: bool, effect: str
) -> None:
    assert rule_matches({condition: limit}, effect, request(**{field: value})) is expected


SKILL_SCOPE = [
    pytest.param("skill:", {"skill:xlsx"}, ["xlsx"], True, False, id="within"),
    pytest.param("skill:", {"skill:xlsx"}, ["xlsx", "pptx"], True, True, id="one-outside"),
    pytest.param("skill:", set(), ["xlsx"], True, True, id="no-scopes"),
    pytest.param("skill:", set(), [], True, False, id="no-skills-never-outside"),
    pytest.param("skill:", {"xlsx"}, ["xlsx"], True, True, id="bare-scope-not-enough"),
    pytest.param("skill:", {"skill:*"}, ["xlsx"], True, True, id="scopes-are-not-globs"),
    pytest.param("skill:", {"skill:xlsx"}, ["xlsx"], False, True, id="false-means-within"),
    pytest.param("skill:", {"skill:pdf"}, ["xlsx"], False, False, id="false-outside-misses"),
    pytest.param("skills/", {"skills/xlsx"}, ["xlsx"], True, False, id="custom-prefix-within"),
    pytest.param(
        "skills/", {"skill:xlsx"}, ["xlsx"], True, True, id="custom-prefix-ignores-default"
    ),
]


@pytest.mark.parametrize("effect", ["deny", "review"])
@pytest.mark.parametrize(("prefix", "scopes", "skills", "outside", "expected"), SKILL_SCOPE)
def test_skills_outside_token_scope(
    prefix: str, scopes: set[str], skills: list[str], outside: bool, expected: bool, effect: str
) -> None:
    req = request(scopes=scopes, skills=skills)
    when = {"skills_outside_token_scope": outside}
    assert rule_matches(when, effect, req, skill_scope_prefix=prefix) is expected


def test_skills_outside_token_scope_on_allow_needs_the_skill_granted() -> None:
    when = {"skills": ["*"], "skills_outside_token_scope": False}
    assert rule_matches(when, "allow", request(scopes={"skill:xlsx"}, skills=["xlsx"]))
    assert not rule_matches(when, "allow", request(scopes={"skill:pdf"}, skills=["xlsx"]))


FINDINGS = [
    pytest.param(["credit_card"], {"credit_card", "email"}, True, id="found"),
    pytest.param(["api_key"], {"email"}, False, id="other-finding"),
    pytest.param(["email"], set(), False, id="nothing-found"),
    pytest.param(["api_key", "email"], {"email"}, True, id="any-listed"),
]


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(("findings", "found", "expected"), FINDINGS)
def test_findings(findings: list[str], found: set[str], expected: bool, effect: str) -> None:
    assert rule_matches({"findings": findings}, effect, request(findings=found)) is expected


def test_all_conditions_of_a_rule_must_hold() -> None:
    when = {"groups": ["ci"], "models": ["claude-haiku-*"], "stream": False}
    assert rule_matches(when, "allow", request(groups={"ci"}))
    assert not rule_matches(when, "allow", request(groups={"ci"}, stream=True))
    assert not rule_matches(when, "allow", request(groups={"ci"}, model="claude-opus-4-5"))
    assert not rule_matches(when, "allow", request(groups={"data"}))


# --------------------------------------------------------------------------- effects

ALLOW_ALL = {"id": "allow-all", "when": {}, "effect": "allow"}
REVIEW_ALL = {"id": "review-all", "when": {}, "effect": "review"}
DENY_ALL = {"id": "deny-all", "when": {}, "effect": "deny", "message": "nope"}
DENY_NOBODY = {"id": "deny-nobody", "when": {"principals": ["nobody-*"]}, "effect": "deny"}

COMBINATIONS = [
    pytest.param([], "deny", Effect.DENY, (), id="nothing-default-deny"),
    pytest.param([], "allow", Effect.ALLOW, (), id="nothing-default-allow"),
    pytest.param([ALLOW_ALL], "deny", Effect.ALLOW, ("allow-all",), id="allow-over-default"),
    pytest.param([DENY_ALL], "allow", Effect.DENY, ("deny-all",), id="deny-over-default"),
    pytest.param(
        [ALLOW_ALL, REVIEW_ALL], "deny", Effect.REVIEW, ("review-all",), id="review-over-allow"
    ),
    pytest.param(
        [REVIEW_ALL, ALLOW_ALL, DENY_ALL],
        "allow",
        Effect.DENY,
        ("deny-all",),
        id="deny-over-everything",
    ),
    pytest.param([DENY_ALL, REVIEW_ALL], "deny", Effect.DENY, ("deny-all",), id="deny-over-review"),
    pytest.param(
        [DENY_NOBODY, ALLOW_ALL], "deny", Effect.ALLOW, ("allow-all",), id="unmatched-deny-ignored"
    ),
    pytest.param([REVIEW_ALL], "allow", Effect.REVIEW, ("review-all",), id="review-alone"),
]


@pytest.mark.parametrize(("rules", "default", "effect", "rule_ids"), COMBINATIONS)
def test_combination_order(
    rules: list[dict[str, Any]], default: str, effect: Effect, rule_ids: tuple[str, ...]
) -> None:
    decision = policy(*rules, default=default).evaluate(request())
    assert decision.effect is effect
    assert decision.rule_ids == rule_ids
    assert policy(*reversed(rules), default=default).evaluate(request()) == decision


def test_default_decisions_explain_themselves() -> None:
    assert policy(default="deny").evaluate(request()) == Decision(
        Effect.DENY, "no rule allows this request"
    )
    assert policy(default="allow").evaluate(request()) == Decision(
        Effect.ALLOW, "allowed by default"
    )
    assert PolicyDocument().default == "deny"


def test_reasons_name_the_first_decisive_rule_in_file_order() -> None:
    second_deny = {"id": "deny-two", "when": {}, "effect": "deny"}
    decision = policy(ALLOW_ALL, second_deny, DENY_ALL).evaluate(request())
    assert decision == Decision(
        Effect.DENY, "this rule denies the request", ("deny-two", "deny-all")
    )
    messaged = policy(DENY_ALL, second_deny).evaluate(request())
    assert messaged.reason == "nope"
    assert policy(REVIEW_ALL).evaluate(request()).reason == "this rule requires human review"
    allowed = policy(ALLOW_ALL, {"id": "allow-two", "when": {}, "effect": "allow"})
    assert allowed.evaluate(request()).reason == "allowed by rule allow-all"
    assert allowed.evaluate(request()).rule_ids == ("allow-all", "allow-two")


def test_messages_of_other_rules_stay_out_of_the_reason() -> None:
    quiet = {"id": "quiet", "when": {"tools": ["Bash"]}, "effect": "deny", "message": "no Bash"}
    secret = {"id": "secret", "when": {"tools": ["x"]}, "effect": "deny", "message": "SECRET"}
    decision = policy(quiet, secret).evaluate(request(tools=["Bash"]))
    assert decision.reason == "no Bash"
    assert decision.rule_ids == ("quiet",)


# --------------------------------------------------------------------------- obligations


def limited(rule_id: str, when: dict[str, Any] | None = None, **limits: Any) -> dict[str, Any]:
    return {"id": rule_id, "when": when or {}, "effect": "allow", "limits": limits}


def test_two_allow_rules_combine_to_the_strictest_rate() -> None:
    decision = policy(
        limited("loose", requests_per_minute=60, tokens_per_day=1_000_000),
        limited("tight", requests_per_minute=30, requests_per_day=500),
    ).evaluate(request())
    owner = f"principal:{PRINCIPAL}"
    assert decision.limits == (
        LimitCheck(owner, "requests", "day", 500, "tight"),
        LimitCheck(owner, "requests", "minute", 30, "tight"),
        LimitCheck(owner, "tokens", "day", 1_000_000, "loose"),
    )


def test_limits_per_group_and_per_principal_are_separate_counters() -> None:
    decision = policy(
        limited("team", {"groups": ["ci", "data"]}, per="group", requests_per_minute=100),
        limited("each", requests_per_minute=10, tokens_per_minute=5000),
    ).evaluate(request(groups={"ci", "data", "other"}))
    assert decision.limits == (
        LimitCheck("group:ci", "requests", "minute", 100, "team"),
        LimitCheck("group:data", "requests", "minute", 100, "team"),
        LimitCheck(f"principal:{PRINCIPAL}", "requests", "minute", 10, "each"),
        LimitCheck(f"principal:{PRINCIPAL}", "tokens", "minute", 5000, "each"),
    )


def test_group_limits_count_only_the_rules_groups_the_caller_is_in() -> None:
    decision = policy(
        limited("ci", {"groups": ["ci"]}, per="group", requests_per_minute=7),
        limited("ci-or-data", {"groups": ["ci", "data"]}, per="group", requests_per_minute=9),
    ).evaluate(request(groups={"ci"}))
    assert decision.limits == (LimitCheck("group:ci", "requests", "minute", 7, "ci"),)


def test_limits_of_rules_that_do_not_match_do_not_apply() -> None:
    decision = policy(
        limited("haiku", {"models": ["claude-haiku-*"]}, requests_per_minute=50),
        limited("opus", {"models": ["claude-opus-*"]}, requests_per_minute=1, max_tokens=10),
    ).evaluate(request())
    assert decision.rule_ids == ("haiku",)
    assert [c.limit for c in decision.limits] == [50]
    assert decision.max_tokens is None


def test_max_tokens_caps_combine_to_the_smallest() -> None:
    decision = policy(
        limited("a", max_tokens=4096),
        limited("b", max_tokens=1024),
        limited("c", requests_per_day=9),
    ).evaluate(request())
    assert decision.max_tokens == 1024


def test_review_decisions_carry_the_limits_of_allow_and_review_rules() -> None:
    review = {**REVIEW_ALL, "limits": {"requests_per_minute": 3, "max_tokens": 100}}
    decision = policy(limited("allow", requests_per_minute=5, max_tokens=50), review).evaluate(
        request()
    )
    assert decision.effect is Effect.REVIEW
    assert decision.max_tokens == 50
    assert [(c.limit, c.rule_id) for c in decision.limits] == [(3, "review-all")]


def test_denials_carry_no_quota_checks() -> None:
    decision = policy(limited("allow", requests_per_minute=5), DENY_ALL).evaluate(request())
    assert decision.effect is Effect.DENY
    assert decision.limits == ()


@pytest.mark.parametrize(
    "field", ["principals", "models", "skills", "tools", "mcp_servers", "betas", "issuers"]
)
def test_an_empty_pattern_list_is_refused_at_load(field: str) -> None:
    with pytest.raises(ValidationError, match="empty list"):
        policy({"id": "r", "when": {field: []}, "effect": "allow"})


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param({"id": "d", "effect": "deny", "limits": {"max_tokens": 5}}, id="deny-limits"),
        pytest.param(
            {"id": "g", "effect": "allow", "limits": {"per": "group", "requests_per_day": 1}},
            id="group-limits-without-groups",
        ),
        pytest.param({"id": "bad id!", "effect": "allow"}, id="bad-rule-id"),
        pytest.param({"id": "g", "effect": "allow", "when": {"groups": []}}, id="empty-groups"),
        pytest.param({"id": "t", "effect": "allow", "when": {"tool": ["x"]}}, id="unknown-key"),
        pytest.param({"id": "b", "effect": "allow", "when": {"models": ["[a"]}}, id="bad-glob"),
    ],
)
def test_invalid_rules_are_rejected_at_load(rule: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        policy(rule)


# --------------------------------------------------------------------------- batches


def batch(*inner: PolicyRequest, **base: Any) -> list[PolicyRequest]:
    """A batch as ``from_context`` gives it: the batch itself, then its labelled requests."""
    head = request(endpoint="batches", model=None, **base)
    return [head, *inner]


def inner(label: str, **fields: Any) -> PolicyRequest:
    return request(endpoint="batches", label=label, **fields)


NO_BASH = {"id": "no-bash", "when": {"tools": ["bash_*"]}, "effect": "deny", "message": "no bash"}
BATCH_ALLOW = {
    "id": "batches",
    "when": {"endpoints": ["batches"], "tools": ["*"]},
    "effect": "allow",
}


def test_one_denied_request_denies_the_batch_and_names_it() -> None:
    decision = policy(BATCH_ALLOW, NO_BASH).decide(
        batch(inner("r1"), inner("r2", tools=["bash_20250124"]), inner("r3"))
    )
    assert decision.effect is Effect.DENY
    assert decision.rule_ids == ("no-bash",)
    assert decision.reason == "batch request 'r2': no bash"


def test_a_batch_request_nothing_allows_is_denied_by_default() -> None:
    haiku_only = {**BATCH_ALLOW, "when": {"endpoints": ["batches"], "models": ["claude-haiku-*"]}}
    decision = policy(haiku_only).decide(batch(inner("ok"), inner("big", model="claude-opus-4-5")))
    assert decision == Decision(Effect.DENY, "batch request 'big': no rule allows this request")


def test_deny_anywhere_in_a_batch_beats_an_earlier_review() -> None:
    opus_review = {"id": "opus", "when": {"models": ["claude-opus-*"]}, "effect": "review"}
    requests = batch(inner("r1", model="claude-opus-4-5"), inner("r2", tools=["bash_20250124"]))
    decision = policy(BATCH_ALLOW, opus_review, NO_BASH).decide(requests)
    assert (decision.effect, decision.rule_ids) == (Effect.DENY, ("no-bash",))
    reviewed = policy(BATCH_ALLOW, opus_review, NO_BASH).decide(requests[:2])
    assert reviewed.effect is Effect.REVIEW
    assert reviewed.reason == "batch request 'r1': this rule requires human review"


def test_a_batch_under_review_needs_every_rule_that_asked_and_keeps_every_mask() -> None:
    """An approved batch runs every request in it: the review asks each rule that fired in any
    of them, and the masks and caps of the allowed ones still apply."""
    opus = {"id": "opus", "when": {"models": ["claude-opus-*"]}, "effect": "review",
            "review": {"approvers": ["finance"]}}  # fmt: skip
    bash = {"id": "bash", "when": {"tools": ["bash_*"]}, "effect": "review",
            "review": {"approvers": ["security"]}}  # fmt: skip
    masked = {**BATCH_ALLOW, "mask": {"detectors": {"email": "redact"}}}
    requests = batch(
        inner("r1", model="claude-opus-4-5"), inner("r2", tools=["bash_20250124"]), inner("r3")
    )
    decision = policy(masked, opus, bash).decide(requests)
    assert decision.effect is Effect.REVIEW
    assert decision.reason == "batch request 'r1': this rule requires human review"
    assert [(r.rule_id, r.approvers) for r in decision.reviews] == [
        ("opus", frozenset({"finance"})),
        ("bash", frozenset({"security"})),
    ]
    assert decision.mask is not None
    assert decision.mask.by_detector == {"email": "redact"}


def test_the_batch_itself_can_be_denied_without_a_label() -> None:
    ci_batches = {
        "id": "ci-no-batches",
        "when": {"groups": ["ci"], "endpoints": ["batches"]},
        "effect": "deny",
        "message": "CI does not batch",
    }
    decision = policy(BATCH_ALLOW, ci_batches).decide(batch(inner("r1"), groups={"ci"}))
    assert decision.reason == "CI does not batch"


def test_an_allowed_batch_combines_caps_and_limits_of_every_request() -> None:
    capped = limited(
        "capped",
        {"endpoints": ["batches"], "models": ["claude-haiku-*"]},
        max_tokens=512,
        requests_per_minute=10,
    )
    sonnet = limited(
        "sonnet",
        {"endpoints": ["batches"], "models": ["claude-sonnet-*"]},
        max_tokens=256,
        requests_per_minute=20,
    )
    decision = policy(capped, sonnet).decide(
        batch(inner("h"), inner("s", model="claude-sonnet-4-5"))
    )
    assert decision.effect is Effect.ALLOW
    assert set(decision.rule_ids) == {"capped", "sonnet"}
    assert decision.max_tokens == 256
    assert decision.limits == (
        LimitCheck(f"principal:{PRINCIPAL}", "requests", "minute", 10, "capped"),
    )


def test_a_single_request_decision_is_its_evaluation() -> None:
    compiled = policy(ALLOW_ALL, NO_BASH)
    for req in (request(), request(tools=["bash_20250124"])):
        assert compiled.decide([req]) == compiled.evaluate(req)


# --------------------------------------------------------------------------- known engine bugs


@pytest.mark.parametrize("effect", EFFECTS)
def test_a_star_names_every_mcp_server(effect: str) -> None:
    assert rule_matches({"mcp_servers": ["*"]}, effect, request(mcp_servers=[EXAMPLE_MCP]))


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.test?.example.com/sse",
        "https://evil.test#.example.com/sse",
        "https://evil.test\\.example.com/sse",
    ],
    ids=["query", "fragment", "backslash"],
)
def test_a_host_glob_cannot_be_met_by_another_host(url: str) -> None:
    grant = {"mcp_servers": ["https://*.example.com/*"]}
    assert not rule_matches(grant, "allow", request(mcp_servers=[url]))


def test_a_group_named_star_is_a_group_like_any_other() -> None:
    star = limited("star", {"groups": ["*"]}, per="group", requests_per_minute=1)
    compiled = policy(star)
    assert compiled.evaluate(request(groups=set())).effect is Effect.DENY
    member = compiled.evaluate(request(groups={"*"}))
    assert member.limits == (LimitCheck("group:*", "requests", "minute", 1, "star"),)


# --------------------------------------------------------------------------- from_context


def context(
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    groups: frozenset[str] = frozenset({"data"}),
    scopes: frozenset[str] = frozenset({"skill:xlsx"}),
) -> RequestContext:
    """A request context as the pipeline has it at the decide stage."""
    ctx = RequestContext(
        request_id="req_test",
        method=method,
        path=path,
        query_string=b"",
        headers=headers or [],
        client="127.0.0.1",
        scheme="http",
    )
    ctx.route = match_route(method, path)
    assert ctx.route is not None
    ctx.identity = Identity(
        issuer_name="demo",
        issuer="http://issuer.test",
        subject="agent-7",
        claims={"sub": "agent-7", "team": "data"},
        expires_at=0.0,
        groups=groups,
        scopes=scopes,
    )
    ctx.payload = payload
    ctx.bytes_in = 1234 if payload is not None else 0
    return ctx


AGENT_BODY: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 4096,
    "stream": True,
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "container": {
        "skills": [
            {"type": "anthropic", "skill_id": "xlsx", "version": "latest"},
            {"type": "custom", "skill_id": "skill_01AbCd", "version": "3"},
            {"type": "anthropic"},
        ]
    },
    "tools": [
        {"type": "code_execution_20250825", "name": "code_execution"},
        {"type": "bash_20250124", "name": "bash"},
        {"name": "Bash", "input_schema": {"type": "object"}},
        {"type": "custom", "name": "lookup", "input_schema": {"type": "object"}},
        {"input_schema": {"type": "object"}},
        "not-a-tool",
    ],
    "mcp_servers": [{"type": "url", "url": EXAMPLE_MCP, "name": "x"}, {"type": "url"}],
    "messages": [{"role": "user", "content": "hi"}],
}


def test_from_context_reads_identity_and_request_facts() -> None:
    ctx = context(
        "POST",
        "/v1/messages",
        AGENT_BODY,
        [(b"anthropic-beta", b"skills-2025-10-02, code-execution-2025-08-25,,")],
    )
    [req] = from_context(ctx)
    assert req == PolicyRequest(
        principal="demo/agent-7",
        issuer="demo",
        groups=frozenset({"data"}),
        scopes=frozenset({"skill:xlsx"}),
        claims={"sub": "agent-7", "team": "data"},
        endpoint="messages",
        method="POST",
        model="claude-sonnet-4-5",
        # type:id@version, so policy can name a version; an entry without an id fails closed
        skills=("anthropic:xlsx@latest", "custom:skill_01AbCd@3", "<unnamed skill>"),
        tools=("code_execution_20250825", "bash_20250124", "Bash", "lookup", "<unnamed tool>"),
        mcp_servers=(EXAMPLE_MCP,),
        betas=(SKILLS_BETA, CODE_BETA),
        stream=True,
        max_tokens=4096,
        thinking_budget=2048,
        request_bytes=1234,
    )


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        pytest.param({"stream": "true"}, "stream", False, id="stream-must-be-true"),
        pytest.param({"max_tokens": "4096"}, "max_tokens", None, id="max-tokens-not-int"),
        pytest.param({"max_tokens": True}, "max_tokens", None, id="max-tokens-bool"),
        pytest.param(
            {"thinking": {"type": "enabled", "budget_tokens": True}},
            "thinking_budget",
            None,
            id="thinking-budget-bool",
        ),
        pytest.param(
            {"thinking": {"type": "adaptive"}},
            "thinking_budget",
            None,
            id="thinking-without-budget",
        ),
        pytest.param({"container": "container_01x"}, "skills", (), id="container-by-id"),
        pytest.param({"container": {"id": "container_01x"}}, "skills", (), id="container-id-obj"),
        pytest.param({"tools": {"type": "bash_20250124"}}, "tools", (), id="tools-not-a-list"),
        pytest.param({"model": 7}, "model", None, id="model-not-text"),
    ],
)
def test_from_context_ignores_malformed_fields(
    body: dict[str, Any], field: str, expected: object
) -> None:
    [req] = from_context(context("POST", "/v1/messages", body))
    assert getattr(req, field) == expected


ROUTES = [
    pytest.param("POST", "/v1/messages/count_tokens", "count_tokens", id="count_tokens"),
    pytest.param("GET", "/v1/models", "models", id="models-list"),
    pytest.param("GET", "/v1/models/claude-haiku-4-5", "models", id="models-get"),
    pytest.param("GET", "/v1/messages/batches", "batches", id="batches-list"),
    pytest.param("GET", "/v1/messages/batches/msgbatch_1/results", "batches", id="batch-results"),
    pytest.param("POST", "/v1/files", "files", id="files-upload"),
    pytest.param("DELETE", "/v1/files/file_1", "files", id="files-delete"),
    pytest.param("POST", "/v1/skills", "skills-admin", id="skills-create"),
    pytest.param("GET", "/v1/skills/skill_1/versions", "skills-admin", id="skills-versions"),
]


@pytest.mark.parametrize(("method", "path", "endpoint"), ROUTES)
def test_from_context_names_the_endpoint_class(method: str, path: str, endpoint: str) -> None:
    payload = {"model": HAIKU, "messages": []} if path.endswith("count_tokens") else None
    [req] = from_context(context(method, path, payload))
    assert (req.endpoint, req.method) == (endpoint, method)
    assert req.model == (HAIKU if payload else None)


def test_every_endpoint_class_has_a_policy_name() -> None:
    assert set(ENDPOINT_NAMES) == set(Endpoint)
    assert set(ENDPOINT_NAMES.values()) == set(ENDPOINTS)


def test_from_context_splits_a_batch_into_labelled_requests() -> None:
    payload = {
        "requests": [
            {"custom_id": "a", "params": {"model": HAIKU, "max_tokens": 10, "messages": []}},
            {"custom_id": "b", "params": {**AGENT_BODY, "stream": False}},
            {"custom_id": "c", "params": {"model": HAIKU}},
        ]
    }
    ctx = context("POST", "/v1/messages/batches", payload, [(b"anthropic-beta", b"x-1")])
    head, first, second, third = from_context(ctx)
    assert (head.endpoint, head.model, head.label, head.betas) == ("batches", None, None, ("x-1",))
    assert (first.label, first.model, first.max_tokens, first.tools) == ("a", HAIKU, 10, ())
    assert (second.label, second.skills, second.endpoint) == (
        "b",
        ("anthropic:xlsx@latest", "custom:skill_01AbCd@3", "<unnamed skill>"),
        "batches",
    )
    assert second.betas == ("x-1",)
    assert third.label == "c"


def test_from_context_decides_like_the_gateway() -> None:
    compiled = policy(
        {
            "id": "data",
            "when": {"groups": ["data"], "skills": ["xlsx"], "tools": ["code_*"]},
            "effect": "allow",
        },
        {"id": "scoped", "when": {"skills_outside_token_scope": True}, "effect": "deny"},
    )
    code_execution = {"type": "code_execution_20250825", "name": "code_execution"}
    body = {**AGENT_BODY, "tools": [code_execution], "mcp_servers": []}
    body["container"] = {"skills": [{"type": "anthropic", "skill_id": "xlsx", "version": "1"}]}
    assert (
        compiled.decide(from_context(context("POST", "/v1/messages", body))).effect is Effect.ALLOW
    )
    narrow = context("POST", "/v1/messages", body, scopes=frozenset({"skill:pdf"}))
    assert compiled.decide(from_context(narrow)).rule_ids == ("scoped",)


def test_repeated_beta_headers_are_all_seen() -> None:
    headers = [(b"anthropic-beta", SKILLS_BETA.encode()), (b"anthropic-beta", FILES_BETA.encode())]
    [req] = from_context(context("POST", "/v1/messages", {"model": HAIKU}, headers))
    assert set(req.betas) == {SKILLS_BETA, FILES_BETA}


@pytest.mark.parametrize(
    ("pattern", "granted"),
    [
        ("xlsx", True),
        ("anthropic:xlsx", True),
        ("anthropic:xlsx@latest", True),
        ("anthropic:*", True),
        ("custom:xlsx", False),
        ("anthropic:xlsx@1", False),
        ("pdf", False),
    ],
)
def test_skills_are_named_by_id_type_and_version(pattern: str, granted: bool) -> None:
    policy = Policy(
        PolicyDocument.model_validate(
            {"rules": [{"id": "r", "effect": "allow", "when": {"skills": [pattern]}}]}
        )
    )
    req = from_context(
        context(
            "POST",
            "/v1/messages",
            {
                "model": HAIKU,
                "max_tokens": 10,
                "messages": [],
                "container": {
                    "skills": [{"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]
                },
            },
        )
    )[0]
    assert (policy.evaluate(req).effect is Effect.ALLOW) is granted
