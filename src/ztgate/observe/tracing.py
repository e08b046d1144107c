"""OpenTelemetry traces: one span per request, one per pipeline stage and one for the upstream
call, exported over OTLP/HTTP to the operator's collector (off by default).

The spans are made from the request context, like the metrics: the request's span begins
where its context did (``request_received``), the upstream call's span is live from the moment
the request goes upstream (``forwarding``: its context is what ztgate may send upstream), and
the stages' spans are written afterwards from the marks each stage left (``ctx.laps``), with
their real start and end times. Nothing is timed twice and nothing runs between stages.

What a span says is ztgate's own vocabulary and numbers: the request id ztgate made, the route's
endpoint and action, the decision and its rule ids, status codes, counts. Never a prompt, a
header value, a token, the principal, the path or the query string: those are the caller's
text, and a trace backend is read by more people than the audit trail. A caller's
``traceparent`` (ids and a sampled flag, nothing else) is joined when configured; its
``tracestate`` and ``baggage`` (free text) are not taken, so they never reach the collector or
the upstream.

Every gateway has a provider of its own (several run in one test process, and an
application's global provider is none of ztgate's business). Spans are queued and exported by
the SDK's batch processor on a thread of its own: the event loop never waits for a collector,
and a collector that is down costs dropped spans, never a request.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from ztgate.config.model import TracingConfig
from ztgate.core.context import RequestContext
from ztgate.core.types import Headers

log = logging.getLogger("ztgate.tracing")

REQUEST_SPAN = "ztgate.request"
UPSTREAM_SPAN = "ztgate.upstream"
STAGE_SPAN_PREFIX = "ztgate."  # + the stage's name: ztgate.authenticate, ztgate.inspect...

_PROPAGATOR = TraceContextTextMapPropagator()
# The methods OpenTelemetry's conventions name; any other is "_OTHER" (a method is caller text).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE",
                      "PATCH"})  # fmt: skip
# A model name as the API spells them; anything else (a pasted key, a JWT, a sentence) is not
# recorded: the field is the caller's text, and a name longer than this is no model's.
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")


@dataclass(slots=True)
class _Trace:
    """What the tracer keeps on a request (``ctx.trace``) between its calls."""

    root: Span
    parent: Context  # the root span's context: every other span of the request is its child
    base_ns: int  # the request's start, in ns since the epoch
    started: float  # the same instant on ``time.perf_counter``
    upstream: Span | None = None

    def ns(self, perf: float) -> int:
        """A ``time.perf_counter`` instant of this request as ns since the epoch: one clock
        for all its spans, so they nest and order exactly as the stages ran."""
        return self.base_ns + round((perf - self.started) * 1e9)


class Tracer:
    """The gateway's tracer, an :class:`~ztgate.core.stages.Observer` of the data path.

    ``exporter`` is for tests (an in-memory one); a gateway exports over OTLP/HTTP to
    ``config.endpoint``."""

    def __init__(self, config: TracingConfig, exporter: SpanExporter | None = None) -> None:
        self._accept_context = config.accept_context
        self._propagate = config.propagate_upstream
        if exporter is None:
            exporter = OTLPSpanExporter(endpoint=config.endpoint, headers=dict(config.headers))
        self._provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
            resource=Resource.create({SERVICE_NAME: config.service_name}),
            shutdown_on_exit=False,  # ``close`` does, with the rest of the gateway
        )
        self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("ztgate")

    # -- the data path (Observer); none of it may raise into the request

    def request_received(self, ctx: RequestContext) -> None:
        try:
            parent = self._caller_context(ctx) if self._accept_context else Context()
            base_ns = round(ctx.received_at * 1e9)
            root = self._tracer.start_span(
                REQUEST_SPAN,
                context=parent,
                kind=SpanKind.SERVER,
                start_time=base_ns,
                attributes={
                    "ztgate.request_id": ctx.request_id,
                    "http.request.method": _method(ctx.method),
                },
            )
            ctx.trace = _Trace(root, trace.set_span_in_context(root), base_ns, ctx.started)
        except Exception as exc:
            _failed("request_received", exc)

    def forwarding(self, ctx: RequestContext) -> Headers:
        try:
            state = ctx.trace
            if not isinstance(state, _Trace):
                return []
            span = self._tracer.start_span(
                UPSTREAM_SPAN,
                context=state.parent,
                kind=SpanKind.CLIENT,
                start_time=state.ns(time.perf_counter()),
                attributes={"http.request.method": _method(ctx.method)},
            )
            state.upstream = span
            if not self._propagate:
                return []
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
            # Only the traceparent: ztgate's spans carry no tracestate of their own.
            value = carrier.get("traceparent")
            return [(b"traceparent", value.encode("ascii"))] if value else []
        except Exception as exc:
            _failed("forwarding", exc)
            return []

    def request_finished(self, ctx: RequestContext) -> None:
        try:
            state = ctx.trace
            if not isinstance(state, _Trace):
                return
            ctx.trace = None  # ended once, whatever happens next
            now = time.perf_counter()
            if state.upstream is not None:
                first_byte = ctx.upstream_first_byte
                end = first_byte if first_byte is not None else now
                self._end_upstream(ctx, state.upstream, state.ns(end))
            root = state.root
            if root.is_recording():
                self._stage_spans(ctx, state)
                root.set_attributes(_request_attributes(ctx))
                if ctx.status is not None and ctx.status >= 500:
                    root.set_status(Status(StatusCode.ERROR, ctx.error_type))
            root.end(end_time=state.ns(now))
        except Exception as exc:
            _failed("request_finished", exc)

    # -- the rest of the gateway

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Export every span ended so far (blocks: tests, or a thread)."""
        return self._provider.force_flush(timeout_millis)

    async def close(self) -> None:
        """Export what is queued and stop. On a thread: a collector that is down holds this
        for the exporter's timeout (10 s), never the event loop."""
        try:
            await asyncio.to_thread(self._provider.shutdown)
        except Exception as exc:
            _failed("close", exc)

    # -- helpers

    @staticmethod
    def _caller_context(ctx: RequestContext) -> Context:
        """The caller's trace, from its one ``traceparent`` (none, several or a malformed one:
        a trace of ztgate's own)."""
        values = [value for name, value in ctx.headers if name == b"traceparent"]
        if len(values) != 1:
            return Context()
        return _PROPAGATOR.extract({"traceparent": values[0].decode("latin-1")}, Context())

    def _stage_spans(self, ctx: RequestContext, state: _Trace) -> None:
        """One span per stage passed, written now with the times the stage marked."""
        for stage, start, end in ctx.stage_durations():
            if stage == "upstream":  # the live upstream span already covers it
                continue
            span = self._tracer.start_span(
                STAGE_SPAN_PREFIX + stage,
                context=state.parent,
                kind=SpanKind.INTERNAL,
                start_time=state.ns(start),
            )
            span.end(end_time=state.ns(end))

    @staticmethod
    def _end_upstream(ctx: RequestContext, span: Span, end_ns: int) -> None:
        """The upstream call ends at its answer's first byte (the relay after it is
        ``ztgate.forward``'s), or when the request did, when no answer came."""
        if span.is_recording():
            status = ctx.upstream_status
            if status is not None:
                span.set_attribute("http.response.status_code", status)
            no_answer = status is None and ctx.status is not None and ctx.status >= 500
            if no_answer or (status is not None and status >= 500):
                span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end_ns)


