"""Real sessions to replay: requests sent to the upstream simulator and recorded the way the
gateway records them (request body as sent, the response as received, a stream event by event
with its time offset), so that replay tests work on real API bytes and timing."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
import orjson

from ztgate.audit.recording import Recording
from ztgate.core.sse import SSESplitter
from ztgate.devtools.simulator import SCENARIO_HEADER, UpstreamSimulator

SYSTEM = "You are a terse geography tutor. Answer in one sentence."
QUESTION = "What is the capital of France?"
FOLLOW_UP = "And of Italy? Please use a tool"


@dataclass
class Exchange:
    method: str
    path: str
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def conversation(model: str = "claude-sonnet-5-5") -> list[Exchange]:
    """A short agent session: a streamed question (slowly, so timing shows), a tool call, a
    token count, the model list and a streamed answer with thinking."""
    first = [{"role": "user", "content": QUESTION}]
    tools = [
        {
            "name": "lookup_capital",
            "description": "Find a capital.",
            "input_schema": {"type": "object"},
        }
    ]
    second = [
        *first,
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": [{"type": "text", "text": FOLLOW_UP}]},
    ]
    return [
        Exchange(
            "POST",
            "/v1/messages",
            {
                "model": model,
                "max_tokens": 256,
                "system": SYSTEM,
                "messages": first,
                "stream": True,
            },
            {SCENARIO_HEADER: "sim-slow"},
        ),
        Exchange(
            "POST",
            "/v1/messages",
            {"model": model, "max_tokens": 256, "messages": second, "tools": tools},
        ),
        Exchange("POST", "/v1/messages/count_tokens", {"model": model, "messages": second}),
        Exchange("GET", "/v1/models"),
        Exchange(
            "POST",
            "/v1/messages",
            {
                "model": model,
                "max_tokens": 2048,
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "messages": [{"role": "user", "content": "Why is the sky blue?"}],
                "stream": True,
            },
        ),
    ]


async def record(
    simulator: UpstreamSimulator,
    exchanges: list[Exchange],
    *,
    session_id: str | None = None,
    principal: str = "demo/alice",
) -> list[Recording]:
    """Send each exchange to the simulator in turn and record it."""
    session = session_id or "ses_" + uuid.uuid4().hex[:16]
    recordings = []
    async with httpx.AsyncClient(base_url=simulator.base_url, timeout=30) as client:
        for exchange in exchanges:
            recordings.append(await _record_one(client, simulator, exchange, session, principal))
    return recordings


async def _record_one(
    client: httpx.AsyncClient,
    simulator: UpstreamSimulator,
    exchange: Exchange,
    session_id: str,
    principal: str,
) -> Recording:
    body = b"" if exchange.body is None else orjson.dumps(exchange.body)
    headers = {"x-api-key": simulator.api_key, "anthropic-version": "2023-06-01"}
    headers.update(exchange.headers)
    if body:
        headers["content-type"] = "application/json"
    recording = Recording(
        request_id="req_ztg_" + uuid.uuid4().hex[:24],
        session_id=session_id,
        principal=principal,
        started_at=time.time(),
        method=exchange.method,
        path=exchange.path,
        request_body=body,
    )
    started = time.perf_counter()
    request = client.build_request(exchange.method, exchange.path, content=body, headers=headers)
    response = await client.send(request, stream=True)
    try:
        recording.status = response.status_code
        recording.content_type = response.headers.get("content-type")
        if (recording.content_type or "").startswith("text/event-stream"):
            splitter = SSESplitter(1 << 20)
            async for chunk in response.aiter_raw():
                for event in splitter.feed(chunk):
                    recording.events.append((time.perf_counter() - started, event.raw))
        else:
            recording.response_body = await response.aread()
    finally:
        await response.aclose()
    return recording
