"""Replicas on one machine: throughput and latency of 1, 2 and 3 ztgate replicas behind a load
balancer, the cost of metrics and of tracing, and the memory of 1,000 concurrent streams.

Everything runs on this machine, from a private temp dir, on loopback ports picked free:

- the canned nginx upstream and nginx pass-through of ``bench/gateway.py`` (the baseline);
- three ``ztgate serve`` replicas (one worker each) sharing ONE PostgreSQL store (a fresh
  database, dropped at the end, and one checkpoint signing key) and ONE Redis (a private
  ``redis-server`` on a free port, ``quotas.redis_url``); the bench rule carries a request
  quota too high to be reached, so every request counts in that Redis as replicas would;
- nginx as the load balancer (``upstream/balancer.conf.in``): round robin over the first 1, 2
  or 3 replicas, upstream keep-alive. The 1-replica row goes through it too, so rows compare;
- two more replicas on the same store and Redis, measured directly: ``metrics.enabled`` and
  ``tracing.enabled`` (``sample_ratio`` 1.0, exporting over OTLP/HTTP to a sink in the
  balancer's nginx that answers 200), against replica 1 measured directly (both off);
- one more replica (metrics on, same store and Redis) in front of a slow SSE upstream run by
  this script (it sends the first events at once, then a ping every few seconds until the
  connection closes): it holds ``--streams`` streams open while its memory is read from /proc.

wrk runs c32 and c1 on the small ``POST /v1/messages`` for every path, the paths interleaved
(odd rounds in reverse order), the best of the rounds kept, as ``bench/gateway.py`` does.

    bench/run.sh installs wrk and nginx; PostgreSQL must answer at 127.0.0.1:5432; then
    .venv/bin/python bench/replicas.py [--duration 5] [--rounds 2] [--streams 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import os
import platform
import resource
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

import gateway as g

DEFAULT_OUTPUT = g.BENCH_DIR / "results" / "replicas.md"
SCRIPT = Path(__file__).resolve()

NGINX = g.NGINX
ONE, TWO, THREE = (f"{n} replica{'s' if n > 1 else ''} (balancer)" for n in (1, 2, 3))
OFF = "1 replica direct, metrics and tracing off"
METRICS = "1 replica direct, metrics on"
TRACING = "1 replica direct, tracing on (sample 1.0)"
REPLICA_PATHS = (NGINX, ONE, TWO, THREE)
OBSERVE_PATHS = (OFF, METRICS, TRACING)
CONNECTIONS = (32, 1)

QUOTA = 1_000_000_000  # requests per minute: counted in Redis on every request, never reached
PING_SECONDS = 5.0  # the slow upstream's ping interval (ztgate's upstream read timeout is 30 s)
WARM_STREAMS = 50  # opened and closed before the memory is first read
OPENING = 100  # streams being opened at once
SETTLE_SECONDS = 2.0
UPSTREAM_LIMIT = 2048  # upstream.max_connections and server.max_connections of that replica


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM as Ctrl-C, so that every ``finally`` runs and stops what was started."""
    raise KeyboardInterrupt(f"signal {signum}")


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class Options:
    duration: int
    warmup: int
    rounds: int
    streams: int
    nginx_workers: int
    output: Path