def tracer_from_config(config: TracingConfig) -> Tracer | None:
    """The gateway's tracer, or None when tracing is off."""
    return Tracer(config) if config.enabled else None


def _request_attributes(ctx: RequestContext) -> dict[str, AttributeValue]:
    """What the request's span says once it is over: ztgate's vocabulary and numbers only."""
    out: dict[str, AttributeValue] = {}
    if ctx.route is not None:
        out["ztgate.endpoint"] = ctx.route.endpoint.value
        out["ztgate.action"] = ctx.route.action
    if ctx.status is not None:
        out["http.response.status_code"] = ctx.status
    if ctx.error_type is not None:
        out["ztgate.error_type"] = ctx.error_type
    if ctx.decision is not None:
        out["ztgate.decision"] = ctx.decision.effect.value
        out["ztgate.rule_ids"] = list(ctx.decision.rule_ids)
    if ctx.upstream_status is not None:
        out["ztgate.upstream.status_code"] = ctx.upstream_status
    out["ztgate.findings"] = len(ctx.findings)
    if ctx.masked:
        out["ztgate.masked"] = sum(ctx.masked.values())
    if ctx.stream_end is not None:
        out["ztgate.stream_end"] = ctx.stream_end.value
    model = ctx.model
    if model is not None and _MODEL.fullmatch(model):
        out["gen_ai.request.model"] = model
    if ctx.facts.input_tokens is not None:
        out["gen_ai.usage.input_tokens"] = ctx.facts.input_tokens
    if ctx.facts.output_tokens is not None:
        out["gen_ai.usage.output_tokens"] = ctx.facts.output_tokens
    return out


def _method(method: str) -> str:
    return method if method in _METHODS else "_OTHER"


def _failed(where: str, exc: Exception) -> None:
    log.warning(
        "tracing failed; the request goes on untraced",
        extra={"event": "tracing_failed", "where": where, "error": type(exc).__name__},
    )
