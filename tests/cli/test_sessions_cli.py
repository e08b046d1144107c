"""`ztgate sessions` and `ztgate replay` on real stores (SQLite and PostgreSQL) with sealed
recordings: listing, watching with the original timing, and serving the recorded answers to
the real SDK, byte for byte."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import anthropic
import orjson
import pytest

from tests.audit.filled import ALICE, ALICE_SESSION, CI, CI_SESSION
from tests.audit.sessions import QUESTION, SYSTEM, conversation
from tests.cli.audit_stores import FilledStore, filled_store, ztgate
from tests.processes import replay_server
from ztgate.audit.recording import Recording
from ztgate.core.sse import parse_event


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FilledStore]:
    with ExitStack() as stack:
        yield filled_store(request.param, tmp_path_factory.mktemp(request.param), stack)


def _answer(recording: Recording) -> str:
    text = ""
    for _, raw in recording.events:
        delta = orjson.loads(parse_event(raw).data).get("delta", {})
        if delta.get("type") == "text_delta":
            text += delta["text"]
    return text


def test_sessions_list(shared: FilledStore) -> None:
    run = ztgate("sessions", "list", "--config", shared.config)
    assert run.code == 0, run.output
    lines = run.stdout.splitlines()
    assert lines[0].split() == ["SESSION", "PRINCIPAL", "STARTED", "(UTC)", "SPAN", "REQUESTS"]
    assert lines[1].split()[:2] == [ALICE_SESSION, ALICE.principal]  # newest first
    assert lines[1].split()[-1] == "5"
    assert lines[2].split()[:2] == [CI_SESSION, CI.principal]
    assert lines[2].split()[-1] == "2"  # the denied request never went upstream
    listed = orjson.loads(
        ztgate("sessions", "list", "--config", shared.config, "--format", "json").stdout
    )
    assert [s["session_id"] for s in listed] == [ALICE_SESSION, CI_SESSION]
    recent = ztgate(
        "sessions", "list", "--config", shared.config, "--since", "1d", "--format", "json"
    )
    assert [s["session_id"] for s in orjson.loads(recent.stdout)] == [ALICE_SESSION]
    mine = ztgate("sessions", "list", "--config", shared.config, "--principal", CI.principal)
    assert ALICE_SESSION not in mine.stdout
    assert CI_SESSION in mine.stdout


def test_replay_shows_each_request_and_its_answer(shared: FilledStore) -> None:
    run = ztgate("replay", ALICE_SESSION, "--config", shared.config, "--no-wait")
    assert run.code == 0, run.output
    first = shared.filled.recordings[ALICE_SESSION][0]
    assert f"system: {SYSTEM}\nuser: {QUESTION}\nassistant: {_answer(first)}\n" in run.stdout
    assert run.stdout.count("── ") == 5
    assert "[tool_use lookup_capital: " in run.stdout
    assert "Simulated reply to: Why is the sky blue?" in run.stdout


def test_replay_keeps_the_original_timing(shared: FilledStore) -> None:
    recordings = shared.filled.recordings[ALICE_SESSION]
    span = recordings[-1].started_at + recordings[-1].events[-1][0] - recordings[0].started_at
    assert span > 0.4  # the first answer streamed slowly
    started = time.monotonic()
    assert ztgate("replay", ALICE_SESSION, "--config", shared.config).code == 0
    assert time.monotonic() - started >= span * 0.95
    started = time.monotonic()
    assert ztgate("replay", ALICE_SESSION, "--config", shared.config, "--speed", "20").code == 0
    assert time.monotonic() - started < span / 2


def test_replay_of_an_unknown_session(shared: FilledStore) -> None:
    run = ztgate("replay", "ses_nope", "--config", shared.config)
    assert run.code == 2
    assert "no recorded session 'ses_nope'" in run.stderr


def test_sealed_recordings_need_the_key(shared: FilledStore, tmp_path: Path) -> None:
    without = shared.filled.config_yaml(tmp_path, audit={"recordings": {}})
    run = ztgate("replay", ALICE_SESSION, "--config", without, "--no-wait")
    assert run.code == 2
    assert run.stderr.startswith(
        "ztgate: a recording cannot be opened: the recording is sealed and no "
        "recordings.encryption_key is set\n"
    )
    assert "Traceback" not in run.output
    wrong_key = "A" * 43 + "="
    wrong = shared.filled.config_yaml(tmp_path, audit={"recordings": {"encryption_key": wrong_key}})
    run = ztgate("replay", ALICE_SESSION, "--config", wrong, "--no-wait")
    assert run.code == 2
    assert re.search(
        r"sealed with key [0-9a-f]{16}, but the configured key is [0-9a-f]{16}", run.stderr
    )


def test_replay_serves_the_recorded_answers_to_the_sdk(shared: FilledStore) -> None:
    """Re-running the client against `replay --serve` gives it the same answers, byte for
    byte, in the same order."""
    with replay_server(ALICE_SESSION, shared.config) as url:
        recordings = shared.filled.recordings[ALICE_SESSION]
        exchanges = conversation()
        with anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0) as client:
            params = {k: v for k, v in (exchanges[0].body or {}).items() if k != "stream"}
            with client.messages.with_streaming_response.create(**params, stream=True) as raw:
                assert b"".join(raw.iter_bytes()) == b"".join(e for _, e in recordings[0].events)
            second = client.messages.with_raw_response.create(**(exchanges[1].body or {}))
            assert second.http_response.content == recordings[1].response_body
            assert second.parse().content[-1].type == "tool_use"
            client.messages.count_tokens(**(exchanges[2].body or {}))
            assert client.models.list().data
            last = {k: v for k, v in (exchanges[4].body or {}).items() if k != "stream"}
            with client.messages.stream(**last) as stream:
                assert stream.get_final_text() == _answer(recordings[4])
            with pytest.raises(anthropic.NotFoundError):
                client.messages.create(**(exchanges[1].body or {}))
