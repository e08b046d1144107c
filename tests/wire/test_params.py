"""The fields policy reads are checked before anything decides: a value of another type than
the API's is refused with a 400 naming the field, never skipped."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.core.errors import InvalidRequest
from ztgate.wire.params import check_batch, check_messages_request, check_request

GOOD: dict[str, Any] = {
    "model": "claude-haiku-5-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
}


def test_a_plain_request_passes() -> None:
    check_messages_request(GOOD)
    check_messages_request(
        {
            **GOOD,
            "stream": True,
            "system": [{"type": "text", "text": "s"}],
            "thinking": {"type": "enabled", "budget_tokens": 2048},
            "tools": [
                {"name": "Bash", "input_schema": {}},
                {"type": "web_search_20250305", "name": "web_search"},
            ],
            "container": {
                "skills": [{"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]
            },
            "mcp_servers": [{"type": "url", "url": "https://m.example", "name": "m"}],
        }
    )
    check_messages_request({**GOOD, "container": "container_01"})
    check_messages_request({k: v for k, v in GOOD.items() if k != "max_tokens"}, counting=True)
    check_messages_request(GOOD, counting=True)


@pytest.mark.parametrize("max_tokens", [None, "4096", [1], {"n": 1}, 1.5, 0, True])
def test_count_tokens_holds_a_max_tokens_it_carries_to_the_same_shape(max_tokens: Any) -> None:
    """count_tokens takes no max_tokens, but policy reads (max_tokens_above) and the transform
    caps one that is there: it is an integer, as on messages, or the request is refused."""
    with pytest.raises(InvalidRequest, match="max_tokens: must be an integer"):
        check_messages_request({**GOOD, "max_tokens": max_tokens}, counting=True)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_tokens": 4096.0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": "4096"}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2**40}, "max_tokens"),
        ({"max_tokens": None}, "max_tokens"),
        ({"model": ["claude-opus-5-5"]}, "model"),
        ({"model": ""}, "model"),
        ({"model": "claude opus"}, "model"),
        ({"stream": "true"}, "stream"),
        ({"stream": 1}, "stream"),
        ({"thinking": {"type": "enabled", "budget_tokens": 65536.0}}, "thinking.budget_tokens"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"thinking": {"budget_tokens": 2048}}, "thinking.type"),
        ({"thinking": "enabled"}, "thinking"),
        ({"tools": {"name": "Bash"}}, "tools"),
        ({"tools": [{"input_schema": {}}]}, "tools.0.name"),
        ({"tools": [{"name": ["Bash"]}]}, "tools.0.name"),
        ({"tools": [{"type": 7}]}, "tools.0.type"),
        ({"container": {"skills": [{"skill_id": "xlsx"}]}}, "container.skills.0.type"),
        ({"container": {"skills": [{"type": "anthropic"}]}}, "container.skills.0.skill_id"),
        ({"container": {"skills": "xlsx"}}, "container.skills"),
        ({"container": 5}, "container"),
        ({"mcp_servers": [{"name": "m"}]}, "mcp_servers.0.url"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"content": "hi"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        (
            {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
            "messages.0.content.0.type",
        ),
        ({"system": {"type": "text"}}, "system"),
    ],
)
def test_what_policy_reads_must_have_the_api_type(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest, match="^" + re.escape(field) + ":"):
        check_messages_request({**GOOD, **change})


def test_missing_model_and_max_tokens_are_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"^model:"):
        check_messages_request({k: v for k, v in GOOD.items() if k != "model"})
    with pytest.raises(InvalidRequest, match=r"^max_tokens:"):
        check_messages_request({k: v for k, v in GOOD.items() if k != "max_tokens"})


def test_every_request_of_a_batch_is_checked() -> None:
    check_batch({"requests": [{"custom_id": "a-1", "params": GOOD}]})
    for batch, where in [
        ({}, "requests"),
        ({"requests": []}, "requests"),
        ({"requests": [{"custom_id": "a", "params": GOOD}, "x"]}, r"requests\.1"),
        ({"requests": [{"params": GOOD}]}, r"requests\.0\.custom_id"),
        ({"requests": [{"custom_id": "a b", "params": GOOD}]}, r"requests\.0\.custom_id"),
        ({"requests": [{"custom_id": "a"}]}, r"requests\.0\.params"),
        (
            {"requests": [{"custom_id": "a", "params": {**GOOD, "max_tokens": 1e3}}]},
            r"requests\.0\.params\.max_tokens",
        ),
        (
            {"requests": [{"custom_id": "a", "params": {**GOOD, "stream": True}}]},
            r"requests\.0\.params\.stream",
        ),
    ]:
        with pytest.raises(InvalidRequest, match=f"^{where}"):
            check_request("batches", batch)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


_POLICY_READS = (
    "model",
    "max_tokens",
    "stream",
    "thinking",
    "tools",
    "container",
    "mcp_servers",
    "messages",
    "system",
)


@settings(deadline=None, max_examples=400)
@given(
    st.fixed_dictionaries(
        {},
        optional=dict.fromkeys(_POLICY_READS, _json),
    )
)
def test_any_body_is_accepted_or_refused_with_a_400(body: dict[str, Any]) -> None:
    """Whatever a caller sends, the check answers with a clean 400 or lets it pass; and what
    passes has the types policy relies on."""
    for endpoint in ("messages", "count_tokens", "batches"):
        try:
            check_request(
                endpoint,
                body
                if endpoint != "batches"
                else {"requests": [{"custom_id": "a", "params": body}]},
            )
        except InvalidRequest:
            continue
        params = body
        assert type(params["model"]) is str
        if endpoint != "count_tokens" or "max_tokens" in params:
            # count_tokens needs none, but one it carries is read by policy and capped
            assert type(params["max_tokens"]) is int
        assert isinstance(params.get("stream", False), bool)
        for tool in params.get("tools") or []:
            assert isinstance(tool.get("name", tool.get("type")), str)
