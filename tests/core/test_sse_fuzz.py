"""Fuzzing the SSE parser: any byte stream, split at any points, gives the events it gives
unsplit, without an exception; and the gateway reads the events a client reads.

test_sse.py checks chunking on one well-formed stream. Here the streams are anything: every
mix of CR, LF and CRLF, comments, fields without a colon or a value, bytes that are not
UTF-8. The oracle for "the events a client reads" is the Anthropic SDK's own decoder (the
WHATWG rules: a blank line, in any mix of line ends, ends an event): the response filter
masks events as the gateway splits them, so a stream the two split differently would carry
text past the filter that the client then reads.
"""

from __future__ import annotations

import re

import pytest
from anthropic._streaming import SSEDecoder
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzzing import fuzz
from ztgate.core.sse import SSEEvent, SSESplitter, frame, parse_event

_LINE = re.compile(rb"\r\n|\n|\r")
LINE_ENDS = [b"\n", b"\r", b"\r\n"]
# Pieces of streams: fields, values, line ends in every mix, a comment, odd bytes.
PIECES = [
    b"event: ",
    b"event:",
    b"event",
    b"data: ",
    b"data:",
    b"data",
    b": comment",
    b":",
    b" ",
    b"content_block_delta",
    b"message_stop",
    b'{"type":"ping"}',
    b"x",
    b"\xff",
    b"\xc3\xa9",
    *LINE_ENDS,
    *LINE_ENDS,
]
STREAMS = st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join) | st.binary(max_size=200)
# Streams a client can decode (UTF-8), of the fields both sides read (no id or retry: the
# SDK keeps a last event id across events, which the gateway has no use for).
CLIENT_STREAMS = st.lists(
    st.sampled_from([p for p in PIECES if p not in (b"\xff",)]), max_size=40
).map(b"".join)


def split(stream: bytes, cuts: list[int], max_event_bytes: int = 1 << 20) -> list[SSEEvent]:
    splitter = SSESplitter(max_event_bytes)
    events: list[SSEEvent] = []
    previous = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        events.extend(splitter.feed(stream[previous:cut]))
        previous = cut
    consumed = b"".join(e.raw for e in events)
    assert stream.startswith(consumed)  # byte-exact: what is relayed is what came
    assert splitter.pending == bool(stream[len(consumed) :].strip())
    return events


def read(events: list[SSEEvent]) -> list[tuple[str, bytes]]:
    return [(e.event, e.data) for e in events]


@fuzz(500)
@given(stream=STREAMS, cuts=st.lists(st.integers(0, 200), max_size=12))
@example(stream=b"data: a\r", cuts=[])
@example(stream=b"data: a\r\n\r\ndata: b\r\r", cuts=[8, 9])
def test_any_stream_split_anywhere_reads_as_unsplit(stream: bytes, cuts: list[int]) -> None:
    whole = split(stream, [])
    assert read(split(stream, [c for c in cuts if c <= len(stream)])) == read(whole)


@fuzz(300)
@given(stream=STREAMS, cuts=st.lists(st.integers(0, 200), max_size=8), limit=st.integers(1, 40))
def test_the_size_bound_is_the_only_way_to_fail(stream: bytes, cuts: list[int], limit: int) -> None:
    """An unfinished event past the bound is refused with ValueError (the relay ends the
    stream with an error event); nothing else is ever raised."""
    try:
        split(stream, [c for c in cuts if c <= len(stream)], limit)
    except ValueError as exc:
        refused: ValueError | None = exc
    else:
        refused = None
    assert refused is None or "size limit" in str(refused)


@fuzz(300)
@given(st.binary(max_size=300))
def test_any_bytes_parse_as_one_event(raw: bytes) -> None:
    event = parse_event(raw)
    assert event.raw == raw
    assert isinstance(event.event, str)
    data_lines = [
        line for line in _LINE.split(raw) if line.partition(b":")[0] == b"data"
    ]  # as many data lines as the event holds
    assert event.data.count(b"\n") >= max(0, len(data_lines) - 1)


@fuzz(200)
@given(
    name=st.text(
        alphabet=st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=20
    ),
    data=st.binary(max_size=100).map(lambda b: _LINE.sub(b"", b)),
)
def test_what_the_gateway_writes_it_reads_back(name: str, data: bytes) -> None:
    (event,) = SSESplitter(1 << 20).feed(frame(name, data))
    assert event.event == name
    assert event.data == data


def client_reads(stream: bytes) -> list[tuple[str, bytes]]:
    """The events the Anthropic SDK dispatches from ``stream`` (what the caller's code sees)."""
    return [
        (sse.event if sse.event is not None else "message", sse.data.encode())
        for sse in SSEDecoder().iter_bytes(iter([stream]))
    ]


def gateway_reads(stream: bytes, cuts: list[int]) -> list[tuple[str, bytes]]:
    """The events the gateway's filter sees, less those a client would not dispatch (no data
    line and no event name: comments, blank lines)."""

    def dispatched(event: SSEEvent) -> bool:
        fields = [line.partition(b":") for line in _LINE.split(event.raw)]
        names = [v for f, _, v in fields if f == b"event"]
        named = bool(names) and names[-1] not in (b"", b" ")
        return named or any(f == b"data" for f, _, _ in fields)

    # An empty ``event:`` is "message" to a client (WHATWG); the filter reads it as "", which
    # it relays untouched like every name that is not a content block's.
    return [(e.event or "message", e.data) for e in split(stream, cuts) if dispatched(e)]


# A blank line written as LF then CRLF (or LF CR, or CRLF CR): two events for a client.
MIXED_BLANK_LINE = (
    b"event: content_block_delta\ndata: SECRET\n\r\nevent: ping\ndata: {}\n\n",
    b"data: one\n\rdata: two\n\n",
    b"data: one\r\n\rdata: two\r\r",
)


@pytest.mark.parametrize("stream", MIXED_BLANK_LINE)
def test_a_blank_line_in_mixed_line_ends_ends_an_event(stream: bytes) -> None:
    """Regression (found by the fuzzer below): the gateway split events only at CRLF CRLF,
    LF LF and CR CR, so a blank line written LF CRLF merged two events into one, named after
    the second; a client reads two. Fails until core/sse.py's boundary takes any mix."""
    assert gateway_reads(stream, []) == client_reads(stream)


@fuzz(500)
@given(stream=CLIENT_STREAMS, cuts=st.lists(st.integers(0, 400), max_size=8))
def test_the_gateway_reads_the_events_a_client_reads(stream: bytes, cuts: list[int]) -> None:
    expected = client_reads(stream)
    assert gateway_reads(stream, [c for c in cuts if c <= len(stream)]) == expected