def parse_args(argv: Sequence[str]) -> tuple[Options, int | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per run (1)")
    parser.add_argument("--rounds", type=int, default=2, help="full sets, best kept (2)")
    parser.add_argument("--streams", type=int, default=1000, help="held open at once (1000)")
    parser.add_argument("--nginx-workers", type=int, default=1, help="per nginx instance (1)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="report file")
    # This script runs itself as the slow SSE upstream.
    parser.add_argument("--slow-upstream", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    opts = Options(
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        streams=args.streams,
        nginx_workers=args.nginx_workers,
        output=args.output,
    )
    return opts, args.slow_upstream


# ---------------------------------------------------------------- the slow SSE upstream


def _sse(event: str, data: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()


def _chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


SLOW_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"request-id: req_01BenchSlowStream\r\ntransfer-encoding: chunked\r\n\r\n"
)
SLOW_FIRST = (
    _sse(
        "message_start",
        '{"type":"message_start","message":{"id":"msg_01BenchSlowStream0000001","type":'
        '"message","role":"assistant","model":"claude-haiku-5-5","content":[],"stop_reason":'
        'null,"stop_sequence":null,"usage":{"input_tokens":8,"output_tokens":1}}}',
    )
    + _sse(
        "content_block_start",
        '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    )
    + _sse(
        "content_block_delta",
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Once"}}',
    )
)
SLOW_PING = _sse("ping", '{"type":"ping"}')


async def _read_request(reader: asyncio.StreamReader) -> None:
    """One request's head and body (content-length or chunked), discarded."""
    head = await reader.readuntil(b"\r\n\r\n")
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
    if not chunked:
        await reader.readexactly(length)
        return
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


async def _slow_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The first events at once, then a ping every PING_SECONDS until the peer closes."""
    try:
        await _read_request(reader)
        writer.write(SLOW_HEAD + _chunk(SLOW_FIRST))
        await writer.drain()
        while True:
            try:
                data = await asyncio.wait_for(reader.read(4096), PING_SECONDS)
            except TimeoutError:
                writer.write(_chunk(SLOW_PING))
                await writer.drain()
                continue
            if not data:
                return
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
        return
    finally:
        writer.close()


async def serve_slow_upstream(port: int) -> None:
    server = await asyncio.start_server(_slow_stream, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def wait_listening(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise g.BenchError(f"exited with {proc.returncode} at start-up:\n{g.tail(log_path)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise g.BenchError(f"nothing listens on {port}:\n{g.tail(log_path)}")


# ---------------------------------------------------------------- Redis


def start_redis(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """A private redis-server (the machine's own may be shared): no persistence, loopback."""
    cmd = [g.tool("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    cmd += ["--appendonly", "no", "--dir", str(workdir)]
    proc = g.spawn(cmd, workdir / "redis.log", workdir)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise g.BenchError(f"redis-server exited:\n{g.tail(workdir / 'redis.log')}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), 1) as s,
            ):
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return proc
            time.sleep(0.05)
        raise g.BenchError(f"redis-server never answered:\n{g.tail(workdir / 'redis.log')}")
    except BaseException:
        g.stop(proc)
        raise


# ---------------------------------------------------------------- replicas


@dataclass(frozen=True)
class Replica:
    name: str
    port: int
    upstream: int
    metrics_port: int | None = None
    trace_sink: int | None = None
    connection_limit: int | None = None


def replica_config(
    replica: Replica, jwks: Path, store: str, key: Path, redis_url: str
) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(
        g.ztgate_config(replica.port, replica.upstream, jwks, False, store=store, key_file=key)
    )
    config["quotas"] = {"redis_url": redis_url}
    config["policy"]["rules"][0]["limits"]["requests_per_minute"] = QUOTA
    if replica.metrics_port is not None:
        config["metrics"] = {"enabled": True, "listen": f"127.0.0.1:{replica.metrics_port}"}
    if replica.trace_sink is not None:
        config["tracing"] = {
            "enabled": True,
            "endpoint": f"http://127.0.0.1:{replica.trace_sink}/v1/traces",
            "sample_ratio": 1.0,
        }
    if replica.connection_limit is not None:
        config["server"]["max_connections"] = replica.connection_limit
        config["upstream"]["max_connections"] = replica.connection_limit
    return config


@dataclass
class Run:
    """What was started, so that it is all stopped; where each path is measured."""

    services: g.Services = field(default_factory=g.Services)
    others: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # redis, upstream
    paths: dict[str, int] = field(default_factory=dict)
    memory_replica: Replica | None = None
    metrics_port: int | None = None
    trace_log: Path | None = None

    def stop_all(self) -> None:
        try:
            self.services.stop_all()
        finally:
            for proc in self.others.values():
                g.stop(proc)


def start(run: Run, workdir: Path, jwks: Path, opts: Options) -> None:
    nginx = g.tool("nginx")
    ports = g.free_ports(18)
    canned_json, canned_sse, proxy_json, proxy_sse = ports[:4]
    balancer, sink = ports[4:7], ports[7]
    r1, r2, r3, r_metrics, r_tracing, r_memory = ports[8:14]
    metrics_port, memory_metrics, slow, redis = ports[14:18]
    values = {
        "DIR": str(workdir),
        "WORKERS": str(opts.nginx_workers),
        "JSON_PORT": str(canned_json),
        "SSE_PORT": str(canned_sse),
        "PROXY_JSON_PORT": str(proxy_json),
        "PROXY_SSE_PORT": str(proxy_sse),
        "MESSAGE_BODY": g.nginx_string((g.UPSTREAM_DIR / "message.json").read_bytes()),
        "STREAM_BODY": g.nginx_string((g.UPSTREAM_DIR / "stream.sse").read_bytes()),
        "REPLICA_1": str(r1),
        "REPLICA_2": str(r2),
        "REPLICA_3": str(r3),
        "BALANCER_1": str(balancer[0]),
        "BALANCER_2": str(balancer[1]),
        "BALANCER_3": str(balancer[2]),
        "TRACE_SINK": str(sink),
    }
    run.others["redis"] = start_redis(workdir, redis)
    slow_log = workdir / "slow-upstream.log"
    run.others["slow upstream"] = g.spawn(
        [sys.executable, str(SCRIPT), "--slow-upstream", str(slow)], slow_log, workdir
    )
    for name in ("canned", "proxy", "balancer"):
        config = g.render(g.UPSTREAM_DIR / f"{name}.conf.in", values)
        run.services.nginx[name] = g.start_nginx(nginx, workdir, name, config)
    store = g.postgres_store(run.services, "the replicas")
    if store is None:
        raise g.BenchError(f"this bench needs PostgreSQL at {g.POSTGRES_SERVER}")
    key = g.signing_key(workdir)
    redis_url = f"redis://127.0.0.1:{redis}/0"
    limit = max(UPSTREAM_LIMIT, opts.streams + 64)
    replicas = [
        Replica("replica-1", r1, canned_json),
        Replica("replica-2", r2, canned_json),
        Replica("replica-3", r3, canned_json),
        Replica("replica-metrics", r_metrics, canned_json, metrics_port=metrics_port),
        Replica("replica-tracing", r_tracing, canned_json, trace_sink=sink),
        Replica("replica-streams", r_memory, slow, memory_metrics, connection_limit=limit),
    ]
    for replica in replicas:
        document = replica_config(replica, jwks, store, key, redis_url)
        text = yaml.safe_dump(document, sort_keys=False)
        run.services.ztgate[replica.name] = g.start_ztgate(workdir, replica.name, text)
        run.services.ztgate_logs[replica.name] = workdir / f"{replica.name}.log"
    run.memory_replica = replicas[-1]
    run.metrics_port = metrics_port
    run.trace_log = workdir / "trace-sink.log"
    run.paths = {
        NGINX: proxy_json,
        ONE: balancer[0],
        TWO: balancer[1],
        THREE: balancer[2],
        OFF: r1,
        METRICS: r_metrics,
        TRACING: r_tracing,
    }
    for name in ("canned", "proxy"):
        port = canned_json if name == "canned" else proxy_json
        g.wait_ready(port, run.services.nginx[name], workdir / f"{name}-error.log", "POST")
    wait_listening(slow, run.others["slow upstream"], slow_log)
    for replica in replicas:  # six processes start at once on a small machine: more time
        proc, log_path = run.services.ztgate[replica.name], run.services.ztgate_logs[replica.name]
        g.wait_ready(replica.port, proc, log_path, "GET", timeout=90)
    # GET /readyz through the balancer: a replica's readiness (a POST would want a token).
    balancer_log = workdir / "balancer-error.log"
    g.wait_ready(balancer[0], run.services.nginx["balancer"], balancer_log, "GET")


# ---------------------------------------------------------------- wrk


@dataclass(frozen=True)
class Snapshot:
    rss: int
    hwm: int
    files: int


@dataclass(frozen=True)
class Memory:
    streams: int
    open_seconds: float
    held: int  # still open when the memory was read
    before: Snapshot
    during: Snapshot
    after: Snapshot


@dataclass
class Results:
    wrk: dict[tuple[str, int], list[g.WrkResult]] = field(default_factory=dict)
    memory: Memory | None = None
    memory_error: str | None = None
    cpu: dict[str, float | None] = field(default_factory=dict)
    peak: dict[str, int | None] = field(default_factory=dict)
    counted: float | None = None  # ztgate_requests_total of the metrics replica
    exports: tuple[int, int] | None = None  # the trace sink: POSTs, bytes


def measure_round(
    opts: Options, paths: dict[str, int], script: Path, results: Results, round_no: int
) -> None:
    wrk = g.tool("wrk")
    order = list(paths) if round_no % 2 == 0 else list(reversed(paths))
    for connections in CONNECTIONS:
        for label in order:
            if opts.warmup:
                g.run_wrk(wrk, paths[label], script, connections, opts.warmup)
            result = g.run_wrk(wrk, paths[label], script, connections, opts.duration)
            results.wrk.setdefault((label, connections), []).append(result)
            g.log(
                f"[round {round_no + 1}/{opts.rounds}] c{connections} {label}: "
                f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.3f} ms, "
                f"p99 {result.p99_ms:.3f} ms, errors {result.failed}"
            )


# ---------------------------------------------------------------- the streams and memory


def snapshot(pid: int) -> Snapshot:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = {}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    files = len(os.listdir(f"/proc/{pid}/fd"))
    return Snapshot(rss=fields["VmRSS"], hwm=fields["VmHWM"], files=files)


async def _open_stream(
    port: int, request: bytes, gate: asyncio.Semaphore
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A streamed request, returned once its first event has arrived."""
    async with gate:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(request)
            buffer = b""
            async with asyncio.timeout(60):
                while b"event:" not in buffer.partition(b"\r\n\r\n")[2]:
                    chunk = await reader.read(65536)
                    if not chunk:
                        raise g.BenchError(f"a stream closed before its first event: {buffer!r}")
                    buffer += chunk
            if not buffer.startswith(b"HTTP/1.1 200"):
                raise g.BenchError(f"a stream was answered {buffer[:300]!r}")
        except BaseException:
            writer.close()
            raise
    return reader, writer


async def _drain(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError):
        while await reader.read(65536):
            pass


async def _open_many(
    port: int, request: bytes, count: int
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` streams at their first event, or none (all closed) and the first error."""
    gate = asyncio.Semaphore(OPENING)
    opened = await asyncio.gather(
        *(_open_stream(port, request, gate) for _ in range(count)), return_exceptions=True
    )
    good = [x for x in opened if not isinstance(x, BaseException)]
    failed = [x for x in opened if isinstance(x, BaseException)]
    if failed:
        await _close([writer for _, writer in good])
        raise g.BenchError(f"{len(failed)} of {count} streams failed, first: {failed[0]!r}")
    return good


async def _close(writers: Sequence[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    for writer in writers:
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def hold_streams(port: int, pid: int, token: str, count: int) -> Memory:
    request = g.http_request(port, g.request_body(g.SSE), token)
    warm = await _open_many(port, request, WARM_STREAMS)
    await _close([writer for _, writer in warm])
    await asyncio.sleep(SETTLE_SECONDS)
    before = snapshot(pid)
    started = time.perf_counter()
    streams = await _open_many(port, request, count)
    open_seconds = time.perf_counter() - started
    drains = [asyncio.create_task(_drain(reader)) for reader, _ in streams]
    try:
        await asyncio.sleep(SETTLE_SECONDS)
        during = snapshot(pid)
        held = sum(not task.done() for task in drains)
    finally:
        await _close([writer for _, writer in streams])
        for task in drains:
            task.cancel()
        await asyncio.gather(*drains, return_exceptions=True)
    await asyncio.sleep(SETTLE_SECONDS)
    after = snapshot(pid)
    return Memory(count, open_seconds, held, before, during, after)


# ---------------------------------------------------------------- after the run


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_processes(run: Run, results: Results) -> None:
    for name, proc in run.services.ztgate.items():
        results.cpu[name] = cpu_seconds(proc.pid)
        results.peak[name] = g.vm_hwm_bytes(proc.pid)
    for name, proc in run.services.nginx.items():
        workers = g.children(proc.pid)
        times = [cpu_seconds(pid) or 0.0 for pid in workers]
        results.cpu[f"nginx {name}"] = sum(times) if workers else None
        results.peak[f"nginx {name}"] = max((g.vm_hwm_bytes(p) or 0 for p in workers), default=None)


def counted_requests(port: int) -> float | None:
    """The metrics replica's ``ztgate_requests_total``, summed over its labels."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    except OSError:
        return None
    finally:
        conn.close()
    lines = [x for x in text.splitlines() if x.startswith("ztgate_requests_total{")]
    return sum(float(x.rsplit(" ", 1)[1]) for x in lines) if lines else None


def trace_exports(path: Path) -> tuple[int, int] | None:
    """POSTs the sink answered 200, and their bytes."""
    if not path.exists():
        return None
    rows = [x.split() for x in path.read_text().splitlines() if x.strip()]
    ok = [int(size) if size.isdigit() else 0 for size, status in rows if status == "200"]
    return len(ok), sum(ok)


# ---------------------------------------------------------------- the report


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}x"


def diff_ms(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a - b:+.3f} ms"


def machine_lines(opts: Options, started: datetime) -> list[str]:
    cpu = next(
        (
            line.partition(":")[2].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )

    def version(*cmd: str) -> str:
        done = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
        return (done.stdout + done.stderr).strip().split("\n")[0]

    wrk = version(g.tool("wrk"), "-v").split(" [")[0]
    redis = version(g.tool("redis-server"), "--version").split(" sha=")[0]
    command = os.environ.get("ZTGATE_BENCH_COMMAND") or shlex.join(
        [sys.executable, "bench/replicas.py", *sys.argv[1:]]
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: nproc {len(os.sched_getaffinity(0))}, {cpu}, Linux {platform.release()}, "
        f"load average at the end {load}",
        f"- python {platform.python_version()}, {version(g.tool('nginx'), '-v')}, {wrk}, {redis}",
        f"- command: `{command}`",
        f"- method: wrk `-t2 -c32` and `-t1 -c1` on the small `POST /v1/messages`, "
        f"{opts.duration} s per run after a {opts.warmup} s warm-up; {opts.rounds} "
        f"round{'s' if opts.rounds != 1 else ''}, the "
        "paths interleaved (odd rounds in reverse order); **each cell is the best of the "
        "rounds** (highest req/s, lowest latency). Each ztgate replica is its own `ztgate serve` "
        "process with one worker, token verification and the 3-rule bench policy of "
        "`bench/gateway.py`, `logging.level: warning`.",
        f"- shared state: every replica on ONE PostgreSQL store ({g.POSTGRES_SERVER}, a fresh "
        "database dropped at the end, one configured checkpoint signing key) and ONE Redis (a "
        "private `redis-server` on a free loopback port, db 0, `quotas.redis_url`); the bench "
        f"rule has `requests_per_minute: {QUOTA:_}`, never reached, so that each request is "
        "counted in that Redis.",
        f"- nginx: {opts.nginx_workers} worker per instance: the canned upstream, the "
        "pass-through proxy, and the load balancer (round robin, upstream keep-alive 64).",
    ]


def best(results: Results, label: str, connections: int) -> g.Row:
    return g.best_row(results.wrk.get((label, connections)))


def replicas_table(results: Results) -> list[str]:
    nginx32, nginx1 = best(results, NGINX, 32), best(results, NGINX, 1)
    one32, one1 = best(results, ONE, 32), best(results, ONE, 1)
    lines = [
        "| path | c32 req/s | c32 p50 | c32 p99 | c1 p50 | c1 p99 | c32 req/s ÷ nginx | "
        "c32 req/s ÷ 1 replica | c1 p50 ÷ nginx | c1 p50 ÷ 1 replica |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in REPLICA_PATHS:
        c32, c1 = best(results, label, 32), best(results, label, 1)
        cells = [g.fmt_rps(c32.rps), g.fmt_ms(c32.p50), g.fmt_ms(c32.p99), g.fmt_ms(c1.p50)]
        cells += [g.fmt_ms(c1.p99), ratio(c32.rps, nginx32.rps), ratio(c32.rps, one32.rps)]
        cells += [ratio(c1.p50, nginx1.p50), ratio(c1.p50, one1.p50)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def observe_table(results: Results) -> list[str]:
    off32, off1 = best(results, OFF, 32), best(results, OFF, 1)
    lines = [
        "| replica | c32 req/s | c32 p50 | c32 p99 | c1 p50 | c1 p99 | c32 req/s on ÷ off | "
        "c1 p50 on − off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in OBSERVE_PATHS:
        c32, c1 = best(results, label, 32), best(results, label, 1)
        cells = [g.fmt_rps(c32.rps), g.fmt_ms(c32.p50), g.fmt_ms(c32.p99), g.fmt_ms(c1.p50)]
        cells.append(g.fmt_ms(c1.p99))
        if label == OFF:
            cells += ["(baseline)", "(baseline)"]
        else:
            cells += [ratio(c32.rps, off32.rps), diff_ms(c1.p50, off1.p50)]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    counted = "-" if results.counted is None else f"{results.counted:,.0f}"
    exports = "-"
    if results.exports is not None:
        posts, size = results.exports
        exports = f"{posts:,} exports answered 200, {size / 1000**2:.1f} MB"
    lines += [
        "",
        "All three are measured directly (no balancer). Metrics: the replica's "
        f"`ztgate_requests_total` read once after the run: {counted} (never scraped during "
        "it, so a scrape's cost is not in these figures). Tracing: one trace per request, "
        "exported in batches (the SDK's BatchSpanProcessor) to the sink, which received "
        f"{exports}; a span the exporter's queue could not take is dropped, not waited for.",
    ]
    return lines


def memory_lines(opts: Options, results: Results) -> list[str]:
    memory = results.memory
    if memory is None:
        return [f"Not measured: {results.memory_error or 'the run stopped before it'}"]
    n = memory.streams

    def row(name: str, snap: Snapshot) -> str:
        return f"| {name} | {g.fmt_mb(snap.rss)} | {g.fmt_mb(snap.hwm)} | {snap.files:,} |"

    def per(a: int, b: int) -> str:
        return f"{(a - b) / n / 1000:.1f} KB"

    during, before = memory.during, memory.before
    return [
        f"One replica (metrics on, tracing off, the same store and Redis) in front of a slow SSE "
        f"upstream (this script: the first three events at once, then a ping every "
        f"{PING_SECONDS:g} s until the connection closes). For this, the replica's "
        f"`server.max_connections` and `upstream.max_connections` are raised to "
        f"{max(UPSTREAM_LIMIT, opts.streams + 64):,} (upstream's default is 256; in this version "
        "it caps the idle keep-alive pool, not the streams in flight). The client (asyncio raw "
        f"sockets, in this process) first opens and closes {WARM_STREAMS} streams, waits "
        f"{SETTLE_SECONDS:g} s and reads /proc (before); then opens {n:,} streams, "
        f"{OPENING} at a time, each read up to its first event, in {memory.open_seconds:.1f} s; "
        f"after {SETTLE_SECONDS:g} s with all of them open, reads /proc again (during: "
        f"{memory.held:,} of {n:,} still open), then closes them all and reads it once more "
        f"{SETTLE_SECONDS:g} s later (after).",
        "",
        "| moment | VmRSS | VmHWM (peak) | open files |",
        "|---|---:|---:|---:|",
        row("before", before),
        row(f"{n:,} streams open", during),
        row("after they closed", memory.after),
        "",
        f"- per stream, (during − before) / {n:,}: VmRSS {per(during.rss, before.rss)}, "
        f"VmHWM {per(during.hwm, before.hwm)}, "
        f"{(during.files - before.files) / n:.2f} open files (a stream holds two sockets, "
        "the caller's and the upstream's)",
    ]


def process_table(results: Results) -> list[str]:
    lines = ["| process | CPU seconds, whole run | peak RSS |", "|---|---:|---:|"]
    for name, seconds in results.cpu.items():
        cpu = "-" if seconds is None else f"{seconds:.1f}"
        lines.append(f"| {name} | {cpu} | {g.fmt_mb(results.peak.get(name))} |")
    return lines


def error_lines(results: Results, problems: Sequence[str]) -> list[str]:
    lines = []
    for (label, connections), runs in results.wrk.items():
        for index, one in enumerate(runs):
            if one.failed:
                bad = ", ".join(f"{k} {v}" for k, v in one.errors.items() if v)
                lines.append(f"- {label} c{connections} round {index + 1}: {bad}")
    if results.memory_error:
        lines.append(f"- streams: {results.memory_error}")
    if problems:
        lines += ["- services that died, and what ztgate logged above INFO:", "```"]
        lines += [*problems, "```"]
    return lines or ["- none: every request answered 2xx, nothing above INFO in ztgate's logs"]


def all_runs(results: Results) -> list[str]:
    lines = ["| path | conns | per round: req/s, p50, p99 |", "|---|---:|---|"]
    for (label, connections), runs in results.wrk.items():
        cells = "; ".join(f"{r.rps:,.0f}, {r.p50_ms:.3f}, {r.p99_ms:.3f}" for r in runs)
        lines.append(f"| {label} | {connections} | {cells} |")
    return lines


def report(opts: Options, started: datetime, results: Results, problems: Sequence[str]) -> str:
    lines = ["# ztgate replicas, metrics and tracing", "", *machine_lines(opts, started), ""]
    lines += ["## 1, 2 and 3 replicas behind the load balancer, against nginx pass-through", ""]
    lines += [
        "nginx pass-through is wrk -> nginx -> the canned upstream; each replica row is wrk -> "
        "the nginx load balancer -> ztgate -> the same canned upstream (one more hop than the "
        "baseline; the 1-replica row goes through the balancer too, so the rows compare). "
        "The replicas share the machine's cores with nginx and wrk.",
        "",
        *replicas_table(results),
        "",
    ]
    lines += ["## Metrics and tracing, each on vs off", "", *observe_table(results), ""]
    lines += [f"## Memory of one replica holding {opts.streams:,} streams", ""]
    lines += [*memory_lines(opts, results), ""]
    lines += ["## Processes (CPU time over the whole run, peak RSS)", ""]
    lines += [*process_table(results), ""]
    lines += ["## Errors", "", *error_lines(results, problems), ""]
    lines += ["## Every run (req/s, p50 ms, p99 ms)", "", *all_runs(results), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def execute(opts: Options) -> int:
    started = datetime.now(UTC)
    run = Run()
    results = Results()
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ztgate-bench-replicas-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx workers drop root and must still reach their temp dirs
        try:
            jwks, token = g.make_identity(workdir)
            start(run, workdir, jwks, opts)
            for label, port in run.paths.items():
                for _ in range(3):  # through the balancer: each replica answers once
                    g.check_answer(label, port, g.JSON, token)
            script = g.write_wrk_script(workdir, g.JSON, token)
            for round_no in range(opts.rounds):
                measure_round(opts, run.paths, script, results, round_no)
            replica = run.memory_replica
            assert replica is not None
            pid = run.services.ztgate[replica.name].pid
            g.log(f"holding {opts.streams} streams on {replica.name}")
            try:
                results.memory = asyncio.run(hold_streams(replica.port, pid, token, opts.streams))
            except g.BenchError as exc:
                results.memory_error = str(exc)
            if run.metrics_port is not None:
                results.counted = counted_requests(run.metrics_port)
            read_processes(run, results)
            problems = run.services.died()
            problems += [
                f"{name}: exited with {proc.returncode} during the run"
                for name, proc in run.others.items()
                if proc.poll() is not None
            ]
        finally:
            run.stop_all()
        if run.trace_log is not None:  # after the stop: the exporter flushes when it closes
            results.exports = trace_exports(run.trace_log)
        problems += g.ztgate_problems(run.services)
    text = report(opts, started, results, problems)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(text)
    print(text)
    g.log(f"report written to {opts.output}")
    failed = any(r.failed for runs in results.wrk.values() for r in runs)
    died = any("exited with" in x for x in problems)
    return 1 if failed or died or results.memory is None else 0


def main(argv: Sequence[str] | None = None) -> int:
    opts, slow_port = parse_args(sys.argv[1:] if argv is None else argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * opts.streams + 1024  # the client's sockets, or the slow upstream's
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(wanted, soft)), hard))
    if slow_port is not None:
        asyncio.run(serve_slow_upstream(slow_port))
        return 0
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    try:
        return execute(opts)
    except g.BenchError as exc:
        g.log(f"bench: {exc}")
        return 1
    except KeyboardInterrupt:
        g.log("bench: interrupted; every process it started has been stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
