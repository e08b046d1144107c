"""Stopping the gateway: a clean drain exits 0; an answer the graceful window cannot wait for
ends with an ``overloaded_error`` event (never a silently cut stream), its audit outcome says
why, and the exit status says the shutdown was forced."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.processes import GatewayProcesses, slow_story
from tests.stackrunner import RunningStack
from ztgate.audit.store.factory import open_store
from ztgate.datapath.pipeline import drain_deadline
from ztgate.datapath.server import EXIT_FORCED


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[tuple[GatewayProcesses, RunningStack]]:
    stack = RunningStack()
    processes = GatewayProcesses(stack, tmp_path)
    try:
        yield processes, stack
    finally:
        processes.stop_all()
        stack.close()


def _outcomes(store_url: str) -> dict[str, dict[str, Any]]:
    async def read() -> dict[str, dict[str, Any]]:
        store = open_store(store_url)
        try:
            return {
                event.request_id: event.data()
                async for event in store.events()
                if event.kind == "outcome" and event.request_id
            }
        finally:
            await store.close()

    return asyncio.run(read())


def _stream_in_background(url: str, token: str) -> tuple[threading.Thread, dict[str, Any]]:
    """Read one stream to its end in a thread: what arrived, and the request id."""
    got: dict[str, Any] = {}
    started = threading.Event()

    def read() -> None:
        with httpx.Client() as client, slow_story(client, url, token) as response:
            got["status"] = response.status_code
            got["request_id"] = response.headers.get("ztgate-request-id")
            chunks = []
            started.set()
            try:
                for chunk in response.iter_text():
                    chunks.append(chunk)
            except httpx.TransportError as exc:  # a cut connection: the defect
                got["transport_error"] = repr(exc)
            got["text"] = "".join(chunks)

    thread = threading.Thread(target=read)
    thread.start()
    assert started.wait(10), "the stream never began"
    return thread, got


@pytest.mark.parametrize("workers", [1, 2])
def test_a_clean_drain_exits_zero(
    gateways: tuple[GatewayProcesses, RunningStack], tmp_path: Path, workers: int
) -> None:
    """A stream that ends inside the graceful window completes; the exit status is 0 (not 143:
    uvicorn raises SIGTERM again after its shutdown)."""
    processes, stack = gateways
    process, url = processes.start("--workers", str(workers), graceful="10s")
    thread, got = _stream_in_background(url, stack.token())
    time.sleep(0.2)
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(30) == 0, process.communicate()[1][-3000:]
    thread.join(15)
    assert got["status"] == 200
    assert "event: message_stop" in got["text"]
    assert "transport_error" not in got


def test_a_stream_the_window_cannot_wait_for_ends_with_an_error_event_and_says_so(
    gateways: tuple[GatewayProcesses, RunningStack], tmp_path: Path
) -> None:
    processes, stack = gateways
    process, url = processes.start(graceful="2s")
    port = url.rsplit(":", 1)[1]
    token = stack.token()
    got: dict[str, Any] = {}

    def read() -> None:
        with (
            httpx.Client() as client,
            client.stream(
                "POST",
                url + "/v1/messages",
                headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
                json={
                    "model": "sim-slow-long",  # about ten seconds of deltas
                    "max_tokens": 64,
                    "stream": True,
                    "messages": [{"role": "user", "content": "a long slow story"}],
                },
                timeout=30,
            ) as response,
        ):
            got["request_id"] = response.headers.get("ztgate-request-id")
            got["started"] = True
            chunks = []
            try:
                for chunk in response.iter_text():
                    chunks.append(chunk)
            except httpx.TransportError as exc:
                got["transport_error"] = repr(exc)
            got["text"] = "".join(chunks)

    thread = threading.Thread(target=read)
    thread.start()
    deadline = time.monotonic() + 10
    while "started" not in got and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # some deltas are out
    stopped_at = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    status = process.wait(30)
    took = time.monotonic() - stopped_at
    thread.join(15)

    assert status == EXIT_FORCED, process.communicate()[1][-3000:]
    assert took < 2 + 3, "the window is 2 s"
    assert "transport_error" not in got, got  # the stream was ended, not cut
    text = got["text"]
    assert "event: content_block_delta" in text
    assert "event: message_stop" not in text
    tail = text.rstrip().rsplit("\n\n", 1)[-1]
    assert tail.startswith("event: error"), tail
    assert '"overloaded_error"' in tail
    assert "shutting down" in tail
    outcome = _outcomes(f"sqlite:///{tmp_path}/audit-{port}.db")[got["request_id"]]
    assert outcome["stream_end"] == "gateway_shutdown"
    assert outcome["error_type"] == "overloaded_error"


def test_the_answer_ends_a_little_before_the_servers_own_deadline() -> None:
    assert drain_deadline(30) == 29
    assert drain_deadline(2) == pytest.approx(1.6)
    assert drain_deadline(0.5) == 0  # uvicorn's window is int(): nothing to wait for
