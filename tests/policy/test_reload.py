"""Hot reload in a real `ztgate serve`: good changes apply without dropping streams, bad ones
are rejected while the last good policy keeps deciding; SIGHUP reloads at once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.processes import ZTGATE, GatewayProcesses, free_port, slow_story
from tests.stackrunner import RunningStack

ALLOW = "policy:\n  rules: [{id: everyone, effect: allow}]\n"
NO_HAIKU = (
    "policy:\n"
    "  rules:\n"
    "    - {id: everyone, effect: allow}\n"
    "    - {id: no-haiku, effect: deny, when: {models: ['claude-haiku-*']},"
    " message: 'haiku is retired here'}\n"
)


ADMIN = "admin:\n  groups: [ops]\n"


def policy_status(url: str, token: str) -> dict[str, Any]:
    """The policy's state, from the admin API (``/readyz`` tells anyone only ready or not)."""
    response = httpx.get(
        url + "/ztgate/api/v1/status", headers={"authorization": f"Bearer {token}"}
    )
    return dict(response.json()["policy"])


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def ask(url: str, token: str, model: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/messages",
        headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
        json={"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )


def test_reload_on_change_keeps_streams_and_rejects_bad_files(
    stack: RunningStack, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(ALLOW)
    gateways = GatewayProcesses(stack, tmp_path)
    try:
        process, url = gateways.start(extra=f"policy: {policy}\n{ADMIN}")
        token = stack.token()
        admin = stack.token("ops/carol", claims={"groups": ["ops"]})
        loaded = policy_status(url, admin)["loaded_at"]
        with (
            httpx.Client() as client,
            slow_story(client, url, token) as response,
        ):
            chunks = response.iter_bytes()
            first = next(chunks)
            policy.write_text(NO_HAIKU)  # a good change, mid-stream
            wait_for(lambda: policy_status(url, admin)["loaded_at"] != loaded)
            rest = b"".join(chunks)
        assert b"event: message_stop" in first + rest  # the in-flight stream was not dropped
        denied = ask(url, token, "claude-haiku-5-5")
        assert denied.status_code == 403
        assert "no-haiku" in denied.json()["error"]["message"]
        assert "haiku is retired here" in denied.json()["error"]["message"]

        policy.write_text("policy:\n  rules:\n    - {id: broken, effect: permit}\n")
        wait_for(lambda: policy_status(url, admin)["last_error"] is not None)
        assert "broken" in policy_status(url, admin)["last_error"]
        assert ask(url, token, "claude-haiku-5-5").status_code == 403  # old policy still decides
        assert ask(url, token, "claude-sonnet-5-5").status_code == 200

        reloaded = policy_status(url, admin)["loaded_at"]
        policy.write_text(ALLOW)
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: policy_status(url, admin)["loaded_at"] != reloaded, seconds=3)
        assert policy_status(url, admin)["last_error"] is None
        assert ask(url, token, "claude-haiku-5-5").status_code == 200
    finally:
        gateways.stop_all()


def test_serve_refuses_to_start_on_an_invalid_policy(stack: RunningStack, tmp_path: Path) -> None:
    gateways = GatewayProcesses(stack, tmp_path)
    bad = "policy:\n  rules:\n    - {id: a, effect: allow, when: {toolz: [x]}}\n"
    config = gateways.config(free_port(), extra=bad)
    result = subprocess.run(
        [*ZTGATE, "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        check=False,
        env={"SIM_KEY": "k", "PATH": "/usr/bin"},
    )
    assert result.returncode == 2
    assert "rule 'a'" in result.stderr
    assert "toolz" in result.stderr
