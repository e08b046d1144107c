"""`ztgate serve` as operators run it: a real process, real signals, real workers."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from click.testing import CliRunner

from tests.stackrunner import RunningStack
from ztgate.cli.main import cli
from ztgate.devtools.stack import SIMULATOR_KEY

ZTGATE = [sys.executable, "-m", "ztgate"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(stack: RunningStack, path: Path, port: int) -> Path:
    path.write_text(
        f"""
listen: "127.0.0.1:{port}"
upstream:
  url: "{stack.stack.simulator.base_url}"
  api_key: "${{SIM_KEY}}"
identity:
  issuers:
    - name: demo
      issuer: "{stack.stack.issuer.base_url}"
      audiences: ["ztgate"]
server:
  graceful_shutdown: 10s
policy:
  rules: [{{id: everyone, effect: allow}}]
"""
    )
    return path


@pytest.fixture
def serve(stack: RunningStack, tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        config = write_config(stack, tmp_path / "ztgate.yaml", port)
        process = subprocess.Popen(
            [*ZTGATE, "serve", "--config", str(config), *args],
            env={**os.environ, "SIM_KEY": SIMULATOR_KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # workers share the group, so teardown can stop them all
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    return process, url
            except httpx.TransportError:
                time.sleep(0.1)
        process.kill()
        raise AssertionError(f"ztgate did not become ready: {process.communicate()}")

    yield start
    for process in processes:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate(timeout=10)


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


def _stream(url: str, token: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/messages",
        headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
        json={
            "model": "sim-slow",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "a slow story"}],
        },
        timeout=30,
    )


def test_sigterm_lets_an_in_flight_stream_finish(serve: object, stack: RunningStack) -> None:
    process, url = serve()  # type: ignore[operator]
    token = stack.token()
    with (
        httpx.Client() as client,
        client.stream(
            "POST",
            url + "/v1/messages",
            headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
            json={
                "model": "sim-slow",
                "max_tokens": 64,
                "stream": True,
                "messages": [{"role": "user", "content": "a slow story"}],
            },
            timeout=30,
        ) as response,
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
    response = _stream(url, token)
    assert response.status_code == 200
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    lines = [line for line in stderr.splitlines() if '"event":"request"' in line]
    assert lines, stderr
    assert '"subject":"demo/alice"' in lines[-1]
    assert '"status":200' in lines[-1]
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
