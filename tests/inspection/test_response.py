"""The response filter on its own: SSE events and JSON bodies in, what the caller gets out."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.inspection.test_masking import ANTHROPIC, EMAIL, KEY, full_scanner
from tests.inspection.test_streaming import chunkings
from ztgate.core.context import RequestContext, StreamEnd
from ztgate.core.maskplan import MaskPlan
from ztgate.core.sse import SSEEvent, SSESplitter, parse_event
from ztgate.inspection.masking import mask_text
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.response import ResponseProtector, ResponseWithheld

PLAN = MaskPlan({"payment_card": "block"}, {"secret": "redact"})


def context() -> RequestContext:
    ctx = RequestContext("req_1", "POST", "/v1/messages", b"", [], None, "http")
    ctx.upstream_status = 200
    return ctx


def protector(ctx: RequestContext, vault: PseudonymVault | None = None) -> ResponseProtector:
    return ResponseProtector(ctx, full_scanner(), PLAN, vault=vault, holdback=128, hash_key=KEY)


def event(name: str, data: dict[str, object]) -> SSEEvent:
    return parse_event(f"event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n")


def text_stream(chunks: list[str], kind: str = "text") -> list[SSEEvent]:
    key, delta = ("text", "text_delta") if kind == "text" else ("partial_json", "input_json_delta")
    block: dict[str, object] = (
        {"type": "text", "text": ""}
        if kind == "text"
        else {"type": "tool_use", "id": "t", "name": "n", "input": {}}
    )
    return [
        event(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": block},
        ),
        *(
            event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": delta, key: c}},
            )
            for c in chunks
        ),
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        event("message_stop", {"type": "message_stop"}),
    ]


def run(filter_: ResponseProtector, events: list[SSEEvent]) -> tuple[str, list[SSEEvent]]:
    """What the caller gets: the joined deltas, and every event it receives."""
    wire = b"".join(frame for e in events for frame in filter_.event(e))
    out = SSESplitter(1 << 20).feed(wire)
    joined = ""
    for e in out:
        if e.event == "content_block_delta":
            delta = orjson.loads(e.data)["delta"]
            joined += delta.get("text", delta.get("partial_json", ""))
    return joined, out


@settings(max_examples=50, deadline=None)
@given(
    words=st.lists(
        st.sampled_from(["hi ", "the ", ANTHROPIC, " ", "\n", "x", "key=", "."]), max_size=20
    ),
    sizes=st.lists(st.integers(1, 30), min_size=1, max_size=5),
)
def test_any_chunking_gives_the_whole_text_masked(words: list[str], sizes: list[int]) -> None:
    text = "".join(words)
    expected = mask_text(
        text, full_scanner().scan(text), PLAN, hash_key=KEY, detectors=full_scanner().detectors
    ).text
    joined, out = run(protector(context()), text_stream(chunkings(text, sizes)))
    assert joined == expected
    assert [e.event for e in out][-2:] == ["content_block_stop", "message_stop"]


def test_streamed_tool_json_stays_valid_when_a_restored_value_needs_escapes() -> None:
    vault = PseudonymVault()
    surrogate = vault.pseudonym("PASSWORD", 'p"a\\ss')
    partial = orjson.dumps({"query": f"use {surrogate} now"}).decode()
    joined, _ = run(protector(context(), vault), text_stream(chunkings(partial, [3]), "tool"))
    assert orjson.loads(joined) == {"query": 'use p"a\\ss now'}


def test_thinking_and_other_events_pass_byte_for_byte() -> None:
    thinking = [
        event(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            },
        ),
        event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "thinking_delta", "thinking": ANTHROPIC},
            },
        ),
        event("ping", {"type": "ping"}),
    ]
    filter_ = protector(context())
    assert [filter_.event(e) for e in thinking] == [[e.raw] for e in thinking]


def test_a_blocked_finding_withholds_the_rest_of_the_stream() -> None:
    ctx = context()
    filter_ = protector(ctx)
    events = text_stream(chunkings("card 4111 1111 1111 1111 " + "words " * 40, [4]))
    sent: list[bytes] = []

    def relay() -> None:
        for e in events:
            sent.extend(filter_.event(e))

    with pytest.raises(ResponseWithheld, match="payment_card"):
        relay()
    assert b"4111" not in b"".join(sent)
    assert ctx.stream_end is StreamEnd.WITHHELD


def test_a_broken_event_fails_closed() -> None:
    ctx = context()
    filter_ = protector(ctx)
    filter_.event(text_stream(["hello"])[0])
    broken = parse_event(b"event: content_block_delta\ndata: {not json\n\n")
    with pytest.raises(ResponseWithheld, match="could not be inspected"):
        filter_.event(broken)
    assert ctx.stream_end is StreamEnd.WITHHELD


def test_json_bodies_are_masked_restored_and_counted() -> None:
    ctx = context()
    vault = PseudonymVault()
    surrogate = vault.pseudonym("EMAIL", EMAIL)
    body = orjson.dumps(
        {
            "content": [
                {"type": "text", "text": f"key {ANTHROPIC} to {surrogate}"},
                {"type": "tool_use", "id": "t", "name": "n", "input": {"a": [ANTHROPIC]}},
                {"type": "thinking", "thinking": ANTHROPIC, "signature": "s"},
            ]
        }
    )
    out = orjson.loads(protector(ctx, vault).body(body))
    assert out["content"][0]["text"] == f"key [REDACTED:ANTHROPIC_API_KEY] to {EMAIL}"
    assert out["content"][1]["input"] == {"a": ["[REDACTED:ANTHROPIC_API_KEY]"]}
    assert out["content"][2]["thinking"] == ANTHROPIC  # signed: untouched
    assert ctx.masked == {"anthropic_api_key": 2}


def test_error_bodies_pass_unchanged() -> None:
    ctx = context()
    ctx.upstream_status = 400
    body = b'{"type":"error","error":{"type":"invalid_request_error","message":"x"}}'
    assert protector(ctx).body(body) is body


# --- blocks that arrive whole: what server tools bring back -----------------------------------

WEB_RESULT = {
    "type": "web_fetch_tool_result",
    "tool_use_id": "srvtoolu_1",
    "content": {
        "type": "web_fetch_result",
        "url": "https://example.org/page",
        "content": {
            "type": "document",
            "title": f"page with {ANTHROPIC}",
            "source": {"type": "text", "media_type": "text/plain", "data": f"body {ANTHROPIC}"},
        },
    },
}
CODE_RESULT = {
    "type": "bash_code_execution_tool_result",
    "tool_use_id": "srvtoolu_2",
    "content": {
        "type": "bash_code_execution_result",
        "stdout": f"printed {ANTHROPIC}",
        "stderr": "",
        "return_code": 0,
        "content": [],
    },
}


def test_tool_results_in_a_whole_response_are_masked() -> None:
    body = {
        "type": "message",
        "content": [
            WEB_RESULT,
            CODE_RESULT,
            {"type": "thinking", "thinking": f"signed {ANTHROPIC}", "signature": "c2ln"},
        ],
    }
    ctx = context()
    out = protector(ctx).body(orjson.dumps(body))
    blocks = orjson.loads(out)["content"]
    assert ANTHROPIC not in orjson.dumps(blocks[:2]).decode()
    assert blocks[0]["content"]["content"]["title"] == "page with [REDACTED:ANTHROPIC_API_KEY]"
    assert blocks[1]["content"]["stdout"] == "printed [REDACTED:ANTHROPIC_API_KEY]"
    assert blocks[2]["thinking"] == f"signed {ANTHROPIC}"  # signed: passed as the API sent it
    assert ctx.masked == {"anthropic_api_key": 3}


def test_tool_results_that_arrive_whole_in_a_stream_are_masked() -> None:
    events = [
        event(
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )
        for index, block in enumerate((WEB_RESULT, CODE_RESULT))
    ]
    _, out = run(protector(context()), events)
    assert len(out) == 2
    for e in out:
        assert ANTHROPIC.encode() not in e.raw
        assert b"[REDACTED:ANTHROPIC_API_KEY]" in e.raw


def test_citations_deltas_are_masked() -> None:
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {
            "type": "citations_delta",
            "citation": {"type": "web_search_result_location", "cited_text": f"says {ANTHROPIC}"},
        },
    }
    start = text_stream([])[0]  # a citation belongs to a text block
    _, (_, out) = run(protector(context()), [start, event("content_block_delta", delta)])
    assert orjson.loads(out.data)["delta"]["citation"]["cited_text"] == (
        "says [REDACTED:ANTHROPIC_API_KEY]"
    )


def test_a_block_with_nothing_to_mask_is_relayed_byte_for_byte() -> None:
    start = event(
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "container_upload", "file_id": "f"},
        },
    )
    assert protector(context()).event(start) == [start.raw]


def test_an_identifier_carrying_a_masked_value_withholds_the_response() -> None:
    block = {"type": "server_tool_use", "id": ANTHROPIC, "name": "web_search", "input": {}}
    ctx = context()
    with pytest.raises(ResponseWithheld, match="cannot be rewritten"):
        protector(ctx).body(orjson.dumps({"type": "message", "content": [block]}))
    assert ctx.stream_end is StreamEnd.WITHHELD


# --- events read as a client reads them --------------------------------------------------------


def test_an_event_named_one_thing_carrying_another_is_withheld() -> None:
    """The SDKs parse any named event's data and go by its ``type``: a delta sent under
    another name would reach a client's text past a filter that goes by the name."""
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": f"key {ANTHROPIC}"},
    }
    for name in ("message_delta", "x", "ping", "message"):
        ctx = context()
        with pytest.raises(ResponseWithheld, match="not an object of the type it is named"):
            protector(ctx).event(event(name, delta))
        assert ctx.stream_end is StreamEnd.WITHHELD


