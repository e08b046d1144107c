"""The upstream simulator, driven by the official SDK as a gateway's clients would drive it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import httpx2
import orjson
import pytest
from aiohttp import web
from anthropic.types import MessageParam, RawMessageStreamEvent, ToolParam

from ztgate.devtools.simulator import SCENARIO_HEADER, Scenario, UpstreamSimulator

KEY = "sk-ant-test-upstream-key"
MODEL = "claude-haiku-4-5-20251001"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
SSE_FRAME = re.compile(rb"event: ([a-z_]+)\ndata: (\{.*\})\n\n", re.DOTALL)


@pytest.fixture
async def sim() -> AsyncIterator[UpstreamSimulator]:
    simulator = UpstreamSimulator(api_key=KEY)
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def client(sim: UpstreamSimulator) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=sim.base_url, api_key=KEY, max_retries=0) as c:
        yield c


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def threaded_sim() -> Iterator[UpstreamSimulator]:
    """The simulator on its own loop and thread, so the blocking SDK client can call it."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    simulator = UpstreamSimulator(api_key=KEY)
    asyncio.run_coroutine_threadsafe(simulator.start(), loop).result(timeout=5)
    yield simulator
    asyncio.run_coroutine_threadsafe(simulator.stop(), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


def user(text: str) -> list[MessageParam]:
    return [{"role": "user", "content": text}]


async def read_frames(response: aiohttp.ClientResponse) -> list[tuple[str, dict[str, Any]]]:
    frames: list[tuple[str, dict[str, Any]]] = []
    async for raw in iter_frames(response):
        frames.append(parse_frame(raw))
    return frames


async def iter_frames(response: aiohttp.ClientResponse) -> AsyncGenerator[bytes, None]:
    while not response.content.at_eof():
        raw = await response.content.readuntil(b"\n\n")
        if raw:
            yield raw


def parse_frame(raw: bytes) -> tuple[str, dict[str, Any]]:
    match = SSE_FRAME.fullmatch(raw)
    assert match is not None, raw
    return match.group(1).decode(), orjson.loads(match.group(2))


async def drain(stream: AsyncIterator[RawMessageStreamEvent], seen: list[str]) -> None:
    async for event in stream:
        seen.append(event.type)


async def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------- messages


async def test_message_echoes_the_last_user_text(
    sim: UpstreamSimulator, client: anthropic.AsyncAnthropic
) -> None:
    messages: list[MessageParam] = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "the secret is 42"}]},
    ]
    message = await client.messages.create(model=MODEL, max_tokens=64, messages=messages)

    assert message.id.startswith("msg_")
    assert message.model == MODEL
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Simulated reply to: the secret is 42"  # type: ignore[union-attr]
    assert message.usage.input_tokens >= 1
    assert message.usage.output_tokens >= 1
    assert message.usage.cache_read_input_tokens == 0

    seen = sim.received[-1]
    assert (seen.method, seen.path, seen.query_string) == ("POST", "/v1/messages", "")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["anthropic-version"]
    assert seen.json()["messages"] == messages


def test_sync_client_message_and_stream(threaded_sim: UpstreamSimulator) -> None:
    with anthropic.Anthropic(base_url=threaded_sim.base_url, api_key=KEY, max_retries=0) as c:
        message = c.messages.create(model=MODEL, max_tokens=32, messages=user("hello sync"))
        with c.messages.stream(
            model=MODEL, max_tokens=32, messages=user("a streamed hello with several words")
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()

    assert message.content[0].text == "Simulated reply to: hello sync"  # type: ignore[union-attr]
    assert text == "Simulated reply to: a streamed hello with several words"
    assert final.stop_reason == "end_turn"
    assert len(threaded_sim.received) == 2


async def test_query_string_is_recorded_but_ignored_for_routing(
    sim: UpstreamSimulator, client: anthropic.AsyncAnthropic
) -> None:
    """Claude Code calls `/v1/messages?beta=true`."""
    message = await client.messages.create(
        model=MODEL,
        max_tokens=16,
        messages=user("beta hello"),
        extra_query={"beta": "true"},
        extra_headers={"anthropic-beta": "skills-2025-10-02"},
    )
    assert message.content[0].text == "Simulated reply to: beta hello"  # type: ignore[union-attr]
    seen = sim.received[-1]
    assert (seen.path, seen.query_string) == ("/v1/messages", "beta=true")
    assert seen.headers["anthropic-beta"] == "skills-2025-10-02"


async def test_repeated_headers_are_joined(sim: UpstreamSimulator) -> None:
    host, port = sim.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"GET /v1/models HTTP/1.1\r\nHost: sim\r\nConnection: close\r\n"
        b"X-Api-Key: " + KEY.encode() + b"\r\nanthropic-version: 2023-06-01\r\n"
        b"X-Trace: one\r\nx-trace: two\r\n\r\n"
    )
    await writer.drain()
    assert (await reader.read()).startswith(b"HTTP/1.1 200")
    writer.close()
    await writer.wait_closed()
    assert sim.received[-1].headers["x-trace"] == "one, two"


