"""Hostile bodies, queries and headers through the real gateway: what reaches the upstream
simulator is exactly what ztgate inspected and decided on, and nothing planted gets through.

Each test sends raw bytes (the SDK cannot write duplicate keys or ``4096e0``) and reads what
the simulator received.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.inspection.test_masking import ANTHROPIC, EMAIL
from tests.stackrunner import RunningStack
from ztgate.audit.sealing import load_recording
from ztgate.devtools.simulator import DELTA_CHARS_HEADER, REPLY_HEADER, SCENARIO_HEADER
from ztgate.devtools.stack import SIMULATOR_KEY

HAIKU = "claude-haiku-5-5"
OPUS = "claude-opus-5-5"
AWS_KEY = "AKIAQYLPMN5HHHFPZAM2"
CAP = 1000
POLICY = {
    "default": "deny",
    "rules": [
        {
            "id": "haiku-only",
            "when": {"models": ["claude-haiku-*"], "tools": ["*"], "mcp_servers": ["*"]},
            "effect": "allow",
            "limits": {"max_tokens": CAP},
            "mask": {
                "categories": ["secret"],
                "action": "redact",
                "detectors": {"email": "pseudonymize"},
            },
        },
        {"id": "listing", "when": {"endpoints": ["models", "files", "batches"]}, "effect": "allow"},
    ],
}


@pytest.fixture(scope="module")
def guarded() -> Iterator[RunningStack]:
    running = RunningStack(policy=POLICY)
    yield running
    running.close()


def send(
    stack: RunningStack,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = {
        "authorization": f"Bearer {stack.token()}",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        **(headers or {}),
    }
    return httpx.request(method, stack.url + target, content=body, headers=all_headers, timeout=30)


def upstream_after(stack: RunningStack, before: int) -> list[Any]:
    return stack.received()[before:]


def no_duplicate_keys(raw: bytes) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in items]
        assert len(names) == len(set(names)), f"duplicate keys upstream: {names}"
        return dict(items)

    return json.loads(raw, object_pairs_hook=pairs)


def message(**fields: Any) -> dict[str, Any]:
    return {
        "model": HAIKU,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        **fields,
    }


# --- 1. duplicate keys ------------------------------------------------------------------------

HI = '[{"role": "user", "content": "hi"}]'
PLANTED_TEXT = f"key {ANTHROPIC}"


def raw(*parts: str) -> str:
    """JSON text written by hand (the encoders refuse duplicate keys)."""
    return "".join(parts)


DUPLICATES = {
    "model": raw(f'{{"model": "{OPUS}", "model": "{HAIKU}", "max_tokens": 64, "messages": {HI}}}'),
    "max_tokens": raw(
        f'{{"model": "{HAIKU}", "max_tokens": 50000, "max_tokens": 64, "messages": {HI}}}'
    ),
    "messages": raw(
        f'{{"model": "{HAIKU}", "max_tokens": 64,',
        f' "messages": [{{"role": "user", "content": "{PLANTED_TEXT}"}}],',
        ' "messages": [{"role": "user", "content": "clean"}]}',
    ),
    "system": raw(
        f'{{"model": "{HAIKU}", "max_tokens": 64, "system": "{PLANTED_TEXT}",',
        f' "system": "clean", "messages": {HI}}}',
    ),
    "content": raw(
        f'{{"model": "{HAIKU}", "max_tokens": 64,',
        f' "messages": [{{"role": "user", "content": "{PLANTED_TEXT}", "content": "clean"}}]}}',
    ),
    "text": raw(
        f'{{"model": "{HAIKU}", "max_tokens": 64, "messages": [{{"role": "user", "content":',
        f' [{{"type": "text", "text": "{PLANTED_TEXT}", "text": "clean"}}]}}]}}',
    ),
    "type": raw(
        f'{{"model": "{HAIKU}", "max_tokens": 64, "messages": [{{"role": "user", "content":',
        f' [{{"type": "text", "type": "image", "text": "{PLANTED_TEXT}",',
        ' "source": {"type": "url", "url": "https://x/"}}]}]}',
    ),
}


@pytest.mark.parametrize("field", sorted(DUPLICATES))
def test_duplicate_keys_forward_exactly_what_was_decided(guarded: RunningStack, field: str) -> None:
    before = len(guarded.received())
    response = send(guarded, "POST", "/v1/messages", DUPLICATES[field].encode())
    [upstream] = upstream_after(guarded, before)
    body = no_duplicate_keys(upstream.body)
    assert ANTHROPIC.encode() not in upstream.body
    assert body["model"] == HAIKU  # the model policy decided on, the only one
    assert body["max_tokens"] <= CAP
    assert response.status_code in (200, 400)  # the simulator judges an image with text


def test_duplicate_keys_in_count_tokens_and_batches(guarded: RunningStack) -> None:
    before = len(guarded.received())
    count = raw(f'{{"model": "{OPUS}", "model": "{HAIKU}", "messages": {HI}}}')
    assert send(guarded, "POST", "/v1/messages/count_tokens", count.encode()).status_code == 200
    inner = DUPLICATES["messages"]
    batch = f'{{"requests": [{{"custom_id": "a", "params": {inner}}}]}}'
    assert send(guarded, "POST", "/v1/messages/batches", batch.encode()).status_code == 200
    for upstream in upstream_after(guarded, before):
        no_duplicate_keys(upstream.body)
        assert ANTHROPIC.encode() not in upstream.body
        assert OPUS.encode() not in upstream.body


# --- 2. numbers that dodge limits ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["4096.0", "4096e0", "4.096E3", '"4096"', "true", "1e400"])
def test_max_tokens_must_be_an_integer(guarded: RunningStack, value: str) -> None:
    before = len(guarded.received())
    body = raw(f'{{"model": "{HAIKU}", "max_tokens": {value}, "messages": {HI}}}')
    response = send(guarded, "POST", "/v1/messages", body.encode())
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert not upstream_after(guarded, before)


def test_an_integer_above_the_cap_is_capped(guarded: RunningStack) -> None:
    before = len(guarded.received())
    assert (
        send(guarded, "POST", "/v1/messages", orjson.dumps(message(max_tokens=50_000))).status_code
        == 200
    )
    [upstream] = upstream_after(guarded, before)
    assert upstream.json()["max_tokens"] == CAP


@pytest.mark.parametrize(
    "fields",
    [
        {"stream": "true"},
        {"thinking": {"type": "enabled", "budget_tokens": 65536.0}},
        {"tools": [{"name": ["Bash"], "input_schema": {}}]},
        {"container": {"skills": [{"skill_id": "xlsx"}]}},
        {"model": [OPUS]},
    ],
)
def test_what_policy_reads_is_type_checked_before_deciding(
    guarded: RunningStack, fields: dict[str, Any]
) -> None:
    before = len(guarded.received())
    response = send(guarded, "POST", "/v1/messages", orjson.dumps(message(**fields)))
    assert response.status_code == 400
    assert not upstream_after(guarded, before)


# --- 3. every text the model reads is inspected -------------------------------------------------

SECRET = f"key {ANTHROPIC}"
TEXT_PLACES: dict[str, dict[str, Any]] = {
    "tool description": {
        "tools": [{"name": "t", "description": SECRET, "input_schema": {"type": "object"}}]
    },
    "input_schema description": {
        "tools": [
            {
                "name": "t",
                "input_schema": {
                    "type": "object",
                    "properties": {"q": {"type": "string", "description": SECRET}},
                },
            }
        ]
    },
    "document title and context": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "title": SECRET,
                        "context": SECRET,
                        "source": {"type": "text", "media_type": "text/plain", "data": "d"},
                    }
                ],
            }
        ]
    },
    "search_result": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "search_result",
                        "source": SECRET,
                        "title": SECRET,
                        "content": [{"type": "text", "text": SECRET}],
                    }
                ],
            }
        ]
    },
    "metadata.user_id": {"metadata": {"user_id": SECRET}},
    "stop_sequences": {"stop_sequences": [SECRET]},
    "image url": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image", "source": {"type": "url", "url": f"https://x/?k={ANTHROPIC}"}}
                ],
            }
        ]
    },
    "document url": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "url", "url": f"https://x/?k={ANTHROPIC}"},
                    }
                ],
            }
        ]
    },
    "citations": {
        "messages": [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "text",
                        "text": "t",
                        "citations": [{"type": "char_location", "cited_text": SECRET}],
                    }
                ],
            }
        ]
    },
    "web search results": {
        "messages": [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "web_search_tool_result",
                        "tool_use_id": "srvtoolu_1",
                        "content": [
                            {
                                "type": "web_search_result",
                                "title": SECRET,
                                "url": f"https://x/{ANTHROPIC}",
                                "encrypted_content": "ZQ==",
                            }
                        ],
                    }
                ],
            }
        ]
    },
    "code execution output": {
        "messages": [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "bash_code_execution_tool_result",
                        "tool_use_id": "srvtoolu_1",
                        "content": {
                            "type": "bash_code_execution_result",
                            "stdout": SECRET,
                            "stderr": SECRET,
                            "return_code": 0,
                            "content": [],
                        },
                    }
                ],
            }
        ]
    },
    "mcp tool result": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "mcp_tool_result",
                        "tool_use_id": "mcptoolu_1",
                        "content": [{"type": "text", "text": SECRET}],
                    }
                ],
            }
        ]
    },
    "a block type from the future": {
        "messages": [
            {
                "role": "user",
                "content": [{"type": "hologram", "caption": SECRET, "layers": [{"note": SECRET}]}],
            }
        ]
    },
    "a top-level field from the future": {"instructions": SECRET, "extras": {"deep": [SECRET]}},
    "tool input values": {
        "messages": [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "t",
                        "input": {"q": SECRET, "n": [{"v": SECRET}]},
                    }
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": SECRET}],
            },
        ]
    },
}


@pytest.mark.parametrize("place", sorted(TEXT_PLACES))
def test_a_secret_in_any_text_field_never_reaches_the_upstream(
    guarded: RunningStack, place: str
) -> None:
    fields = TEXT_PLACES[place]
    body = message(**fields)
    if "messages" in fields:
        body["messages"] = [*fields["messages"], {"role": "user", "content": "go"}]
    before = len(guarded.received())
    send(guarded, "POST", "/v1/messages", orjson.dumps(body))
    for upstream in upstream_after(guarded, before):
        assert ANTHROPIC.encode() not in upstream.body
        assert b"[REDACTED:ANTHROPIC_API_KEY]" in upstream.body


def test_a_secret_spelled_as_a_tool_input_key_is_renamed(guarded: RunningStack) -> None:
    tool_use = {"type": "tool_use", "id": "t1", "name": "t", "input": {EMAIL: {"note": "x"}}}
    body = message(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [tool_use]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
            },
        ]
    )
    before = len(guarded.received())
    response = send(guarded, "POST", "/v1/messages", orjson.dumps(body))
    assert response.status_code == 200, response.text
    [upstream] = upstream_after(guarded, before)
    assert EMAIL.encode() not in upstream.body
    assert upstream.json()["messages"][1]["content"][0]["input"] == {"<EMAIL_1>": {"note": "x"}}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            message(
                messages=[
                    {"role": "user", "content": "hi"},
                    {
                        "role": "assistant",
                        "content": [{"type": "thinking", "thinking": SECRET, "signature": "c2ln"}],
                    },
                    {"role": "user", "content": "go on"},
                ]
            ),
            id="signed thinking",
        ),
        pytest.param(message(tools=[{"name": AWS_KEY, "input_schema": {}}]), id="tool name"),
        pytest.param({**message(), ANTHROPIC: 1}, id="a field name"),
    ],
)
def test_a_secret_where_nothing_can_be_rewritten_is_refused(
    guarded: RunningStack, body: dict[str, Any]
) -> None:
    before = len(guarded.received())
    response = send(guarded, "POST", "/v1/messages", orjson.dumps(body))
    assert response.status_code == 400
    assert "cannot be rewritten" in response.json()["error"]["message"]
    assert ANTHROPIC not in response.text
    assert not upstream_after(guarded, before)


def test_a_secret_in_a_forwarded_header_is_refused(guarded: RunningStack) -> None:
    before = len(guarded.received())
    response = send(guarded, "POST", "/v1/messages", orjson.dumps(message()), {"x-notes": SECRET})
    assert response.status_code == 400
    assert "headers.x-notes" in response.json()["error"]["message"]
    assert not upstream_after(guarded, before)


# --- 4. credentials in the query string, the path, other headers ---------------------------------


def test_only_defined_query_parameters_are_forwarded(guarded: RunningStack) -> None:
    before = len(guarded.received())
    assert (
        send(guarded, "POST", "/v1/messages?beta=true", orjson.dumps(message())).status_code == 200
    )
    send(guarded, "GET", "/v1/models?limit=5&after_id=claude-x")  # the simulator knows no such id
    first, second = upstream_after(guarded, before)
    assert first.query_string == "beta=true"
    assert second.query_string == "limit=5&after_id=claude-x"


@pytest.mark.parametrize(
    "query",
    [
        "access_token={token}",
        "beta=true&token={token}",
        "limit=1&limit=1000",
        "beta=true&beta=false",
    ],
)
def test_other_query_parameters_are_refused(guarded: RunningStack, query: str) -> None:
    token = guarded.token()
    before = len(guarded.received())
    response = httpx.get(
        f"{guarded.url}/v1/models?{query.format(token=token)}",
        headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400
    assert token not in response.text
    assert not upstream_after(guarded, before)


def test_the_credential_is_never_repeated_anywhere_upstream(guarded: RunningStack) -> None:
    token = guarded.token()
    headers = {"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    before = len(guarded.received())
    for response in (
        httpx.get(f"{guarded.url}/v1/models/{token}", headers=headers),
        httpx.get(f"{guarded.url}/v1/files?page={token}", headers=headers),
        httpx.get(f"{guarded.url}/v1/models", headers={**headers, "x-forward-me": token}),
    ):
        assert response.status_code == 400, response.text
        assert "repeats its credential" in response.json()["error"]["message"]
    assert not upstream_after(guarded, before)


# --- 5. bodies where there should be none, and underscored header names ---------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("DELETE", "/v1/files/file_01"),
        ("POST", "/v1/messages/batches/msgbatch_01/cancel"),
    ],
)
def test_a_body_on_an_endpoint_that_takes_none_is_refused(
    guarded: RunningStack, method: str, path: str
) -> None:
    before = len(guarded.received())
    response = send(guarded, method, path, orjson.dumps(message(system=SECRET)))
    assert response.status_code == 400
    assert "takes no request body" in response.json()["error"]["message"]
    assert not upstream_after(guarded, before)


def test_an_empty_body_is_fine_where_none_is_taken(guarded: RunningStack) -> None:
    assert send(guarded, "GET", "/v1/models", b"", {"content-length": "0"}).status_code == 200


def test_underscored_header_names_never_reach_the_upstream(guarded: RunningStack) -> None:
    before = len(guarded.received())
    response = send(
        guarded, "GET", "/v1/models", headers={"x_api_key": "sk-ant-other", "x-custom": "ok"}
    )
    assert response.status_code == 200
    [upstream] = upstream_after(guarded, before)
    assert "x_api_key" not in upstream.headers
    assert upstream.headers["x-api-key"] == SIMULATOR_KEY
    assert upstream.headers["x-custom"] == "ok"


# --- 6. the upstream key echoed back --------------------------------------------------------------


def scripted(text: str, delta_chars: int = 1000) -> dict[str, str]:
    return {
        REPLY_HEADER: base64.b64encode(text.encode()).decode(),
        DELTA_CHARS_HEADER: str(delta_chars),
    }


def test_the_upstream_key_never_comes_back_in_a_body(guarded: RunningStack) -> None:
    response = send(
        guarded,
        "POST",
        "/v1/messages",
        orjson.dumps(message()),
        scripted(f"the key is {SIMULATOR_KEY}"),
    )
    assert response.status_code == 200
    assert SIMULATOR_KEY not in response.text
    assert "[upstream key removed]" in response.text


def test_the_upstream_key_is_never_recorded(guarded: RunningStack) -> None:
    session = "echo-" + base64.b32encode(os.urandom(5)).decode()
    headers = {**scripted(f"the key is {SIMULATOR_KEY}"), "ztgate-session-id": session}
    send(guarded, "POST", "/v1/messages", orjson.dumps(message(stream=True)), headers)
    send(
        guarded,
        "POST",
        "/v1/messages",
        orjson.dumps(message()),
        {**headers, SCENARIO_HEADER: "sim-echo-key"},
    )

    async def recordings() -> list[Any]:
        store = guarded.stack.gateway.audit.store
        for _ in range(100):
            found = await store.recordings(session)
            if len(found) == 2:
                return found
            await asyncio.sleep(0.05)
        return []

    stored = guarded.run(recordings())
    assert len(stored) == 2
    for item in stored:
        recording = load_recording(item, sealer=None)
        assert recording is not None
        everything = b"".join(
            [
                recording.request_body,
                recording.response_body or b"",
                *(raw for _, raw in recording.events),
            ]
        )
        assert SIMULATOR_KEY.encode() not in everything
        assert b"[upstream key removed]" in everything


def test_the_upstream_key_never_comes_back_in_a_stream(guarded: RunningStack) -> None:
    body = orjson.dumps(message(stream=True))
    with httpx.stream(
        "POST",
        guarded.url + "/v1/messages",
        content=body,
        headers={
            "authorization": f"Bearer {guarded.token()}",
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            **scripted(f"key {SIMULATOR_KEY} end"),
        },
    ) as response:
        streamed = b"".join(response.iter_raw(7))  # read in small pieces: cuts fall anywhere
    assert SIMULATOR_KEY.encode() not in streamed
    assert b"[upstream key removed]" in streamed


def test_the_upstream_key_never_comes_back_in_an_error_or_a_header(guarded: RunningStack) -> None:
    response = send(
        guarded, "POST", "/v1/messages", orjson.dumps(message()), {SCENARIO_HEADER: "sim-echo-key"}
    )
    assert response.status_code == 401
    assert SIMULATOR_KEY not in response.text
    assert SIMULATOR_KEY not in str(response.headers)
    assert response.headers["x-echo"] == "[upstream key removed]"


def test_the_upstream_key_never_comes_back_in_a_download(guarded: RunningStack) -> None:
    headers = {
        "authorization": f"Bearer {guarded.token()}",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "files-api-2025-04-14",
    }
    content = b"prefix " + SIMULATOR_KEY.encode() + b" suffix" * 5000
    uploaded = httpx.post(
        f"{guarded.url}/v1/files",
        headers=headers,
        files={"file": ("notes.txt", content, "text/plain")},
    )
    assert uploaded.status_code == 200, uploaded.text
    downloaded = httpx.get(
        f"{guarded.url}/v1/files/{uploaded.json()['id']}/content", headers=headers
    )
    assert downloaded.status_code == 200
    assert SIMULATOR_KEY.encode() not in downloaded.content
    assert downloaded.content.startswith(b"prefix [upstream key removed] suffix")


# --- 10. nesting ----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["tool_result", "input_schema"])
def test_deep_nesting_is_refused_with_a_400_not_a_500(guarded: RunningStack, where: str) -> None:
    deep: Any = SECRET
    for _ in range(300):
        deep = [deep] if where == "tool_result" else {"properties": deep}
    if where == "tool_result":
        body = message(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t", "content": deep}],
                }
            ]
        )
    else:
        body = message(tools=[{"name": "t", "input_schema": deep}])
    before = len(guarded.received())
    response = send(
        guarded, "POST", "/v1/messages", json.dumps(body).encode()
    )  # orjson stops at 254
    assert response.status_code == 400
    assert "nests deeper than 64 levels" in response.json()["error"]["message"]
    assert not upstream_after(guarded, before)


# --- 11. readiness tells nothing about the configuration ------------------------------------------


def test_readyz_says_ready_without_describing_the_configuration(guarded: RunningStack) -> None:
    response = httpx.get(f"{guarded.url}/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


# --- the class, by property -----------------------------------------------------------------------

PLANTED = ANTHROPIC
_text = st.sampled_from(["hello", "a note", f"key {PLANTED}", f"{PLANTED}", "x" * 30])
_block = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _text}),
    st.fixed_dictionaries(
        {"type": st.just("tool_result"), "tool_use_id": st.just("t1"), "content": _text}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("document"),
            "title": _text,
            "context": _text,
            "source": st.fixed_dictionaries(
                {"type": st.just("text"), "media_type": st.just("text/plain"), "data": _text}
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("search_result"),
            "source": _text,
            "title": _text,
            "content": st.lists(
                st.fixed_dictionaries({"type": st.just("text"), "text": _text}),
                min_size=1,
                max_size=2,
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["widget", "memo"]),
            "body": _text,
            "parts": st.lists(_text, max_size=2),
        }
    ),
)
_body = st.fixed_dictionaries(
    {
        "model": st.just(HAIKU),
        "max_tokens": st.just(64),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.just("user"),
                    "content": st.one_of(_text, st.lists(_block, min_size=1, max_size=3)),
                }
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "system": st.one_of(
            _text,
            st.lists(
                st.fixed_dictionaries({"type": st.just("text"), "text": _text}),
                min_size=1,
                max_size=2,
            ),
        ),
        "metadata": st.fixed_dictionaries({"user_id": _text}),
        "stop_sequences": st.lists(_text, max_size=2),
        "tools": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.just("t"),
                    "description": _text,
                    "input_schema": st.fixed_dictionaries(
                        {"type": st.just("object"), "description": _text}
                    ),
                }
            ),
            max_size=1,
        ),
    },
)


def _encode_with_duplicates(value: Any, draw: Any) -> str:
    """JSON text of ``value`` where some keys also appear earlier with a planted value, the
    way a hostile caller would hide one copy from an inspector that reads the last."""
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if draw(st.integers(0, 3)) == 0:
                decoy: Any = PLANTED if not isinstance(item, dict | list) else [PLANTED]
                parts.append(f"{json.dumps(key)}: {json.dumps(decoy)}")
            parts.append(f"{json.dumps(key)}: {_encode_with_duplicates(item, draw)}")
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_encode_with_duplicates(item, draw) for item in value) + "]"
    return json.dumps(value)


@settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=_body, data=st.data())
def test_no_planted_value_ever_reaches_the_upstream(
    guarded: RunningStack, body: dict[str, Any], data: st.DataObject
) -> None:
    """Bodies built from the API's shapes, secrets planted in random text fields and in
    decoy duplicate keys: whatever ztgate answers, the upstream never sees a planted value,
    and what it sees has one value per key."""
    raw = _encode_with_duplicates(body, data.draw).encode()
    before = len(guarded.received())
    response = send(guarded, "POST", "/v1/messages", raw)
    assert response.status_code in (200, 400), response.text
    for upstream in upstream_after(guarded, before):
        assert PLANTED.encode() not in upstream.body
        no_duplicate_keys(upstream.body)
