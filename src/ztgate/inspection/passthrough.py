"""The inspect stages switched off (``inspection.enabled: false``): everything passes unchanged."""

from __future__ import annotations

from ztgate.core.context import RequestContext
from ztgate.core.sse import SSEEvent
from ztgate.core.stages import ResponseFilter


class _Unchanged:
    def event(self, event: SSEEvent) -> list[bytes]:
        return [event.raw]

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

    def guardrail_summary(self, ctx: RequestContext) -> str:
        return ""

    def redacted(self, text: str) -> str | None:
        return None  # inspection is off: no text can be shown as safe
