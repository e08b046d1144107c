"""Load (issue #18; docs/reliability.md, "Load"): sustained mixed traffic (plain, streamed,
masked, denied) with hundreds of long streams at once through gateways with everything on.

Each run has two rounds. A round is mixed traffic (the four kinds in turn, ``RATE`` requests a
second) while ``streams`` long streams (``sim-slow-long``: about 210 events 50 ms apart, ten
seconds or more each) are opened at once and read to their end. The first round warms the
process up (its allocator, caches and pools reach their working size); the second must leave it
where the first did. What is checked:

- no errors: every answer is the one expected (200 and a whole message or stream; 403
  ``permission_error`` for the denied kind), no e-mail address ever comes back, every answer
  carries its request id;
- the audit: every answered request has its ``request`` and its ``outcome`` event, the outcome
  with the status the caller got (read back once the gateways have stopped, exit status 0);
- while the streams are open: all of them are under way at once (``ztgate_streams_active``),
  and open files stay within two a request in flight (its connection and its upstream one) plus
  the pools; RSS within ``PEAK_MB`` plus ``PER_STREAM_KB`` a stream above the cold start;
- after each round: nothing under way, no audit event waiting, every file still open is a
  pooled connection (upstream pool at most ``upstream.max_connections``, the load balancer's
  idle keep-alive connections at most its ``keepalive``), and RSS after the second round at
  most ``RETAINED_MB`` above what the first round left.

Latencies are printed with the samples (``-s`` shows them), never asserted: speed targets are
the benchmarks' business. The short form runs in ``make test``; the long forms (``-m long``):
1,000 streams with a minute of mixed traffic through one replica, and the same through two
replicas on PostgreSQL and Redis behind nginx.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.audit.store.backends import postgres_database
from tests.load_balancer import NGINX, LoadBalancer
from tests.redis_server import PrivateRedis
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
from ztgate.audit.signing import SigningKey

RATE = 40.0  # mixed requests a second
WORKERS = 8  # mixed traffic's concurrent callers
PEAK_MB = 40.0  # RSS above the cold start while streams are open: this much...
PER_STREAM_KB = 100.0  # ...and this much for each stream open
RETAINED_MB = 8.0  # RSS after the second round above what the first left
SLACK_FDS = 8  # files besides connections that may come and go (a log rotation, a WAL file)
LB_KEEPALIVE = 64  # tests/load_balancer.py: nginx's idle keep-alive connections to replicas
# The long form's streams: 10 characters an event, about 600 events (30 s or more), so that
# opening 1,000 of them on a busy machine takes less time than each one lasts.
LONG_CHARS = 10


@dataclass
class Round:
    held: int  # long streams under way when the last one opened
    opened: list[Sample]  # each gateway's, then
    peak: list[Sample]  # each gateway's sample with the highest RSS in the round
    after: list[Sample]  # each gateway's, a second after the round


@dataclass
class Run:
    """What one load run saw: every call, and each gateway's samples."""

    gateways: list[Gateway]
    streams: int
    cold: list[Sample]
    calls: list[Call] = field(default_factory=list)
    rounds: list[Round] = field(default_factory=list)
    seconds: float = 0.0


def tokens(stack: RunningStack, principals: int = 10) -> Callable[[], str]:
    """A token for each of a few principals, in turn."""
    cycle = itertools.cycle([stack.token(f"demo/load-{i}") for i in range(principals)])
    return lambda: next(cycle)


def one_round(
    traffic: Traffic, sampler: Sampler, streams: int, seconds: float
) -> tuple[int, list[Sample]]:
    """Mixed traffic for ``seconds`` while ``streams`` long streams run: how many streams were
    under way when the last one opened, and the gateways sampled then."""
    held: list[int] = []
    opened: list[list[Sample]] = []

    def while_open(tasks: int) -> None:
        held.append(tasks)
        opened.append(sampler.take())

    async def run() -> None:
        async with traffic:
            mixed = asyncio.ensure_future(traffic.mixed(seconds, RATE, WORKERS))
            await traffic.long_streams(streams, while_open)
            await mixed

    asyncio.run(run())
    return held[0], opened[0]


def load(
    stack: RunningStack,
    sim: Simulator,
    gateways: Sequence[Gateway],
    url: str,
    *,
    streams: int,
    seconds: float,
    peers: dict[str, int],
    long_chars: int | None = None,
) -> Run:
    """Two rounds of mixed traffic for ``seconds`` with ``streams`` long streams through
    ``url`` (see :class:`Traffic` for ``long_chars``), sampled."""
    token = tokens(stack)
    sampler = Sampler(gateways, {"upstream": sim.port, **peers}, interval=1.0)
    run = Run(list(gateways), streams, sampler.take())
    started = time.monotonic()
    with sampler:
        for _ in range(2):
            first = len(sampler.samples[gateways[0].pid])
            traffic = Traffic(url, token, long_chars)
            held, opened = one_round(traffic, sampler, streams, seconds)
            run.calls += traffic.calls
            time.sleep(1.0)  # closed connections reach the gateways, the last commit is done
            after = sampler.take()
            peak = [max(sampler.samples[g.pid][first:], key=lambda s: s.rss_mb) for g in gateways]
            run.rounds.append(Round(held, opened, peak, after))
    run.seconds = time.monotonic() - started
    return run


