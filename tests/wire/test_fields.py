"""Where inspection looks: every string of a body, each with its kind; nothing skipped."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.core.texts import Kind, NameClash, NotRewritable
from ztgate.wire.fields import TooDeep, body_text, safe_path

BODY: dict[str, Any] = {
    "model": "claude-haiku-5-5",
    "max_tokens": 64,
    "metadata": {"user_id": "user-id-text"},
    "stop_sequences": ["stop-text"],
    "system": [{"type": "text", "text": "sys-block", "cache_control": {"type": "ephemeral"}}],
    "tools": [
        {
            "name": "lookup",
            "description": "tool-description",
            "input_schema": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "schema-description"}},
            },
        }
    ],
    "mcp_servers": [
        {"type": "url", "url": "https://mcp.example/", "name": "mcp", "authorization_token": "T0K"}
    ],
    "messages": [
        {"role": "user", "content": "plain-string"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "assistant-text", "citations": [{"cited_text": "cited"}]},
                {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"q": "tool-query"}},
                {"type": "thinking", "thinking": "thought", "signature": "c2ln"},
                {"type": "redacted_thinking", "data": "ZW5j"},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "tool-result"},
                {
                    "type": "document",
                    "title": "doc-title",
                    "context": "doc-context",
                    "source": {"type": "text", "media_type": "text/plain", "data": "doc-text"},
                },
                {
                    "type": "search_result",
                    "source": "search-source",
                    "title": "search-title",
                    "content": [{"type": "text", "text": "search-text"}],
                },
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "aW1n"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://img.example/?k=v"}},
                {
                    "type": "future_block",
                    "note": "future-text",
                    "nested": {"deeper": "future-deep"},
                },
            ],
        },
    ],
}


def kinds(body: dict[str, Any]) -> dict[str, tuple[Kind, str]]:
    return {f.path: (f.kind, f.text) for f in body_text(body).fields if f.kind is not Kind.NAME}


def test_every_text_the_model_reads_is_text() -> None:
    found = kinds(BODY)
    texts = {path: text for path, (kind, text) in found.items() if kind is Kind.TEXT}
    for expected in (
        "user-id-text",
        "stop-text",
        "sys-block",
        "tool-description",
        "schema-description",
        "https://mcp.example/",
        "plain-string",
        "assistant-text",
        "cited",
        "tool-query",
        "tool-result",
        "doc-title",
        "doc-context",
        "doc-text",
        "search-source",
        "search-title",
        "search-text",
        "https://img.example/?k=v",
        "future-text",  # a block type the API adds later is inspected, not passed
        "future-deep",
    ):
        assert expected in texts.values(), expected
    assert texts["messages.1.content.1.input.q"] == "tool-query"
    assert texts["tools.0.input_schema.properties.query.description"] == "schema-description"


def test_identifiers_and_signed_text_are_fixed() -> None:
    fixed = {text for kind, text in kinds(BODY).values() if kind is Kind.FIXED}
    assert {"claude-haiku-5-5", "user", "assistant", "t1", "lookup", "thought", "mcp"} <= fixed
    assert {"text", "tool_use", "thinking", "ephemeral", "image/png"} <= fixed


def test_binary_encrypted_and_credentials_are_opaque() -> None:
    everything = {text for _, text in kinds(BODY).values()}
    assert not {"c2ln", "ZW5j", "aW1n", "T0K"} & everything


def test_free_form_keys_are_names_and_api_keys_are_collected() -> None:
    found = body_text(BODY)
    names = {f.text for f in found.fields if f.kind is Kind.NAME}
    assert {"q", "query", "properties", "description", "type"} <= names
    assert {"model", "messages", "content", "future_block", "note"} - found.keys == {"future_block"}


def test_a_planted_key_is_seen() -> None:
    body = {"model": "m", "sk-planted-as-a-field-name": 1, "messages": []}
    assert "sk-planted-as-a-field-name" in body_text(body).keys


def test_every_request_of_a_batch() -> None:
    batch = {
        "requests": [
            {"custom_id": "a", "params": BODY},
            {"custom_id": "b", "params": {"messages": [{"role": "user", "content": "second"}]}},
        ]
    }
    found = {f.path: f.text for f in body_text(batch).fields}
    assert found["requests.0.params.messages.0.content"] == "plain-string"
    assert found["requests.1.params.messages.0.content"] == "second"
    assert found["requests.1.custom_id"] == "b"


def test_fields_write_back_and_names_rename_in_place() -> None:
    body = {
        "messages": [
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "t", "name": "n", "input": {"a": "x", "b": "y"}}
                ],
            }
        ]
    }
    for field in body_text(body).fields:
        if field.kind is not Kind.FIXED:
            field.replace(field.text.upper())
    assert body["messages"][0]["content"][0]["input"] == {"A": "X", "B": "Y"}
    assert list(body["messages"][0]["content"][0]["input"]) == ["A", "B"]  # order kept


def test_fixed_fields_cannot_be_rewritten() -> None:
    [field] = [f for f in body_text({"model": "m"}).fields if f.kind is Kind.FIXED]
    with pytest.raises(NotRewritable):
        field.replace("x")


def test_renaming_onto_an_existing_key_is_refused() -> None:
    body = {"input": {"a": 1, "b": 2}}
    [name_a] = [f for f in body_text(body).fields if f.kind is Kind.NAME and f.text == "a"]
    with pytest.raises(NameClash):
        name_a.replace("b")


@pytest.mark.parametrize("depth", [63, 64])
def test_depth_within_the_bound_is_walked(depth: int) -> None:
    deep: Any = "bottom"
    for _ in range(depth - 1):
        deep = {"k": deep}
    assert body_text(deep).fields[0].text == "bottom"


@pytest.mark.parametrize("where", ["api", "free"])
def test_deeper_than_the_bound_is_refused_without_naming_keys(where: str) -> None:
    deep: Any = "bottom"
    for _ in range(80):
        deep = {"sk-ant-secret-key": deep} if where == "free" else [deep]
    body = {"messages": [{"role": "user", "content": [{"type": "tool_use", "input": deep}]}]}
    with pytest.raises(TooDeep) as refused:
        body_text(body)
    assert "secret" not in str(refused.value)


def test_a_tainted_key_is_never_spelled_in_a_path() -> None:
    assert safe_path("a.input.alice@x.org.b", {"alice@x.org"}) == "a.input.<key>.b"


# --- properties --------------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=40,
)
_KEYS = st.sampled_from(
    [
        "type",
        "text",
        "content",
        "input",
        "data",
        "source",
        "name",
        "id",
        "thinking",
        "signature",
        "x",
    ]
)
_api_like = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_KEYS | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=40,
)
_OPAQUE_PLACES = {
    "signature",
    "encrypted_content",
    "encrypted_index",
    "encrypted_stdout",
    "authorization_token",
}


def _strings(value: Any, parent: Any = None, key: Any = None) -> list[tuple[Any, Any, str]]:
    if isinstance(value, str):
        return [(parent, key, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, value, k)]
    if isinstance(value, list):
        return [s for i, v in enumerate(value) for s in _strings(v, value, i)]
    return []


@settings(deadline=None, max_examples=300)
@given(st.dictionaries(_KEYS | st.text(max_size=6), _api_like, max_size=6))
def test_every_string_is_read_unless_it_is_opaque_by_name(body: dict[str, Any]) -> None:
    """Whatever shape a caller invents, each string is a field, or sits under a key the table
    names opaque (or ``data`` of a binary source): nothing else can hide."""
    found = body_text(body, max_depth=200)
    read = {(id(f.holder), f.key) for f in found.fields if f.kind is not Kind.NAME}
    for holder, key, _ in _strings(body):
        if (id(holder), key) in read:
            continue
        assert isinstance(holder, dict)
        assert key in _OPAQUE_PLACES or (
            key == "data" and holder.get("type") in ("base64", "redacted_thinking")
        )


@settings(deadline=None, max_examples=200)
@given(_json)
def test_free_form_json_is_read_whole(value: Any) -> None:
    """Inside a tool's input every string is text and every key a name, at any depth."""
    body = {"input": value}
    found = body_text(body, max_depth=200)
    texts = [f.text for f in found.fields if f.kind is Kind.TEXT]
    names = [f.text for f in found.fields if f.kind is Kind.NAME]
    assert sorted(texts) == sorted(s for _, _, s in _strings(value))
    assert sorted(names) == sorted(_keys(value))


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []
