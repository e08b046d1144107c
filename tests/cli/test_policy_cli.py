"""`ztgate policy` as CI runs it: a real process on real files, judged by its output and exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "policy"
POLICY = EXAMPLES / "policy.yaml"
CASES = EXAMPLES / "cases.yaml"

CI_IDENTITY = {
    "issuer": "github",
    "subject": "repo:acme/app:ref:refs/heads/main",
    "groups": ["ci"],
    "claims": {"repository_owner": "acme"},
}
HAIKU = {
    "method": "POST",
    "path": "/v1/messages",
    "headers": {"anthropic-beta": "skills-2025-10-02"},
    "body": {
        "model": "claude-haiku-5-5",
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
    },
}
HAIKU_WITH_BASH = {
    **HAIKU,
    "body": {**HAIKU["body"], "tools": [{"type": "bash_20250124", "name": "bash"}]},
}


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def ztgate_policy(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    [result] = ztgate_policy_all(args, env=env)
    return result


def ztgate_policy_all(
    *commands: Sequence[str | Path], env: dict[str, str] | None = None
) -> list[Result]:
    """Run independent commands at once: each is a whole interpreter start."""
    environ = {k: v for k, v in os.environ.items() if k != "ZTGATE_CONFIG"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "ztgate", "policy", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**environ, **(env or {})},
        )
        for args in commands
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=30)
        results.append(Result(process.returncode, stdout, stderr))
    return results


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def policy_file(path: Path, *rules: dict[str, Any]) -> Path:
    return write_yaml(path, {"policy": {"default": "deny", "rules": list(rules)}})


def allow(rule_id: str, **when: Any) -> dict[str, Any]:
    return {"id": rule_id, "when": when, "effect": "allow"}


def test_help_points_at_the_docs() -> None:
    commands = ("check", "test", "explain")
    for command, result in zip(
        commands, ztgate_policy_all(*([c, "--help"] for c in commands)), strict=True
    ):
        assert result.code == 0, result.stderr
        assert "docs/policy.md" in result.stdout
        assert f"ztgate policy {command} " in result.stdout  # an example


# -- check -------------------------------------------------------------------------------------


def test_the_examples_check_clean_and_their_cases_pass() -> None:
    rules = yaml.safe_load(POLICY.read_text())["policy"]["rules"]
    cases = yaml.safe_load(CASES.read_text())["cases"]
    assert len(cases) >= 12
    check, test, from_claims = ztgate_policy_all(
        ["check", "--strict", POLICY],
        ["test", POLICY, CASES],
        ["test", POLICY, EXAMPLES / "cases-from-claims.yaml", "--config", EXAMPLES / "ztgate.yaml"],
        env={"ANTHROPIC_API_KEY": "unused"},
    )
    assert check.code == 0, check.stderr
    assert check.stdout == f"ok: {len(rules)} rules\n"
    assert test.code == 0, test.stdout + test.stderr
    lines = test.stdout.splitlines()
    assert lines[:-1] == [f"PASS {case['name']}" for case in cases]
    assert lines[-1] == f"{len(cases)} passed, 0 failed ({len(cases)} cases)"
    assert from_claims.code == 0, from_claims.stdout + from_claims.stderr
    assert "FAIL" not in from_claims.stdout


def test_check_rejects_a_broken_policy_naming_the_rule(tmp_path: Path) -> None:
    first = {"id": "ci-summaries", "when": {"groups": ["ci"]}, "effect": "allow"}
    broken = {
        "unknown-key": (
            {"id": "ci-typo", "when": {"groups": ["ci"], "tool": ["bash_*"]}, "effect": "deny"},
            "rule 'ci-typo': when.tool: unknown key",
        ),
        "bad-glob": (
            {"id": "bad-glob", "when": {"models": ["[abc"]}, "effect": "allow"},
            "rule 'bad-glob': when.models: '[abc' is not a valid pattern",
        ),
        "duplicate-id": (
            {"id": "ci-summaries", "when": {"groups": ["data"]}, "effect": "allow"},
            "two rules share the id 'ci-summaries'",
        ),
    }
    results = ztgate_policy_all(
        *(
            ["check", policy_file(tmp_path / f"{name}.yaml", first, rule)]
            for name, (rule, _) in broken.items()
        )
    )
    for (name, (_, message)), result in zip(broken.items(), results, strict=True):
        assert result.code == 1, name
        assert "ok:" not in result.stdout, name
        assert message in result.stderr, name


def test_check_strict_fails_on_a_shadowed_rule(tmp_path: Path) -> None:
    path = policy_file(
        tmp_path / "policy.yaml",
        {"id": "ci-summaries", "when": {"groups": ["ci"]}, "effect": "allow"},
        {"id": "freeze", "effect": "deny", "message": "change freeze"},
    )
    warning = "warning: rule 'ci-summaries' is shadowed by deny rule 'freeze'"
    lenient, strict = ztgate_policy_all(["check", path], ["check", "--strict", path])
    assert lenient.code == 0
    assert lenient.stdout.splitlines() == ["ok: 2 rules", warning]
    assert strict.code == 1
    assert warning in strict.stdout
    assert "1 warning and --strict" in strict.stderr


# -- test --------------------------------------------------------------------------------------


def test_a_wrong_expectation_fails_and_says_what_was_decided(tmp_path: Path) -> None:
    table = yaml.safe_load(CASES.read_text())
    bash = next(c for c in table["cases"] if c["name"] == "ci may not use bash")
    bash["expect"] = {"effect": "allow", "rule": "ci-summaries"}
    result = ztgate_policy("test", POLICY, write_yaml(tmp_path / "cases.yaml", table))
    assert result.code == 1
    assert (
        "FAIL ci may not use bash: expected allow by ci-summaries, got deny by no-shell-for-ci "
        "(CI identities may not use shell, editor or computer tools)"
    ) in result.stdout.splitlines()
    total = len(table["cases"])
    assert result.stdout.splitlines()[-1] == f"{total - 1} passed, 1 failed ({total} cases)"


def test_a_case_with_an_unknown_path_fails_clearly(tmp_path: Path) -> None:
    table = {
        "cases": [
            {
                "name": "legacy completions",
                "identity": CI_IDENTITY,
                "request": {"method": "POST", "path": "/v1/complete", "body": {"prompt": "x"}},
                "expect": {"effect": "deny"},
            }
        ]
    }
    result = ztgate_policy("test", POLICY, write_yaml(tmp_path / "cases.yaml", table))
    assert result.code == 1
    assert (
        "FAIL legacy completions: POST /v1/complete is not an endpoint this gateway serves"
        in result.stdout
    )


def test_an_invalid_case_table_names_the_case_and_key(tmp_path: Path) -> None:
    table = {
        "cases": [
            {
                "name": "fine",
                "identity": CI_IDENTITY,
                "request": HAIKU,
                "expect": {"effect": "allow"},
            },
            {
                "name": "typo",
                "identity": CI_IDENTITY,
                "request": {**HAIKU, "bdy": {}},
                "expect": {"effect": "permit"},
            },
        ]
    }
    result, unreadable = ztgate_policy_all(
        ["test", POLICY, write_yaml(tmp_path / "cases.yaml", table)],
        ["test", POLICY, tmp_path / "missing.yaml"],
    )
    assert result.code == 2
    assert result.stdout == ""
    assert "cases[1] 'typo': request.bdy: unknown key" in result.stderr
    assert "cases[1] 'typo': expect.effect:" in result.stderr
    assert unreadable.code == 2
    assert "cannot read the case table" in unreadable.stderr


def gateway_config(tmp_path: Path, policy: Path) -> Path:
    """A small gateway config whose GitHub issuer puts acme's workflows in `ci`."""
    return write_yaml(
        tmp_path / "ztgate.yaml",
        {
            "upstream": {"api_key": "${TEST_UPSTREAM_KEY}"},
            "identity": {
                "issuers": [
                    {
                        "name": "github",
                        "preset": "github-actions",
                        "audiences": ["ztgate"],
                        "group_rules": [
                            {"when": {"repository_owner": "acme"}, "add": ["ci"]},
                            {
                                "when": {"repository_owner": "acme", "ref": "refs/heads/main"},
                                "add": ["ci-prod"],
                            },
                        ],
                    }
                ]
            },
            "policy": str(policy),
        },
    )


