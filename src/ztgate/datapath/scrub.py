"""ztgate's own upstream key never reaches a caller or a recording, whatever the upstream sends.

ztgate knows its key exactly, so it removes it from every byte the upstream answers with:
header values, JSON bodies, every SSE event, downloads, before anything else reads them. The
key may arrive split across reads; a stream holds back only the longest tail that could still
grow into the key (a delay of bytes, never of events: an SSE event ends with a blank line, which
no key contains). JSON may spell ``/`` as ``\\/``; that spelling is removed too.
"""

from __future__ import annotations

from ztgate.core.types import Headers

REMOVED = b"[upstream key removed]"


class KeyScrubber:
    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("the key to scrub is empty")
        self._spellings = tuple({key, key.replace(b"/", b"\\/")})

    def scrub(self, data: bytes) -> bytes:
        for spelling in self._spellings:
            if spelling in data:
                data = data.replace(spelling, REMOVED)
        return data

    def headers(self, headers: Headers) -> Headers:
        return [(name, self.scrub(value)) for name, value in headers]

    def stream(self) -> StreamScrubber:
        return StreamScrubber(self)

    def held(self, data: bytes) -> int:
        """How many trailing bytes of ``data`` could still grow into a spelling of the key."""
        size = len(data)
        held = 0
        for spelling in self._spellings:
            first = spelling[:1]
            at = data.find(first, max(0, size - len(spelling) + 1))
            while at != -1:
                if spelling.startswith(data[at:]):
                    held = max(held, size - at)  # the earliest start: the longest tail
                    break
                at = data.find(first, at + 1)
        return held


class StreamScrubber:
    """One body read in pieces: ``feed`` each, then ``flush`` at its end."""

    def __init__(self, scrubber: KeyScrubber) -> None:
        self._scrubber = scrubber
        self._pending = b""

    def feed(self, chunk: bytes) -> bytes:
        data = self._scrubber.scrub(self._pending + chunk if self._pending else chunk)
        held = self._scrubber.held(data)
        self._pending = data[len(data) - held :] if held else b""
        return data[: len(data) - held] if held else data

    def flush(self) -> bytes:
        rest, self._pending = self._pending, b""
        return rest
