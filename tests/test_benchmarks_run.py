"""The in-process benchmarks still run (briefly): a bench that rots goes unnoticed otherwise.
Their figures are not checked here: speed is measured by `make bench`, never by timed tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize(
    "args",
    [
        ["identity.py", "--tokens", "40"],
        ["policy.py", "--iterations", "200"],
        ["scan_speed.py", "--mb", "0.05", "--rounds", "1", "--skip-fallback"],
    ],
)
def test_benchmark_runs(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "|---" in result.stdout