def github_claims(owner: str, ref: str) -> dict[str, Any]:
    return {
        "iss": "https://token.actions.githubusercontent.com",
        "sub": f"repo:{owner}/app:ref:{ref}",
        "aud": "ztgate",
        "repository": f"{owner}/app",
        "repository_owner": owner,
        "ref": ref,
    }


def test_config_derives_groups_from_claims_as_the_gateway_does(tmp_path: Path) -> None:
    policy = policy_file(
        tmp_path / "policy.yaml",
        allow("ci-haiku", groups=["ci"], models=["claude-haiku-*"]),
        allow("prod-sonnet", groups=["ci-prod"], models=["claude-sonnet-*"]),
    )
    sonnet = {**HAIKU, "body": {**HAIKU["body"], "model": "claude-sonnet-5-5"}}
    table = {
        "identities": {
            "acme-main": {"claims": github_claims("acme", "refs/heads/main")},
            "acme-branch": {"claims": github_claims("acme", "refs/heads/feature")},
            "stranger": {"claims": github_claims("someone", "refs/heads/main")},
        },
        "cases": [
            {"name": "acme workflows are ci", "identity": "acme-branch", "request": HAIKU,
             "expect": {"effect": "allow", "rule": "ci-haiku"}},
            {"name": "only main is ci-prod", "identity": "acme-branch", "request": sonnet,
             "expect": {"effect": "deny"}},
            {"name": "main is ci-prod", "identity": "acme-main", "request": sonnet,
             "expect": {"effect": "allow", "rule": "prod-sonnet"}},
            {"name": "other owners get no group", "identity": "stranger", "request": HAIKU,
             "expect": {"effect": "deny", "reason": "no rule allows this request"}},
        ],
    }  # fmt: skip
    cases = write_yaml(tmp_path / "cases.yaml", table)
    config = gateway_config(tmp_path, policy)
    env = {"TEST_UPSTREAM_KEY": "unused"}
    table["cases"][0]["identity"] = {"claims": {**github_claims("acme", "x"), "iss": "https://x"}}
    unknown_iss = write_yaml(tmp_path / "unknown-iss.yaml", table)
    result, without, unknown = ztgate_policy_all(
        ["test", policy, cases, "--config", config],
        ["test", policy, cases],
        ["test", policy, unknown_iss, "--config", config],
        env=env,
    )
    assert result.code == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "4 passed, 0 failed (4 cases)"

    assert without.code == 2
    assert "cases[0] 'acme workflows are ci': identity: claims alone need --config" in (
        without.stderr
    )

    assert unknown.code == 1
    assert "FAIL acme workflows are ci: identity.claims.iss: no issuer in the config" in (
        unknown.stdout
    )