async def test_stream_emits_the_documented_event_sequence(
    client: anthropic.AsyncAnthropic,
) -> None:
    prompt = "tell me a story about a gateway that guards the door"
    stream = await client.messages.create(
        model=MODEL, max_tokens=64, messages=user(prompt), stream=True
    )
    events = [event async for event in stream]

    kinds = [event.type for event in events]
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert kinds == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * len(deltas),
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert len(deltas) > 3, "text is split into several small deltas"
    assert "".join(d.delta.text for d in deltas) == f"Simulated reply to: {prompt}"  # type: ignore[union-attr]
    start, delta = events[0], events[-2]
    assert start.message.content == []  # type: ignore[union-attr]
    assert start.message.stop_reason is None  # type: ignore[union-attr]
    assert delta.delta.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert delta.usage.input_tokens == start.message.usage.input_tokens  # type: ignore[union-attr]
    assert delta.usage.output_tokens > 1  # type: ignore[union-attr]


async def test_raw_sse_wire_format_pings_and_event_by_event_delivery(
    sim: UpstreamSimulator, http: aiohttp.ClientSession
) -> None:
    body = {"model": Scenario.SLOW, "max_tokens": 64, "stream": True, "messages": user("go")}
    arrivals: list[float] = []
    frames: list[tuple[str, dict[str, Any]]] = []
    async with http.post(f"{sim.base_url}/v1/messages", json=body, headers=HEADERS) as response:
        assert response.status == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["request-id"].startswith("req_sim_")
        async for raw in iter_frames(response):
            arrivals.append(time.monotonic())
            frames.append(parse_frame(raw))

    names = [name for name, _ in frames]
    assert names[:2] == ["message_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert all(data["type"] == name for name, data in frames)
    delta_positions = [i for i, name in enumerate(names) if name == "content_block_delta"]
    assert len(delta_positions) >= 2
    assert all(names[i + 1] == "ping" for i in delta_positions), "a ping after every delta"
    # Paced at 50 ms an event, so they must have arrived one by one, not in one flush.
    assert arrivals[-1] - arrivals[0] >= 0.04 * (len(frames) - 1)


async def test_thinking_then_tool_use_stream(client: anthropic.AsyncAnthropic) -> None:
    tools: list[ToolParam] = [
        {
            "name": "lookup_weather",
            "description": "Weather by city",
            "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
        }
    ]
    stream = await client.messages.create(
        model=MODEL,
        max_tokens=2048,
        messages=user("what is the weather in Paris today?"),
        tools=tools,
        tool_choice={"type": "any"},
        thinking={"type": "enabled", "budget_tokens": 1024},
        stream=True,
    )
    events = [event async for event in stream]

    starts = [e.content_block.type for e in events if e.type == "content_block_start"]
    assert starts == ["thinking", "tool_use"]
    delta_kinds = [e.delta.type for e in events if e.type == "content_block_delta"]
    assert delta_kinds.index("signature_delta") > delta_kinds.index("thinking_delta")
    assert delta_kinds.count("input_json_delta") > 1, "tool input split into fragments"
    fragments = [
        e.delta.partial_json
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
    ]
    assert orjson.loads("".join(fragments)) == {"query": "what is the weather in Paris today?"}
    assert events[-2].delta.stop_reason == "tool_use"  # type: ignore[union-attr]

    async with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        messages=user("please use a tool for this"),
        tools=tools,
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as helper:
        final = await helper.get_final_message()
    assert [block.type for block in final.content] == ["thinking", "text", "tool_use"]
    thinking, _, tool_use = final.content
    assert thinking.signature  # type: ignore[union-attr]
    assert tool_use.id.startswith("toolu_")  # type: ignore[union-attr]
    assert tool_use.name == "lookup_weather"  # type: ignore[union-attr]
    assert tool_use.input == {"query": "please use a tool for this"}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"


async def test_named_tool_choice_and_no_tool_without_a_reason(
    client: anthropic.AsyncAnthropic,
) -> None:
    tools: Any = [
        {"name": "first", "input_schema": {"type": "object"}},
        {"name": "second", "input_schema": {"type": "object"}},
    ]
    forced = await client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=user("hi"),
        tools=tools,
        tool_choice={"type": "tool", "name": "second"},
    )
    plain = await client.messages.create(
        model=MODEL, max_tokens=64, messages=user("hi"), tools=tools
    )

    assert [(b.type, getattr(b, "name", None)) for b in forced.content] == [("tool_use", "second")]
    assert forced.stop_reason == "tool_use"
    assert [b.type for b in plain.content] == ["text"]


