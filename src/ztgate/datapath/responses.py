"""Building HTTP answers: the one place that writes to the ASGI ``send`` callable."""

from __future__ import annotations

from ztgate.core.context import RequestContext
from ztgate.core.errors import GatewayError, answer_headers, error_body, error_event
from ztgate.core.types import Headers, Send


class Responder:
    """Writes the response for one request and keeps the context's status and byte counts."""

    def __init__(self, send: Send, ctx: RequestContext) -> None:
        self._send = send
        self._ctx = ctx
        self.started = False
        self.finished = False

    async def start(self, status: int, headers: Headers) -> None:
        self.started = True
        self._ctx.status = status
        headers.append((b"ztgate-request-id", self._ctx.request_id.encode()))
        if self._ctx.capture is not None:
            self._ctx.capture.start(status, headers)
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes, *, more: bool = True) -> None:
        self._ctx.bytes_out += len(data)
        if self._ctx.capture is not None:
            self._ctx.capture.feed(data)
        if not more:
            self.finished = True
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def events(self, frames: list[bytes]) -> None:
        """Whole SSE events of a stream: sent together, recorded one by one."""
        data = b"".join(frames)
        self._ctx.bytes_out += len(data)
        if self._ctx.capture is not None:
            self._ctx.capture.feed_events(frames)
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def whole(self, status: int, headers: Headers, data: bytes) -> None:
        headers.append((b"content-length", str(len(data)).encode()))
        await self.start(status, headers)
        await self.body(data, more=False)

    async def error(self, exc: GatewayError) -> None:
        """Answer with ztgate's own error; in a started stream, as an SSE error event."""
        self._ctx.error_type = exc.error_type
        if self.started:
            if not self.finished:
                await self.events([error_event(exc.error_type, exc.message, self._ctx.request_id)])
                await self.body(b"", more=False)
            return
        body = error_body(exc.error_type, exc.message, self._ctx.request_id)
        headers = [*answer_headers(body, self._ctx.request_id), *exc.headers()]
        await self.start(exc.status, headers)
        await self.body(body, more=False)
