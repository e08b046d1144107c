"""Where the inspector looks: every text field of a messages request, nowhere else."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.inspection.fields import MAX_DEPTH, TooDeep, request_fields, request_texts

BODY: dict[str, Any] = {
    "model": "claude-haiku-5-5",
    "system": [{"type": "text", "text": "sys-block"}],
    "messages": [
        {"role": "user", "content": "plain-string"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "assistant-text"},
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "lookup",
                    "input": {"query": "tool-query", "filters": [{"v": "nested-value"}], "n": 3},
                },
                {"type": "thinking", "thinking": "not-inspected", "signature": "sig"},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "tool-result-string"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t2",
                    "content": [{"type": "text", "text": "tool-result-block"}],
                },
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "document-text"},
                },
                {"type": "image", "source": {"type": "base64", "data": "aW1hZ2U="}},
            ],
        },
    ],
}


def test_every_text_field_is_found_with_its_path() -> None:
    found = dict(request_texts(BODY))
    assert found == {
        "system.0.text": "sys-block",
        "messages.0.content": "plain-string",
        "messages.1.content.0.text": "assistant-text",
        "messages.1.content.1.input.query": "tool-query",
        "messages.1.content.1.input.filters.0.v": "nested-value",
        "messages.2.content.0.content": "tool-result-string",
        "messages.2.content.1.content.0.text": "tool-result-block",
        "messages.2.content.2.source.data": "document-text",
    }


def test_string_system_prompt() -> None:
    assert list(request_texts({"system": "be brief", "messages": []})) == [("system", "be brief")]


def test_every_request_of_a_batch() -> None:
    batch = {
        "requests": [
            {"custom_id": "a", "params": BODY},
            {"custom_id": "b", "params": {"messages": [{"role": "user", "content": "second"}]}},
        ]
    }
    paths = dict(request_texts(batch, batch=True))
    assert paths["requests.0.params.messages.0.content"] == "plain-string"
    assert paths["requests.1.params.messages.0.content"] == "second"


def test_too_deep_tool_inputs_are_refused_not_skipped() -> None:
    deep: Any = "bottom"
    for _ in range(MAX_DEPTH + 10):
        deep = {"k": deep}
    body = {
        "messages": [
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t", "name": "n", "input": deep}],
            }
        ]
    }
    with pytest.raises(TooDeep, match="deeper than 64"):
        list(request_texts(body))


def test_fields_write_back_in_place() -> None:
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]}
    for field in request_fields(body):
        field.replace(field.text.upper())
    assert body["messages"][0]["content"][0]["text"] == "A"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(deadline=None)
@given(st.dictionaries(st.sampled_from(["system", "messages", "requests", "x"]), _json))
def test_any_body_is_walked_without_error_and_yields_strings(body: dict[str, Any]) -> None:
    for batch in (False, True):
        for path, text in request_texts(body, batch=batch):
            assert isinstance(path, str)
            assert isinstance(text, str)
