"""The metrics say what the gateway did, with labels no caller can choose, on a listener of
their own; with workers, any worker answers with all of them."""

from __future__ import annotations

import asyncio
import string
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import GatewayProcesses, free_port
from tests.stackrunner import RunningStack
from ztgate.core.context import RequestContext
from ztgate.core.decision import Decision, Effect
from ztgate.core.findings import FindingRecord
from ztgate.core.identity import Identity
from ztgate.observe.metrics import Metrics, RuntimeSizes
from ztgate.wire.routes import match_route

POLICY = (
    "policy:\n"
    "  rules:\n"
    "    - {id: haiku, effect: allow, when: {models: ['claude-haiku-*']}}\n"
    "    - {id: no-opus, effect: deny, when: {models: ['claude-opus-*']}}\n"
)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float:
    return _samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def _finished(
    path: str = "/v1/messages",
    model: str = "claude-haiku-5-5",
    principal: str = "demo/alice",
    status: int = 200,
    stream: bool = False,
) -> RequestContext:
    ctx = RequestContext("req_ztg_1", "POST", path, b"", [(b"user-agent", b"x")], None, "http")
    ctx.route = match_route("POST", "/v1/messages")
    ctx.identity = Identity("demo", "https://idp", principal.split("/")[-1], {}, 0.0)
    ctx.payload = {"model": model, "stream": stream}
    ctx.decision = Decision(Effect.ALLOW, "ok", ("haiku",))
    for stage in ("authenticate", "parse", "inspect", "decide", "record"):
        ctx.lap(stage)
    ctx.upstream_started = time.perf_counter()
    ctx.upstream_first_byte = ctx.upstream_started + 0.01
    ctx.upstream_status = status
    ctx.status = status
    ctx.findings = [FindingRecord("email", "pii", "messages[0].content")]
    ctx.masked = {"email": 1}
    return ctx


def test_a_request_is_counted_by_endpoint_decision_status_and_timed_per_stage() -> None:
    metrics = Metrics()
    ctx = _finished(stream=True)
    metrics.request_received(ctx)
    assert metrics.forwarding(ctx) == []
    assert _value(metrics.exposition().decode(), "ztgate_streams_active") == 1
    ctx.lap("forward")
    metrics.request_finished(ctx)
    text = metrics.exposition().decode()
    labels = {"endpoint": "messages", "decision": "allow", "status": "200"}
    assert _value(text, "ztgate_requests_total", **labels) == 1
    assert _value(text, "ztgate_streams_active") == 0
    assert _value(text, "ztgate_stream_duration_seconds_count") == 1
    for stage in ("authenticate", "parse", "inspect", "decide", "record", "upstream", "forward"):
        assert _value(text, "ztgate_stage_duration_seconds_count", stage=stage) == 1
    assert _value(text, "ztgate_upstream_responses_total", status="200") == 1
    assert _value(text, "ztgate_upstream_ttfb_seconds_count") == 1
    assert _value(text, "ztgate_findings_total", detector="email", category="pii") == 1
    assert _value(text, "ztgate_masked_total", detector="email") == 1


def test_refusals_before_policy_and_by_quota_are_told_apart() -> None:
    metrics = Metrics()
    unauthenticated = RequestContext("r", "POST", "/v1/messages", b"", [], None, "http")
    unauthenticated.status = 401
    metrics.request_finished(unauthenticated)
    limited = _finished()
    limited.upstream_started = limited.upstream_first_byte = limited.upstream_status = None
    limited.laps = [(s, t) for s, t in limited.laps if s != "record"]
    limited.status = 429
    metrics.request_finished(limited)
    text = metrics.exposition().decode()
    assert _value(text, "ztgate_requests_total", endpoint="none", decision="none", status="401")
    assert _value(text, "ztgate_quota_refusals_total") == 1
    assert _value(text, "ztgate_upstream_responses_total", status="none") == 0


def test_audit_commits_failures_and_key_refreshes_are_reported() -> None:
    metrics = Metrics()
    metrics.audit_opened()
    assert _value(metrics.exposition().decode(), "ztgate_audit_store_up") == 1
    metrics.audit_committed(0.002, 5, 3)
    text = metrics.exposition().decode()
    assert _value(text, "ztgate_audit_events_total") == 5
    assert _value(text, "ztgate_audit_queue_events") == 3
    assert _value(text, "ztgate_audit_store_up") == 1
    metrics.audit_failed(7)
    metrics.key_refresh_failed("github")
    text = metrics.exposition().decode()
    assert _value(text, "ztgate_audit_store_failures_total") == 1
    assert _value(text, "ztgate_audit_store_up") == 0
    assert _value(text, "ztgate_key_refresh_failures_total", issuer="github") == 1


