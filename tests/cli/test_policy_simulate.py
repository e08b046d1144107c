"""`ztgate policy simulate` on a real store (SQLite and PostgreSQL): what a new policy would
have decided on the recorded requests, and its exit code."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.audit.filled import CI, POLICY
from tests.cli.audit_stores import FilledStore, filled_store, ztgate


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FilledStore]:
    with ExitStack() as stack:
        yield filled_store(request.param, tmp_path_factory.mktemp(request.param), stack)


def _policy_file(tmp_path: Path, rules: list[dict[str, Any]]) -> Path:
    path = tmp_path / "new-policy.yaml"
    path.write_text(yaml.safe_dump({"policy": {"default": "deny", "rules": rules}}))
    return path


def _without(rule_id: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(r) for r in POLICY["rules"] if r["id"] != rule_id]


def test_the_same_policy_changes_nothing(shared: FilledStore, tmp_path: Path) -> None:
    run = ztgate(
        "policy", "simulate", _policy_file(tmp_path, POLICY["rules"]), "--config", shared.config
    )
    assert run.code == 0, run.output
    # Alice's six requests (one with an unknown outcome is still a decision) and CI's three.
    assert run.stdout == "9 recorded requests decided again: 0 would change, 9 unchanged\n"


def test_removing_a_rule_shows_each_change_and_why(shared: FilledStore, tmp_path: Path) -> None:
    new = _policy_file(tmp_path, _without("ci-haiku"))
    run = ztgate("policy", "simulate", new, "--config", shared.config)
    assert run.code == 1, run.output
    ids = shared.filled.request_ids
    for name in ("ci_email", "ci_xlsx"):
        assert ids[name] in run.stdout
    assert ids["ci_denied"] not in run.stdout  # denied before, denied now
    assert f"  {CI.principal}  messages claude-haiku-5-5  " in run.stdout
    assert run.stdout.count("  allow (ci-haiku) -> deny (default)\n") == 2
    assert "  - rule ci-haiku is no longer in the policy\n" in run.stdout
    assert "  - no rule decides now: the default (deny) applies\n" in run.stdout
    assert run.stdout.endswith(
        "9 recorded requests decided again: 2 would change (allow -> deny: 2), 7 unchanged\n"
    )


def test_json_and_time_window(shared: FilledStore, tmp_path: Path) -> None:
    no_thinking = {"id": "no-thinking", "when": {"thinking_budget_above": 0}, "effect": "deny"}
    rules = [*POLICY["rules"], no_thinking]
    new = _policy_file(tmp_path, rules)
    run = ztgate("policy", "simulate", new, "--config", shared.config, "--json")
    assert run.code == 1
    report = json.loads(run.stdout)
    assert report["summary"] == {
        "considered": 9,
        "changed": 1,
        "effect_changed": 1,
        "unchanged": 8,
        "skipped": 0,
        "transitions": [{"from": "allow", "to": "deny", "count": 1}],
    }
    [change] = report["changes"]
    assert change["old"] == {
        "effect": "allow",
        "rule_ids": ["dev-any"],
        "reason": "allowed by rule dev-any",
    }
    assert change["new"]["rule_ids"] == ["no-thinking"]
    assert (
        "rule dev-any (allow) still matches, but deny by no-thinking takes precedence"
        in change["why"]
    )
    # The CI job ran three days ago: a window of one day leaves it out.
    ci_only = _policy_file(tmp_path, _without("ci-haiku"))
    recent = ztgate("policy", "simulate", ci_only, "--config", shared.config, "--since", "1d")
    assert recent.code == 0
    assert recent.stdout.startswith("6 recorded requests decided again: 0 would change")


def test_an_invalid_new_policy(shared: FilledStore, tmp_path: Path) -> None:
    bad = _policy_file(tmp_path, [{"id": "x", "effect": "allow", "when": {"modles": ["*"]}}])
    run = ztgate("policy", "simulate", bad, "--config", shared.config)
    assert run.code == 2
    assert "modles" in run.stderr


def test_an_unreachable_store(shared: FilledStore, tmp_path: Path) -> None:
    config = shared.filled.config_yaml(
        tmp_path, store={"url": "postgresql://postgres@127.0.0.1:1/x"}
    )
    run = ztgate("policy", "simulate", _policy_file(tmp_path, POLICY["rules"]), "--config", config)
    assert run.code == 2
    assert run.stderr.startswith("ztgate: the audit store cannot be read: ")
