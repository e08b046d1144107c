"""A real Claude Code session through the gateway is recorded, and replaying it re-runs Claude
Code to the same result: ``ztgate replay SESSION --serve`` stands in for the API."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datapath.test_claude_code import CLAUDE, run_claude
from tests.stackrunner import RunningStack
from ztgate.storage.factory import open_store

pytestmark = [
    pytest.mark.claude_code,
    pytest.mark.skipif(not CLAUDE.exists(), reason="run `make setup` to install Claude Code"),
]


def _recorded(stack: RunningStack, session: str) -> int:
    async def count() -> int:
        store = open_store(stack.stack.config.store.url)
        try:
            for _ in range(100):
                found = await store.recordings(session)
                if found:
                    return len(found)
                await asyncio.sleep(0.05)
            return 0
        finally:
            await store.close()

    return asyncio.run(count())


def test_a_claude_code_session_is_recorded_and_replays_to_the_same_answer(
    stack: RunningStack, tmp_path: Path
) -> None:
    token = stack.token("demo/replayer")
    for run in ("live", "replay"):
        (tmp_path / run).mkdir()
    first, answered = run_claude(stack, tmp_path / "live", env={"ANTHROPIC_AUTH_TOKEN": token})
    assert first.returncode == 0, first.stdout + first.stderr
    session = answered["session_id"]
    assert _recorded(stack, session) >= 1  # grouped by Claude Code's x-claude-code-session-id

    config = tmp_path / "ztgate.yaml"
    stack.stack.write_config(config)
    server = subprocess.Popen(
        [sys.executable, "-m", "ztgate", "replay", session, "--config", str(config),
         "--serve", "--listen", "127.0.0.1:0"],
        env={k: v for k, v in os.environ.items() if k != "ZTGATE_CONFIG"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stderr is not None
        banner = server.stderr.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner
        again, replayed = run_claude(
            stack,
            tmp_path / "replay",
            env={"ANTHROPIC_BASE_URL": match.group(1), "ANTHROPIC_AUTH_TOKEN": "not-checked"},
        )
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert again.returncode == 0, again.stdout + again.stderr
    assert replayed["is_error"] is False
    assert replayed["result"] == answered["result"]
