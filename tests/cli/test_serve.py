"""`ztgate serve` as operators run it: a real process, real signals, real workers."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from click.testing import CliRunner

from tests.processes import ZTGATE, GatewayProcesses, slow_story
from tests.stackrunner import RunningStack
from ztgate.cli.main import cli
from ztgate.devtools.stack import SIMULATOR_KEY


@pytest.fixture
def serve(stack: RunningStack, tmp_path: Path) -> Iterator[object]:
    gateways = GatewayProcesses(stack, tmp_path)
    yield gateways.start
    gateways.stop_all()


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for args in ([], ["serve"], ["demo"]):
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0
        assert "Usage:" in result.output


def test_serve_refuses_to_start_without_an_issuer(tmp_path: Path) -> None:
    config = tmp_path / "ztgate.yaml"
    config.write_text("upstream: {api_key: sk-test}\n")
    result = subprocess.run(
        [*ZTGATE, "serve", "--config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "no anonymous mode" in result.stderr
    assert "identity:" in result.stderr


def test_serve_refuses_an_invalid_config_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "ztgate.yaml"
    config.write_text(
        "policy: {rules: []}\n"
        "upstream: {api_key: sk-test, timeout: forever}\n"
        "identity: {issuers: [{name: a, issuer: 'https://idp.example.com', audiences: [z]}]}\n"
    )
    result = subprocess.run(
        [*ZTGATE, "serve"],
        env={**os.environ, "ZTGATE_CONFIG": str(config)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "upstream.timeout" in result.stderr
    assert "sk-test" not in result.stderr


def test_serve_refuses_a_shared_store_without_a_signing_key(tmp_path: Path) -> None:
    # Replicas on PostgreSQL must share one configured key; none is made up for them.
    config = tmp_path / "ztgate.yaml"
    config.write_text(
        "policy: {rules: []}\n"
        "upstream: {api_key: sk-test}\n"
        "identity: {issuers: [{name: a, issuer: 'https://idp.example.com', audiences: [z]}]}\n"
        "store: {url: 'postgresql://ztgate@db.internal/ztgate'}\n"
    )
    result = subprocess.run(
        [*ZTGATE, "serve", "--config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "refusing to start" in result.stderr
    assert "audit.signing_key" in result.stderr


def test_sigterm_lets_an_in_flight_stream_finish(serve: object, stack: RunningStack) -> None:
    process, url = serve()  # type: ignore[operator]
    token = stack.token()
    with (
        httpx.Client() as client,
        slow_story(client, url, token) as response,
    ):
        chunks = response.iter_bytes()
        first = next(chunks)
        assert b"message_start" in first
        process.send_signal(signal.SIGTERM)
        rest = b"".join(chunks)
    assert b"event: message_stop" in first + rest
    assert b"event: error" not in first + rest
    # uvicorn re-raises the signal it handled once shutdown is done: the conventional exit.
    assert process.wait(15) in (0, -signal.SIGTERM)


def test_log_lines_are_json_without_tokens_or_keys(serve: object, stack: RunningStack) -> None:
    process, url = serve()  # type: ignore[operator]
    token = stack.token()
    with httpx.Client() as client, slow_story(client, url, token) as response:
        assert response.status_code == 200
        response.read()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    lines = [line for line in stderr.splitlines() if '"event":"request"' in line]
    assert lines, stderr
    assert '"subject":"demo/alice"' in lines[-1]
    assert '"status":200' in lines[-1]
    assert '"decision":"allow","rule_ids":["everyone"]' in lines[-1]
    assert token not in stderr
    assert SIMULATOR_KEY not in stderr
    assert "a slow story" not in stderr


def test_several_workers_share_one_port(serve: object, stack: RunningStack) -> None:
    process, url = serve("--workers", "2")  # type: ignore[operator]
    token = stack.token()
    for _ in range(6):
        response = httpx.get(
            url + "/v1/models",
            headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
        )
        assert response.status_code == 200
    children = subprocess.run(
        ["pgrep", "-P", str(process.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(children) >= 2
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=20)
    # every worker writes its own access lines: logging is set up in each worker process
    assert stderr.count('"event":"request"') == 6, stderr[-2000:]
