"""The inspect stages switched off (``inspection.enabled: false``): everything passes unchanged."""

from __future__ import annotations

from ztgate.context import RequestContext
from ztgate.sse import SSEEvent
from ztgate.stages import ResponseFilter


class _Unchanged:
    def event(self, event: SSEEvent) -> bytes:
        return event.raw

    def body(self, body: bytes) -> bytes:
        return body


_UNCHANGED = _Unchanged()


class PassThroughInspector:
    def inspect_request(self, ctx: RequestContext) -> None:
        return None

    def protect_request(self, ctx: RequestContext) -> None:
        return None

    def response_filter(self, ctx: RequestContext) -> ResponseFilter:
        return _UNCHANGED
