"""The GitHub Actions recipe's shape (deploy/github-actions/): the job gets its OIDC token for the
audience the gateway's config accepts and calls Claude only through ztgate, and nothing in the
workflow refers to a secret, so a copy of it cannot quietly bring an Anthropic key back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ztgate.cli.token_sources import DEFAULT_GITHUB_AUDIENCE
from ztgate.config.loader import load_config
from ztgate.config.model import GITHUB_ACTIONS_ISSUER
from ztgate.policy.loader import build_policy

RECIPES = Path(__file__).resolve().parents[2] / "deploy" / "github-actions"
WORKFLOW = RECIPES / "claude-through-ztgate.yml"
GATEWAY = RECIPES / "ztgate.yaml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def strings(node: Any) -> Iterator[str]:
    """Every string value in a parsed YAML document, however deep."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def steps(workflow: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for job in workflow["jobs"].values():
        yield from job["steps"]


def test_every_job_may_request_its_oidc_token(workflow: dict[str, Any]) -> None:
    """Without id-token: write the runner has no ACTIONS_ID_TOKEN_REQUEST_URL, and a job that
    cannot get a token is where someone would be tempted to add a key."""
    assert workflow["jobs"]
    for name, job in workflow["jobs"].items():
        assert job["permissions"]["id-token"] == "write", name
        assert job["env"]["ANTHROPIC_BASE_URL"] == "${{ vars.ZTGATE_URL }}", name


def test_the_workflow_names_no_secret_and_no_key(workflow: dict[str, Any]) -> None:
    """The point of the recipe: a key in GitHub is a key anyone with a workflow can spend."""
    text = WORKFLOW.read_text()
    assert not re.search(r"\bsecrets\.", text), "the recipe needs no secret at all"
    for value in strings(workflow):
        assert "sk-ant-" not in value
    environments = [workflow.get("env", {})]
    environments += [job.get("env", {}) for job in workflow["jobs"].values()]
    environments += [step.get("env", {}) for step in steps(workflow)]
    for environment in environments:
        assert "ANTHROPIC_API_KEY" not in environment, environment
    for step in steps(workflow):
        assert "ANTHROPIC_API_KEY=" not in step.get("run", ""), step


def test_claude_is_reached_only_through_ztgate(workflow: dict[str, Any]) -> None:
    """No step names the API's own URL (the comments may: they are not run), and every token
    the steps ask for is for the audience ztgate's config accepts."""
    for value in strings(workflow):
        assert "api.anthropic.com" not in value, value
    asked = [
        audience
        for step in steps(workflow)
        for audience in re.findall(
            r"ztgate token --from github-actions --audience ([\w.:/-]+)", step.get("run", "")
        )
    ]
    assert len(asked) == 2  # the SDK's step and Claude Code's helper
    config = load_config(GATEWAY, {"ANTHROPIC_API_KEY": "sk-ant-placeholder"})
    (issuer,) = config.identity.issuers
    assert issuer.preset == "github-actions"
    assert issuer.issuer == GITHUB_ACTIONS_ISSUER
    assert set(asked) == {DEFAULT_GITHUB_AUDIENCE}
    assert DEFAULT_GITHUB_AUDIENCE in issuer.audiences
    assert issuer.allow, "any repository on GitHub can mint a token for this audience"


def test_the_gateway_policy_loads_without_warnings() -> None:
    raw = yaml.safe_load(GATEWAY.read_text())
    _, warnings = build_policy(raw["policy"], source=str(GATEWAY))
    assert warnings == []


def test_event_data_never_spliced_into_a_script(workflow: dict[str, Any]) -> None:
    """`${{ github.event... }}` inside `run:` is script injection (a pull request's title
    becomes shell); the recipe passes event data through `env:` instead."""
    for step in steps(workflow):
        assert "${{" not in step.get("run", ""), step
