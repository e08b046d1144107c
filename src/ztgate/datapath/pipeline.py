"""The request's path through ztgate, in order, in one place.

::

    authenticate -> route -> parse -> inspect -> decide -> protect (mask or block)
        -> review -> admit (quotas) -> transform -> record (started) -> forward
        -> relay (response filter: mask, restore) -> settle (quotas, containers)
        -> record (finished)

Every stage reads and fills one :class:`RequestContext`; any stage can end the request by
raising a :class:`GatewayError`, which becomes an Anthropic-shaped answer in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import orjson

from ztgate.config.model import ServerConfig
from ztgate.context import Body, Endpoint, RequestContext, StreamEnd
from ztgate.datapath.body import BodyStream, ClientDisconnected, declared_length, read_body
from ztgate.datapath.containers import ContainerOwners
from ztgate.datapath.headers import upstream_request_headers
from ztgate.datapath.relay import relay_json, relay_raw, relay_stream
from ztgate.datapath.responses import Responder
from ztgate.datapath.routes import match_route
from ztgate.datapath.upstream import UpstreamClient
from ztgate.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    UpstreamUnavailable,
)
from ztgate.identity.credentials import extract_credential
from ztgate.policy.decision import Effect
from ztgate.policy.quotas import Admission, Quotas
from ztgate.stages import Authenticator, Decider, Inspector, Recorder, Reviewer
from ztgate.types import Headers, Receive, Send

log = logging.getLogger("ztgate.datapath")


@dataclass(frozen=True, slots=True)
class Stages:
    authenticator: Authenticator
    inspector: Inspector
    decider: Decider
    reviewer: Reviewer
    recorder: Recorder
    quotas: Quotas
    containers: ContainerOwners


class Pipeline:
    def __init__(self, stages: Stages, upstream: UpstreamClient, server: ServerConfig) -> None:
        self._stages = stages
        self._upstream = upstream
        self._server = server

    async def handle(self, ctx: RequestContext, receive: Receive, send: Send) -> None:
        responder = Responder(send, ctx)
        recorded = False
        try:
            ctx.identity = await self._stages.authenticator.verify(extract_credential(ctx.headers))
            ctx.route = match_route(ctx.method, ctx.path)
            if ctx.route is None:
                raise NotFound(f"{ctx.method} {ctx.path} is not an endpoint this gateway serves")
            body = await self._parse(ctx, receive)
            self._stages.inspector.inspect_request(ctx)
            self._decide(ctx)
            self._stages.inspector.protect_request(ctx)
            await self._stages.reviewer.hold(ctx)
            assert ctx.decision is not None
            admission = await self._stages.quotas.admit(
                ctx.decision.limits, estimated_tokens=max(1, len(ctx.body) // 4)
            )
            headers = self._transform(ctx, body)
            await self._stages.recorder.request_started(ctx)
            done = body.done if isinstance(body, BodyStream) else None
            try:
                await _until_disconnect(
                    ctx, receive, done, self._forward_and_relay(ctx, headers, body, responder)
                )
            finally:
                await self._settle(ctx, admission)
        except GatewayError as exc:
            recorded = await self._record_refusal(ctx, responder, exc)
            await responder.error(exc)
        except ClientDisconnected:
            ctx.stream_end = StreamEnd.CLIENT_DISCONNECTED
        except Exception:
            # A bug is still answered in the Anthropic shape, and nothing more goes upstream.
            log.exception("internal error", extra={"request_id": ctx.request_id})
            error = GatewayError("internal error in the gateway")
            recorded = await self._record_refusal(ctx, responder, error)
            await responder.error(error)
        finally:
            if not recorded:
                await self._stages.recorder.request_finished(ctx)

    async def _record_refusal(
        self, ctx: RequestContext, responder: Responder, error: GatewayError
    ) -> bool:
        """A refusal is recorded before it is answered, so a caller never holds an answer
        the audit does not know of. (A stream already under way is recorded when it ends.)"""
        if responder.started:
            return False
        ctx.status, ctx.error_type = error.status, error.error_type
        await self._stages.recorder.request_finished(ctx)
        return True

    async def _parse(self, ctx: RequestContext, receive: Receive) -> bytes | BodyStream:
        assert ctx.route is not None
        if ctx.route.body is Body.UPLOAD:
            # Policy sees the declared size; the stream enforces the bound as bytes arrive.
            ctx.bytes_in = declared_length(ctx.headers, self._server.max_upload_body) or 0
            return BodyStream(receive, self._server.max_upload_body)
        declared_length(ctx.headers, self._server.max_json_body)
        ctx.body = await read_body(receive, self._server.max_json_body)
        ctx.bytes_in = len(ctx.body)
        if ctx.route.body is Body.JSON:
            try:
                payload = orjson.loads(ctx.body)
            except orjson.JSONDecodeError as exc:
                raise InvalidRequest(f"request body is not valid JSON: {exc.msg}") from None
            if not isinstance(payload, dict):
                raise InvalidRequest("request body must be a JSON object")
            ctx.payload = payload
        return ctx.body

    def _decide(self, ctx: RequestContext) -> None:
        assert ctx.identity is not None
        for params in _message_bodies(ctx):
            self._stages.containers.check(params, ctx.identity.principal)
        ctx.decision = decision = self._stages.decider.decide(ctx)
        if decision.effect is Effect.DENY:
            rule = f" (rule {decision.rule_ids[0]})" if decision.rule_ids else ""
            raise PermissionDenied(f"denied by policy{rule}: {decision.reason}")

    async def _settle(self, ctx: RequestContext, admission: Admission) -> None:
        """After the response: correct the token charge, remember a new container's owner."""
        if ctx.facts.container_id is not None and ctx.identity is not None:
            self._stages.containers.remember(ctx.facts.container_id, ctx.identity.principal)
        with contextlib.suppress(GatewayError):  # the answer is already on its way
            await self._stages.quotas.settle(admission, ctx.facts.total_tokens)

    def _transform(self, ctx: RequestContext, body: bytes | BodyStream) -> Headers:
        headers = upstream_request_headers(ctx.headers, self._upstream.api_key)
        if isinstance(body, BodyStream):
            length = ctx.header(b"content-length")
            if length is not None:
                headers.append((b"content-length", length))
        else:
            cap = ctx.decision.max_tokens if ctx.decision else None
            if cap is not None:
                for params in _message_bodies(ctx):
                    if isinstance(params.get("max_tokens"), int) and params["max_tokens"] > cap:
                        params["max_tokens"] = cap
                        ctx.payload_changed = True
            if ctx.payload_changed and ctx.payload is not None:
                ctx.body = orjson.dumps(ctx.payload)
        return headers

    async def _forward_and_relay(
        self,
        ctx: RequestContext,
        headers: Headers,
        body: bytes | BodyStream,
        responder: Responder,
    ) -> None:
        target = ctx.path + (f"?{ctx.query_string.decode('latin-1')}" if ctx.query_string else "")
        data = body.chunks() if isinstance(body, BodyStream) else ctx.body
        ctx.upstream_started = time.perf_counter()
        response = await self._upstream.open(ctx.method, target, headers, data)
        try:
            if isinstance(body, BodyStream):
                ctx.bytes_in = body.size
            ctx.upstream_first_byte = time.perf_counter()
            ctx.upstream_status = response.status
            ctx.upstream_request_id = response.header(b"request-id")
            response_filter = self._stages.inspector.response_filter(ctx)
            content_type = response.header(b"content-type") or ""
            inspected = content_type.startswith(("text/event-stream", "application/json"))
            if inspected and (response.header(b"content-encoding") or "identity") != "identity":
                # ztgate asked for identity; a compressed body could not be inspected: refuse it.
                raise UpstreamUnavailable("the upstream sent a compressed response")
            if content_type.startswith("text/event-stream"):
                await relay_stream(ctx, response, responder, response_filter)
            elif content_type.startswith("application/json"):
                await relay_json(
                    ctx,
                    response,
                    responder,
                    response_filter,
                    max_bytes=self._server.max_response_body,
                )
            else:
                await relay_raw(ctx, response, responder)
        except TimeoutError:
            raise self._upstream.timeout_error() from None
        finally:
            response.close()


def _message_bodies(ctx: RequestContext) -> list[dict[str, Any]]:
    """The messages requests a request carries: itself, or every request of a batch."""
    payload = ctx.payload
    if payload is None or ctx.route is None:
        return []
    if ctx.route.endpoint is Endpoint.BATCHES:
        items = payload.get("requests")
        return [
            item["params"]
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict) and isinstance(item.get("params"), dict)
        ]
    return [payload]


async def _until_disconnect(
    ctx: RequestContext,
    receive: Receive,
    body_done: asyncio.Event | None,
    work: Awaitable[None],
) -> None:
    """Run ``work`` until it ends or the caller disconnects; a disconnect cancels it, and with it
    the upstream request. One watcher task per request; the work runs in the caller's task."""
    task = asyncio.current_task()
    assert task is not None
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        await _disconnected(receive, body_done)
        disconnected = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        if not disconnected:
            raise
        task.uncancel()
        ctx.stream_end = StreamEnd.CLIENT_DISCONNECTED
    finally:
        watcher.cancel()


async def _disconnected(receive: Receive, body_done: asyncio.Event | None) -> None:
    if body_done is not None:
        await body_done.wait()
    while (await receive())["type"] != "http.disconnect":
        pass
