"""The inspect stage before detectors exist: requests and responses pass unchanged."""

from __future__ import annotations

from ztgate.context import RequestContext
from ztgate.sse import SSEEvent


class _Unchanged:
    def event(self, event: SSEEvent) -> bytes:
        return event.raw

    def body(self, body: bytes) -> bytes:
        return body


_UNCHANGED = _Unchanged()


class PassThroughInspector:
    def inspect_request(self, ctx: RequestContext) -> None:
        return None

    def response_filter(self, ctx: RequestContext) -> _Unchanged:
        return _UNCHANGED
