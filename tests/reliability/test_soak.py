"""Soak (issue #18; docs/reliability.md, "Soak"): one gateway with everything on under steady
mixed traffic and long streams for ``SOAK_SECONDS`` (default 300; ``SOAK_SECONDS=3600 make
reliability`` for an hour), sampled every few seconds; what it holds must stay flat.

The traffic: the mixed kinds (plain, streamed, masked, denied) at ``RATE`` requests a second,
and ``STREAMS`` long streams under way at all times (each followed by another when it ends).
Tokens of twenty principals are minted again every minute, and one call in ten brings a token
never seen before, so the verifier's token cache (``token_cache_size`` 500 here) fills and
evicts all along. The simulator is told to forget what it received every half minute (it keeps
every request for tests otherwise).

The samples (RSS, open files, threads, connections to the upstream and from clients, streams
under way, audit events waiting) are judged over the last 80% of the traffic (the first 20%
warms the process up): RSS may grow at most ``rss_growth_mb`` (the median of the last tenth of
the window above the median of its first tenth) and, in the long form, its least-squares slope
stay under ``rss_slope_mb_per_min``; open files stay within two a request in flight plus the
upstream pool; threads, the upstream pool, streams under way and the audit queue stay within
theirs; and once the traffic stops, nothing is under way, nothing waits, and every file still
open is a pooled connection. No call may fail, and every answered request has its ``request``
and ``outcome`` events.

``test_soak_smoke`` runs the same code for a few seconds in ``make test``, so it cannot rot; a
window that short has no meaningful slope, so it checks the growth bound only.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.harness import (
    UPSTREAM_IDLE,
    Call,
    Gateway,
    Sample,
    Sampler,
    Simulator,
    Traffic,
    audit_of,
    calls_table,
    samples_table,
    simulator,
    start_gateway,
    unrecorded,
    wait_ready,
)
from tests.stackrunner import RunningStack

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))
RATE = 30.0  # mixed requests a second
WORKERS = 6  # mixed traffic's concurrent callers
STREAMS = 40  # long streams under way at all times
TOKEN_CACHE = 500  # identity.token_cache_size
SLACK_TASKS = 8  # tasks of the gateway's own that come and go (key refresh, retention, ...)
PRINCIPALS = 20
RENEW_SECONDS = 60.0  # tokens minted again this often
FRESH_EVERY = 10  # one call in this many brings a token never seen before
WARM_UP = 0.2  # of the run, not judged
SLACK_FDS = 8


@dataclass(frozen=True)
class Bounds:
    rss_growth_mb: float
    rss_slope_mb_per_min: float | None  # None: the window is too short for a slope


LONG_BOUNDS = Bounds(rss_growth_mb=10.0, rss_slope_mb_per_min=0.5)
SMOKE_BOUNDS = Bounds(rss_growth_mb=10.0, rss_slope_mb_per_min=None)


class Tokens:
    """Bearer tokens for the traffic: those of ``PRINCIPALS`` principals in turn, minted again
    every ``RENEW_SECONDS``; every ``FRESH_EVERY``-th call a token minted for it alone."""

    def __init__(self, stack: RunningStack) -> None:
        self._stack = stack
        self._lock = threading.Lock()
        self._calls = 0
        self._minted_at = 0.0
        self._tokens: list[str] = []
        self.minted = 0

    def __call__(self) -> str:
        with self._lock:
            self._calls += 1
            principal = f"demo/soak-{self._calls % PRINCIPALS}"
            if self._calls % FRESH_EVERY == 0:
                self.minted += 1
                return self._stack.token(principal)
            if time.monotonic() - self._minted_at > RENEW_SECONDS:
                self._tokens = [self._stack.token(f"demo/soak-{i}") for i in range(PRINCIPALS)]
                self._minted_at = time.monotonic()
                self.minted += PRINCIPALS
            return self._tokens[self._calls % PRINCIPALS]


def slope_per_minute(samples: Sequence[Sample]) -> float:
    """The least-squares slope of RSS over time, in MB a minute."""
    times = [s.at for s in samples]
    rss = [s.rss_mb for s in samples]
    mean_t, mean_r = statistics.fmean(times), statistics.fmean(rss)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (r - mean_r) for t, r in zip(times, rss, strict=True)) / spread


def growth(samples: Sequence[Sample]) -> float:
    """Median RSS of the last tenth of ``samples`` above that of the first tenth (MB)."""
    tenth = max(1, len(samples) // 10)
    first = statistics.median(s.rss_mb for s in samples[:tenth])
    return statistics.median(s.rss_mb for s in samples[-tenth:]) - first


def traffic(
    url: str, tokens: Tokens, sim: Simulator, seconds: float
) -> tuple[list[Call], float, float]:
    """Mixed traffic and long streams for ``seconds``: every call, and when the traffic
    started and when it stopped (``time.monotonic()``); the last streams end after that."""

    async def run() -> tuple[list[Call], float, float]:
        async with Traffic(url, tokens) as load:
            started = time.monotonic()

            async def forget() -> None:
                while (left := started + seconds - time.monotonic()) > 0:
                    await asyncio.sleep(min(30.0, left))
                    await asyncio.to_thread(sim.forget)

            await asyncio.gather(
                load.mixed(seconds, RATE, WORKERS), load.keep_streaming(STREAMS, seconds), forget()
            )
            return load.calls, started, time.monotonic()

    return asyncio.run(run())


def soak(
    stack: RunningStack, workdir: Path, seconds: float, interval: float, bounds: Bounds
) -> None:
    with simulator(workdir) as sim:
        store = f"sqlite:///{workdir}/audit.db"
        gateway = start_gateway(
            workdir,
            "gateway",
            stack.stack.issuer.base_url,
            sim.url,
            store=store,
            token_cache_size=TOKEN_CACHE,
        )
        try:
            wait_ready(gateway)
            tokens = Tokens(stack)
            with Sampler([gateway], {"upstream": sim.port}, interval) as sampler:
                cold = sampler.take()[0]
                calls, started, stopped = traffic(gateway.url, tokens, sim, seconds)
                time.sleep(1.0)  # closed connections reach the gateway, the last commit is done
                end = sampler.take()[0]
            assert gateway.child.stop() == 0, gateway.child.tail()  # drained
        finally:
            gateway.child.stop()
        judged = [
            s
            for s in sampler.samples[gateway.pid]
            if started + WARM_UP * seconds <= s.at <= stopped
        ]
        summary(gateway, cold, judged, end, calls, tokens, stopped - started)
        check(cold, judged, end, bounds)
        errors = [c for c in calls if c.error]
        assert not errors, (len(errors), errors[:5])
        missing = unrecorded(calls, audit_of(store))
        assert not missing, (len(missing), missing[:5])


def summary(
    gateway: Gateway,
    cold: Sample,
    judged: Sequence[Sample],
    end: Sample,
    calls: Sequence[Call],
    tokens: Tokens,
    took: float,
) -> None:
    print(f"\n== soak: {len(calls)} calls in {took:.0f} s, {tokens.minted} tokens minted")
    print(calls_table(calls))
    print(f"-- gateway {gateway.address}: {len(judged)} samples judged (the last 80%)")
    rows = [("cold", cold)]
    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        index = min(len(judged) - 1, round(fraction * (len(judged) - 1)))
        rows.append((f"judged {fraction:.0%}", judged[index]))
    rows += [("max RSS", max(judged, key=lambda s: s.rss_mb)), ("after", end)]
    print(samples_table(rows))
    print(
        f"RSS growth {growth(judged):+.1f} MB, slope {slope_per_minute(judged):+.2f} MB/min;"
        f" fds {min(s.fds for s in judged)}..{max(s.fds for s in judged)};"
        f" threads {min(s.threads for s in judged)}..{max(s.threads for s in judged)};"
        f" upstream {max(s.peers['upstream'] for s in judged)} max;"
        f" audit queue {max(s.audit_queue for s in judged):.0f} max;"
        f" tasks {min(s.tasks for s in judged):.0f}..{max(s.tasks for s in judged):.0f}"
        f" (cold {cold.tasks:.0f}, after {end.tasks:.0f});"
        f" cached tokens {max(s.cached_tokens for s in judged):.0f} max;"
        f" recordings waiting {max(s.recordings for s in judged):.0f} max"
    )


def check(cold: Sample, judged: Sequence[Sample], end: Sample, bounds: Bounds) -> None:
    assert len(judged) >= 5, "too few samples to judge"
    in_flight = STREAMS + WORKERS
    assert growth(judged) <= bounds.rss_growth_mb, [s.rss_mb for s in judged]
    if bounds.rss_slope_mb_per_min is not None:
        slope = slope_per_minute(judged)
        assert slope <= bounds.rss_slope_mb_per_min, [s.rss_mb for s in judged]
    for found in judged:
        assert found.fds <= cold.fds + 2 * in_flight + UPSTREAM_IDLE + SLACK_FDS, found
        assert found.threads <= cold.threads + 4, found
        assert found.peers["upstream"] <= in_flight + UPSTREAM_IDLE, found
        assert found.streams <= in_flight, found
        assert found.audit_queue <= 2 * in_flight, found
        # What the process holds, from its own metrics: a task per request in flight (and
        # one per stream's relay), the gateway's own few; the pool and cache at their bounds.
        assert found.tasks <= cold.tasks + 2 * in_flight + SLACK_TASKS, found
        assert found.upstream_idle <= UPSTREAM_IDLE, found
        assert found.cached_tokens <= TOKEN_CACHE, found
        assert found.recordings <= 2 * in_flight, found
    assert end.streams == 0, end
    assert end.audit_queue == 0, end
    assert end.tasks <= cold.tasks + SLACK_TASKS, (cold, end)
    assert end.recordings == 0, end
    assert end.clients == 0, end
    assert end.peers["upstream"] <= UPSTREAM_IDLE, end
    assert end.fds <= cold.fds + end.peers["upstream"] + SLACK_FDS, (cold, end)


@pytest.mark.long
@pytest.mark.timeout(SOAK_SECONDS + 600)
def test_soak(stack: RunningStack, tmp_path: Path) -> None:
    soak(stack, tmp_path, SOAK_SECONDS, interval=5.0, bounds=LONG_BOUNDS)


def test_soak_smoke(stack: RunningStack, tmp_path: Path) -> None:
    soak(stack, tmp_path, 8.0, interval=0.5, bounds=SMOKE_BOUNDS)
