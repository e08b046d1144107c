"""Server-sent events: split incrementally and kept byte-exact for relaying, and the one way
ztgate writes an event of its own.

Events are split where a client's parser ends them (the WHATWG rules the SDKs follow): CRLF, a
lone CR and a lone LF each end a line, in any mix, and a blank line ends an event. The response
filter reads events as this module splits them, so any other reading (blank lines only as
``\\n\\n``, ``\\r\\r`` or ``\\r\\n\\r\\n``) would let a stream carry an event past the filter
inside another one that a client then reads as two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A line's end (CRLF, or a CR not followed by LF, or LF), then an empty line's end: a blank
# line. ``\r(?!\n)`` keeps the CR of a CRLF from passing for a line end of its own. The second
# line end takes a CR alone when it is the last byte so far: a blank line ends there whatever
# follows (an LF after it only completes that line end, see ``SSESplitter``).
_BOUNDARY = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r|\n)")
_LINE = re.compile(rb"\r\n|\n|\r")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One event: its exact bytes (terminator included) and its parsed name and data."""

    raw: bytes
    event: str
    data: bytes


def frame(name: str, data: bytes) -> bytes:
    """An event as the API writes one: its ``event:`` line, one ``data:`` line, a blank line."""
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def parse_event(raw: bytes, *, start: int = 0) -> SSEEvent:
    """``raw`` read as one event; its first ``start`` bytes are the end of the line before."""
    name = "message"
    data: list[bytes] = []
    for line in _LINE.split(raw[start:] if start else raw):
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"event":
            name = value.decode("utf-8", "replace")
        elif field == b"data":
            data.append(value)
    return SSEEvent(raw, name, b"\n".join(data))


class SSESplitter:
    """Feed it chunks as they arrive; it returns each event as soon as its blank line arrives.

    Any chunking gives the same events. The one case a chunk's end decides: a blank line that
    ends in a CR which is the last byte so far. The event ends there (a client dispatches it
    there too), and an LF that then starts the next chunk is the rest of that CRLF, not a
    line of its own: it stays in the next event's bytes (relaying stays byte-exact) and is
    skipped when that event is read.
    """

    def __init__(self, max_event_bytes: int) -> None:
        self._buffer = b""
        self._max_event_bytes = max_event_bytes
        # Bytes at the buffer's start that end the line before (an LF after a CR that ended
        # the last event), or None while that is not known yet (the buffer is empty).
        self._skip: int | None = 0

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if not buffer:
            return []
        skip = self._skip
        if skip is None:
            skip = 1 if buffer.startswith(b"\n") else 0
        events: list[SSEEvent] = []
        start = 0
        for match in _BOUNDARY.finditer(buffer, skip):
            events.append(parse_event(buffer[start : match.end()], start=skip))
            start, skip = match.end(), 0
        self._buffer = buffer[start:]
        # An event that ends in a CR with nothing after it yet: the next byte may be its LF.
        self._skip = None if events and not self._buffer and buffer.endswith(b"\r") else skip
        if len(self._buffer) > self._max_event_bytes:
            raise ValueError("an upstream event exceeds the size limit")
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are held: the stream was cut mid-event."""
        return bool(self._buffer.strip())