async def test_stop_sequences_cut_the_reply(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(
        model=MODEL, max_tokens=64, messages=user("alpha STOP beta"), stop_sequences=["STOP"]
    )
    assert message.content[0].text == "Simulated reply to: alpha "  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "STOP")


async def test_count_tokens(client: anthropic.AsyncAnthropic) -> None:
    short = await client.messages.count_tokens(model=MODEL, messages=user("hi"))
    long = await client.messages.count_tokens(model=MODEL, messages=user("hi " * 400))
    assert 1 <= short.input_tokens < long.input_tokens


# ---------------------------------------------------------------------------- validation, auth


async def test_missing_fields_name_the_field(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(
            model=MODEL, messages=user("x"), max_tokens=5, extra_body={"max_tokens": "many"}
        )
    assert caught.value.type == "invalid_request_error"
    assert "max_tokens" in str(caught.value.api_message)
    with pytest.raises(anthropic.BadRequestError, match="messages"):
        await client.messages.create(model=MODEL, max_tokens=5, messages=[])


async def test_malformed_json_and_missing_version_are_400(
    sim: UpstreamSimulator, http: aiohttp.ClientSession
) -> None:
    url = f"{sim.base_url}/v1/messages"
    async with http.post(url, data=b"{not json", headers=HEADERS) as response:
        assert response.status == 400
        body = await response.json()
    assert body["error"]["type"] == "invalid_request_error"

    async with http.post(url, json={}, headers={"x-api-key": KEY}) as response:
        assert response.status == 400
        body = await response.json()
    assert "anthropic-version" in body["error"]["message"]


async def test_wrong_key_is_401_and_still_recorded(sim: UpstreamSimulator) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=sim.base_url, api_key="sk-wrong", max_retries=0
    ) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await wrong.models.list()
    error = caught.value
    assert error.status_code == 401
    assert error.type == "authentication_error"
    assert error.api_message == "invalid x-api-key"
    assert error.request_id is not None
    assert error.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": error.request_id,
    }
    assert sim.received[-1].headers["authorization"] == "Bearer sk-wrong"


async def test_x_api_key_accepted_and_unknown_paths_are_404(
    sim: UpstreamSimulator, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sim.base_url}/v1/models?beta=true", headers=HEADERS) as response:
        assert response.status == 200
    async with http.get(f"{sim.base_url}/v1/agents", headers=HEADERS) as response:
        assert response.status == 404
        body = await response.json()
        assert body["request_id"] == response.headers["request-id"]
    assert body["error"]["type"] == "not_found_error"
    async with http.post(f"{sim.base_url}/v1/messages", headers={}) as response:
        assert response.status == 401
    assert [r.path for r in sim.received] == ["/v1/models", "/v1/agents", "/v1/messages"]
    assert sim.received[0].query_string == "beta=true"
    assert sim.received[0].headers["x-api-key"] == KEY


# ---------------------------------------------------------------------------- scenarios


