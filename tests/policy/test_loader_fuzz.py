"""Fuzzing the policy loader: any YAML text, any value, any policy-shaped mapping gives a
``PolicyError`` that says where, or a policy that compiles, lints and decides; nothing else.

test_properties.py draws valid policies to check what they decide; the loader's own tests
name each mistake. Here the documents are anything a person (or a broken deploy script)
could write: wrong types at every key, unknown keys, odd glob patterns, regular expressions
that do not compile, rule packs that break the custom detectors' rules, YAML that is not
YAML. A policy that loads is then evaluated against requests, so a pattern that compiles at
load but fails when matched would show.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzzing import fuzz
from ztgate.config.yamlfile import parse_yaml
from ztgate.core.decision import Decision, PolicyRequest
from ztgate.policy.document import ENDPOINTS
from ztgate.policy.loader import PolicyError, Serving, build_policy

SOURCE = "policy.yaml"
DETECTORS = frozenset({"email", "payment_card", "anthropic_api_key", "aws_access_key_id"})
SERVINGS = [
    None,
    Serving(DETECTORS),
    Serving(DETECTORS, default_approvers=frozenset({"leads"}), holdback=128),
    Serving(frozenset()),  # inspection off
]
# "policy.yaml is invalid:" then one "  where: what" line per problem; or one line that says
# what the whole document is not.
_INVALID = re.compile(r"policy\.yaml is invalid:(\n  \S[^\n]*)+")
_WHOLE = "policy.yaml: expected a mapping with 'default' and 'rules'"


def load(data: Any, serving: Serving | None) -> tuple[Any, list[str]] | None:
    """``build_policy``'s contract: PolicyError naming where, or a usable policy."""
    try:
        policy, warnings = build_policy(data, source=SOURCE, serving=serving)
    except PolicyError as exc:
        message = str(exc)
        assert _INVALID.fullmatch(message) or message == _WHOLE, message
        return None
    assert all(isinstance(w, str) and w.startswith("rule ") for w in warnings)
    for request in REQUESTS:
        decision = policy.decide([request])
        assert isinstance(decision, Decision)
    return policy, warnings


def _request(**fields: Any) -> PolicyRequest:
    base: dict[str, Any] = {
        "principal": "demo/alice",
        "issuer": "demo",
        "groups": frozenset({"ci", "leads"}),
        "scopes": frozenset({"skill:xlsx"}),
        "claims": {"team": "data", "env": ["prod", "dev"], "n": 7},
        "endpoint": "messages",
        "method": "POST",
    }
    return PolicyRequest(**{**base, **fields})


REQUESTS = [
    _request(),
    _request(
        model="claude-haiku-4-5",
        tools=("bash_20250124", "lookup"),
        skills=("anthropic:xlsx@latest",),
        mcp_servers=("https://mcp.example.com/sse",),
        betas=("files-api-2025-04-14",),
        stream=True,
        max_tokens=4096,
        thinking_budget=2048,
        request_bytes=10_000,
        findings=frozenset({"email"}),
        client_certificate=("CN=svc", "DNS:svc.example.com"),
    ),
    _request(endpoint="batches", label="a", model="[x]"),
]

# --- any value, any text ---------------------------------------------------------------------

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["allow", "deny", "review", "*", "[", "]", "[!]", "[a-", "**", "\\"])
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=15,
)


@fuzz(300)
@given(data=JSON, serving=st.sampled_from(SERVINGS))
@example(data={"policy": None}, serving=None)
@example(data={"rules": [{"id": "x", "effect": "allow", "when": {"tools": ["[]"]}}]}, serving=None)
def test_any_value_is_refused_with_a_place_or_loaded(data: Any, serving: Serving | None) -> None:
    load(data, serving)


_YAML_PIECES = [
    "default: deny\n",
    "rules:\n",
    "  - id: r1\n",
    "    effect: allow\n",
    "    when:\n",
    "      tools: ['*']\n",
    "      models: [claude-*]\n",
    "      claims: {team: data}\n",
    "    limits: {max_tokens: 10}\n",
    "&a [*a, *a]\n",
    "!!python/object:os.system\n",
    "? [a]\n: b\n",
    "---\n",
    "\t",
    "  ",
    ":",
    "- ",
    "'",
    '"',
    "{",
    "}",
    "[",
    "]",
    "\n",
    "x",
    "1e999",
    "0x1F",
    "~",
    "policy:\n",
    "%YAML 1.2\n",
]


@fuzz(300)
@given(
    text=st.lists(st.sampled_from(_YAML_PIECES), max_size=20).map("".join) | st.text(max_size=80),
    serving=st.sampled_from(SERVINGS),
)
@example(text="!!python/object/apply:os.system ['true']", serving=None)
@example(text="a: &a [*a]", serving=None)
def test_any_yaml_text_is_refused_with_a_place_or_loaded(
    text: str, serving: Serving | None
) -> None:
    """A policy file as ``load_policy_file`` reads one (``safe_load`` only: no tag runs)."""
    try:
        data = parse_yaml(text, SOURCE, PolicyError)
    except PolicyError as exc:
        message: str | None = str(exc)
    else:
        message = None
    if message is not None:
        assert message.startswith(f"{SOURCE} is not valid YAML: "), message
        return
    load(data, serving)


