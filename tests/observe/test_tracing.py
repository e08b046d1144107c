"""Traces: the spans a request makes, their parents and times, the caller's trace context joined
or not, ztgate's sent upstream or not, sampling, and that no span says what a caller wrote.

Unit tests drive the tracer over request contexts as the pipeline does and read the spans from
an in-memory exporter; the last test runs a real gateway that exports over OTLP/HTTP to a
receiver of the test's own."""

from __future__ import annotations

import string
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from tests.stackrunner import RunningStack
from ztgate.config.model import TracingConfig
from ztgate.core.context import RequestContext, StreamEnd
from ztgate.core.decision import Decision, Effect
from ztgate.core.findings import FindingRecord
from ztgate.core.identity import Identity
from ztgate.observe.tracing import Tracer, tracer_from_config
from ztgate.wire.routes import match_route

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
STAGES = ("authenticate", "parse", "inspect", "decide", "protect", "admit", "transform", "record")

MakeTracer = Callable[..., tuple[Tracer, InMemorySpanExporter]]


@pytest.fixture
def make_tracer() -> Iterator[MakeTracer]:
    """Tracers over in-memory exporters, shut down after the test."""
    made: list[Tracer] = []

    def make(**config: Any) -> tuple[Tracer, InMemorySpanExporter]:
        exporter = InMemorySpanExporter()
        tracer = Tracer(TracingConfig(enabled=True, **config), exporter)
        made.append(tracer)
        return tracer, exporter

    yield make
    for tracer in made:
        tracer._provider.shutdown()


def _ctx(
    headers: Sequence[tuple[bytes, bytes]] = (),
    *,
    method: str = "POST",
    path: str = "/v1/messages",
    query: bytes = b"",
) -> RequestContext:
    return RequestContext("req_ztg_0123", method, path, query, list(headers), None, "http")


def _caller(flags: str = "01") -> tuple[bytes, bytes]:
    return b"traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-{flags}".encode()


def _allowed(ctx: RequestContext) -> None:
    ctx.route = match_route(ctx.method, ctx.path)
    ctx.payload = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": []}
    ctx.decision = Decision(Effect.ALLOW, "allowed", ("everyone",))


def _serve(tracer: Tracer, ctx: RequestContext, *, upstream: int | None = 200) -> list[Any]:
    """The request through every stage as the pipeline runs it; what went upstream with it.
    ``upstream=None``: the upstream gave no answer (ztgate answered 502)."""
    tracer.request_received(ctx)
    for stage in STAGES:
        ctx.lap(stage)
    sent = tracer.forwarding(ctx)
    ctx.upstream_started = time.perf_counter()
    if upstream is None:
        ctx.status, ctx.error_type = 502, "api_error"
    else:
        ctx.upstream_first_byte = time.perf_counter()
        ctx.upstream_status = ctx.status = upstream
        ctx.stream_end = StreamEnd.COMPLETE
        ctx.lap("forward")
    tracer.request_finished(ctx)
    return sent


