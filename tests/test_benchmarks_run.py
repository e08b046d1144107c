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
        ["audit_store.py", "--events", "600", "--producers", "8"],
        ["masking.py", "--deltas", "300", "--requests", "20", "--rounds", "1"],
        ["audit_path.py", "--requests", "20", "--rounds", "1"],
        ["reviews.py", "--held", "20", "--requests", "50", "--rounds", "1", "--ping", "1"],
        ["guardrails_speed.py", "--calls", "40", "--requests", "20", "--rounds", "1"],
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


def test_quality_bench_runs_both_engines() -> None:
    """bench/quality.py on a tiny corpus: ztgate and Presidio (installed by `make test`'s setup,
    with presidio-evaluator's templates) both scored, and the speed table filled."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "quality.py"),
            *("--per-entity", "3", "--negatives", "10", "--per-near-miss", "1"),
            *("--per-secret", "1", "--speed-mb", "0.05", "--presidio-mb", "0.02", "--rounds", "1"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "(not installed)" not in out
    assert "| ztgate F1 |" in out.replace("**", "")
    assert "| Presidio F1 |" in out.replace("**", "")
    assert "| IN_AADHAAR |" in out
    assert "ztgate / Presidio" in out