# --- policy-shaped documents -----------------------------------------------------------------

_GLOBS = st.sampled_from(
    ["*", "claude-*", "[a-z]*", "[!x]", "[]]", "[z-a]", "?", "**", "\\*", "a[", "]"]
) | st.text(max_size=8)
_LISTS = st.lists(_GLOBS, max_size=3) | JSON
_CONDITIONS: dict[str, st.SearchStrategy[Any]] = {
    "groups": _LISTS,
    "principals": _LISTS,
    "issuers": _LISTS,
    "claims": st.dictionaries(st.sampled_from(["team", "env", "n", "a.b"]), _GLOBS | _LISTS) | JSON,
    "scopes": _LISTS,
    "client_certificates": _LISTS,
    "endpoints": st.lists(st.sampled_from([*ENDPOINTS, "nope"]), max_size=3) | JSON,
    "methods": st.lists(st.sampled_from(["GET", "POST", "DELETE", "PUT"]), max_size=2) | JSON,
    "models": _LISTS,
    "skills": _LISTS,
    "tools": _LISTS,
    "mcp_servers": _LISTS,
    "betas": _LISTS,
    "stream": st.booleans() | JSON,
    "max_tokens_above": st.integers(-1, 10_000) | JSON,
    "thinking_budget_above": st.integers(-1, 10_000) | JSON,
    "request_bytes_above": st.integers(-1, 10_000) | JSON,
    "skills_outside_token_scope": st.booleans() | JSON,
    "findings": st.lists(st.sampled_from([*sorted(DETECTORS), "nope"]), max_size=2) | JSON,
    "guardrails": st.lists(st.sampled_from(["prompt_injection", "jailbreak", "x"]), max_size=2)
    | st.fixed_dictionaries(
        {"any": st.lists(st.text(max_size=12), max_size=2)},
        optional={"in": JSON, "score_at_least": st.floats() | JSON},
    )
    | JSON,
}
_ACTIONS = st.sampled_from(["redact", "pseudonymize", "hash", "block", "report", "nope"])
_RULE = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["r1", "r2", "a.b:c-d", "", "-x", "x" * 130]) | JSON,
        "effect": st.sampled_from(["allow", "deny", "review"]) | JSON,
    },
    optional={
        "when": st.fixed_dictionaries({}, optional=_CONDITIONS) | JSON,
        "message": st.text(max_size=10) | JSON,
        "limits": st.fixed_dictionaries(
            {},
            optional={
                "max_tokens": st.integers(-1, 10) | JSON,
                "requests_per_minute": st.integers(-1, 10),
                "per": st.sampled_from(["principal", "group", "x"]),
            },
        )
        | JSON,
        "mask": st.fixed_dictionaries(
            {},
            optional={
                "action": _ACTIONS | JSON,
                "categories": st.lists(st.sampled_from(["pii", "secret", "custom", "x"])) | JSON,
                "detectors": st.dictionaries(
                    st.sampled_from([*sorted(DETECTORS), "nope", "prompt_injection"]), _ACTIONS
                )
                | JSON,
            },
        )
        | JSON,
        "review": st.fixed_dictionaries(
            {},
            optional={
                "approvers": st.lists(st.text(max_size=5), max_size=2) | JSON,
                "require": st.sampled_from(["any", "all", 0, 1, 2]) | JSON,
                "expires": st.sampled_from(["1h", "0s", "-1s", "soon", 30, 1e308]) | JSON,
                "grant": st.sampled_from(["1h", "0s", None]) | JSON,
                "wait": st.sampled_from(["hold", "async", "x"]),
            },
        )
        | JSON,
        "x": JSON,
    },
)
# Regular expression fragments: balanced and not, nested quantifiers, look-arounds, back
# references, anchors, flags, and non-ASCII; both engines (re and hyperscan) must take them.
_REGEX_PIECES = [
    "a", "b+", "(", ")", "(?:", "[", "]", "[a-z]", "[z-a]", "*", "+", "?", "{2,3}",
    "{1000,}", "|", "^", "$", "\\b", "\\d", "\\", "(?i)", "(?=x)", "(?<=y)", "\\1",
    "(?P<value>x)", ".", ".*", "é", "\x00", "(a+)+", "\\Z",
]  # fmt: skip
_REGEX = st.lists(st.sampled_from(_REGEX_PIECES), max_size=8).map("".join)
_CHECK = st.fixed_dictionaries(
    {
        "id": st.sampled_from(["c1", "c2", "prompt_injection", "bad id"]) | JSON,
        "category": st.sampled_from(["prompt_injection", "jailbreak", "x"]) | JSON,
        "message": st.text(max_size=8) | JSON,
    },
    optional={
        "patterns": st.lists(_REGEX, max_size=3) | JSON,
        "words": st.lists(st.text(max_size=10), max_size=3) | JSON,
        "score": st.floats() | JSON,
    },
)
DOCUMENT = st.fixed_dictionaries(
    {},
    optional={
        "default": st.sampled_from(["deny", "allow", "maybe"]) | JSON,
        "skill_scope_prefix": st.text(max_size=6) | JSON,
        "rules": st.lists(_RULE, max_size=4) | JSON,
        "guardrails": st.fixed_dictionaries(
            {},
            optional={
                "packs": st.lists(
                    st.fixed_dictionaries(
                        {"id": st.sampled_from(["p1", "p 2"]), "checks": st.lists(_CHECK)}
                    ),
                    max_size=2,
                )
                | JSON,
                "disable": st.lists(st.sampled_from(["jailbreak.roleplay", "nope"])) | JSON,
            },
        )
        | JSON,
        "extra": JSON,
    },
)