@pytest.mark.parametrize(
    ("scenario", "error_class", "status"),
    [
        (Scenario.ERROR_429, anthropic.RateLimitError, 429),
        (Scenario.ERROR_529, anthropic.APIStatusError, 529),
        (Scenario.ERROR_500, anthropic.InternalServerError, 500),
    ],
)
@pytest.mark.parametrize("by_header", [False, True])
async def test_error_scenarios(
    client: anthropic.AsyncAnthropic,
    scenario: Scenario,
    error_class: type[anthropic.APIStatusError],
    status: int,
    by_header: bool,
) -> None:
    model = MODEL if by_header else str(scenario)
    headers = {SCENARIO_HEADER: str(scenario)} if by_header else {}
    with pytest.raises(error_class) as caught:
        await client.messages.create(
            model=model, max_tokens=5, messages=user("x"), extra_headers=headers
        )
    assert caught.value.status_code == status
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "1"


async def test_header_scenario_applies_to_other_routes(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.InternalServerError):
        await client.models.list(extra_headers={SCENARIO_HEADER: Scenario.ERROR_500})
    with pytest.raises(anthropic.BadRequestError, match="unknown scenario"):
        await client.models.list(extra_headers={SCENARIO_HEADER: "sim-nonsense"})


async def test_fail_midstream_raises_after_some_text(client: anthropic.AsyncAnthropic) -> None:
    stream = await client.messages.create(
        model=Scenario.FAIL_MIDSTREAM, max_tokens=64, messages=user("a b c d e f g"), stream=True
    )
    seen: list[str] = []
    with pytest.raises(anthropic.APIError) as caught:
        await drain(stream, seen)
    assert seen[0] == "message_start"
    assert seen.count("content_block_delta") == 2
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]


async def test_disconnect_midstream_breaks_the_connection(
    client: anthropic.AsyncAnthropic,
) -> None:
    stream = await client.messages.create(
        model=Scenario.DISCONNECT_MIDSTREAM, max_tokens=64, messages=user("a b c d e"), stream=True
    )
    seen: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
        await drain(stream, seen)
    assert "message_start" in seen
    assert "message_stop" not in seen


async def test_no_stop_ends_cleanly_without_the_final_events(
    sim: UpstreamSimulator, http: aiohttp.ClientSession
) -> None:
    body = {"model": Scenario.NO_STOP, "max_tokens": 64, "stream": True, "messages": user("hi")}
    async with http.post(f"{sim.base_url}/v1/messages", json=body, headers=HEADERS) as response:
        names = [name for name, _ in await read_frames(response)]
    assert names[0] == "message_start"
    assert names[-1] == "content_block_stop"
    assert "message_delta" not in names


async def test_client_leaving_a_long_stream_is_recorded(
    sim: UpstreamSimulator, http: aiohttp.ClientSession
) -> None:
    body = {"model": Scenario.SLOW_LONG, "max_tokens": 64, "stream": True, "messages": user("x")}
    async with http.post(f"{sim.base_url}/v1/messages", json=body, headers=HEADERS) as response:
        request_id = response.headers["request-id"]
        frames = iter_frames(response)
        for _ in range(3):
            await anext(frames)
        await frames.aclose()
        response.close()  # drop the connection mid-stream
    await eventually(lambda: request_id in sim.cancelled)
    assert sim.cancelled == [request_id]


async def test_sdk_closing_a_stream_is_recorded(
    sim: UpstreamSimulator, client: anthropic.AsyncAnthropic
) -> None:
    stream = await client.messages.create(
        model=Scenario.SLOW_LONG, max_tokens=64, messages=user("x"), stream=True
    )
    request_id = stream.response.headers["request-id"]
    async for event in stream:
        if event.type == "content_block_delta":
            break
    await stream.close()
    await eventually(lambda: request_id in sim.cancelled)


async def test_a_write_to_a_gone_client_is_recorded() -> None:
    """Without aiohttp's handler cancellation only the failing write reveals the departure."""
    simulator = UpstreamSimulator(api_key=KEY)
    app = simulator.app()
    runner = web.AppRunner(app, handler_cancellation=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    body = {"model": Scenario.SLOW_LONG, "max_tokens": 64, "stream": True, "messages": user("x")}
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"http://127.0.0.1:{port}/v1/messages", json=body, headers=HEADERS
            ) as response,
        ):
            request_id = response.headers["request-id"]
            await response.content.readuntil(b"\n\n")
            response.close()
        await eventually(lambda: request_id in simulator.cancelled)
    finally:
        await runner.cleanup()


