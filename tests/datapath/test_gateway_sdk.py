"""The real anthropic SDK through the real gateway to the upstream simulator."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable

import anthropic
import pytest

from tests.stackrunner import RunningStack
from ztgate.devtools.stack import SIMULATOR_KEY

MODEL = "claude-sonnet-5-5"
HELLO = [{"role": "user", "content": "Hello through the gateway"}]


@pytest.fixture
def client(stack: RunningStack, sdk: Callable[..., anthropic.Anthropic]) -> anthropic.Anthropic:
    return sdk(base_url=stack.url, auth_token=stack.token())


@pytest.fixture
async def aclient(stack: RunningStack) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=stack.url, auth_token=stack.token(), max_retries=0
    ) as client:
        yield client


def _only_upstream_key_seen(stack: RunningStack, since: int, token: str) -> None:
    received = stack.received()[since:]
    assert received, "nothing reached the upstream"
    for request in received:
        assert request.headers["x-api-key"] == SIMULATOR_KEY
        assert "authorization" not in request.headers
        assert "proxy-authorization" not in request.headers
        assert token not in repr(request.headers)


def test_message_reaches_upstream_with_the_gateway_key_only(
    stack: RunningStack, client: anthropic.Anthropic
) -> None:
    before = len(stack.received())
    message = client.messages.create(model=MODEL, max_tokens=64, messages=HELLO)  # type: ignore[arg-type]
    assert message.content[0].type == "text"
    assert "Hello through the gateway" in message.content[0].text
    _only_upstream_key_seen(stack, before, client.auth_token or "")
    assert (
        stack.received()[-1].headers["anthropic-version"]
        == client.default_headers["anthropic-version"]
    )


def test_legacy_x_api_key_clients_and_beta_query_string(
    stack: RunningStack, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    """SDK 1.x and Claude Code send the token as x-api-key and call ?beta=true."""
    token = stack.token("demo/legacy")
    legacy = sdk(
        base_url=stack.url,
        api_key="unused",
        default_headers={"Authorization": anthropic.Omit(), "X-Api-Key": token},
    )
    before = len(stack.received())
    message = legacy.messages.create(
        model=MODEL,
        max_tokens=32,
        messages=HELLO,
        extra_query={"beta": "true"},  # type: ignore[arg-type]
    )
    assert message.content
    request = stack.received()[before]
    assert request.query_string == "beta=true"
    _only_upstream_key_seen(stack, before, token)


async def test_async_message_and_stream(
    stack: RunningStack, aclient: anthropic.AsyncAnthropic
) -> None:
    message = await aclient.messages.create(model=MODEL, max_tokens=64, messages=HELLO)  # type: ignore[arg-type]
    assert message.stop_reason == "end_turn"
    async with aclient.messages.stream(model=MODEL, max_tokens=64, messages=HELLO) as stream:  # type: ignore[arg-type]
        text = "".join([chunk async for chunk in stream.text_stream])
        final = await stream.get_final_message()
    assert "Hello through the gateway" in text
    assert final.usage.output_tokens > 0


def test_sync_stream_events_arrive_in_order(client: anthropic.Anthropic) -> None:
    # A reply longer than the masking window (the demo policy masks), so it streams in parts.
    with client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Hello through ztgate! " * 10}],
        stream=True,  # type: ignore[arg-type]
    ) as stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start"
    assert kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_delta") >= 2


def test_thinking_and_tool_use_stream_through(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[{"name": "lookup", "description": "look up", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "Please use a tool to look up the weather"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "thinking"
    assert final.content[0].signature
    tool_use = final.content[-1]
    assert tool_use.type == "tool_use"
    assert tool_use.name == "lookup"
    assert isinstance(tool_use.input, dict)


def test_count_tokens(client: anthropic.Anthropic) -> None:
    count = client.messages.count_tokens(model=MODEL, messages=HELLO)  # type: ignore[arg-type]
    assert count.input_tokens > 0


def test_models_list_and_get(client: anthropic.Anthropic) -> None:
    ids = [m.id for m in client.models.list(limit=2)]  # the SDK pages through them all
    assert len(ids) >= 2
    assert client.models.retrieve(ids[0]).id == ids[0]
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-does-not-exist")


def test_batch_results_come_back_through_the_gateway(
    stack: RunningStack, client: anthropic.Anthropic
) -> None:
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": f"r{i}", "params": {"model": MODEL, "max_tokens": 32, "messages": HELLO}}
            for i in range(3)
        ]  # type: ignore[list-item]
    )
    assert batch.results_url is not None
    assert batch.results_url.startswith(stack.url)
    assert client.messages.batches.retrieve(batch.id).results_url.startswith(stack.url)  # type: ignore[union-attr]
    listed = client.messages.batches.list()
    assert all((b.results_url or stack.url).startswith(stack.url) for b in listed)
    before = len(stack.received())
    results = list(client.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in results) == ["r0", "r1", "r2"]
    assert any(r.path.endswith(f"/{batch.id}/results") for r in stack.received()[before:])
    _only_upstream_key_seen(stack, before, client.auth_token or "")


def test_file_upload_list_content_delete(client: anthropic.Anthropic) -> None:
    data = b"col_a,col_b\n1,2\n" * 100
    uploaded = client.beta.files.upload(file=("data.csv", io.BytesIO(data), "text/csv"))
    assert uploaded.size_bytes == len(data)
    assert uploaded.id in [f.id for f in client.beta.files.list()]
    assert client.beta.files.retrieve_metadata(uploaded.id).filename == "data.csv"
    assert client.beta.files.download(uploaded.id).read() == data
    client.beta.files.delete(uploaded.id)


def test_skills_listing(client: anthropic.Anthropic) -> None:
    skills = client.beta.skills.list()
    assert {"xlsx", "pdf"} <= {s.id for s in skills}


def test_anthropic_headers_arrive_unchanged(
    stack: RunningStack, client: anthropic.Anthropic
) -> None:
    before = len(stack.received())
    client.messages.create(
        model=MODEL,
        max_tokens=16,
        messages=HELLO,  # type: ignore[arg-type]
        extra_headers={
            "anthropic-beta": "skills-2025-10-02,code-execution-2025-08-25,files-api-2025-04-14",
            "anthropic-made-up-feature": "on",
            "x-app": "cli",
        },
    )
    headers = stack.received()[before].headers
    assert headers["anthropic-beta"] == (
        "skills-2025-10-02,code-execution-2025-08-25,files-api-2025-04-14"
    )
    assert headers["anthropic-made-up-feature"] == "on"
    assert headers["x-app"] == "cli"


def test_caller_never_sees_the_upstream_key(
    stack: RunningStack, client: anthropic.Anthropic
) -> None:
    raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=16, messages=HELLO)  # type: ignore[arg-type]
    assert SIMULATOR_KEY not in raw.http_response.text
    assert SIMULATOR_KEY not in repr(dict(raw.headers))
    assert raw.headers["ztgate-request-id"].startswith("req_ztg_")
    assert raw.headers["request-id"].startswith("req_sim")  # the upstream's id passes through
