"""Replay: a real recorded session rendered as a timed script, and served back as an upstream
that the real SDK re-runs against, byte for byte."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from collections.abc import Iterator

import anthropic
import orjson
import pytest
import uvicorn

from tests.audit.sessions import FOLLOW_UP, QUESTION, SYSTEM, conversation, record
from ztgate.audit.recording import Recording
from ztgate.audit.replay import Step, paced, session_script
from ztgate.audit.replay_server import (
    TRUNCATED_MESSAGE,
    ReplayBook,
    ReplayUpstream,
    reply_for,
    same_request,
)
from ztgate.core.sse import parse_event
from ztgate.devtools.simulator import UpstreamSimulator


async def _record_session() -> list[Recording]:
    simulator = UpstreamSimulator()
    await simulator.start()
    try:
        return await record(simulator, conversation(), session_id="ses_geo")
    finally:
        await simulator.stop()


@pytest.fixture(scope="module")
def session() -> list[Recording]:
    return asyncio.run(_record_session())


def _text(steps: list[Step], *styles: str) -> str:
    return "".join(s.text for s in steps if s.style in styles)


def _streamed_text(recording: Recording) -> str:
    """The answer text as the API sent it, from the recorded text deltas."""
    text = ""
    for _, raw in recording.events:
        data = orjson.loads(parse_event(raw).data)
        delta = data.get("delta", {})
        if delta.get("type") == "text_delta":
            text += delta["text"]
    return text


# -- the terminal script --------------------------------------------------------------------


def test_each_request_is_shown_with_its_question_then_its_answer(session: list[Recording]) -> None:
    steps = session_script(session)
    headers = [s.text for s in steps if s.style == "header"]
    assert len(headers) == 5
    assert "1/5" in headers[0]
    assert "POST /v1/messages · claude-sonnet-5-5 · stream" in headers[0]
    assert "GET /v1/models" in headers[3]
    requests = _text(steps, "request")
    assert f"system: {SYSTEM}\n" in requests
    assert f"user: {QUESTION}\n" in requests
    assert f"user: {FOLLOW_UP}\n" in requests  # the last user turn, from its text blocks
    assert "tools: lookup_capital\n" in requests
    assert "(3 messages in the conversation)" in requests


def test_a_streamed_answer_is_rebuilt_from_its_text_deltas(session: list[Recording]) -> None:
    first = session[0]
    steps = session_script([first])
    answer = _text(steps, "answer")
    assert answer == "assistant: " + _streamed_text(first)
    assert answer == f"assistant: Simulated reply to: {QUESTION}"
    assert "[stop: end_turn, " in _text(steps, "meta")


def test_a_streamed_answer_keeps_its_original_timing(session: list[Recording]) -> None:
    first = session[0]  # the slow scenario: events about 50 ms apart
    steps = [s for s in session_script([first]) if s.style == "answer"]
    deltas = [offset for offset, raw in first.events if b"text_delta" in raw]
    assert [s.at for s in steps[1:]] == pytest.approx(deltas)
    assert deltas[-1] - deltas[0] > 0.1  # the timing is real, not all at once


def test_exchanges_start_at_their_recorded_times_and_never_go_back(
    session: list[Recording],
) -> None:
    steps = session_script(session)
    assert steps[0].at == 0.0
    assert all(a.at <= b.at for a, b in itertools.pairwise(steps))
    second_header = [s for s in steps if s.style == "header"][1]
    assert second_header.at >= session[1].started_at - session[0].started_at - 1e-6
    # the second request started after the first stream ended, as it did
    assert second_header.at >= session[0].events[-1][0]


def test_other_answers(session: list[Recording]) -> None:
    steps = session_script(session)
    tools = _text(steps, "tool")
    assert '[tool_use lookup_capital: {"query":"' in tools  # whole JSON body, not streamed
    assert "[input_tokens: " in _text(steps, "meta")  # count_tokens
    assert "[HTTP 200, " in _text(steps, "meta")  # the model list
    thinking = _text(session_script([session[4]]), "thinking")
    assert thinking == "[thinking: Simulated thinking about: Why is the sky blue?]\n"


def test_unknown_outcomes_errors_and_cuts_are_said(session: list[Recording]) -> None:
    unknown = dataclasses.replace(session[1], status=None, response_body=None)
    assert "[no response was recorded: the outcome is unknown]\n" in _text(
        session_script([unknown]), "error"
    )
    refused = dataclasses.replace(
        session[1],
        status=403,
        response_body=b'{"type":"error","error":{"type":"permission_error","message":"no"}}',
    )
    assert _text(session_script([refused]), "error") == "[HTTP 403] permission_error: no\n"
    cut = dataclasses.replace(session[0], events=session[0].events[:4], truncated=True)
    assert "[the recording was cut at its size limit]" in _text(session_script([cut]), "meta")


def test_pacing() -> None:
    steps = [Step(0.0, "a", "answer"), Step(1.0, "b", "answer"), Step(601.0, "c", "answer")]
    assert [s.at for s in paced(steps, speed=2)] == [0.0, 0.5, 300.5]
    assert [s.at for s in paced(steps, max_pause=5)] == [0.0, 1.0, 6.0]
    assert [s.text for s in paced(steps)] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="positive"):
        paced(steps, speed=0)


# -- the recorded upstream, without a server --------------------------------------------------


def test_the_book_answers_each_path_in_recorded_order(session: list[Recording]) -> None:
    book = ReplayBook("ses_geo", list(reversed(session)))  # sorted by time, not given order
    messages = [book.take("POST", "/v1/messages?beta=true") for _ in range(3)]
    assert [(m[0].request_id, m[1], m[2]) for m in messages if m] == [
        (session[0].request_id, 1, 3),
        (session[1].request_id, 2, 3),
        (session[4].request_id, 3, 3),
    ]
    assert book.take("POST", "/v1/messages") is None
    assert book.take("get", "/v1/models") is not None
    assert book.remaining() == 1  # count_tokens


def test_a_stream_is_sent_again_with_its_bytes_and_optionally_its_timing(
    session: list[Recording],
) -> None:
    first = session[0]
    fast = reply_for(first, 1, 3, timing=False)
    assert b"".join(f.data for f in fast.frames) == b"".join(raw for _, raw in first.events)
    assert all(f.delay == 0 for f in fast.frames)
    timed = reply_for(first, 1, 3, timing=True, speed=2)
    offsets = [offset for offset, _ in first.events]
    assert sum(f.delay for f in timed.frames) == pytest.approx(offsets[-1] / 2)
    assert (b"content-type", b"text/event-stream; charset=utf-8") in timed.headers
    assert (b"request-id", first.request_id.encode()) in timed.headers


def test_what_was_not_recorded_is_not_invented(session: list[Recording]) -> None:
    cut = dataclasses.replace(session[0], events=session[0].events[:3], truncated=True)
    frames = reply_for(cut, 1, 1, timing=False).frames
    assert frames[-1].data.startswith(b"event: error\n")
    assert TRUNCATED_MESSAGE.encode() in frames[-1].data
    unknown = reply_for(dataclasses.replace(session[1], status=None), 1, 1, timing=False)
    assert unknown.status == 502
    assert b"outcome is unknown" in unknown.frames[0].data
    cut_body = reply_for(dataclasses.replace(session[1], truncated=True), 1, 1, timing=False)
    assert cut_body.status == 502


def test_same_request_compares_json_not_bytes(session: list[Recording]) -> None:
    recorded = session[1]
    reordered = orjson.dumps(dict(reversed(list(orjson.loads(recorded.request_body).items()))))
    assert same_request(recorded, reordered)
    assert not same_request(recorded, b'{"model":"other"}')
    assert not same_request(recorded, b"not json")


# -- the recorded upstream, served, and re-run with the real SDK ------------------------------


@pytest.fixture
def served(session: list[Recording]) -> Iterator[tuple[str, ReplayUpstream]]:
    app = ReplayUpstream(ReplayBook("ses_geo", session))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(10)
    loop.close()


def test_the_sdk_gets_the_recorded_answers_byte_for_byte(
    session: list[Recording], served: tuple[str, ReplayUpstream]
) -> None:
    url, app = served
    exchanges = conversation()
    with anthropic.Anthropic(base_url=url, api_key="replay", max_retries=0) as client:
        first_params = {k: v for k, v in (exchanges[0].body or {}).items() if k != "stream"}
        with client.messages.with_streaming_response.create(**first_params, stream=True) as raw:
            streamed = b"".join(raw.iter_bytes())
            assert raw.headers["ztgate-replay-request"] == "same"
        assert streamed == b"".join(data for _, data in session[0].events)

        second = client.messages.with_raw_response.create(**(exchanges[1].body or {}))
        assert second.http_response.content == session[1].response_body
        assert second.headers["ztgate-replay"] == "2/3"
        message = second.parse()
        assert message.stop_reason == "tool_use"
        assert message.content[-1].type == "tool_use"

        count = client.messages.count_tokens(**(exchanges[2].body or {}))
        assert count.input_tokens == orjson.loads(session[2].response_body or b"")["input_tokens"]
        models = client.models.list()
        assert [m.id for m in models.data] == [
            m["id"] for m in orjson.loads(session[3].response_body or b"")["data"]
        ]

        third = exchanges[4].body or {}
        with client.messages.stream(**{k: v for k, v in third.items() if k != "stream"}) as stream:
            final = stream.get_final_message()
        assert final.content[0].type == "thinking"
        assert final.content[1].type == "text"
        assert final.content[1].text == _streamed_text(session[4])

        with pytest.raises(anthropic.NotFoundError, match="no more recorded responses"):
            client.messages.create(**(exchanges[1].body or {}))
    assert app.book.remaining() == 0
