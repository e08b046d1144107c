"""Server-sent events: split incrementally and kept byte-exact for relaying, and the one way
ztgate writes an event of its own."""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
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


def parse_event(raw: bytes) -> SSEEvent:
    name = "message"
    data: list[bytes] = []
    for line in _LINE.split(raw):
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"event":
            name = value.decode("utf-8", "replace")
        elif field == b"data":
            data.append(value)
    return SSEEvent(raw, name, b"\n".join(data))


class SSESplitter:
    """Feed it chunks as they arrive; it returns each event as soon as its blank line arrives."""

    def __init__(self, max_event_bytes: int) -> None:
        self._buffer = b""
        self._max_event_bytes = max_event_bytes

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[SSEEvent] = []
        start = 0
        for match in _BOUNDARY.finditer(buffer):
            events.append(parse_event(buffer[start : match.end()]))
            start = match.end()
        self._buffer = buffer[start:]
        if len(self._buffer) > self._max_event_bytes:
            raise ValueError("an upstream event exceeds the size limit")
        return events

    @property
    def pending(self) -> bool:
        """True when bytes of an unfinished event are held: the stream was cut mid-event."""
        return bool(self._buffer.strip())
