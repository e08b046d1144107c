"""Prometheus metrics: what the gateway does, for the platform team's dashboards and alerts.

Every figure comes from the request context once the request is over (``request_finished``),
from the audit writer's commits, the verifier's key refreshes, a periodic count of pending
reviews and a periodic reading of the process' sizes (tasks, pools, caches, queues: what a
leak would grow); nothing here changes what happens to a request. Labels are bounded: endpoints,
decisions, status codes, stages, detector ids and issuer names come from ztgate's own
vocabulary or its configuration, never from a caller (no principal, request id or model).

With several workers (``serve --workers N``) prometheus-client's multiprocess mode adds up the
workers' figures (``PROMETHEUS_MULTIPROC_DIR``, set by ``serve`` before the workers start);
any worker answers a scrape with the whole gateway's view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from ztgate.core.context import RequestContext
from ztgate.core.guardrails import DEFAULT_THRESHOLD, combine
from ztgate.core.types import Headers

log = logging.getLogger("ztgate.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Stages take microseconds to seconds (a review: minutes); requests up to a long stream.
_STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                  0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)  # fmt: skip
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                    60, 120, 300, 600)  # fmt: skip
_COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                   0.5, 1, 2.5, 5, 10, 30)  # fmt: skip


@dataclass(frozen=True, slots=True)
class RuntimeSizes:
    """What a long-running process holds that a leak would grow; each has a bound."""

    tasks: int  # asyncio tasks: about one per request in flight, plus a few of the gateway's
    upstream_idle: int  # kept-alive upstream connections (at most upstream.max_connections)
    cached_tokens: int  # verified tokens remembered (at most identity.token_cache_size)
    recordings_waiting: int  # recordings waiting for the store


class Metrics:
    """The gateway's metrics, in a registry of their own (several gateways in one process, as
    in tests, never collide). An :class:`~ztgate.core.stages.Observer` of the data path."""

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROCESS_ENV))
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "ztgate_requests",
            "Requests answered, by endpoint, policy decision (none: refused before policy "
            "decided) and the status the caller got.",
            ["endpoint", "decision", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "ztgate_request_duration_seconds",
            "From the request's arrival to the end of its answer (a stream's last event).",
            ["endpoint"],
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "ztgate_stage_duration_seconds",
            "Time in each pipeline stage; upstream is to the answer's first byte, forward the "
            "whole upstream exchange and relay.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.upstream_responses = Counter(
            "ztgate_upstream_responses",
            "Upstream answers by status (none: no answer: connection refused, reset, timed out).",
            ["status"],
            registry=r,
        )
        self.upstream_ttfb = Histogram(
            "ztgate_upstream_ttfb_seconds",
            "From sending the request upstream to the first byte of its answer.",
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.streams_active = Gauge(
            "ztgate_streams_active",
            "Streamed requests under way upstream.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.stream_seconds = Histogram(
            "ztgate_stream_duration_seconds",
            "How long streamed answers lasted, from going upstream to their end.",
            buckets=_REQUEST_BUCKETS,
            registry=r,
        )
        self.findings = Counter(
            "ztgate_findings",
            "What inspection found in requests, by detector and category.",
            ["detector", "category"],
            registry=r,
        )
        self.masked = Counter(
            "ztgate_masked",
            "Values masked (or blocked, reported) in requests and answers, by detector.",
            ["detector"],
            registry=r,
        )
        self.guardrail_hits = Counter(
            "ztgate_guardrail_hits",
            "Requests in which the guardrails reached their default threshold, by category.",
            ["category"],
            registry=r,
        )
        self.quota_refusals = Counter(
            "ztgate_quota_refusals", "Requests refused by a quota (429 from ztgate).", registry=r
        )
        self.reviews_pending = Gauge(
            "ztgate_reviews_pending",
            "Reviews waiting for people, counted in the store every metrics.reviews_interval.",
            multiprocess_mode="max",
            registry=r,
        )
        self.audit_commit_seconds = Histogram(
            "ztgate_audit_commit_seconds",
            "How long each group commit of audit events took (the lag a request waits for).",
            buckets=_COMMIT_BUCKETS,
            registry=r,
        )
        self.audit_queue = Gauge(
            "ztgate_audit_queue_events",
            "Audit events waiting for the next commit, after the last one.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.audit_events = Counter(
            "ztgate_audit_events", "Audit events committed to the chain.", registry=r
        )
        self.audit_failures = Counter(
            "ztgate_audit_store_failures",
            "Audit commits that failed (each refused the requests waiting on it).",
            registry=r,
        )
        self.audit_store_up = Gauge(
            "ztgate_audit_store_up",
            "1 when the last audit commit succeeded, 0 when it failed.",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.key_refresh_failures = Counter(
            "ztgate_key_refresh_failures",
            "Failed refreshes of an issuer's signing keys, by issuer (its configured name).",
            ["issuer"],
            registry=r,
        )
        self.tasks = Gauge(
            "ztgate_asyncio_tasks",
            "asyncio tasks alive: about one per request in flight, plus a few of the gateway's.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.upstream_idle = Gauge(
            "ztgate_upstream_idle_connections",
            "Kept-alive upstream connections waiting for a request (upstream.max_connections).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.cached_tokens = Gauge(
            "ztgate_token_cache_entries",
            "Verified tokens remembered (identity.token_cache_size).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.recordings_waiting = Gauge(
            "ztgate_audit_queue_recordings",
            "Recordings waiting to be written to the store.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self._sizes: Callable[[], RuntimeSizes] | None = None
        self._streaming: set[int] = set()  # id() of streamed requests under way
        self._tasks: list[asyncio.Task[None]] = []

    # -- the data path (Observer)

    def request_received(self, ctx: RequestContext) -> None:
        return None

    def forwarding(self, ctx: RequestContext) -> Headers:
        if ctx.streaming:
            self._streaming.add(id(ctx))
            self.streams_active.inc()
        return []

    def request_finished(self, ctx: RequestContext) -> None:
        end = time.perf_counter()
        endpoint = ctx.route.endpoint.value if ctx.route is not None else "none"
        decision = ctx.decision.effect.value if ctx.decision is not None else "none"
        self.requests.labels(endpoint, decision, str(ctx.status or 0)).inc()
        self.request_seconds.labels(endpoint).observe(end - ctx.started)
        for stage, start, stop in ctx.stage_durations():
            self.stage_seconds.labels(stage).observe(stop - start)
        forwarded = any(stage == "record" for stage, _ in ctx.laps)
        if forwarded:
            status = str(ctx.upstream_status) if ctx.upstream_status is not None else "none"
            self.upstream_responses.labels(status).inc()
        if ctx.upstream_started is not None and ctx.upstream_first_byte is not None:
            self.upstream_ttfb.observe(ctx.upstream_first_byte - ctx.upstream_started)
        if id(ctx) in self._streaming:
            self._streaming.discard(id(ctx))
            self.streams_active.dec()
            if ctx.upstream_started is not None:
                self.stream_seconds.observe(end - ctx.upstream_started)
        for finding in ctx.findings:
            self.findings.labels(finding.detector, finding.category).inc()
        for detector, count in ctx.masked.items():
            self.masked.labels(detector).inc(count)
        if ctx.signals:
            for category in {
                hit.category
                for hit in combine(signal for _, signal in ctx.signals)
                if hit.score >= DEFAULT_THRESHOLD
            }:
                self.guardrail_hits.labels(category).inc()
        if ctx.status == 429 and ctx.upstream_status is None:
            self.quota_refusals.inc()

    # -- the rest of the gateway

    def audit_opened(self) -> None:
        """The trail opened: its start-up event is committed, so the store is up (before the
        first request's commit says so)."""
        self.audit_store_up.set(1)

    def audit_committed(self, seconds: float, events: int, queued: int) -> None:
        self.audit_commit_seconds.observe(seconds)
        self.audit_events.inc(events)
        self.audit_queue.set(queued)
        self.audit_store_up.set(1)

    def audit_failed(self, queued: int) -> None:
        self.audit_failures.inc()
        self.audit_queue.set(queued)
        self.audit_store_up.set(0)

    def key_refresh_failed(self, issuer: str) -> None:
        self.key_refresh_failures.labels(issuer).inc()

    def count_reviews(self, count: Callable[[], Awaitable[int]], interval: float) -> None:
        """Keep ``ztgate_reviews_pending`` up to date from the store (a failure is logged and
        leaves the last figure)."""

        async def loop() -> None:
            while True:
                try:
                    self.reviews_pending.set(await count())
                except Exception as exc:
                    log.warning(
                        "pending reviews not counted",
                        extra={"event": "metrics_reviews_failed", "error": type(exc).__name__},
                    )
                await asyncio.sleep(interval)

        self._tasks.append(asyncio.create_task(loop(), name="ztgate-metrics-reviews"))

    def watch_runtime(self, sizes: Callable[[], RuntimeSizes], interval: float = 1.0) -> None:
        """Read the process' sizes every ``interval`` (and at each scrape of this process), so
        that a soak or a dashboard sees a leak as a line that keeps rising."""
        self._sizes = sizes

        async def loop() -> None:
            while True:
                self._read_sizes()
                await asyncio.sleep(interval)

        self._tasks.append(asyncio.create_task(loop(), name="ztgate-metrics-runtime"))

    def _read_sizes(self) -> None:
        if self._sizes is None:
            return
        sizes = self._sizes()
        self.tasks.set(sizes.tasks)
        self.upstream_idle.set(sizes.upstream_idle)
        self.cached_tokens.set(sizes.cached_tokens)
        self.recordings_waiting.set(sizes.recordings_waiting)

    def exposition(self) -> bytes:
        """The text a scrape gets: this process' registry, or every worker's figures."""
        self._read_sizes()
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.multiprocess:
            # This worker's live gauges stop counting (its counters stay in the totals).
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
