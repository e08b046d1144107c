"""`make demo` runs `ztgate demo`: the tour must keep working from a fresh folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_the_demo_tours_the_gateway_and_exits(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "ztgate", "demo", "--once", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert (
        "Claude saw:    Email <EMAIL_1> that the deploy key is [REDACTED:ANTHROPIC_API_KEY]" in out
    )
    assert "computer use  -> 403 denied by policy (rule no-computer-use)" in out
    assert "a web page giving orders -> 403 denied by policy (rule guardrails)" in out
    assert "demo/lead approves -> approved" in out
    assert "the stream goes on after" in out
    assert "all with the gateway's own key: True" in out
    assert "caller's token forwarded upstream: False" in out
    assert "verified: True" in out
    assert (tmp_path / ".ztgate" / "demo.db").exists()