def report(name: str, run: Run) -> None:
    print(f"\n== {name}: {len(run.calls)} calls in {run.seconds:.1f} s")
    print(calls_table(run.calls))
    for index, gateway in enumerate(run.gateways):
        rows = [("cold", run.cold[index])]
        for number, round_ in enumerate(run.rounds, 1):
            rows += [
                (f"round {number} open", round_.opened[index]),
                (f"round {number} peak RSS", round_.peak[index]),
                (f"round {number} after", round_.after[index]),
            ]
        print(f"-- gateway {gateway.address}: {run.rounds[0].held} streams held at once")
        print(samples_table(rows))


def check(run: Run, idle_clients: int = 0) -> None:
    """The bounds of the module docstring (the audit is checked apart)."""
    errors = [c for c in run.calls if c.error]
    assert not errors, (len(errors), errors[:5])
    per_gateway = run.streams / len(run.gateways)
    for round_ in run.rounds:
        # Every stream was under way at once: none had ended when the last one opened.
        assert round_.held == run.streams, round_.held
        assert sum(s.streams for s in round_.opened) >= run.streams, round_.opened
        for cold, opened, peak, after in zip(
            run.cold, round_.opened, round_.peak, round_.after, strict=True
        ):
            in_flight = opened.streams + WORKERS
            most = cold.fds + 2 * in_flight + UPSTREAM_IDLE + LB_KEEPALIVE + SLACK_FDS
            assert opened.fds <= most, (cold, opened)
            most_mb = cold.rss_mb + PEAK_MB + per_gateway * PER_STREAM_KB / 1024
            assert peak.rss_mb <= most_mb, (cold, peak)
            # Nothing under way; every file opened since the cold start is a pooled connection.
            assert after.streams == 0, after
            assert after.audit_queue == 0, after
            assert after.clients <= idle_clients, after
            assert after.peers["upstream"] <= UPSTREAM_IDLE, after
            pooled = after.clients + sum(after.peers.values()) - sum(cold.peers.values())
            assert after.fds <= cold.fds + pooled + SLACK_FDS, (cold, after)
            assert after.threads <= cold.threads + 4, (cold, after)
    first, second = run.rounds
    for one, two in zip(first.after, second.after, strict=True):
        assert two.rss_mb <= one.rss_mb + RETAINED_MB, (one, two)


def check_audit(run: Run, store: str) -> None:
    """Every answered request in the audit (read once the gateways have stopped)."""
    missing = unrecorded(run.calls, audit_of(store))
    assert not missing, (len(missing), missing[:5])


@contextlib.contextmanager
def one_gateway(stack: RunningStack, workdir: Path) -> Iterator[tuple[Simulator, Gateway, str]]:
    with simulator(workdir) as sim:
        store = f"sqlite:///{workdir}/audit.db"
        gateway = start_gateway(
            workdir, "gateway", stack.stack.issuer.base_url, sim.url, store=store
        )
        try:
            wait_ready(gateway)
            yield sim, gateway, store
        finally:
            gateway.child.stop()


def one_replica(
    stack: RunningStack, workdir: Path, streams: int, seconds: float, long_chars: int | None
) -> None:
    with one_gateway(stack, workdir) as (sim, gateway, store):
        run = load(stack, sim, [gateway], gateway.url, streams=streams, seconds=seconds,
                   peers={}, long_chars=long_chars)  # fmt: skip
        report(f"one replica, {streams} long streams", run)
        check(run)
        assert gateway.child.stop() == 0, gateway.child.tail()  # drained: every outcome written
        check_audit(run, store)


def test_one_replica_under_mixed_traffic_and_300_long_streams(
    stack: RunningStack, tmp_path: Path
) -> None:
    # Streams of about 5 s (35 characters an event), so a round lasts about 6 s
    one_replica(stack, tmp_path, streams=300, seconds=5, long_chars=35)


@pytest.mark.long
@pytest.mark.timeout(900)
def test_one_replica_under_a_minute_of_mixed_traffic_and_1000_long_streams(
    stack: RunningStack, tmp_path: Path
) -> None:
    one_replica(stack, tmp_path, streams=1000, seconds=30, long_chars=LONG_CHARS)


@pytest.mark.long
@pytest.mark.timeout(900)
@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make setup)")
def test_two_replicas_on_postgres_and_redis_behind_nginx(
    stack: RunningStack, redis_server: PrivateRedis, tmp_path: Path
) -> None:
    key = tmp_path / "signing-key.pem"
    key.write_bytes(SigningKey.generate().private_pem())
    with contextlib.ExitStack() as cleanup:
        sim = cleanup.enter_context(simulator(tmp_path))
        store = cleanup.enter_context(postgres_database())
        issuer = stack.stack.issuer.base_url
        replicas = [
            start_gateway(tmp_path, f"replica-{i}", issuer, sim.url, store=store,
                          redis_url=redis_server.url, key_file=key)
            for i in range(2)
        ]  # fmt: skip
        for replica in replicas:
            cleanup.callback(replica.child.stop)
        for replica in replicas:
            wait_ready(replica)
        balancer = cleanup.enter_context(LoadBalancer(tmp_path, [r.address for r in replicas]))
        run = load(
            stack,
            sim,
            replicas,
            balancer.url,
            streams=1000,
            seconds=30,
            peers={"postgres": 5432, "redis": redis_server.port},
            long_chars=LONG_CHARS,
        )
        report("two replicas on PostgreSQL and Redis behind nginx, 1000 long streams", run)
        check(run, idle_clients=LB_KEEPALIVE)
        for replica in replicas:
            assert replica.child.stop() == 0, replica.child.tail()
        check_audit(run, store)
        statuses = {e["status"] for e in balancer.access_log()}
        assert statuses <= {200, 403}, statuses