async def test_hang_times_out_and_stop_releases_it(
    sim: UpstreamSimulator, http: aiohttp.ClientSession
) -> None:
    async with anthropic.AsyncAnthropic(
        base_url=sim.base_url, api_key=KEY, max_retries=0, timeout=0.3
    ) as impatient:
        with pytest.raises(anthropic.APITimeoutError):
            await impatient.messages.create(model=Scenario.HANG, max_tokens=5, messages=user("x"))
    await eventually(lambda: len(sim.cancelled) == 1)

    body = {"model": Scenario.HANG, "max_tokens": 5, "messages": user("x")}
    pending = asyncio.ensure_future(
        http.post(f"{sim.base_url}/v1/messages", json=body, headers=HEADERS)
    )
    await eventually(lambda: len(sim.received) == 2)
    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 1.0
    with pytest.raises(aiohttp.ClientError):
        await pending
    assert len(sim.cancelled) == 1, "our own shutdown is not a client cancellation"


async def test_non_streaming_disconnect_scenario(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.APIConnectionError):
        await client.messages.create(
            model=Scenario.DISCONNECT_MIDSTREAM, max_tokens=5, messages=user("x")
        )


# ---------------------------------------------------------------------------- models


async def test_models_list_paginates_and_get(client: anthropic.AsyncAnthropic) -> None:
    everything = [model.id async for model in client.models.list(limit=2)]
    assert {"claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001"} <= set(everything)
    assert "claude-opus-4-1-20250805" in everything
    assert len(everything) == len(set(everything))

    page = await client.models.list(limit=2)
    assert page.has_more
    assert (page.first_id, page.last_id) == (everything[0], everything[1])
    before = await client.models.list(before_id=everything[3], limit=2)
    assert [m.id for m in before.data] == everything[1:3]

    model = await client.models.retrieve("claude-haiku-4-5-20251001")
    assert (model.type, model.display_name) == ("model", "Claude Haiku 4.5")
    assert model.created_at.year == 2025
    with pytest.raises(anthropic.NotFoundError):
        await client.models.retrieve("claude-nonexistent")


# ---------------------------------------------------------------------------- batches


async def test_batch_create_results_list_cancel_delete(
    sim: UpstreamSimulator, client: anthropic.AsyncAnthropic
) -> None:
    requests: Any = [
        {"custom_id": "a", "params": {"model": MODEL, "max_tokens": 9, "messages": user("one")}},
        {"custom_id": "b", "params": {"model": MODEL, "max_tokens": 9, "messages": user("two")}},
        {
            "custom_id": "c",
            "params": {"model": Scenario.ERROR_529, "max_tokens": 9, "messages": user("3")},
        },
    ]
    batch = await client.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_")
    assert batch.processing_status == "ended"
    assert batch.request_counts.succeeded == 2
    assert batch.request_counts.errored == 1
    assert batch.results_url == f"{sim.base_url}/v1/messages/batches/{batch.id}/results"

    results = {
        line.custom_id: line.result
        async for line in await client.messages.batches.results(batch.id)
    }
    assert results["a"].type == "succeeded"
    assert results["a"].message.content[0].text == "Simulated reply to: one"  # type: ignore[union-attr]
    assert results["c"].type == "errored"
    assert results["c"].error.error.type == "overloaded_error"

    listed = [b.id async for b in client.messages.batches.list()]
    assert listed == [batch.id]
    assert (await client.messages.batches.cancel(batch.id)).processing_status == "ended"
    deleted = await client.messages.batches.delete(batch.id)
    assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.batches.retrieve(batch.id)


