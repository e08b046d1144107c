"""Claude Code, unchanged, through a gateway whose policy sends its shell tool to review: the
session waits on the held stream (pings keep it listening) and continues once a lead approves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.datapath.test_claude_code import CLAUDE, run_claude
from tests.stackrunner import RunningStack

pytestmark = [
    pytest.mark.claude_code,
    pytest.mark.skipif(not CLAUDE.exists(), reason="run `make setup` to install Claude Code"),
]

POLICY = {
    "default": "deny",
    "rules": [
        {"id": "developers", "effect": "allow", "when": {"tools": ["*"], "skills": ["*"]}},
        {
            "id": "shell-needs-a-lead",
            "effect": "review",
            "message": "an agent with a shell needs a lead's approval",
            "when": {"tools": ["Bash"]},
            "review": {"approvers": ["leads"], "grant": "1h"},
        },
    ],
}
API = "/ztgate/api/v1/reviews"


@pytest.fixture(scope="module")
def guarded() -> Iterator[RunningStack]:
    running = RunningStack(policy=POLICY, reviews={"ping_interval": "2s"})
    yield running
    running.close()


def test_claude_code_continues_once_its_shell_is_approved(
    guarded: RunningStack, tmp_path: Path
) -> None:
    token = guarded.token("claude-dev")
    lead = {"authorization": f"Bearer {guarded.token('lead', claims={'groups': ['leads']})}"}
    before = len(guarded.received())
    with ThreadPoolExecutor(1) as pool:
        session = pool.submit(run_claude, guarded, tmp_path, env={"ANTHROPIC_AUTH_TOKEN": token})
        review_id = None
        deadline = time.monotonic() + 60
        while review_id is None and time.monotonic() < deadline:
            found = httpx.get(
                guarded.url + API, params={"state": "pending"}, headers=lead, timeout=10
            ).json()["reviews"]
            review_id = found[0]["id"] if found else None
            time.sleep(0.2)
        assert review_id is not None, "Claude Code's request was not held for review"
        assert "Bash" in found[0]["summary"]["tools"]
        time.sleep(5)  # longer than a ping: Claude Code keeps waiting on the held stream
        assert not session.done()
        assert len(guarded.received()) == before
        approved = httpx.post(
            f"{guarded.url}{API}/{review_id}/approve",
            headers=lead,
            json={"reason": "reviewed the task"},
            timeout=10,
        )
        assert approved.status_code == 200, approved.text
        result, output = session.result(timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert output["is_error"] is False
    assert "Simulated reply" in output["result"]
    assert len(guarded.received()) >= before + 1
    shown = httpx.get(f"{guarded.url}{API}/{review_id}", headers=lead, timeout=10).json()
    assert shown["state"] == "executed"
