"""A real Claude Code session through the gateway is recorded, and replaying it re-runs Claude
Code to the same result: ``ztgate replay SESSION --serve`` stands in for the API."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.datapath.test_claude_code import CLAUDE, run_claude
from tests.processes import replay_server
from tests.stackrunner import RunningStack
from ztgate.audit.store.factory import open_store

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
    with replay_server(session, config) as url:
        again, replayed = run_claude(
            stack,
            tmp_path / "replay",
            env={"ANTHROPIC_BASE_URL": url, "ANTHROPIC_AUTH_TOKEN": "not-checked"},
        )
    assert again.returncode == 0, again.stdout + again.stderr
    assert replayed["is_error"] is False
    assert replayed["result"] == answered["result"]
