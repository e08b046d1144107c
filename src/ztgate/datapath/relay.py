"""Relaying the upstream's response to the caller, in one of three modes by content type.

- SSE: event by event as each arrives, through the response filter; a stream that breaks,
  times out or ends without ``message_stop`` ends with an ``event: error``, never a hang or a
  truncated success.
- JSON: read whole (bounded), filtered, batch ``results_url`` re-rooted at ztgate.
- Anything else (file downloads, batch results): chunks passed through as they come.
"""

from __future__ import annotations

from ztgate.core.context import Endpoint, RequestContext, StreamEnd
from ztgate.core.errors import UpstreamUnavailable, error_event
from ztgate.core.sse import SSESplitter, frame
from ztgate.core.stages import ResponseFilter
from ztgate.datapath.batches import rewrite_results_urls
from ztgate.datapath.headers import caller_response_headers
from ztgate.datapath.http1 import UpstreamBroken, UpstreamResponse
from ztgate.datapath.responses import Responder

_MAX_EVENT_BYTES = 16 * 1024 * 1024
_STREAM_FAILURES = {
    StreamEnd.UPSTREAM_BROKEN: ("api_error", "the upstream stream broke off"),
    StreamEnd.UPSTREAM_TIMEOUT: ("timeout_error", "the upstream stream went silent"),
    StreamEnd.UPSTREAM_INCOMPLETE: ("api_error", "the upstream stream ended before message_stop"),
}


async def relay_stream(
    ctx: RequestContext,
    response: UpstreamResponse,
    responder: Responder,
    response_filter: ResponseFilter,
) -> None:
    if not responder.started:  # else a held stream: its headers went out while it waited
        await responder.start(response.status, caller_response_headers(response.headers))
    splitter = SSESplitter(_MAX_EVENT_BYTES)
    last_event = ""
    try:
        async for chunk in response.iter_chunks():
            frames: list[bytes] = []
            for event in splitter.feed(chunk):
                last_event = event.event
                ctx.facts.read_event(event)
                frames.extend(response_filter.event(event))
            if frames:
                await responder.events(frames)
        if last_event == "message_stop" and not splitter.pending:
            ctx.stream_end = StreamEnd.COMPLETE
        elif last_event == "error":
            ctx.stream_end = StreamEnd.UPSTREAM_ERROR_EVENT
        else:
            ctx.stream_end = StreamEnd.UPSTREAM_INCOMPLETE
    except TimeoutError:
        ctx.stream_end = StreamEnd.UPSTREAM_TIMEOUT
    except (UpstreamBroken, ValueError):
        ctx.stream_end = StreamEnd.UPSTREAM_BROKEN
    failure = _STREAM_FAILURES.get(ctx.stream_end)
    if failure is not None:
        await responder.events([error_event(*failure, ctx.request_id)])
    await responder.body(b"", more=False)


async def relay_json(
    ctx: RequestContext,
    response: UpstreamResponse,
    responder: Responder,
    response_filter: ResponseFilter,
    *,
    max_bytes: int,
) -> None:
    try:
        body = await response.read(max_bytes)
    except UpstreamBroken as exc:
        raise UpstreamUnavailable("the upstream response broke off") from exc
    if body is None:
        raise UpstreamUnavailable(f"the upstream response exceeds {max_bytes} bytes")
    endpoint = ctx.route.endpoint if ctx.route is not None else None
    if endpoint is Endpoint.MESSAGES:
        ctx.facts.read_body(body)
    body = response_filter.body(body)
    if endpoint is Endpoint.BATCHES:
        body = rewrite_results_urls(body, ctx.base_url)
    await responder.whole(response.status, caller_response_headers(response.headers), body)


async def relay_as_error_event(
    ctx: RequestContext, response: UpstreamResponse, responder: Responder, max_bytes: int
) -> None:
    """A held stream already answered 200; the upstream's refusal (a JSON error) reaches the
    caller as the stream's ``error`` event, which the SDKs raise as the same error."""
    try:
        body = await response.read(max_bytes)
    except UpstreamBroken:
        body = None
    ctx.stream_end = StreamEnd.UPSTREAM_ERROR_EVENT
    if body is None or not body.strip().startswith(b"{"):
        await responder.events([error_event("api_error", "the upstream failed", ctx.request_id)])
    else:
        await responder.events([frame("error", body.strip())])
    await responder.body(b"", more=False)


async def relay_raw(ctx: RequestContext, response: UpstreamResponse, responder: Responder) -> None:
    """Pass bytes through. A failure after the first byte can only be told by closing: the
    response is left unfinished, so the server drops the connection and the caller sees a
    truncated transfer rather than a complete-looking file."""
    await responder.start(response.status, caller_response_headers(response.headers))
    try:
        async for chunk in response.iter_chunks():
            await responder.body(chunk)
    except (UpstreamBroken, TimeoutError):
        ctx.stream_end = StreamEnd.UPSTREAM_BROKEN
        return
    await responder.body(b"", more=False)