@pytest.mark.parametrize(
    "events",
    [
        # content in message_start would shift the positions deltas apply to
        [
            event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {"content": [{"type": "text", "text": ANTHROPIC[:20]}]},
                },
            )
        ],
        [event("message_start", {"type": "message_start", "message": {"content": []}})] * 2,
        # a block started at an index that is not the next position, or twice
        [
            event(
                "content_block_start",
                {"type": "content_block_start", "index": 1, "content_block": {"type": "text"}},
            )
        ],
        [text_stream([])[0], text_stream([])[0]],
        # a stop for no open block
        [text_stream([])[-2]],
    ],
    ids=[
        "content in message_start",
        "message_start twice",
        "start out of order",
        "start twice",
        "stop of no block",
    ],
)
def test_a_stream_the_api_would_not_send_is_withheld(events: list[SSEEvent]) -> None:
    filter_ = protector(context())
    with pytest.raises(ResponseWithheld, match="withheld"):
        b"".join(out for e in events for out in filter_.event(e))


def test_what_a_text_block_start_carries_besides_text_is_masked() -> None:
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {
            "type": "text",
            "text": "",
            "citations": [{"type": "char_location", "cited_text": f"says {ANTHROPIC}"}],
        },
    }
    [out] = protector(context()).event(event("content_block_start", start))
    assert ANTHROPIC.encode() not in out
    assert b"says [REDACTED:ANTHROPIC_API_KEY]" in out