# -- explain -----------------------------------------------------------------------------------


def test_explain_an_allowed_request(tmp_path: Path) -> None:
    claims = write_json(tmp_path / "claims.json", CI_IDENTITY)
    request = write_json(tmp_path / "request.json", HAIKU)
    args = ["explain", "--policy", POLICY, "--claims", claims, "--request", request]
    text, as_json = ztgate_policy_all(args, [*args, "--json"])
    assert text.code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "decision: allow" in lines
    assert "rules:    ci-summaries" in lines
    assert "max_tokens cap: 2048" in lines
    principal = "principal:github/repo:acme/app:ref:refs/heads/main"
    assert f"limit:    requests per minute <= 60 for {principal} (rule ci-summaries)" in lines
    assert "  allow  ci-summaries" in lines
    assert "not matched:" not in text.stdout  # only with --verbose

    assert as_json.code == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["decision"]["effect"] == "allow"
    assert data["decision"]["rule_ids"] == ["ci-summaries"]
    assert data["decision"]["max_tokens"] == 2048
    assert {"owner": principal, "metric": "tokens", "window": "day", "limit": 2000000,
            "rule_id": "ci-summaries"} in data["decision"]["limits"]  # fmt: skip
    assert data["identity"]["groups"] == ["ci"]
    [only] = data["requests"]
    assert only["facts"]["model"] == "claude-haiku-5-5"
    assert only["facts"]["betas"] == ["skills-2025-10-02"]
    assert only["facts"]["request_bytes"] == len(json.dumps(HAIKU["body"], separators=(",", ":")))
    assert only["matched"] == [{"id": "ci-summaries", "effect": "allow"}]
    assert "not_matched" not in only


def test_explain_a_denied_request(tmp_path: Path) -> None:
    claims = write_json(tmp_path / "claims.json", CI_IDENTITY)
    request = write_json(tmp_path / "request.json", HAIKU_WITH_BASH)
    args = ["explain", "--policy", POLICY, "--claims", claims, "--request", request, "-v"]
    text, as_json = ztgate_policy_all(args, [*args, "--json"])
    assert text.code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert "decision: deny" in lines
    assert "reason:   CI identities may not use shell, editor or computer tools" in lines
    assert "rules:    no-shell-for-ci" in lines
    assert "  deny   no-shell-for-ci" in lines
    # --verbose: the allow rule that would have matched, and why it did not
    assert "  allow  ci-summaries" in lines
    assert '           tools: requested ["bash_20250124"], the rule grants none' in lines

    data = json.loads(as_json.stdout)
    assert data["decision"]["effect"] == "deny"
    assert data["decision"]["rule_ids"] == ["no-shell-for-ci"]
    assert data["decision"]["limits"] == []
    [only] = data["requests"]
    assert only["matched"] == [{"id": "no-shell-for-ci", "effect": "deny"}]
    missed = {r["id"]: r for r in only["not_matched"]}
    assert missed["ci-summaries"]["unmet"] == [
        {"condition": "tools", "rule": None, "request": ["bash_20250124"]}
    ]
    assert only["not_considered"] > 0


def test_explain_with_a_config_alone_uses_its_policy_and_issuers(tmp_path: Path) -> None:
    policy = policy_file(
        tmp_path / "policy.yaml", allow("ci-haiku", groups=["ci"], models=["claude-haiku-*"])
    )
    config = gateway_config(tmp_path, Path(policy.name))  # relative to the config file
    claims = write_json(tmp_path / "claims.json", github_claims("acme", "refs/heads/main"))
    request = write_json(tmp_path / "request.json", HAIKU)
    result, neither = ztgate_policy_all(
        ["explain", "--config", config, "--claims", claims, "--request", request, "--json"],
        ["explain", "--claims", claims, "--request", request],
        env={"TEST_UPSTREAM_KEY": "unused"},
    )
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["decision"]["rule_ids"] == ["ci-haiku"]
    assert data["identity"] == {
        "principal": "github/repo:acme/app:ref:refs/heads/main",
        "issuer": "github",
        "groups": ["ci", "ci-prod"],
        "scopes": [],
    }
    assert neither.code == 2
    assert "give --policy FILE, or --config FILE" in neither.stderr
