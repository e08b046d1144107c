"""Timing in-process gateways side by side: shared by the benches that compare two setups.

Sequential requests over one keep-alive connection per gateway, the gateways interleaved round
by round so that drift on a shared machine hits them alike. For each gateway: the latency of a
non-streamed request with the given prompt, and for streamed answers (the simulator scripted to
say ``reply``) the time to the first ``content_block_delta`` and to the end of the stream.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import orjson

from ztgate.devtools.simulator import REPLY_HEADER
from ztgate.devtools.stack import LocalStack

MODEL = "claude-haiku-5-5"
CONCURRENCY = 32


@dataclass
class Timings:
    latency: list[float] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)
    stream: list[float] = field(default_factory=list)
    throughput: list[float] = field(default_factory=list)  # req/s at CONCURRENCY, per round


def pct(values: list[float], q: int) -> float:
    """The q-th percentile in milliseconds."""
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100)[q - 1] * 1000


async def time_gateways(
    stacks: Mapping[str, LocalStack], *, prompt: str, reply: str, requests: int, rounds: int
) -> dict[str, Timings]:
    """Time the gateways round by round, interleaved; they are stopped when it is over."""
    body = orjson.dumps(
        {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]}
    )
    stream_body = orjson.dumps(
        {
            "model": MODEL,
            "max_tokens": 600,
            "stream": True,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    scripted = base64.b64encode(reply.encode()).decode()
    results = {name: Timings() for name in stacks}
    sessions = {name: aiohttp.ClientSession() for name in stacks}
    try:
        for _ in range(rounds):
            for name, stack in stacks.items():
                headers = {
                    "authorization": f"Bearer {stack.token('demo/bench')}",
                    "content-type": "application/json",
                    "anthropic-version": "2023-06-01",
                }
                url = f"{stack.gateway_url}/v1/messages"
                for _ in range(max(1, requests // rounds)):
                    t0 = time.perf_counter()
                    async with sessions[name].post(url, data=body, headers=headers) as response:
                        await response.read()
                        assert response.status == 200, await response.text()
                    results[name].latency.append(time.perf_counter() - t0)
                results[name].throughput.append(
                    await _throughput(sessions[name], url, body, headers, requests // rounds)
                )
                for _ in range(max(1, requests // rounds // 4)):
                    t0 = time.perf_counter()
                    first = None
                    async with sessions[name].post(
                        url, data=stream_body, headers={**headers, REPLY_HEADER: scripted}
                    ) as response:
                        async for line in response.content:
                            if first is None and line.startswith(b"event: content_block_delta"):
                                first = time.perf_counter() - t0
                    assert first is not None
                    results[name].ttft.append(first)
                    results[name].stream.append(time.perf_counter() - t0)
    finally:
        for session in sessions.values():
            await session.close()
        for stack in stacks.values():
            await stack.stop()
    return results


async def _throughput(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], requests: int
) -> float:
    """Requests per second with CONCURRENCY requests in flight (client in the same process,
    so a ratio between gateways, not a figure for one)."""

    async def worker(count: int) -> None:
        for _ in range(count):
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()

    each = max(1, requests // CONCURRENCY)
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(each) for _ in range(CONCURRENCY)))
    return each * CONCURRENCY / (time.perf_counter() - t0)


def print_table(results: Mapping[str, Timings]) -> None:
    print(
        "| gateway | p50 ms | p90 ms | stream TTFT p50 ms | whole stream p50 ms "
        f"| req/s at {CONCURRENCY} in flight (best round) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, t in results.items():
        print(
            f"| {name} | {pct(t.latency, 50):.3f} | {pct(t.latency, 90):.3f} "
            f"| {pct(t.ttft, 50):.3f} | {pct(t.stream, 50):.3f} | {max(t.throughput):,.0f} |"
        )
