from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ztgate.core.sse import SSESplitter, parse_event

STREAM = (
    b'event: message_start\ndata: {"type":"message_start"}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"a\\nb"}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)


def test_parse_event_reads_name_and_data() -> None:
    event = parse_event(b'event: ping\ndata: {"type": "ping"}\n\n')
    assert event.event == "ping"
    assert event.data == b'{"type": "ping"}'


def test_multi_line_data_and_crlf() -> None:
    event = parse_event(b"event: x\r\ndata: a\r\ndata: b\r\n\r\n")
    assert (event.event, event.data) == ("x", b"a\nb")


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM)), max_size=30))
def test_any_chunking_yields_the_same_events_byte_for_byte(cuts: list[int]) -> None:
    splitter = SSESplitter(max_event_bytes=1 << 20)
    events = []
    previous = 0
    for cut in [*sorted(set(cuts)), len(STREAM)]:
        events.extend(splitter.feed(STREAM[previous:cut]))
        previous = cut
    assert b"".join(e.raw for e in events) == STREAM
    assert [e.event for e in events] == [
        "message_start",
        "ping",
        "content_block_delta",
        "message_stop",
    ]
    assert not splitter.pending


def test_unfinished_event_is_pending() -> None:
    splitter = SSESplitter(max_event_bytes=1 << 20)
    assert splitter.feed(b"event: message_start\ndata: {") == []
    assert splitter.pending


def test_oversized_event_is_refused() -> None:
    splitter = SSESplitter(max_event_bytes=10)
    try:
        splitter.feed(b"data: " + b"x" * 100)
    except ValueError:
        return
    raise AssertionError("an oversized event was accepted")


def test_a_blank_line_ending_in_a_cr_at_a_chunk_end_reads_the_same_split_or_not() -> None:
    """``\\n\\r`` ends an event (a client dispatches at the CR); an LF in the next chunk is the
    rest of that CRLF, not a blank line of its own (which would read as one more event)."""
    stream = b"data: a\n\r\n\ndata: b\r\n\r\n"
    whole = SSESplitter(1 << 20).feed(stream)
    for cut in range(len(stream) + 1):
        splitter = SSESplitter(1 << 20)
        split = splitter.feed(stream[:cut]) + splitter.feed(b"") + splitter.feed(stream[cut:])
        assert [(e.event, e.data) for e in split] == [(e.event, e.data) for e in whole]
        consumed = b"".join(e.raw for e in split)
        assert stream.startswith(consumed)  # all but an LF that may yet end the last CR
        assert len(stream) - len(consumed) <= 1
        assert not splitter.pending
    assert [e.data for e in whole] == [b"a", b"b"]