def test_events_are_written_as_they_were_read() -> None:
    """A client reads the filter's own encoding of what it read: one value per key (a parser
    that keeps the first of two would read something else), one line end, no extra fields."""
    raw = (
        b"event: message_delta\r\n"
        b'data: {"type":"message_delta","usage":{"output_tokens":1},\r\n'
        b'data: "usage":{"output_tokens":2}}\r\n'
        b"id: 7\r\n\r\n"
    )
    (read,) = SSESplitter(1 << 20).feed(raw)
    (out,) = protector(context()).event(read)
    assert (
        out
        == b'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":2}}\n\n'
    )


def test_events_without_data_pass_as_they_came() -> None:
    for raw in (b": keep-alive\n\n", b"event: ping\n\n", b"\n\n"):
        (read,) = SSESplitter(1 << 20).feed(raw)
        assert protector(context()).event(read) == [raw]


@pytest.mark.parametrize(
    "block",
    [
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "web_search_tool_result", "tool_use_id": "t", "content": []},
    ],
)
@pytest.mark.parametrize(
    "delta",
    [
        {"type": "text_delta", "text": ANTHROPIC},
        {"type": "input_json_delta", "partial_json": ANTHROPIC},
        {"partial_json": ANTHROPIC},
        {"type": None, "text": ANTHROPIC},
    ],
)
def test_text_into_a_signed_or_whole_block_is_withheld(
    block: dict[str, object], delta: dict[str, object]
) -> None:
    start = event(
        "content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}
    )
    filter_ = protector(context())
    filter_.event(start)
    data = {"type": "content_block_delta", "index": 0, "delta": delta}
    with pytest.raises(ResponseWithheld, match="not of its content block's kind"):
        filter_.event(event("content_block_delta", data))
