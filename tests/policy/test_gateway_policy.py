"""Policy through the real gateway, with the anthropic SDK as the client.

One policy for three teams (ci, data, platform), a table of (caller, SDK call, expected
outcome), and the obligations that need the whole path: max_tokens caps rewritten on the way
upstream, per-minute quotas answered with 429 and ``retry-after``, and containers that only
their creator may reuse. A refused request never reaches the upstream.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import pytest

from tests.stackrunner import RunningStack

HAIKU = "claude-haiku-4-5-20251001"
SONNET = "claude-sonnet-5-5"
OPUS = "claude-opus-5-1"
HELLO = [{"role": "user", "content": "Summarise ticket 42"}]
SKILLS_BETA = "skills-2025-10-02"
CODE_BETA = "code-execution-2025-08-25"
MCP_BETA = "mcp-client-2025-04-04"
FILES_BETA = "files-api-2025-04-14"
XLSX = {"type": "anthropic", "skill_id": "xlsx", "version": "latest"}
PPTX = {"type": "anthropic", "skill_id": "pptx", "version": "latest"}
PDF = {"type": "anthropic", "skill_id": "pdf", "version": "latest"}
CODE_EXECUTION = {"type": "code_execution_20250825", "name": "code_execution"}
MCP_SERVER = {"type": "url", "url": "https://mcp.example.com/sse", "name": "tickets"}
SCHEMA = {"type": "object", "properties": {}}

POLICY: dict[str, Any] = {
    "default": "deny",
    "rules": [
        {
            "id": "ci-summaries",
            "when": {
                "groups": ["ci"],
                "endpoints": ["messages", "count_tokens"],
                "models": ["claude-haiku-*"],
                "tools": ["lookup_ticket"],
            },
            "effect": "allow",
            "limits": {"max_tokens": 256},
        },
        {
            "id": "no-shell-for-ci",
            "when": {"groups": ["ci"], "tools": ["bash_*", "Bash", "computer_*"]},
            "effect": "deny",
            "message": "CI identities may not use shell or computer tools",
        },
        {
            "id": "ci-does-not-stream",
            "when": {"groups": ["ci"], "stream": True},
            "effect": "deny",
            "message": "CI jobs do not stream",
        },
        {
            "id": "data-agents",
            "when": {
                "groups": ["data"],
                "endpoints": ["messages", "batches"],
                "models": ["claude-sonnet-*", "claude-haiku-*"],
                "skills": ["xlsx", "pdf"],
                "tools": ["code_execution_*", "lookup"],
                "mcp_servers": ["https://mcp.example.com/*"],
                "betas": [SKILLS_BETA, CODE_BETA, MCP_BETA],
            },
            "effect": "allow",
        },
        {
            "id": "no-web-fetch",
            "when": {"tools": ["web_fetch_*"]},
            "effect": "deny",
            "message": "web fetch is not allowed here",
        },
        {
            "id": "files-beta-off",
            "when": {"betas": ["files-api-*"]},
            "effect": "deny",
            "message": "the Files API beta is turned off",
        },
        {
            "id": "skills-within-token-scope",
            "when": {"skills_outside_token_scope": True},
            "effect": "deny",
            "message": "this token is not scoped for the requested skill",
        },
        {
            "id": "platform-team",
            "when": {"groups": ["platform"], "skills": ["*"], "tools": ["*"], "mcp_servers": ["*"]},
            "effect": "allow",
        },
        {
            "id": "opus-needs-approval",
            "when": {"models": ["claude-opus-*"]},
            "effect": "review",
            "review": {"approvers": ["security"], "wait": "async"},
        },
        {
            "id": "quota-probe",
            "when": {"principals": ["demo/quota-*"], "models": ["claude-haiku-*"]},
            "effect": "allow",
            "limits": {"requests_per_minute": 2},
        },
    ],
}
RULE_IDS = frozenset(rule["id"] for rule in POLICY["rules"])
NO_RULE = "denied by policy: no rule allows this request"
# async: refused at once, naming the review and where to approve it
NEEDS_APPROVAL = "(rule opus-needs-approval: this rule requires human review); approve it at"


@pytest.fixture(scope="module")
def policy_stack() -> Iterator[RunningStack]:
    running = RunningStack(policy=POLICY)
    yield running
    running.close()


Client = Callable[..., anthropic.Anthropic]


def client_for(
    stack: RunningStack, sdk: Client, subject: str, groups: tuple[str, ...], scope: str = ""
) -> anthropic.Anthropic:
    """A client whose token says ``groups`` (the demo issuer reads the ``groups`` claim)."""
    claims: dict[str, Any] = {"groups": list(groups)}
    if scope:
        claims["scope"] = scope
    return sdk(base_url=stack.url, auth_token=stack.token(subject, claims=claims))


def error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    assert isinstance(body, dict), body
    assert body["type"] == "error"
    return str(body["error"]["message"])


# --------------------------------------------------------------------------- the table

Call = Callable[[anthropic.Anthropic], object]


@dataclass(frozen=True)
class Case:
    id: str
    groups: tuple[str, ...]
    call: Call
    rule: str | None = None  # the rule the error must name; None: the call succeeds
    message: str = ""  # what the error must say
    scope: str = ""
    xfail: str = ""  # a known bug: the reason

    @property
    def allowed(self) -> bool:
        return self.rule is None and not self.message


def haiku(**params: Any) -> Call:
    return lambda c: c.messages.create(model=HAIKU, max_tokens=100, messages=HELLO, **params)


def beta(model: str = SONNET, **params: Any) -> Call:
    return lambda c: c.beta.messages.create(model=model, max_tokens=100, messages=HELLO, **params)


def batch(*params: dict[str, Any]) -> Call:
    requests = [
        {"custom_id": f"r{i}", "params": {"model": HAIKU, "max_tokens": 50, "messages": HELLO, **p}}
        for i, p in enumerate(params, start=1)
    ]
    return lambda c: c.messages.batches.create(requests=requests)


def tool(name: str) -> dict[str, Any]:
    return {"name": name, "description": name, "input_schema": SCHEMA}


def with_skills(*skills: dict[str, Any]) -> dict[str, Any]:
    return {
        "container": {"skills": list(skills)},
        "tools": [CODE_EXECUTION],
        "betas": [SKILLS_BETA, CODE_BETA],
    }


CI, DATA, PLATFORM = ("ci",), ("data",), ("platform",)
SHELL = "CI identities may not use shell or computer tools"
CASES = [
    # CI: one model, one custom tool, no shell, no streaming
    Case("ci-haiku", CI, haiku()),
    Case("ci-count-tokens", CI, lambda c: c.messages.count_tokens(model=HAIKU, messages=HELLO)),
    Case("ci-other-model", CI, beta(SONNET), message=NO_RULE),
    Case("ci-models-endpoint", CI, lambda c: c.models.list(), message=NO_RULE),
    Case("ci-granted-custom-tool", CI, haiku(tools=[tool("lookup_ticket")])),
    Case("ci-custom-bash", CI, haiku(tools=[tool("Bash")]), "no-shell-for-ci", SHELL),
    Case(
        "ci-server-bash",
        CI,
        haiku(tools=[{"type": "bash_20250124", "name": "bash"}]),
        "no-shell-for-ci",
        SHELL,
    ),
    Case(
        "ci-computer-use",
        CI,
        beta(
            HAIKU,
            tools=[
                {
                    "type": "computer_20250124",
                    "name": "computer",
                    "display_width_px": 1024,
                    "display_height_px": 768,
                }
            ],
            betas=["computer-use-2025-01-24"],
        ),
        "no-shell-for-ci",
        SHELL,
    ),
    Case("ci-ungranted-tool", CI, haiku(tools=[tool("deploy")]), message=NO_RULE),
    Case("ci-stream", CI, haiku(stream=True), "ci-does-not-stream", "CI jobs do not stream"),
    # data: xlsx/pdf skills with code execution, one MCP host, three betas
    Case("data-xlsx-skill", DATA, beta(**with_skills(XLSX)), scope="skill:xlsx"),
    Case(
        "data-two-skills",
        DATA,
        beta(**with_skills(XLSX, PDF)),
        scope="skill:xlsx skill:pdf",
    ),
    Case(
        "data-ungranted-skill", DATA, beta(**with_skills(PPTX)), message=NO_RULE, scope="skill:pptx"
    ),
    Case(
        "data-skill-outside-token-scope",
        DATA,
        beta(**with_skills(XLSX)),
        "skills-within-token-scope",
        "this token is not scoped for the requested skill",
        scope="skill:pdf",
    ),
    Case(
        "data-one-skill-outside-scope",
        DATA,
        beta(**with_skills(XLSX, PDF)),
        "skills-within-token-scope",
        "this token is not scoped for the requested skill",
        scope="skill:xlsx",
    ),
    Case("data-code-execution", DATA, beta(tools=[CODE_EXECUTION], betas=[CODE_BETA])),
    Case(
        "data-ungranted-server-tool",
        DATA,
        haiku(tools=[{"type": "web_search_20250305", "name": "web_search"}]),
        message=NO_RULE,
    ),
    Case(
        "data-web-fetch",
        DATA,
        beta(tools=[{"type": "web_fetch_20250910", "name": "web_fetch"}]),
        "no-web-fetch",
        "web fetch is not allowed here",
    ),
    Case("data-custom-tool", DATA, haiku(tools=[tool("lookup")])),
    Case("data-mcp-server", DATA, beta(mcp_servers=[MCP_SERVER], betas=[MCP_BETA])),
    Case(
        "data-other-mcp-server",
        DATA,
        beta(mcp_servers=[{**MCP_SERVER, "url": "https://mcp.evil.test/sse"}], betas=[MCP_BETA]),
        message=NO_RULE,
    ),
    Case("data-ungranted-beta", DATA, beta(betas=["context-1m-2025-08-07"]), message=NO_RULE),
    Case(
        "data-files-beta",
        DATA,
        beta(betas=[SKILLS_BETA, FILES_BETA]),
        "files-beta-off",
        "the Files API beta is turned off",
    ),
    Case("data-batch", DATA, batch({}, {"tools": [tool("lookup")]})),
    Case(
        "data-batch-one-denied",
        DATA,
        batch({}, {"tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}]}, {}),
        "no-web-fetch",
        "batch request 'r2': web fetch is not allowed here",
    ),
    Case(
        "data-batch-one-not-allowed",
        DATA,
        batch({}, {}, {"model": SONNET}, {"model": "claude-mystery-1"}),
        message="denied by policy: batch request 'r4': no rule allows this request",
    ),
    Case("data-skills-admin", DATA, lambda c: c.beta.skills.list(), message=NO_RULE),
    Case("data-models-endpoint", DATA, lambda c: c.models.list(), message=NO_RULE),
    # platform: anything, but Opus needs a human
    Case("platform-skills-admin", PLATFORM, lambda c: c.beta.skills.list()),
    Case("platform-models", PLATFORM, lambda c: c.models.list()),
    Case("platform-bash", PLATFORM, beta(tools=[{"type": "bash_20250124", "name": "bash"}])),
    Case("platform-stream", PLATFORM, haiku(stream=True)),
    Case("platform-pptx", PLATFORM, beta(**with_skills(PPTX)), scope="skill:pptx"),
    Case(
        "platform-any-mcp-server",
        PLATFORM,
        beta(mcp_servers=[{**MCP_SERVER, "url": "https://mcp.other.test/sse"}], betas=[MCP_BETA]),
    ),
    Case("platform-opus", PLATFORM, beta(OPUS), message=NEEDS_APPROVAL),
    # review outranks the default: a request no rule allows still goes to a human
    Case("ci-opus", CI, beta(OPUS), message=NEEDS_APPROVAL),
    Case("nobody-group", ("marketing",), haiku(), message=NO_RULE),
]


def _params(cases: list[Case]) -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else [],
        )
        for case in cases
    ]


@pytest.mark.parametrize("case", _params(CASES))
def test_policy_table(policy_stack: RunningStack, sdk: Client, case: Case) -> None:
    client = client_for(policy_stack, sdk, f"{case.groups[0]}-agent", case.groups, case.scope)
    before = len(policy_stack.received())
    if case.allowed:
        result = case.call(client)
        if isinstance(result, anthropic.Stream):
            assert [event.type for event in result][-1] == "message_stop"
        assert len(policy_stack.received()) > before
        return
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        case.call(client)
    message = error_message(info.value)
    assert info.value.status_code == 403
    assert info.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
    assert case.message in message
    if case.rule is not None:
        assert f"denied by policy (rule {case.rule}): " in message
    named = {case.rule} | {rule for rule in RULE_IDS if rule in case.message}
    assert not [rule for rule in RULE_IDS - named if rule in message], message
    assert len(policy_stack.received()) == before, "a refused request reached the upstream"


# --------------------------------------------------------------------------- obligations


def test_max_tokens_is_capped_on_the_way_upstream(policy_stack: RunningStack, sdk: Client) -> None:
    client = client_for(policy_stack, sdk, "ci-capped", CI)
    client.messages.create(model=HAIKU, max_tokens=4096, messages=HELLO)
    assert policy_stack.received()[-1].json()["max_tokens"] == 256
    client.messages.create(model=HAIKU, max_tokens=100, messages=HELLO)
    assert policy_stack.received()[-1].json()["max_tokens"] == 100
    client.messages.count_tokens(model=HAIKU, messages=HELLO)
    assert "max_tokens" not in policy_stack.received()[-1].json()


def _not_at_the_end_of_a_minute() -> None:
    """Quota windows are calendar minutes: keep the three calls in one of them."""
    left = 60 - time.time() % 60
    if left < 3:
        time.sleep(left + 0.1)


def test_requests_per_minute_quota_answers_429_with_retry_after(
    policy_stack: RunningStack, sdk: Client
) -> None:
    client = client_for(policy_stack, sdk, f"quota-{uuid.uuid4().hex[:8]}", ())
    _not_at_the_end_of_a_minute()
    for _ in range(2):
        client.messages.create(model=HAIKU, max_tokens=10, messages=HELLO)
    before = len(policy_stack.received())
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(model=HAIKU, max_tokens=10, messages=HELLO)
    assert info.value.status_code == 429
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert "(rule quota-probe)" in error_message(info.value)
    assert 1 <= int(info.value.response.headers["retry-after"]) <= 60
    assert len(policy_stack.received()) == before
    other = client_for(policy_stack, sdk, f"quota-{uuid.uuid4().hex[:8]}", ())
    other.messages.create(model=HAIKU, max_tokens=10, messages=HELLO)  # its own budget


# --------------------------------------------------------------------------- containers

CONTAINER_DENIED = "was not created through this gateway by this identity"


def _reuse(client: anthropic.Anthropic, container: object) -> Any:
    return client.beta.messages.create(
        model=SONNET,
        max_tokens=50,
        messages=HELLO,
        container=container,
        tools=[CODE_EXECUTION],
        betas=[CODE_BETA],
    )


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_container_is_reusable_by_its_creator_only(
    policy_stack: RunningStack, sdk: Client, stream: bool
) -> None:
    owner = client_for(policy_stack, sdk, f"data-owner-{stream}", DATA, "skill:xlsx")
    params: dict[str, Any] = {
        "model": SONNET,
        "max_tokens": 50,
        "messages": HELLO,
        **with_skills(XLSX),
    }
    if stream:
        with owner.beta.messages.stream(**params) as events:
            created = events.get_final_message()
    else:
        created = owner.beta.messages.create(**params)
    assert created.container is not None
    assert created.container.id.startswith("container_")
    assert [s.skill_id for s in created.container.skills or []] == ["xlsx"]
    container_id = created.container.id

    again = _reuse(owner, container_id)
    assert again.container is not None
    assert again.container.id == container_id
    assert _reuse(owner, {"id": container_id}).container.id == container_id
    assert policy_stack.received()[-1].json()["container"] == {"id": container_id}

    other = client_for(policy_stack, sdk, f"data-other-{stream}", DATA, "skill:xlsx")
    before = len(policy_stack.received())
    for attempt in (container_id, {"id": container_id}):
        with pytest.raises(anthropic.PermissionDeniedError) as info:
            _reuse(other, attempt)
        assert error_message(info.value) == f"container {container_id} {CONTAINER_DENIED}"
    with pytest.raises(anthropic.PermissionDeniedError):
        other.beta.messages.batches.create(
            requests=[
                {
                    "custom_id": "steal",
                    "params": {
                        "model": SONNET,
                        "max_tokens": 10,
                        "messages": HELLO,
                        "container": container_id,
                    },
                }
            ]
        )
    assert len(policy_stack.received()) == before


def test_a_container_the_gateway_never_saw_is_refused(
    policy_stack: RunningStack, sdk: Client
) -> None:
    owner = client_for(policy_stack, sdk, "data-guesser", DATA)
    before = len(policy_stack.received())
    unknown = "container_01NeverCreatedThroughZtgate"
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        _reuse(owner, unknown)
    assert error_message(info.value) == f"container {unknown} {CONTAINER_DENIED}"
    assert len(policy_stack.received()) == before


def test_the_simulator_refuses_containers_it_did_not_create(
    policy_stack: RunningStack, sdk: Client
) -> None:
    """Straight to the upstream simulator: reuse needs an id it handed out."""
    direct = sdk(
        base_url=policy_stack.stack.simulator.base_url, api_key=policy_stack.stack.simulator.api_key
    )
    with pytest.raises(anthropic.BadRequestError):
        _reuse(direct, "container_01NeverCreated")
    created = direct.beta.messages.create(
        model=SONNET, max_tokens=10, messages=HELLO, tools=[CODE_EXECUTION], betas=[CODE_BETA]
    )
    assert created.container is not None
    assert created.container.skills == []
    assert _reuse(direct, created.container.id).container.id == created.container.id
    plain = direct.messages.create(model=SONNET, max_tokens=10, messages=HELLO)
    assert "container" not in plain.to_dict()


# --------------------------------------------------------------------------- raw HTTP


def test_a_denied_beta_on_a_second_header_line_is_refused(policy_stack: RunningStack) -> None:
    """Every anthropic-beta line is forwarded upstream, so policy must see every line."""
    token = policy_stack.token("data-agent", claims={"groups": ["data"]})
    before = len(policy_stack.received())
    response = httpx2.post(
        f"{policy_stack.url}/v1/messages",
        headers=[
            ("authorization", f"Bearer {token}"),
            ("anthropic-version", "2023-06-01"),
            ("content-type", "application/json"),
            ("anthropic-beta", SKILLS_BETA),
            ("anthropic-beta", FILES_BETA),
        ],
        json={"model": SONNET, "max_tokens": 10, "messages": HELLO},
    )
    upstream_saw = [r.headers.get("anthropic-beta") for r in policy_stack.received()[before:]]
    assert response.status_code == 403, f"allowed; upstream saw anthropic-beta: {upstream_saw}"
    assert "(rule files-beta-off)" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "requests",
    [
        pytest.param([], id="empty"),
        pytest.param([{"custom_id": "r1", "params": "not an object"}], id="params-not-object"),
        pytest.param([{"custom_id": "r1"}], id="no-params"),
    ],
)
def test_a_malformed_batch_is_refused_before_the_upstream(
    policy_stack: RunningStack, sdk: Client, requests: list[Any]
) -> None:
    client = client_for(policy_stack, sdk, "data-agent", DATA)
    before = len(policy_stack.received())
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.batches.create(requests=requests)
    assert "requests" in error_message(info.value)
    assert len(policy_stack.received()) == before
