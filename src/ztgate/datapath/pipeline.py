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
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from ztgate.config.model import ServerConfig
from ztgate.core.context import Body, Endpoint, RequestContext, StreamEnd
from ztgate.core.decision import Effect
from ztgate.core.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ShuttingDown,
    UpstreamUnavailable,
)
from ztgate.core.sse import frame
from ztgate.core.stages import (
    Authenticator,
    Decider,
    Inspector,
    Judge,
    Observer,
    Recorder,
    Reviewer,
)
from ztgate.core.types import Headers, Receive, Send
from ztgate.datapath.body import (
    DRAINING,
    BodyStream,
    ClientDisconnected,
    declared_length,
    read_body,
    read_no_body,
)
from ztgate.datapath.containers import ContainerOwners
from ztgate.datapath.headers import refuse_echoed_credential, upstream_request_headers
from ztgate.datapath.relay import relay_as_error_event, relay_json, relay_raw, relay_stream
from ztgate.datapath.responses import Responder
from ztgate.datapath.upstream import UpstreamClient
from ztgate.identity.credentials import extract_credential
from ztgate.policy.quotas import Admission, Quotas
from ztgate.review.stage import restarting
from ztgate.wire.document import MalformedBody, encode, parse_object
from ztgate.wire.fields import TooDeep, body_text
from ztgate.wire.params import check_request
from ztgate.wire.query import canonical_query
from ztgate.wire.routes import match_route

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
    judge: Judge | None = None  # the guardrails' judge, when configured
    observers: Sequence[Observer] = ()  # metrics, traces