def _spans(tracer: Tracer, exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    tracer.force_flush()
    spans = exporter.get_finished_spans()
    by_name = {span.name: span for span in spans}
    assert len(by_name) == len(spans), "span names repeat"
    return by_name


def test_a_span_per_stage_and_the_upstream_call_under_the_request(
    make_tracer: MakeTracer,
) -> None:
    tracer, exporter = make_tracer()
    ctx = _ctx()
    _allowed(ctx)
    _serve(tracer, ctx)
    spans = _spans(tracer, exporter)
    stage_names = {f"ztgate.{stage}" for stage in (*STAGES, "forward")}
    assert set(spans) == {"ztgate.request", "ztgate.upstream", *stage_names}

    root = spans.pop("ztgate.request")
    assert root.parent is None
    assert root.kind is SpanKind.SERVER
    assert root.start_time == round(ctx.received_at * 1e9)
    assert root.context is not None
    for span in spans.values():
        assert span.parent is not None
        assert span.parent.span_id == root.context.span_id
        assert span.context is not None
        assert span.context.trace_id == root.context.trace_id
        assert span.start_time is not None
        assert span.end_time is not None
        assert root.start_time <= span.start_time <= span.end_time
        assert root.end_time is not None
        assert span.end_time <= root.end_time
    assert spans["ztgate.upstream"].kind is SpanKind.CLIENT
    assert {spans[name].kind for name in stage_names} == {SpanKind.INTERNAL}

    # The stages follow one another without gap, as their laps do; upstream is inside forward.
    previous_end: int | None = root.start_time
    for stage in (*STAGES, "forward"):
        span = spans[f"ztgate.{stage}"]
        assert span.start_time == previous_end
        assert not span.attributes  # the name says which stage: nothing more to say
        previous_end = span.end_time
    upstream, forward = spans["ztgate.upstream"], spans["ztgate.forward"]
    assert upstream.start_time is not None
    assert forward.start_time is not None
    assert forward.start_time <= upstream.start_time
    assert upstream.end_time is not None
    assert forward.end_time is not None
    assert upstream.end_time <= forward.end_time

    assert dict(root.attributes or {}) == {
        "ztgate.request_id": "req_ztg_0123",
        "http.request.method": "POST",
        "ztgate.endpoint": "messages",
        "ztgate.action": "create",
        "http.response.status_code": 200,
        "ztgate.decision": "allow",
        "ztgate.rule_ids": ("everyone",),
        "ztgate.upstream.status_code": 200,
        "ztgate.findings": 0,
        "ztgate.stream_end": "complete",
        "gen_ai.request.model": "claude-sonnet-4-5",
    }
    assert upstream.attributes == {"http.request.method": "POST", "http.response.status_code": 200}
    assert root.status.status_code is StatusCode.UNSET
    assert root.resource.attributes["service.name"] == "ztgate"


def test_a_refused_request_has_its_stages_and_no_upstream_span(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer(service_name="gateway-eu")
    ctx = _ctx(method="BREW")
    tracer.request_received(ctx)
    ctx.lap("authenticate")
    ctx.status, ctx.error_type = 404, "not_found_error"
    tracer.request_finished(ctx)
    spans = _spans(tracer, exporter)
    assert set(spans) == {"ztgate.request", "ztgate.authenticate"}
    root = spans["ztgate.request"]
    assert root.attributes is not None
    assert root.attributes["http.request.method"] == "_OTHER"  # a method is the caller's text
    assert root.attributes["ztgate.error_type"] == "not_found_error"
    assert "ztgate.decision" not in root.attributes
    assert root.status.status_code is StatusCode.UNSET  # the caller's error, not ztgate's
    assert root.resource.attributes["service.name"] == "gateway-eu"


def test_no_answer_from_upstream_is_an_error_on_both_spans(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    ctx = _ctx()
    _allowed(ctx)
    _serve(tracer, ctx, upstream=None)
    spans = _spans(tracer, exporter)
    assert "ztgate.forward" not in spans
    assert spans["ztgate.request"].status.status_code is StatusCode.ERROR
    assert spans["ztgate.upstream"].status.status_code is StatusCode.ERROR
    assert "http.response.status_code" not in (spans["ztgate.upstream"].attributes or {})
    assert spans["ztgate.request"].end_time == spans["ztgate.upstream"].end_time


def test_the_callers_trace_is_joined_when_accepted(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    ctx = _ctx([_caller(), (b"tracestate", b"vendor=opaque")])
    _allowed(ctx)
    _serve(tracer, ctx)
    spans = _spans(tracer, exporter)
    root = spans["ztgate.request"]
    assert root.context is not None
    assert root.parent is not None
    assert f"{root.context.trace_id:032x}" == CALLER_TRACE
    assert f"{root.parent.span_id:016x}" == CALLER_SPAN
    assert root.parent.is_remote
    # The caller's tracestate is its own free text: not carried in ztgate's spans.
    assert not root.context.trace_state
    assert all(f"{s.context.trace_id:032x}" == CALLER_TRACE for s in spans.values() if s.context)


def test_the_callers_trace_is_ignored_when_not_accepted(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer(accept_context=False)
    ctx = _ctx([_caller()])
    _allowed(ctx)
    _serve(tracer, ctx)
    root = _spans(tracer, exporter)["ztgate.request"]
    assert root.parent is None
    assert root.context is not None
    assert f"{root.context.trace_id:032x}" != CALLER_TRACE


@pytest.mark.parametrize(
    "traceparent",
    [
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
        b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        b"not a trace context",
    ],
)
def test_a_malformed_traceparent_starts_a_trace_of_ztgates_own(
    make_tracer: MakeTracer, traceparent: bytes
) -> None:
    tracer, exporter = make_tracer()
    ctx = _ctx([(b"traceparent", traceparent)])
    _serve(tracer, ctx)
    assert _spans(tracer, exporter)["ztgate.request"].parent is None


def test_two_traceparents_are_none(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    _serve(tracer, _ctx([_caller(), _caller()]))
    assert _spans(tracer, exporter)["ztgate.request"].parent is None


def test_traceparent_goes_upstream_only_when_configured(make_tracer: MakeTracer) -> None:
    quiet, _ = make_tracer()
    assert _serve(quiet, _ctx([_caller(), (b"tracestate", b"vendor=opaque")])) == []

    tracer, exporter = make_tracer(propagate_upstream=True)
    sent = _serve(tracer, _ctx([_caller(), (b"tracestate", b"vendor=opaque")]))
    upstream = _spans(tracer, exporter)["ztgate.upstream"].context
    assert upstream is not None
    assert sent == [(b"traceparent", f"00-{CALLER_TRACE}-{upstream.span_id:016x}-01".encode())]


def test_an_unsampled_caller_is_followed(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer(propagate_upstream=True)
    sent = _serve(tracer, _ctx([_caller("00")]))
    assert _spans(tracer, exporter) == {}
    # The upstream still learns the trace and that it is not sampled (a span id of its own).
    (name, value), *rest = sent
    assert not rest
    assert name == b"traceparent"
    assert value.startswith(f"00-{CALLER_TRACE}-".encode())
    assert value.endswith(b"-00")
    assert CALLER_SPAN.encode() not in value


def test_a_sampled_caller_is_followed_whatever_the_ratio(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer(sample_ratio=0.0)
    _serve(tracer, _ctx([_caller("01")]))
    assert "ztgate.request" in _spans(tracer, exporter)
    _serve(tracer, _ctx())  # a trace of ztgate's own: the ratio decides
    assert len(_spans(tracer, exporter)) == len(STAGES) + 3


def test_tracing_never_raises_into_the_request(
    make_tracer: MakeTracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracer, exporter = make_tracer(propagate_upstream=True)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("broken SDK")

    monkeypatch.setattr(tracer._tracer, "start_span", broken)
    assert _serve(tracer, _ctx([_caller()])) == []
    monkeypatch.undo()
    ctx = _ctx()
    ctx.trace = object()  # someone else's notes: not the tracer's
    assert tracer.forwarding(ctx) == []
    tracer.request_finished(ctx)
    assert _spans(tracer, exporter) == {}


def test_tracer_from_config() -> None:
    assert tracer_from_config(TracingConfig()) is None
    tracer = tracer_from_config(
        TracingConfig(
            enabled=True, endpoint="http://127.0.0.1:9/v1/traces", headers={"x-team": "a"}
        )
    )
    assert tracer is not None
    (processor,) = tracer._provider._active_span_processor._span_processors
    exporter = processor.span_exporter  # type: ignore[attr-defined]
    assert isinstance(exporter, OTLPSpanExporter)
    assert exporter._endpoint == "http://127.0.0.1:9/v1/traces"
    tracer._provider.shutdown()


# -- nothing a caller wrote is ever in a span

MARKER = st.text(string.ascii_letters + string.digits, min_size=8, max_size=24).map(
    lambda s: "zq" + s  # neither hex nor any word of ztgate's: never in a span by chance
)
_B64URL = string.ascii_letters + string.digits + "-_"
TOKEN = st.one_of(
    # Anthropic API keys and JWTs as they come: far longer than any model name.
    st.text(_B64URL, min_size=93, max_size=95).map(lambda s: "sk-ant-api03-" + s + "AA"),
    st.tuples(
        st.text(_B64URL, min_size=20, max_size=60),
        st.text(_B64URL, min_size=40, max_size=200),
        st.text(_B64URL, min_size=43, max_size=342),
    ).map(lambda parts: "eyJ" + ".".join(parts)),
)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (tuple, list)):
        return [s for item in value for s in _strings(item)]
    return [str(value)]


def _everything_said(spans: Sequence[ReadableSpan], sent: list[Any]) -> str:
    said: list[str] = []
    for span in spans:
        said.append(span.name)
        said.append(span.status.description or "")
        for key, value in {**(span.attributes or {}), **span.resource.attributes}.items():
            said.append(key)
            said.extend(_strings(value))
        for event in span.events:
            said.append(event.name)
            said.extend(v for value in (event.attributes or {}).values() for v in _strings(value))
        assert span.context is not None
        said.append(span.context.trace_state.to_header())
    said.extend(repr(header) for header in sent)
    return "\n".join(said)


@pytest.fixture(scope="module")
def propagating() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    """One tracer for every example (a provider starts a thread)."""
    exporter = InMemorySpanExporter()
    tracer = Tracer(TracingConfig(enabled=True, propagate_upstream=True), exporter)
    yield tracer, exporter
    tracer._provider.shutdown()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    marker=MARKER,
    token=TOKEN,
    path=st.sampled_from(
        ["/v1/messages", "/v1/messages/batches/{m}", "/v1/files/{m}/content", "/v1/{m}"]
    ),
    model_is_token=st.booleans(),
    status=st.sampled_from([200, 400, 403, 429, 500, 502]),
    forwarded=st.booleans(),
    method=st.sampled_from(["POST", "GET", "{m}"]),
)
def test_no_span_says_what_a_caller_wrote(
    propagating: tuple[Tracer, InMemorySpanExporter],
    marker: str,
    token: str,
    path: str,
    model_is_token: bool,
    status: int,
    forwarded: bool,
    method: str,
) -> None:
    tracer, exporter = propagating
    exporter.clear()
    headers = [
        (b"authorization", f"Bearer {token}".encode()),
        (b"x-api-key", token.encode()),
        (b"proxy-authorization", f"Bearer {token}".encode()),
        (b"user-agent", f"{marker}/1.0".encode()),
        (b"anthropic-beta", marker.encode()),
        (b"x-" + marker.lower().encode(), marker.encode()),
        _caller(),
        (b"tracestate", f"{marker.lower()}={marker}".encode()),
        (b"baggage", f"user={marker},key={token}".encode()),
    ]
    ctx = _ctx(
        headers,
        method=method.format(m=marker.upper()),
        path=path.format(m=marker),
        query=f"beta=true&{marker}={token}&key={token}".encode(),
    )
    tracer.request_received(ctx)
    ctx.identity = Identity("demo", "https://issuer.test", marker, {"sub": marker}, 0.0)
    ctx.lap("authenticate")
    ctx.route = match_route(ctx.method, ctx.path)
    ctx.payload = {
        "model": token if model_is_token else "claude-sonnet-4-5",
        "system": marker,
        "messages": [{"role": "user", "content": f"my key is {token}, say {marker}"}],
    }
    ctx.findings = [FindingRecord("api_key", "secret", f"messages.0.{marker}")]
    ctx.masked = {"api_key": 1}
    ctx.lap("parse")
    ctx.decision = Decision(Effect.ALLOW, f"reason {marker}", ("everyone",))
    ctx.lap("decide")
    sent: list[Any] = []
    if forwarded:
        sent = tracer.forwarding(ctx)
        ctx.upstream_started = ctx.upstream_first_byte = time.perf_counter()
        ctx.upstream_status = status
        ctx.upstream_request_id = marker
        ctx.lap("forward")
    ctx.status = status
    ctx.error_type = None if status == 200 else "api_error"
    tracer.request_finished(ctx)
    tracer.force_flush()
    spans = exporter.get_finished_spans()
    assert spans, "nothing traced"
    said = _everything_said(spans, sent)
    assert marker not in said
    assert marker.lower() not in said
    assert marker.upper() not in said
    assert token not in said
    assert "ztgate.request" in said  # the check reads what was exported


# -- a real gateway exporting over OTLP/HTTP


class _Receiver:
    """An OTLP/HTTP trace receiver on loopback: every span it was sent, decoded."""

    def __init__(self) -> None:
        self.spans: list[ProtoSpan] = []
        self.services: set[str] = set()
        self.paths: list[str] = []
        self.raw: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.paths.append(self.path)
                receiver.raw.append(body)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    for attribute in resource_spans.resource.attributes:
                        if attribute.key == "service.name":
                            receiver.services.add(attribute.value.string_value)
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(scope_spans.spans)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1/traces"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    running = _Receiver()
    yield running
    running.close()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


@pytest.mark.parametrize("propagate", [False, True])
def test_a_gateway_exports_its_spans_over_otlp(
    receiver: _Receiver, sdk: Callable[..., anthropic.Anthropic], propagate: bool
) -> None:
    running = RunningStack(
        tracing={
            "enabled": True,
            "endpoint": receiver.url,
            "headers": {"x-collector-key": "collector-secret"},
            "service_name": "ztgate-e2e",
            "propagate_upstream": propagate,
        }
    )
    marker = "zqPromptMarker0815"
    try:
        token = running.token()
        client = sdk(base_url=running.url, auth_token=token)
        before = len(running.received())
        message = client.messages.create(
            model="claude-sonnet-4-5",
            max_tokens=32,
            messages=[{"role": "user", "content": f"say {marker}"}],
            extra_headers={
                "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01",
                "tracestate": f"vendor={marker}",
            },
        )
        assert message.content
        (upstream_request,) = running.received()[before:]
    finally:
        running.close()  # the tracer exports what is queued as the gateway stops

    assert set(receiver.paths) == {"/v1/traces"}
    assert receiver.services == {"ztgate-e2e"}
    spans = {span.name: span for span in receiver.spans}
    assert {
        "ztgate.request",
        "ztgate.authenticate",
        "ztgate.parse",
        "ztgate.inspect",
        "ztgate.decide",
        "ztgate.protect",
        "ztgate.admit",
        "ztgate.transform",
        "ztgate.record",
        "ztgate.upstream",
        "ztgate.forward",
    } <= set(spans)
    root = spans["ztgate.request"]
    assert root.trace_id.hex() == CALLER_TRACE
    assert root.parent_span_id.hex() == CALLER_SPAN
    assert root.kind == ProtoSpan.SPAN_KIND_SERVER
    for name, span in spans.items():
        if name != "ztgate.request":
            assert span.trace_id == root.trace_id
            assert span.parent_span_id == root.span_id
    attributes = {a.key: _value(a.value) for a in root.attributes}
    assert attributes["ztgate.endpoint"] == "messages"
    assert attributes["ztgate.decision"] == "allow"
    assert attributes["http.response.status_code"] == 200
    assert attributes["ztgate.upstream.status_code"] == 200
    assert attributes["gen_ai.request.model"] == "claude-sonnet-4-5"
    assert attributes["ztgate.request_id"].startswith("req_ztg_")
    # Nothing the caller wrote, nor its token, reached the collector.
    for raw in receiver.raw:
        assert marker.encode() not in raw
        assert token.encode() not in raw

    upstream_span = spans["ztgate.upstream"]
    assert "tracestate" not in upstream_request.headers
    if propagate:
        assert upstream_request.headers["traceparent"] == (
            f"00-{CALLER_TRACE}-{upstream_span.span_id.hex()}-01"
        )
    else:
        assert "traceparent" not in upstream_request.headers
