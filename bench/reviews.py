"""Held requests: what 1,000 requests waiting for approval cost one gateway process, and whether
the requests that need no approval notice them.

One ``ztgate serve`` (one worker, SQLite store) over the upstream simulator, each a process of
its own. Its policy allows Haiku and sends Opus to review. Then, in rounds:

1. baseline: sequential allowed requests (Haiku, not streamed) over one keep-alive connection,
   and the gateway's resident memory;
2. a holder process opens ``--held`` streamed Opus requests, each with its own prompt, so each
   opens its own review and is held: its headers sent, a ping every ``--ping`` seconds;
3. with all of them held: the same sequential requests, and the memory again;
4. the holder leaves (every held request ends), and the next round begins.

Targets, as ratios within the run: p50 and p99 with the requests held at most 1.25 times the
baseline's; the memory they take is reported per held request.

    .venv/bin/python bench/reviews.py [--held 1000] [--requests 1000] [--rounds 2] [--ping 2]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import yaml

from gateway import (
    AUDIENCE,
    ISSUER,
    BenchError,
    free_ports,
    make_identity,
    spawn,
    stop,
    tail,
    wait_ready,
)
from ztgate.devtools.stack import SIMULATOR_KEY

MAX_LATENCY_RATIO = 1.25
HAIKU = {"model": "claude-haiku-4-5", "max_tokens": 16}


def _config(port: int, upstream: int, jwks: Path, workdir: Path, ping: float) -> str:
    return yaml.safe_dump(
        {
            "listen": f"127.0.0.1:{port}",
            "upstream": {"url": f"http://127.0.0.1:{upstream}", "api_key": SIMULATOR_KEY},
            "identity": {
                "issuers": [
                    {"name": "bench", "issuer": ISSUER, "audiences": [AUDIENCE],
                     "jwks_file": str(jwks)}
                ]
            },
            "store": {"url": f"sqlite:///{workdir}/audit.db"},
            "server": {"max_connections": 4096},
            "logging": {"level": "warning"},
            # One principal holds them all here: the per-requester limit is lifted.
            "reviews": {"ping_interval": ping, "hold_timeout": "10m", "max_held": 5000,
                        "max_pending_per_requester": 100_000},
            "policy": {
                "rules": [
                    {"id": "haiku", "effect": "allow", "when": {"models": ["claude-haiku-*"]}},
                    {
                        "id": "opus-needs-a-lead",
                        "effect": "review",
                        "when": {"models": ["claude-opus-*"]},
                        "review": {"approvers": ["leads"], "expires": "1h"},
                    },
                ]
            },
        },
        sort_keys=False,
    )  # fmt: skip


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for {pid}")


def _sequential(port: int, token: str, requests: int) -> list[float]:
    """Seconds per allowed request, one keep-alive connection, one at a time."""
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
    }
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    try:
        for n in range(requests):
            body = orjson.dumps({**HAIKU, "messages": [{"role": "user", "content": f"hi {n}"}]})
            started = time.perf_counter()
            conn.request("POST", "/v1/messages", body=body, headers=headers)
            response = conn.getresponse()
            answer = response.read()
            times.append(time.perf_counter() - started)
            if response.status != 200:
                raise BenchError(f"an allowed request got {response.status}: {answer[:300]!r}")
    finally:
        conn.close()
    return times


# -- the holder process ---------------------------------------------------------------------------


async def _hold_one(port: int, token: str, n: int, tag: str, ready: asyncio.Queue[int]) -> int:
    """One held stream: its headers, then pings until the holder leaves. Returns the pings."""
    body = orjson.dumps(
        {
            "model": "claude-opus-4-5",
            "max_tokens": 16,
            "stream": True,
            "messages": [{"role": "user", "content": f"held request {tag}-{n}"}],
        }
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {token}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise BenchError(f"a held request was answered {head[:200]!r}")
    await ready.put(n)
    pings = 0
    try:
        while line := await reader.readline():
            pings += line.startswith(b"event: ping")
    finally:
        writer.close()
    return pings


async def _holder(port: int, token: str, count: int, tag: str) -> None:
    """Open ``count`` held streams, say so on stdout, then keep them until stdin closes."""
    ready: asyncio.Queue[int] = asyncio.Queue()
    tasks = [asyncio.create_task(_hold_one(port, token, n, tag, ready)) for n in range(count)]
    for _ in range(count):
        getter = asyncio.create_task(ready.get())
        done, _ = await asyncio.wait([getter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if getter not in done:
            getter.cancel()
            for task in done:
                task.result()  # a failed stream: its error
    print("held", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()


def _start_holder(port: int, token: str, count: int, tag: str) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, __file__, "--hold", str(count), "--port", str(port), "--tag", tag],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={"BENCH_TOKEN": token, "PATH": "/usr/bin:/bin"},
    )
    assert holder.stdout is not None
    line = holder.stdout.readline()
    if line.strip() != "held":
        holder.kill()
        raise BenchError(f"the holder did not hold its requests: {line!r}")
    return holder


# -- the run --------------------------------------------------------------------------------------


def _ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def run(held: int, requests: int, rounds: int, ping: float) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="ztgate-bench-reviews-"))
    port, upstream = free_ports(2)
    jwks, token = make_identity(workdir)
    simulator = spawn(
        [sys.executable, "-m", "ztgate.devtools.simulator", "--port", str(upstream),
         "--api-key", SIMULATOR_KEY],
        workdir / "simulator.log", workdir,
    )  # fmt: skip
    config = workdir / "ztgate.yaml"
    config.write_text(_config(port, upstream, jwks, workdir, ping))
    ztgate = Path(sys.executable).parent / "ztgate"
    log = workdir / "ztgate.log"
    gateway = spawn([str(ztgate), "serve", "--config", str(config)], log, workdir)
    baseline: list[float] = []
    loaded: list[float] = []
    memory: list[tuple[int, int]] = []
    try:
        wait_ready(port, gateway, log, "GET")
        _sequential(port, token, 200)  # warm up
        for round_ in range(rounds):
            baseline += _sequential(port, token, requests)
            before = _rss_bytes(gateway.pid)
            holder = _start_holder(port, token, held, f"r{round_}")
            time.sleep(max(2.0, 2 * ping))  # pings under way
            loaded += _sequential(port, token, requests)
            with_held = _rss_bytes(gateway.pid)
            memory.append((before, with_held))
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(30)
            time.sleep(1)
    except BenchError as exc:
        print(f"bench: {exc}\n{tail(log)}", file=sys.stderr)
        return False
    finally:
        stop(gateway)
        stop(simulator)
    p50_ratio = _ms(loaded, 50) / _ms(baseline, 50)
    p99_ratio = _ms(loaded, 99) / _ms(baseline, 99)
    growth = [after - before for before, after in memory]
    print(f"### {held} held requests in one gateway process (ping every {ping:g} s)\n")
    print("| allowed requests | p50 ms | p99 ms |")
    print("|---|---:|---:|")
    print(f"| nothing held | {_ms(baseline, 50):.2f} | {_ms(baseline, 99):.2f} |")
    print(f"| {held} held | {_ms(loaded, 50):.2f} | {_ms(loaded, 99):.2f} |")
    print()
    print("| round | RSS before (MB) | RSS with them held (MB) | per held request (KB) |")
    print("|---|---:|---:|---:|")
    for n, (before, after) in enumerate(memory, start=1):
        each = (after - before) / held / 1e3
        print(f"| {n} | {before / 1e6:.1f} | {after / 1e6:.1f} | {each:.1f} |")
    ok = p50_ratio <= MAX_LATENCY_RATIO and p99_ratio <= MAX_LATENCY_RATIO
    print()
    print(
        f"- p50 ratio {p50_ratio:.2f}, p99 ratio {p99_ratio:.2f} (target at most "
        f"{MAX_LATENCY_RATIO}): {'met' if ok else 'MISSED'}"
    )
    print(f"- memory per held request: {max(growth) / held / 1e3:.1f} KB at most")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--held", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ping", type=float, default=2.0, help="reviews.ping_interval, seconds")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    # The holder's side (this script runs itself as the holder process).
    parser.add_argument("--hold", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    if args.hold is not None:
        asyncio.run(_holder(args.port, os.environ["BENCH_TOKEN"], args.hold, args.tag))
        return
    ok = run(args.held, args.requests, args.rounds, args.ping)
    sys.exit(1 if args.check and not ok else 0)


if __name__ == "__main__":
    main()