async def test_batch_validation_names_the_field(client: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.batches.create(
            requests=[{"custom_id": "a", "params": {"model": MODEL, "messages": user("x")}}]  # type: ignore[typeddict-item]
        )
    assert caught.value.api_message == "requests.0.params.max_tokens: Field required"


# ---------------------------------------------------------------------------- files


async def test_file_upload_list_content_delete(
    sim: UpstreamSimulator, client: anthropic.AsyncAnthropic
) -> None:
    data = b"line one\r\n--not-a-boundary\r\n\x00\xff binary tail\r\n"
    uploaded = await client.beta.files.upload(
        file=("notes/report.bin", data, "application/pdf"), betas=["files-api-2025-04-14"]
    )
    assert uploaded.id.startswith("file_")
    assert (uploaded.filename, uploaded.mime_type, uploaded.size_bytes) == (
        "report.bin",
        "application/pdf",
        len(data),
    )
    assert sim.received[-1].headers["anthropic-beta"] == "files-api-2025-04-14"
    second = await client.files.upload(file=("second.txt", b"hello", "text/plain"))

    assert [f.id async for f in client.files.list(limit=1)] == [second.id, uploaded.id]
    assert (await client.files.retrieve_metadata(uploaded.id)).filename == "report.bin"
    content = await client.files.download(uploaded.id)
    assert await content.read() == data

    deleted = await client.files.delete(uploaded.id)
    assert (deleted.id, deleted.type) == (uploaded.id, "file_deleted")
    with pytest.raises(anthropic.NotFoundError):
        await client.files.retrieve_metadata(uploaded.id)


# ---------------------------------------------------------------------------- skills


SKILL_MD = b"---\nname: report-writer\ndescription: Writes reports.\n---\n# Report writer\n"


async def test_skills_list_create_versions_delete(client: anthropic.AsyncAnthropic) -> None:
    anthropic_skills = [s async for s in client.skills.list(source="anthropic")]
    assert {s.id for s in anthropic_skills} == {"pptx", "xlsx", "docx", "pdf"}
    assert all(s.source.type == "anthropic" for s in anthropic_skills)

    created = await client.beta.skills.create(
        files=[
            ("report-writer/SKILL.md", SKILL_MD, "text/markdown"),
            ("report-writer/tools/run.py", b"print('hi')\n", "text/x-python"),
        ],
        display_name="Report writer",
    )
    assert created.id.startswith("skill_01")
    assert (created.display_name, created.source.type) == ("Report writer", "custom")
    listed = [s.id async for s in client.skills.list(limit=2)]
    assert listed[0] == created.id
    assert len(listed) == 5

    version = await client.skills.versions.create(
        created.id, files=[("report-writer/SKILL.md", SKILL_MD, "text/markdown")]
    )
    assert (version.name, version.description) == ("report-writer", "Writes reports.")
    assert (await client.skills.retrieve(created.id)).latest_version_id == version.id
    latest = await client.skills.versions.retrieve("latest", skill_id=created.id)
    assert latest.id == version.id
    assert len([v async for v in client.skills.versions.list(created.id)]) == 2
    gone = await client.skills.versions.delete(version.id, skill_id=created.id)
    assert gone.type == "skill_version_deleted"
    assert (await client.skills.delete(created.id)).type == "skill_deleted"
    with pytest.raises(anthropic.NotFoundError):
        await client.skills.retrieve(created.id)


async def test_skill_upload_requires_skill_md_in_one_folder(
    client: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=r"SKILL\.md"):
        await client.skills.create(files=[("x/README.md", b"no manifest", "text/markdown")])
    with pytest.raises(anthropic.BadRequestError, match="same top-level directory"):
        await client.skills.create(
            files=[("x/SKILL.md", SKILL_MD, "text/markdown"), ("y/a.txt", b"a", "text/plain")]
        )
    with pytest.raises(anthropic.PermissionDeniedError):
        await client.skills.delete("pptx")


# ---------------------------------------------------------------------------- control, CLI


async def test_control_endpoints_show_and_clear(
    sim: UpstreamSimulator, client: anthropic.AsyncAnthropic, http: aiohttp.ClientSession
) -> None:
    await client.messages.count_tokens(model=MODEL, messages=user("visible"))
    await client.files.upload(file=("b.bin", b"\xff\xfe", "application/octet-stream"))
    async with http.get(f"{sim.base_url}/_simulator/received") as response:
        shown = await response.json()
    text_entry, binary_entry = shown["received"]
    assert text_entry["path"] == "/v1/messages/count_tokens"
    assert text_entry["body_encoding"] == "utf-8"
    assert orjson.loads(text_entry["body"])["messages"] == user("visible")
    assert binary_entry["body_encoding"] == "base64"
    assert shown["cancelled"] == []

    async with http.delete(f"{sim.base_url}/_simulator/received") as response:
        assert response.status == 204
    assert sim.received == []


def test_runs_as_a_module_and_prints_its_base_url() -> None:
    src = Path(__file__).resolve().parents[2] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, "-m", "ztgate.devtools.simulator", "--port", "0", "--api-key", KEY]
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
            with anthropic.Anthropic(base_url=base_url, api_key=KEY, max_retries=0) as c:
                assert c.models.retrieve(MODEL).id == MODEL
        finally:
            process.terminate()
            assert process.wait(timeout=5) == 0