class Pipeline:
    def __init__(self, stages: Stages, upstream: UpstreamClient, server: ServerConfig) -> None:
        self._stages = stages
        self._upstream = upstream
        self._server = server

    async def handle(self, ctx: RequestContext, receive: Receive, send: Send) -> None:
        responder = Responder(send, ctx)
        recorded = False
        observers = self._stages.observers
        for observer in observers:
            observer.request_received(ctx)
        try:
            credential = extract_credential(ctx.headers)
            refuse_echoed_credential(credential, ctx)  # before anything logs the path
            ctx.identity = await self._stages.authenticator.verify(credential)
            ctx.lap("authenticate")
            ctx.route = match_route(ctx.method, ctx.path)
            if ctx.route is None:
                raise NotFound(f"{ctx.method} {ctx.path} is not an endpoint this gateway serves")
            upload = await self._parse(ctx, receive)
            ctx.lap("parse")
            self._stages.inspector.inspect_request(ctx)
            ctx.lap("inspect")
            if self._stages.judge is not None:
                await self._stages.judge.weigh(ctx)
                ctx.lap("judge")
            await self._check_containers(ctx)
            self._decide(ctx)
            ctx.lap("decide")
            self._stages.inspector.protect_request(ctx)
            ctx.lap("protect")
            assert ctx.decision is not None
            # Quotas before people: nobody approves a request its quota would refuse, and an
            # approved request runs at once. A request refused by its review uses no tokens.
            estimate = max(1, ctx.bytes_in // 4) if ctx.payload is not None else 1
            admission = await self._stages.quotas.admit(ctx.decision.limits, estimate)
            ctx.lap("admit")
            if ctx.decision.effect is Effect.REVIEW:
                try:
                    await self._review(ctx, receive, responder, upload)
                except BaseException:
                    with contextlib.suppress(GatewayError):
                        await self._stages.quotas.settle(admission, 0)
                    raise
                ctx.lap("review")
            headers = self._transform(ctx, upload)
            ctx.lap("transform")
            await self._stages.recorder.request_started(ctx)
            ctx.lap("record")
            for observer in observers:
                headers += observer.forwarding(ctx)
            done = upload.done if upload is not None else None
            try:
                await _until_disconnect(
                    ctx,
                    receive,
                    done,
                    self._forward_and_relay(ctx, headers, upload, responder),
                    drain_deadline(self._server.graceful_shutdown),
                )
                ctx.lap("forward")
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
            for observer in observers:
                observer.request_finished(ctx)

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

    async def _parse(self, ctx: RequestContext, receive: Receive) -> BodyStream | None:
        """Read what the caller sends and fix what will be forwarded: the checked query, the
        cleaned headers and, for a JSON endpoint, the parsed payload (re-encoded at transform,
        so what goes upstream is exactly what was inspected and decided on). Uploads stream."""
        route = ctx.route
        assert route is not None
        ctx.forwarded_query = canonical_query(route.endpoint.value, route.action, ctx.query_string)
        ctx.forwarded_headers = upstream_request_headers(ctx.headers, json=route.body is Body.JSON)
        if route.body is Body.UPLOAD:
            # Policy sees the declared size; the stream enforces the bound as bytes arrive.
            ctx.bytes_in = declared_length(ctx.headers, self._server.max_upload_body) or 0
            return BodyStream(receive, self._server.max_upload_body)
        if route.body is Body.NONE:
            await read_no_body(ctx.headers, receive)
            return None
        if (ctx.header(b"content-encoding") or b"identity").lower() != b"identity":
            raise InvalidRequest("a JSON request body must not be compressed (content-encoding)")
        declared_length(ctx.headers, self._server.max_json_body)
        raw = await read_body(receive, self._server.max_json_body)
        ctx.bytes_in = len(raw)
        try:
            payload = parse_object(raw)
        except MalformedBody as exc:
            raise InvalidRequest(str(exc)) from None
        check_request(route.endpoint.value, payload)
        try:
            ctx.texts = body_text(payload, max_depth=self._server.max_json_depth)
        except TooDeep as exc:
            raise InvalidRequest(f"the request cannot be inspected: {exc}") from None
        ctx.payload = payload
        return None

    async def _review(
        self,
        ctx: RequestContext,
        receive: Receive,
        responder: Responder,
        upload: BodyStream | None,
    ) -> None:
        """People decide: the request waits (a stream with its headers sent and pings) while
        its caller stays; the caller leaving, or the gateway shutting down, ends the wait."""
        hold = self._stages.reviewer.hold(ctx, _Held(responder))
        if upload is not None:
            await hold  # the upload's own bytes are still to come: nothing else to watch
            return
        task = asyncio.current_task()
        assert task is not None
        ended: str | None = None

        async def watch() -> None:
            nonlocal ended
            while True:
                kind = (await receive())["type"]
                if kind in ("http.disconnect", DRAINING):
                    ended = kind
                    task.cancel()
                    return

        watcher = asyncio.create_task(watch())
        try:
            await hold
        except asyncio.CancelledError:
            if ended is None:
                raise
            task.uncancel()
            if ended == DRAINING:
                raise restarting(ctx.review_id) from None
            raise ClientDisconnected from None
        finally:
            watcher.cancel()

    async def _check_containers(self, ctx: RequestContext) -> None:
        """A container named in the request must be one this identity created."""
        assert ctx.identity is not None
        for params in _message_bodies(ctx):
            await self._stages.containers.check(params, ctx.identity.principal)

    def _decide(self, ctx: RequestContext) -> None:
        decision, ctx.policy_input = self._stages.decider.decide(ctx)
        forced = ctx.forced_review
        if forced is not None and decision.effect is not Effect.DENY:
            decision = decision._replace(
                effect=Effect.REVIEW,
                reason=forced.message if decision.effect is Effect.ALLOW else decision.reason,
                reviews=(*decision.reviews, forced),
            )
        ctx.decision = decision
        if decision.effect is Effect.DENY:
            rule = f" (rule {decision.rule_ids[0]})" if decision.rule_ids else ""
            found = self._stages.inspector.guardrail_summary(ctx)
            raise PermissionDenied(f"denied by policy{rule}: {decision.reason}{found}")

    async def _settle(self, ctx: RequestContext, admission: Admission) -> None:
        """After the response: correct the token charge, remember a new container's owner."""
        if ctx.facts.container_id is not None and ctx.identity is not None:
            try:
                await self._stages.containers.remember(
                    ctx.facts.container_id, ctx.identity.principal
                )
            except GatewayError:  # the answer is on its way; its creator cannot reuse it
                log.error(
                    "a container's owner could not be recorded",
                    extra={"event": "container_owner_lost", "request_id": ctx.request_id},
                )
        with contextlib.suppress(GatewayError):  # the answer is already on its way
            await self._stages.quotas.settle(admission, ctx.facts.total_tokens)

    def _transform(self, ctx: RequestContext, upload: BodyStream | None) -> Headers:
        """The request as it goes upstream: ztgate's key instead of the caller's credential,
        ``max_tokens`` within the decision's cap, the payload encoded once."""
        headers = list(ctx.forwarded_headers)
        if upload is not None:
            length = ctx.header(b"content-length")
            if length is not None:
                headers.append((b"content-length", length))
        if ctx.payload is not None:
            cap = ctx.decision.max_tokens if ctx.decision else None
            if cap is not None:
                for params in _message_bodies(ctx):
                    if params.get("max_tokens", 0) > cap:  # count_tokens has none
                        params["max_tokens"] = cap
            ctx.body = encode(ctx.payload)
        return headers

    async def _forward_and_relay(
        self,
        ctx: RequestContext,
        headers: Headers,
        upload: BodyStream | None,
        responder: Responder,
    ) -> None:
        query = ctx.forwarded_query
        target = ctx.path + ("?" + query.decode("ascii") if query else "")
        data = upload.chunks() if upload is not None else ctx.body
        ctx.upstream_started = time.perf_counter()
        assert ctx.identity is not None
        credential = self._upstream.keys.for_groups(ctx.identity.groups)
        ctx.upstream_key = credential.name
        response = await self._upstream.open(ctx.method, target, headers, data, credential)
        try:
            if upload is not None:
                ctx.bytes_in = upload.size
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
            elif responder.started:  # a held stream's headers went out while it waited
                await relay_as_error_event(ctx, response, responder, self._server.max_response_body)
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
    """The messages requests a request carries (checked at parse): itself, or every request of
    a batch."""
    payload = ctx.payload
    if payload is None or ctx.route is None:
        return []
    if ctx.route.endpoint is Endpoint.BATCHES:
        return [item["params"] for item in payload["requests"]]
    return [payload]


def drain_deadline(graceful_shutdown: float) -> float:
    """How long an answer may go on once the gateway starts shutting down: a little less than
    the server's graceful window (uvicorn cancels what is left at ``int(window)`` seconds), so
    that ztgate ends it itself, with an error event and an audit outcome that says why."""
    window = int(graceful_shutdown)
    return max(0.0, window - min(1.0, window * 0.2))


async def _until_disconnect(
    ctx: RequestContext,
    receive: Receive,
    body_done: asyncio.Event | None,
    work: Awaitable[None],
    drain_deadline: float,
) -> None:
    """Run ``work`` until it ends, the caller disconnects (which cancels it, and with it the
    upstream request), or the gateway shuts down and its answer outlives ``drain_deadline``
    (ShuttingDown: a stream then ends with an ``overloaded_error`` event). One watcher task per
    request; the work runs in the caller's task."""
    task = asyncio.current_task()
    assert task is not None
    why: StreamEnd | None = None

    async def watch() -> None:
        nonlocal why
        if body_done is not None:
            await body_done.wait()
        try:
            kind = (await receive())["type"]
            while kind != "http.disconnect":
                if kind == DRAINING:
                    # Shutting down: the wait for a disconnect is bounded by the deadline now.
                    async with asyncio.timeout(drain_deadline):
                        while (await receive())["type"] != "http.disconnect":
                            pass
                    break
                kind = (await receive())["type"]
            why = StreamEnd.CLIENT_DISCONNECTED
        except TimeoutError:
            why = StreamEnd.GATEWAY_SHUTDOWN
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        await work
    except asyncio.CancelledError:
        if why is None:
            raise
        task.uncancel()
        ctx.stream_end = why
        if why is StreamEnd.GATEWAY_SHUTDOWN:
            raise ShuttingDown(
                "the gateway is shutting down and its graceful window ended before this "
                "answer did; send the request again"
            ) from None
    finally:
        watcher.cancel()


class _Held:
    """A held request's response, as the review stage sees it."""

    def __init__(self, responder: Responder) -> None:
        self._responder = responder

    async def begin(self) -> None:
        await self._responder.start(200, [_SSE, (b"cache-control", b"no-cache")])

    async def ping(self) -> None:
        await self._responder.events([_PING])


_SSE = (b"content-type", b"text/event-stream; charset=utf-8")
_PING = frame("ping", b'{"type": "ping"}')