@fuzz(400)
@given(
    document=DOCUMENT,
    wrapped=st.booleans(),
    serving=st.sampled_from(SERVINGS),
)
def test_any_policy_shaped_document_is_refused_with_a_place_or_loaded(
    document: dict[str, Any], wrapped: bool, serving: Serving | None
) -> None:
    load({"policy": document} if wrapped else document, serving)


@fuzz(100)
@given(document=DOCUMENT)
def test_a_policy_reads_the_same_from_its_yaml(document: dict[str, Any]) -> None:
    """What the CLI and the gateway read from a file is what the dict says: written as YAML
    and read back, a document loads, or fails, the same way."""
    text = yaml.safe_dump(document)
    direct = load(document, None)
    reread = load(parse_yaml(text, SOURCE, PolicyError), None)
    assert (direct is None) == (reread is None)


def test_the_shapes_do_load() -> None:
    """The document strategy is no strawman: a document it can draw loads and decides."""
    document = {
        "default": "deny",
        "rules": [
            {
                "id": "r1",
                "effect": "allow",
                "when": {"tools": ["*"], "models": ["claude-*"], "claims": {"team": "data"}},
                "limits": {"max_tokens": 10},
                "mask": {"action": "redact", "detectors": {"email": "pseudonymize"}},
            },
            {"id": "r2", "effect": "review", "review": {"approvers": ["leads"]}},
        ],
        "guardrails": {
            "packs": [
                {
                    "id": "p1",
                    "checks": [
                        {
                            "id": "c1",
                            "category": "jailbreak",
                            "message": "m",
                            "patterns": ["(?:ignore){1,3} all"],
                        }
                    ],
                }
            ]
        },
    }
    assert load(document, SERVINGS[2]) is not None


@pytest.mark.parametrize("key", [" ", "a\nb", "rules\n  fake: problem", "\t"])
@pytest.mark.parametrize("where", ["top", "rule", "guardrails"])
def test_an_unknown_key_of_any_spelling_is_named_on_its_own_line(key: str, where: str) -> None:
    """Regression (found by the fuzzer above): an unknown key was named as written, so a key
    of white space gave a blank place and a key with a line break split its problem over
    two lines (or wrote a problem of its own into the message). config/problems.py now
    quotes a key that is not plain and keeps every problem on one line."""
    documents: dict[str, dict[str, Any]] = {
        "top": {key: 1},
        "rule": {"rules": [{"id": "r1", "effect": "deny", key: 1}]},
        "guardrails": {"guardrails": {key: 1}},
    }
    document = documents[where]
    with pytest.raises(PolicyError) as info:
        build_policy(document, source=SOURCE)
    message = str(info.value)
    assert _INVALID.fullmatch(message), message
    assert len(message.splitlines()) == 2, message  # the header and one problem


@pytest.mark.parametrize(
    ("pattern", "said"),
    [
        ("a{99999999999}", "a pattern cannot be compiled"),  # re: OverflowError
        ("(?:" * 3000 + "a" + ")" * 3000, "a pattern is nested too deeply"),  # re: RecursionError
    ],
)
def test_a_pattern_re_cannot_compile_is_named_with_its_check(pattern: str, said: str) -> None:
    """``re`` refuses some patterns with OverflowError or RecursionError, not ``re.error``:
    the load still ends in a PolicyError naming the check, not in a traceback."""
    check = {"id": "c1", "category": "jailbreak", "message": "m", "patterns": [pattern]}
    document = {"guardrails": {"packs": [{"id": "p1", "checks": [check]}]}}
    with pytest.raises(PolicyError) as info:
        build_policy(document, source=SOURCE)
    message = str(info.value)
    assert _INVALID.fullmatch(message), message
    assert f"check 'c1': {said}" in message


def test_a_claim_key_is_quoted_where_it_is_named() -> None:
    """A key inside a value (a claim's name) is the author's text too."""
    document = {"rules": [{"id": "r1", "effect": "deny", "when": {"claims": {"a\nb": 1}}}]}
    with pytest.raises(PolicyError) as info:
        build_policy(document, source=SOURCE)
    message = str(info.value)
    assert _INVALID.fullmatch(message), message
    assert "rule 'r1': when.claims.'a\\nb'." in message
