"""Keeping what the caller receives, as it is sent, for the request's recording."""

from __future__ import annotations

import time

from ztgate.core.types import Headers


class ResponseCapture:
    """Fed by the responder: the status, the content type, and the body, kept whole or (for
    a stream) event by event, as the relay split it, with each event's offset from the
    request's start. Stops keeping at ``max_bytes`` and says so (``truncated``): memory stays
    bounded."""

    def __init__(self, started: float, max_bytes: int) -> None:
        self._started = started
        self._max_bytes = max_bytes
        self.status: int | None = None
        self.content_type: str | None = None
        self.body: bytearray | None = None
        self.events: list[tuple[float, bytes]] = []
        self.size = 0
        self.truncated = False

    def start(self, status: int, headers: Headers) -> None:
        self.status = status
        for name, value in headers:
            if name == b"content-type":
                self.content_type = value.decode("latin-1")
        if not (self.content_type and self.content_type.startswith("text/event-stream")):
            self.body = bytearray()

    def feed(self, data: bytes) -> None:
        if data and not self.truncated and self.body is not None and self._fits(len(data)):
            self.body += data

    def feed_events(self, frames: list[bytes]) -> None:
        offset = round(time.perf_counter() - self._started, 6)
        for frame in frames:
            if self.truncated or not self._fits(len(frame)):
                return
            self.events.append((offset, frame))

    def _fits(self, size: int) -> bool:
        if self.size + size > self._max_bytes:
            self.truncated = True
            return False
        self.size += size
        return True
