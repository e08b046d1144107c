"""Streams: relayed event by event, cancelled upstream when the caller leaves, never truncated
into a false success."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import aiohttp
import anthropic
import orjson
import pytest

from tests.stackrunner import RunningStack
from ztgate.core.sse import SSESplitter


def stream_body(model: str) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "max_tokens": 256,
            "stream": True,
            "messages": [{"role": "user", "content": "tell me a story"}],
        }
    )


def headers(stack: RunningStack) -> dict[str, str]:
    return {
        "authorization": f"Bearer {stack.token()}",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }


async def read_events(stack: RunningStack, model: str) -> list[tuple[str, bytes, float]]:
    splitter = SSESplitter(1 << 20)
    events: list[tuple[str, bytes, float]] = []
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            stack.url + "/v1/messages", data=stream_body(model), headers=headers(stack)
        ) as response,
    ):
        assert response.status == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for chunk in response.content.iter_any():
            now = time.perf_counter()
            events.extend((e.event, e.data, now) for e in splitter.feed(chunk))
    assert not splitter.pending
    return events


async def test_slow_stream_is_relayed_event_by_event_with_pings(stack: RunningStack) -> None:
    events = await read_events(stack, "sim-slow")
    names = [name for name, _, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("ping") >= 2
    # Each event is delayed 50 ms upstream: if the gateway buffered, they would arrive together.
    arrivals = [t for _, _, t in events]
    assert arrivals[-1] - arrivals[0] > 0.5
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert sum(1 for g in gaps if g > 0.02) >= len(gaps) // 2


async def test_client_disconnect_cancels_the_upstream_request(stack: RunningStack) -> None:
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            stack.url + "/v1/messages", data=stream_body("sim-slow-long"), headers=headers(stack)
        )
        await response.content.readuntil(b"content_block_delta")
        response.close()  # the caller goes away mid-stream
    for _ in range(100):
        if stack.stack.simulator.cancelled:
            break
        await asyncio.sleep(0.05)
    assert stack.stack.simulator.cancelled, "the upstream stream was not cancelled"


@pytest.mark.parametrize(
    ("model", "error_type"),
    [
        ("sim-fail-midstream", "overloaded_error"),  # the upstream's own error event, relayed
        ("sim-disconnect-midstream", "api_error"),  # the connection broke: ztgate says so
        ("sim-no-stop", "api_error"),  # a clean close without message_stop is no success
    ],
)
async def test_upstream_failure_mid_stream_ends_with_an_error_event(
    stack: RunningStack, model: str, error_type: str
) -> None:
    events = await read_events(stack, model)
    names = [name for name, _, _ in events]
    assert names[0] == "message_start"
    assert "message_stop" not in names
    assert names[-1] == "error"
    assert orjson.loads(events[-1][1])["error"]["type"] == error_type


def test_sdk_raises_on_mid_stream_failure(
    stack: RunningStack, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    client = sdk(base_url=stack.url, auth_token=stack.token())
    with (
        pytest.raises(anthropic.APIStatusError),
        client.messages.stream(
            model="sim-disconnect-midstream",
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
        ) as stream,
    ):
        for _ in stream:
            pass
