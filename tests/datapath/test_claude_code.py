"""Claude Code itself, unchanged, through the gateway (`claude -p`), as its users will run it."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.stackrunner import RunningStack
from ztgate.devtools.stack import SIMULATOR_KEY

_TOOLS = Path(__file__).resolve().parents[2] / "tools" / "node_modules" / "@anthropic-ai"
_ARCH = {"x86_64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine(), "x64")
# The platform package's binary works even if npm skipped the wrapper's postinstall.
CLAUDE = _TOOLS / f"claude-code-linux-{_ARCH}" / "claude"

pytestmark = [
    pytest.mark.claude_code,
    pytest.mark.skipif(not CLAUDE.exists(), reason="run `make setup` to install Claude Code"),
]


def run_claude(
    stack: RunningStack, tmp_path: Path, *, env: dict[str, str], args: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    for folder in ("home", "cfg", "tmp", "work"):
        (tmp_path / folder).mkdir(exist_ok=True)
    environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "CLAUDE_CONFIG_DIR": str(tmp_path / "cfg"),
        "TMPDIR": str(tmp_path / "tmp"),
        "ANTHROPIC_BASE_URL": stack.url,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        **env,
    }
    result = subprocess.run(
        [str(CLAUDE), "-p", "say hi to the gateway", "--output-format", "json", *args],
        env=environment,
        cwd=tmp_path / "work",
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, json.loads(result.stdout or "{}")


def test_claude_code_with_a_token_in_anthropic_auth_token(
    stack: RunningStack, tmp_path: Path
) -> None:
    token = stack.token("demo/claude-code-user")
    before = len(stack.received())
    result, output = run_claude(stack, tmp_path, env={"ANTHROPIC_AUTH_TOKEN": token})
    assert result.returncode == 0, result.stdout + result.stderr
    assert output["is_error"] is False
    assert "Simulated reply" in output["result"]
    requests = stack.received()[before:]
    assert [(r.method, r.path, r.query_string) for r in requests] == [
        ("POST", "/v1/messages", "beta=true")
    ]
    upstream = requests[0]
    assert upstream.headers["x-api-key"] == SIMULATOR_KEY
    assert token not in json.dumps(upstream.headers)
    assert "claude-code-20250219" in upstream.headers["anthropic-beta"]
    assert upstream.headers["x-claude-code-session-id"] == output["session_id"]
    assert json.loads(upstream.body)["stream"] is True


def test_claude_code_with_an_api_key_helper(stack: RunningStack, tmp_path: Path) -> None:
    helper = tmp_path / "token-helper.sh"
    helper.write_text(f"#!/bin/sh\necho '{stack.token('demo/helper-user', ttl=600)}'\n")
    helper.chmod(0o700)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"apiKeyHelper": str(helper)}))
    before = len(stack.received())
    result, output = run_claude(stack, tmp_path, env={}, args=("--settings", str(settings)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert output["is_error"] is False
    assert len(stack.received()) == before + 1
    assert stack.received()[-1].headers["x-api-key"] == SIMULATOR_KEY


def test_claude_code_gets_401_for_an_expired_token(stack: RunningStack, tmp_path: Path) -> None:
    now = int(time.time())
    expired = stack.token(claims={"iat": now - 900, "nbf": now - 900, "exp": now - 300})
    before = len(stack.received())
    result, output = run_claude(stack, tmp_path, env={"ANTHROPIC_AUTH_TOKEN": expired})
    assert result.returncode == 1
    assert output["is_error"] is True
    assert output["api_error_status"] == 401
    assert len(stack.received()) == before
    assert os.environ.get("ANTHROPIC_AUTH_TOKEN") != expired
