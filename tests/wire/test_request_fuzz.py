"""Fuzzing request bodies: whatever bytes a caller posts to a JSON endpoint, the answer is a
clean refusal in the Anthropic error shape or the upstream's answer; never a 500, never an
internal error in the log.

The property tests beside this one (test_params.py, test_fields.py) take parsed dicts to one
function each; test_hostile_requests.py plants secrets in well-formed bodies. This goes after
what lies between: raw bytes (broken UTF-8, byte order marks, NaN, 64-bit overflows, deep
nesting, truncations), any JSON value, and API-shaped bodies with any value anywhere, through
the whole request path of a real gateway (parse, check, walk, inspect, decide, mask,
transform, forward, relay) for each JSON endpoint.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import orjson
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from tests.fuzzing import fuzz
from tests.inspection.test_masking import ANTHROPIC, EMAIL
from tests.stackrunner import RunningStack
from ztgate.core.errors import InvalidRequest
from ztgate.wire.document import MalformedBody, encode, parse_object
from ztgate.wire.fields import TooDeep, body_text
from ztgate.wire.params import check_request

HAIKU = "claude-haiku-5-5"
ENDPOINTS = {
    "messages": "/v1/messages",
    "count_tokens": "/v1/messages/count_tokens",
    "batches": "/v1/messages/batches",
}
POLICY = {
    "default": "deny",
    "rules": [
        {
            "id": "haiku",
            "when": {"models": ["claude-haiku-*"], "tools": ["*"], "mcp_servers": ["*"]},
            "effect": "allow",
            "limits": {"max_tokens": 500},
            "mask": {
                "categories": ["secret"],
                "action": "redact",
                "detectors": {"email": "pseudonymize", "payment_card": "block"},
            },
        },
        {"id": "listing", "when": {"endpoints": ["batches"]}, "effect": "allow"},
        {"id": "no-skills", "when": {"skills": ["*"]}, "effect": "deny"},
    ],
}


# --- the parse, check and walk on their own --------------------------------------------------


def parse_check_walk(endpoint: str, raw: bytes) -> dict[str, Any] | None:
    """What the pipeline does with a JSON body before inspection (``Pipeline._parse``), with
    its one way out for a bad body: InvalidRequest. None when the body is refused."""
    try:
        payload = parse_object(raw)
    except MalformedBody:
        return None
    try:
        check_request(endpoint, payload)
    except InvalidRequest:
        return None  # a 400 (InvalidRequest.status)
    try:
        body_text(payload, max_depth=64)
    except TooDeep:
        return None
    return payload


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=15,
)
_TEXT = st.text(max_size=20) | st.sampled_from([ANTHROPIC, EMAIL, "4111 1111 1111 1111"])
_BLOCK = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _TEXT}),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_use"),
            "id": st.just("toolu_1"),
            "name": st.just("lookup"),
            "input": JSON,
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("tool_result"), "tool_use_id": st.just("toolu_1"), "content": JSON}
    ),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["image", "document"]),
            "source": st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["base64", "text", "url"]),
                    "media_type": st.sampled_from(["image/png", "text/plain"]),
                    "data": _TEXT,
                }
            ),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["thinking", "redacted_thinking"]), "thinking": _TEXT}
    ),
    st.dictionaries(st.sampled_from(["type", "text", "content", "source", "x"]), JSON),
    JSON,
)
_MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant"]) | JSON,
        "content": _TEXT | st.lists(_BLOCK, max_size=3) | JSON,
    },
    optional={"x": JSON},
)
_TOOL = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["lookup", "computer_1", ""]) | JSON,
        "type": st.sampled_from(["custom", "bash_20250124", "web_search_20250305"]) | JSON,
        "description": _TEXT,
        "input_schema": JSON,
    },
)
_PARAMS: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from([HAIKU, "claude-opus-5-5", "", "x" * 300]) | JSON,
    "max_tokens": st.integers(-5, 2**31 + 5) | JSON,
    "messages": st.lists(_MESSAGE, max_size=3) | JSON,
    "system": _TEXT | st.lists(_BLOCK, max_size=2) | JSON,
    "stream": st.booleans() | JSON,
    "thinking": st.fixed_dictionaries(
        {"type": st.sampled_from(["enabled", "disabled"]) | JSON},
        optional={"budget_tokens": st.integers(-1, 5000) | JSON},
    )
    | JSON,
    "tools": st.lists(_TOOL, max_size=3) | JSON,
    "tool_choice": JSON,
    "container": st.fixed_dictionaries(
        {},
        optional={
            "id": JSON,
            "skills": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["anthropic", "custom"]) | JSON, "skill_id": JSON}
                ),
                max_size=2,
            )
            | JSON,
        },
    )
    | _TEXT
    | JSON,
    "mcp_servers": st.lists(
        st.fixed_dictionaries(
            {"type": st.just("url"), "url": _TEXT, "name": _TEXT},
            optional={"authorization_token": _TEXT},
        ),
        max_size=2,
    )
    | JSON,
    "metadata": st.fixed_dictionaries({"user_id": _TEXT}) | JSON,
    "stop_sequences": st.lists(_TEXT, max_size=2) | JSON,
    "temperature": JSON,
}
# Mostly the required fields, so that most bodies reach the later stages.
PARAMS = st.fixed_dictionaries(
    {
        "model": st.just(HAIKU) | _PARAMS["model"],
        "max_tokens": st.integers(1, 4096) | _PARAMS["max_tokens"],
        "messages": st.lists(_MESSAGE, min_size=1, max_size=3),
    },
    optional={k: v for k, v in _PARAMS.items() if k not in ("model", "max_tokens", "messages")},
)
# Bodies the API would take (so that most reach inspection, policy, masking, the upstream and
# the response filter), and the same with one field of any JSON value.
_VALID_BLOCK = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": _TEXT}),
    st.fixed_dictionaries(
        {
            "type": st.just("document"),
            "source": st.fixed_dictionaries(
                {"type": st.just("text"), "media_type": st.just("text/plain"), "data": _TEXT}
            ),
        }
    ),
)
VALID_PARAMS = st.fixed_dictionaries(
    {
        "model": st.just(HAIKU),
        "max_tokens": st.integers(1, 4096),
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.just("user"),
                    "content": _TEXT | st.lists(_VALID_BLOCK, min_size=1, max_size=3),
                }
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "system": _TEXT | st.lists(_VALID_BLOCK, min_size=1, max_size=2),
        "stream": st.booleans(),
        "tools": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.sampled_from(["lookup", "search"]),
                    "description": _TEXT,
                    "input_schema": st.fixed_dictionaries(
                        {"type": st.just("object")},
                        optional={"properties": st.dictionaries(st.text(max_size=6), JSON)},
                    ),
                }
            ),
            max_size=2,
            unique_by=lambda t: t["name"],
        ),
        "metadata": st.fixed_dictionaries({"user_id": _TEXT}),
        "stop_sequences": st.lists(_TEXT.filter(bool), max_size=2),
        "temperature": st.floats(0, 1),
    },
)
_KEYS_TO_BREAK = sorted(_PARAMS)
BROKEN_PARAMS = st.tuples(VALID_PARAMS, st.sampled_from(_KEYS_TO_BREAK), JSON).map(
    lambda t: {**t[0], t[1]: t[2]}
)
VALID_BATCH = st.fixed_dictionaries(
    {
        "requests": st.lists(
            st.fixed_dictionaries(
                {"custom_id": st.sampled_from(["a", "b-1", "c_2"]), "params": VALID_PARAMS}
            ),
            min_size=1,
            max_size=2,
            unique_by=lambda r: r["custom_id"],
        )
    }
)
BATCH = st.fixed_dictionaries(
    {
        "requests": st.lists(
            st.fixed_dictionaries(
                {
                    "custom_id": st.sampled_from(["a", "b-1", "", "no spaces"]) | JSON,
                    "params": VALID_PARAMS | BROKEN_PARAMS | PARAMS | JSON,
                }
            ),
            min_size=1,
            max_size=2,
        )
        | JSON
    }
)


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


# Bytes no encoder writes but a caller can send.
_ODD_BYTES = [
    b"",
    b"\xef\xbb\xbf{}",
    b'{"model": NaN}',
    b'{"max_tokens": Infinity}',
    b'{"max_tokens": 1e400}',
    b'{"max_tokens": 18446744073709551616}',
    b'{"a": "\\ud800"}',
    b'{"a": "\xff"}',
    b'{"a": 1} {"b": 2}',
    b'{"a": 1,}',
    b"{'a': 1}",
    _nested(2000).encode(),
    ('{"model": "' + HAIKU + '", "max_tokens": 9, "messages": ' + _nested(300) + "}").encode(),
    b'{"messages": [{"role": "user", "content": "hi"}], "model": "x", "model": 1}',
]


def _mutate(raw: bytes, data: st.DataObject) -> bytes:
    """A valid encoding, cut, spliced or with bytes flipped: near misses a parser must refuse
    cleanly (or read consistently)."""
    out = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        if not out:
            break
        at = data.draw(st.integers(0, len(out) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert", "truncate", "repeat"]))
        if action == "flip":
            out[at] = data.draw(st.integers(0, 255))
        elif action == "drop":
            del out[at]
        elif action == "insert":
            out[at:at] = data.draw(st.sampled_from([b"{", b"}", b"[", b'"', b",", b"\\", b"\x00"]))
        elif action == "truncate":
            del out[at:]
        else:
            out[at:at] = out[at : at + data.draw(st.integers(1, 20))]
    return bytes(out)


def bodies(endpoint: str) -> st.SearchStrategy[bytes]:
    if endpoint == "batches":
        shaped: st.SearchStrategy[Any] = VALID_BATCH | VALID_BATCH | BATCH
    else:
        shaped = VALID_PARAMS | VALID_PARAMS | BROKEN_PARAMS | PARAMS
    encoded = shaped.map(lambda b: json.dumps(b).encode())
    return st.one_of(
        encoded,
        encoded,  # twice the weight: most bodies should get past the parse
        st.tuples(encoded, st.data()).map(lambda pair: _mutate(*pair)),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
        st.sampled_from(_ODD_BYTES),
    )


@fuzz(300)
@given(st.sampled_from(sorted(ENDPOINTS)).flatmap(lambda e: st.tuples(st.just(e), bodies(e))))
@example(("messages", _nested(2000).encode()))
@example(("messages", _ODD_BYTES[12]))
def test_parse_check_walk_refuses_cleanly_or_keeps_what_it_read(case: tuple[str, bytes]) -> None:
    """Only MalformedBody, InvalidRequest or TooDeep come out (each a 400 in the pipeline),
    and what passes encodes to bytes that read back as the very payload that was judged."""
    endpoint, raw = case
    payload = parse_check_walk(endpoint, raw)
    event("read" if payload is not None else "refused")
    if payload is not None:
        assert orjson.loads(encode(payload)) == payload


# --- through a real gateway ------------------------------------------------------------------


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[RunningStack, httpx.Client, _Records]]:
    records = _Records()
    logger = logging.getLogger("ztgate")
    logger.addHandler(records)
    running = RunningStack(policy=POLICY)
    client = httpx.Client(base_url=running.url, timeout=30)
    try:
        yield running, client, records
    finally:
        client.close()
        running.close()
        logger.removeHandler(records)


def check_answer(response: httpx.Response) -> None:
    """A 2xx from the upstream, or an error in the Anthropic shape, never a 500."""
    assert response.status_code != 500, response.text
    request_id = response.headers.get("request-id")
    if response.status_code < 300:
        if response.headers["content-type"].startswith("application/json"):
            assert isinstance(response.json(), dict)
        return
    assert response.headers["content-type"].startswith("application/json"), response.text
    body = response.json()
    assert body["type"] == "error", body
    assert isinstance(body["error"]["type"], str)
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    assert body.get("request_id") == request_id
    if response.status_code < 500:
        assert body["error"]["type"] != "api_error", body


def _internal_errors(records: _Records, since: int) -> list[str]:
    """What the gateway logged as a bug since ``since``, with its traceback."""
    return [
        r.getMessage() + "\n" + "".join(traceback.format_exception(*r.exc_info))
        if r.exc_info and r.exc_info[1] is not None
        else r.getMessage()
        for r in records.records[since:]
        if r.levelno >= logging.ERROR and ("internal" in r.getMessage() or r.exc_info)
    ]


@fuzz(150)
@given(st.sampled_from(sorted(ENDPOINTS)).flatmap(lambda e: st.tuples(st.just(e), bodies(e))))
@example(("messages", _nested(2000).encode()))
@example(("batches", b'{"requests": [{"custom_id": "a", "params": 1}]}'))
@example(("count_tokens", b'{"model": "claude-haiku-5-5", "max_tokens": null, "messages": []}'))
def test_any_body_gets_a_clean_answer_from_the_gateway(
    gateway: tuple[RunningStack, httpx.Client, _Records], case: tuple[str, bytes]
) -> None:
    running, client, records = gateway
    endpoint, raw = case
    since = len(records.records)
    response = client.post(
        ENDPOINTS[endpoint],
        content=raw,
        headers={
            "authorization": f"Bearer {running.token()}",
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        },
    )
    bugs = _internal_errors(records, since)
    assert response.status_code != 500, f"{endpoint} {raw[:400]!r}\n" + "\n".join(bugs)
    check_answer(response)
    event(f"{endpoint}: {response.status_code}")
    if parse_check_walk(endpoint, raw) is None:
        assert response.status_code == 400, response.text  # refused before anything else
    assert bugs == []


def test_the_shapes_reach_the_upstream(
    gateway: tuple[RunningStack, httpx.Client, _Records],
) -> None:
    """The body strategy is no strawman: a body it draws passes every stage and is answered
    by the upstream, with its secret masked on the way."""
    running, client, _ = gateway
    before = len(running.received())
    body = {
        "model": HAIKU,
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": ANTHROPIC}]}],
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
    }
    response = client.post(
        "/v1/messages",
        content=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {running.token()}", "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, response.text
    (upstream,) = running.received()[before:]
    assert ANTHROPIC.encode() not in upstream.body
    assert orjson.loads(upstream.body)["max_tokens"] == 500  # the policy's cap


@pytest.mark.parametrize("max_tokens", [None, "4096", [1], {"n": 1}, 1.5])
def test_count_tokens_with_a_max_tokens_of_any_type_is_not_a_500(
    gateway: tuple[RunningStack, httpx.Client, _Records], max_tokens: Any
) -> None:
    """Regression (found by the gateway fuzzer above): ``count_tokens`` does not check
    ``max_tokens`` (it takes none), but the transform compared whatever was there with the
    policy's cap, so ``"max_tokens": null`` under a rule with ``limits.max_tokens`` ended in
    ``TypeError`` and a 500. wire/params.py now holds a ``max_tokens`` that count_tokens
    carries to the shape it has on messages (policy reads it too): a 400 unless an integer."""
    running, client, records = gateway
    since = len(records.records)
    body = {"model": HAIKU, "max_tokens": max_tokens, "messages": [{"role": "user", "content": ""}]}
    response = client.post(
        "/v1/messages/count_tokens",
        content=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {running.token()}", "anthropic-version": "2023-06-01"},
    )
    assert response.status_code != 500, "\n".join(_internal_errors(records, since))
    check_answer(response)
    assert response.status_code == 400, response.text
    assert "max_tokens: must be an integer" in response.json()["error"]["message"]


def test_count_tokens_with_an_integer_max_tokens_is_capped_like_messages(
    gateway: tuple[RunningStack, httpx.Client, _Records],
) -> None:
    running, client, _ = gateway
    before = len(running.received())
    body = {"model": HAIKU, "max_tokens": 4096, "messages": [{"role": "user", "content": "hi"}]}
    response = client.post(
        "/v1/messages/count_tokens",
        content=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {running.token()}", "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, response.text
    (upstream,) = running.received()[before:]
    assert orjson.loads(upstream.body)["max_tokens"] == 500  # the policy's cap