_CALLER_TEXT = st.text(string.ascii_letters + string.digits + "-_./:", min_size=8, max_size=40)


@settings(max_examples=80, deadline=None)
@given(path=_CALLER_TEXT, model=_CALLER_TEXT, principal=_CALLER_TEXT)
def test_no_label_value_comes_from_the_caller(path: str, model: str, principal: str) -> None:
    """Cardinality stays bounded and nothing a caller wrote is exported: the path, model and
    principal never appear in any label."""
    metrics = Metrics()
    ctx = _finished(path=f"/v1/{path}", model=model, principal=principal)
    ctx.lap("forward")
    metrics.request_finished(ctx)
    for _, labels in _samples(metrics.exposition().decode()):
        for _, value in labels:
            assert path not in value
            assert model not in value
            assert principal not in value


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[tuple[GatewayProcesses, RunningStack]]:
    stack = RunningStack()
    processes = GatewayProcesses(stack, tmp_path)
    try:
        yield processes, stack
    finally:
        processes.stop_all()
        stack.close()


def _ask(client: httpx.Client, url: str, token: str, model: str) -> int:
    response = client.post(
        url + "/v1/messages",
        headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
        json={"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
    )
    return response.status_code


async def test_the_process_sizes_are_read_at_each_scrape_and_every_interval() -> None:
    metrics = Metrics()
    reading = {"tasks": 3}

    def sizes() -> RuntimeSizes:
        return RuntimeSizes(reading["tasks"], 2, 5, 1)

    metrics.watch_runtime(sizes, interval=0.01)
    try:
        await asyncio.sleep(0.05)
        # read by the loop, before any scrape
        assert metrics.registry.get_sample_value("ztgate_asyncio_tasks") == 3
        reading["tasks"] = 7
        text = metrics.exposition().decode()  # and at the scrape itself
    finally:
        await metrics.close()
    assert _value(text, "ztgate_asyncio_tasks") == 7
    assert _value(text, "ztgate_upstream_idle_connections") == 2
    assert _value(text, "ztgate_token_cache_entries") == 5
    assert _value(text, "ztgate_audit_queue_recordings") == 1


@pytest.mark.parametrize("workers", [1, 2])
def test_a_scrape_shows_every_workers_requests_on_the_metrics_port_only(
    gateways: tuple[GatewayProcesses, RunningStack], workers: int
) -> None:
    processes, stack = gateways
    port = free_port()
    extra = POLICY + f'metrics: {{enabled: true, listen: "127.0.0.1:{port}"}}\n'
    _, url = processes.start("--workers", str(workers), extra=extra)
    token = stack.token()
    statuses = []
    for n in range(12):
        # A new connection each time, so that both workers take requests.
        with httpx.Client(timeout=10) as client:
            statuses.append(
                _ask(client, url, token, "claude-opus-4-5" if n % 4 == 0 else "claude-haiku-4-5")
            )
    assert statuses.count(200) == 9
    assert statuses.count(403) == 3
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 10
    while True:  # outcomes are counted once their answer is over: at most moments later
        scrape = httpx.get(metrics_url, timeout=5)
        assert scrape.status_code == 200
        text = scrape.text
        allowed = _value(
            text, "ztgate_requests_total", endpoint="messages", decision="allow", status="200"
        )
        # A worker that does not answer the scrape reads its sizes every second.
        sized = _value(text, "ztgate_token_cache_entries") >= 1
        if (allowed == 9 and sized) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert allowed == 9
    assert (
        _value(text, "ztgate_requests_total", endpoint="messages", decision="deny", status="403")
        == 3
    )
    assert _value(text, "ztgate_upstream_responses_total", status="200") == 9
    assert _value(text, "ztgate_audit_events_total") >= 9
    assert _value(text, "ztgate_stage_duration_seconds_count", stage="inspect") == 12
    assert _value(text, "ztgate_audit_store_up") == 1
    # The sizes a soak watches, summed over the workers: each served the one token and kept
    # its upstream connection for the next request.
    assert 1 <= _value(text, "ztgate_token_cache_entries") <= workers
    assert 1 <= _value(text, "ztgate_upstream_idle_connections") <= workers
    assert _value(text, "ztgate_asyncio_tasks") >= workers
    assert "ztgate_audit_queue_recordings " in text  # recordings ride with the next commit
    assert _value(text, "ztgate_audit_queue_recordings") <= 12
    # The data path's listener has no /metrics, and the metrics listener nothing else.
    assert httpx.get(url + "/metrics").status_code == 404
    assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 404
