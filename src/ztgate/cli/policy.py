"""``ztgate policy``: check, test, explain and simulate policy files, so that policy is reviewed
like code.

Every command decides with the gateway's own engine (``ztgate.policy``) on the context the
gateway would build; see ``docs/policy.md`` for the language and the case-table format.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from ztgate.audit.search import QueryError, parse_time
from ztgate.audit.store.base import AuditStore
from ztgate.audit.views import iso_time
from ztgate.cli.common import CANNOT_RUN, CONFIG_OPTION, WRONG, config_or_exit, count, fail
from ztgate.cli.store import with_store
from ztgate.config import GatewayConfig, IssuerConfig
from ztgate.core.decision import PolicyRequest
from ztgate.datapath.runtime import serving
from ztgate.offline.build import build_context, build_identity
from ztgate.offline.cases import CaseError, load_case_table, parse_identity, parse_request
from ztgate.offline.explain import Explanation, RequestExplanation, explain, request_facts
from ztgate.offline.runner import describe_limit, run_case
from ztgate.offline.simulate import Simulation, decide_again
from ztgate.policy.engine import Policy
from ztgate.policy.loader import PolicyError, build_policy, load_policy_file

# Exit codes: 0 as expected, 1 the policy or a case is wrong, 2 the command could not run.

_CONFIG_HELP = (
    "Gateway config: its identity.issuers turn claims into groups and scopes as the gateway "
    "does. It is loaded as `ztgate serve` loads it, so the variables it names must be set (any "
    "value does for the upstream key)."
)
_FILE = click.Path(dir_okay=False, path_type=Path)


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Check, test, explain and simulate policy files.",
)
def policy() -> None:
    """Check, test, explain and simulate policy files (the language: docs/policy.md).

    \b
      ztgate policy check policy.yaml
      ztgate policy test policy.yaml cases.yaml
      ztgate policy explain --policy policy.yaml --claims who.json --request what.json
      ztgate policy simulate new-policy.yaml --config ztgate.yaml --since 7d
    """


@policy.command(short_help="Validate and lint a policy file.")
@click.argument("file", type=_FILE)
@click.option("--strict", is_flag=True, help="Exit 1 on lint warnings too, not only on errors.")
def check(file: Path, strict: bool) -> None:
    """Validate and lint a policy file: unknown keys, bad globs, duplicate ids, rules that can
    never take effect. The file is the one `policy:` in the config points at, with a top-level
    `policy:` key (docs/policy.md).

    Prints `ok: N rules` and each warning; exits 0 when the policy is valid (1 with --strict
    and warnings), 1 with the errors, naming rule and key, when it is not.

    \b
      ztgate policy check --strict examples/policy/policy.yaml
    """
    try:
        compiled, warnings = load_policy_file(file)
    except PolicyError as exc:
        fail(str(exc), WRONG, command="ztgate policy")
    click.echo(f"ok: {count(len(compiled.rules), 'rule')}")
    for warning in warnings:
        click.echo(f"warning: {warning}")
    if strict and warnings:
        fail(f"{count(len(warnings), 'warning')} and --strict", WRONG, command="ztgate policy")


@policy.command("test", short_help="Run a table of test cases against a policy file.")
@click.argument("file", type=_FILE)
@click.argument("cases", type=_FILE)
@click.option("--config", "config_path", type=_FILE, help=_CONFIG_HELP)
def run_tests(file: Path, cases: Path, config_path: Path | None) -> None:
    """Run a table of cases against a policy file, like unit tests, for CI pipelines.

    Each case names an identity, a request and the expected effect (and, optionally, a rule
    among those that decided, a reason and a max_tokens cap); docs/policy.md describes the
    table and examples/policy/cases.yaml is one. Identities with claims alone need --config.

    Prints PASS or FAIL per case and a summary; exits 1 when a case fails, 2 when the policy,
    the table or the config cannot be used.

    \b
      ztgate policy test policy.yaml cases.yaml
      ztgate policy test policy.yaml cases-from-claims.yaml --config ztgate.yaml
    """
    compiled = _policy_or_exit(file)
    try:
        table = load_case_table(cases)
    except CaseError as exc:
        fail(str(exc), CANNOT_RUN, command="ztgate policy")
    issuers = _issuers(config_path)
    if issuers is None:
        derived = [i for i, c in enumerate(table.cases) if c.identity.derived]
        if derived:
            first = table.cases[derived[0]]
            fail(
                f"cases[{derived[0]}] {first.name!r}: identity: claims alone need --config, "
                f"to find the issuer of their iss ({count(len(derived), 'case')})",
                CANNOT_RUN,
                command="ztgate policy",
            )
    failed = 0
    for case in table.cases:
        result = run_case(compiled, case, issuers)
        if result.passed:
            click.echo(f"PASS {case.name}")
        else:
            failed += 1
            click.echo(f"FAIL {case.name}: {result.detail}")
    total = len(table.cases)
    click.echo(f"{total - failed} passed, {failed} failed ({count(total, 'case')})")
    if failed:
        sys.exit(WRONG)


@policy.command("explain", short_help="Explain the decision for one request.")
@click.option("--policy", "policy_path", type=_FILE, help="Policy file (default: the config's).")
@click.option(
    "--claims",
    "claims_path",
    type=_FILE,
    required=True,
    help="JSON: {issuer, subject, groups, scopes, claims}, or a token's raw claims (with iss; "
    "needs --config).",
)
@click.option(
    "--request",
    "request_path",
    type=_FILE,
    required=True,
    help="JSON: {method, path, headers, body}.",
)
@click.option("--config", "config_path", type=_FILE, help=_CONFIG_HELP)
@click.option("-v", "--verbose", is_flag=True, help="Also the rules that did not match, and why.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
def explain_command(
    policy_path: Path | None,
    claims_path: Path,
    request_path: Path,
    config_path: Path | None,
    verbose: bool,
    as_json: bool,
) -> None:
    """Print the decision for one request and the rules that made it (docs/policy.md).

    \b
      ztgate policy explain --policy policy.yaml --claims ci.json --request bash.json
      ztgate policy explain --config ztgate.yaml --claims token-claims.json \\
          --request req.json --verbose

    \b
    ci.json:   {"issuer": "github", "subject": "repo:acme/app:ref:refs/heads/main",
                "groups": ["ci"], "claims": {"repository_owner": "acme"}}
    bash.json: {"method": "POST", "path": "/v1/messages",
                "body": {"model": "claude-haiku-5-5", "max_tokens": 100,
                         "tools": [{"type": "bash_20250124", "name": "bash"}],
                         "messages": [{"role": "user", "content": "hi"}]}}
    """
    config = config_or_exit(config_path) if config_path is not None else None
    if policy_path is not None:
        compiled = _policy_or_exit(policy_path)
    elif config is not None:
        compiled = _config_policy_or_exit(config)
    else:
        raise click.UsageError("give --policy FILE, or --config FILE to use the config's policy")
    try:
        identity_spec = parse_identity(_read_data(claims_path), source=str(claims_path))
        request_spec = parse_request(_read_data(request_path), source=str(request_path))
        issuers = None if config is None else config.identity.issuers
        ctx = build_context(build_identity(identity_spec, issuers), request_spec)
    except CaseError as exc:
        fail(str(exc), CANNOT_RUN, command="ztgate policy")
    explanation = explain(compiled, ctx)
    assert ctx.identity is not None
    who = {
        "principal": ctx.identity.principal,
        "issuer": ctx.identity.issuer_name,
        "groups": sorted(ctx.identity.groups),
        "scopes": sorted(ctx.identity.scopes),
    }
    if as_json:
        click.echo(json.dumps(_explanation_data(explanation, who, verbose), indent=2))
    else:
        _print_explanation(explanation, who, verbose)


@policy.command("simulate", short_help="Decide recorded requests again with a new policy.")
@click.argument("new_policy", type=_FILE)
@CONFIG_OPTION
@click.option(
    "--since",
    default="7d",
    show_default=True,
    help="Requests from this time on: a look-back (7d, 12h) or an ISO 8601 time.",
)
@click.option("--until", help="Requests up to this time (same forms).")
@click.option("--json", "as_json", is_flag=True, help="Print the changes and summary as JSON.")
def simulate_command(
    new_policy: Path, config_path: Path | None, since: str, until: str | None, as_json: bool
) -> None:
    """Decide the requests the audit recorded again, with NEW_POLICY, and show every decision
    that would change (effect or deciding rules), why, and a summary. Nothing is sent
    anywhere: each request's recorded policy facts are decided by the new policy, as the
    gateway would have decided them (quotas aside).

    Exits 0 when no decision would change, 1 when some would, 2 when it cannot run.

    \b
      ztgate policy simulate new-policy.yaml --config ztgate.yaml --since 7d
    """
    config = config_or_exit(config_path)
    try:
        compiled, _warnings = load_policy_file(new_policy, serving=serving(config))
    except PolicyError as exc:
        fail(str(exc), CANNOT_RUN, command="ztgate policy")
    now = time.time()
    try:
        start = parse_time(since, now)
        end = None if until is None else parse_time(until, now)
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None

    async def work(store: AuditStore) -> Simulation:
        result = Simulation()
        async for event in store.events():
            if event.at >= start and (end is None or event.at <= end):
                decide_again(compiled, event, result)
        return result

    result = with_store(config, work)
    if as_json:
        click.echo(json.dumps(_simulation_data(result), indent=2))
    else:
        _print_simulation(result)
    if result.changed:
        sys.exit(WRONG)


def _policy_or_exit(path: Path) -> Policy:
    try:
        compiled, _warnings = load_policy_file(path)
    except PolicyError as exc:
        fail(str(exc), CANNOT_RUN, command="ztgate policy")
    return compiled


def _config_policy_or_exit(config: GatewayConfig) -> Policy:
    """The policy the gateway would serve with this config: its file, or the inline one."""
    try:
        if isinstance(config.policy, str):
            return load_policy_file(config.policy)[0]
        return build_policy(config.policy, source="config policy")[0]
    except PolicyError as exc:
        fail(str(exc), CANNOT_RUN, command="ztgate policy")


def _issuers(config_path: Path | None) -> Sequence[IssuerConfig] | None:
    return None if config_path is None else config_or_exit(config_path).identity.issuers


def _read_data(path: Path) -> Any:
    """JSON, or YAML for .yaml and .yml files."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaseError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(text)
        return json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise CaseError(f"{path} is not valid {path.suffix[1:].upper() or 'JSON'}: {exc}") from exc


def _explanation_data(
    explanation: Explanation, who: dict[str, Any], verbose: bool
) -> dict[str, Any]:
    decision = explanation.decision
    return {
        "decision": {
            "effect": decision.effect.value,
            "reason": decision.reason,
            "rule_ids": list(decision.rule_ids),
            "max_tokens": decision.max_tokens,
            "limits": [
                {
                    "owner": c.owner,
                    "metric": c.metric,
                    "window": c.window,
                    "limit": c.limit,
                    "rule_id": c.rule_id,
                }
                for c in decision.limits
            ],
        },
        "identity": who,
        "requests": [_request_data(part, verbose) for part in explanation.requests],
    }


def _request_data(part: RequestExplanation, verbose: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "facts": request_facts(part.request),
        "matched": [{"id": r.id, "effect": r.effect} for r in part.matched],
    }
    if verbose:
        data["not_matched"] = [
            {
                "id": r.id,
                "effect": r.effect,
                "unmet": [
                    {"condition": u.condition, "rule": u.rule, "request": u.request}
                    for u in r.unmet
                ],
            }
            for r in part.not_matched
        ]
        data["not_considered"] = part.not_considered
    return data


def _print_explanation(explanation: Explanation, who: dict[str, Any], verbose: bool) -> None:
    decision = explanation.decision
    click.echo(f"decision: {decision.effect.value}")
    click.echo(f"reason:   {decision.reason}")
    click.echo(f"rules:    {', '.join(decision.rule_ids) or '(none: the default applies)'}")
    if decision.max_tokens is not None:
        click.echo(f"max_tokens cap: {decision.max_tokens}")
    for check in decision.limits:
        click.echo(f"limit:    {describe_limit(check)}")
    groups = ", ".join(who["groups"]) or "none"
    click.echo(f"identity: {who['principal']} (groups: {groups})")
    for part in explanation.requests:
        req = part.request
        if len(explanation.requests) > 1:
            click.echo(f"\n{'batch' if req.label is None else f'batch request {req.label!r}'}:")
        click.echo(f"request:  {_facts_line(req)}")
        click.echo("matched:" if part.matched else "matched:  no rule")
        for rule in part.matched:
            click.echo(f"  {rule.effect:<6} {rule.id}")
        if verbose:
            click.echo("not matched:" if part.not_matched else "not matched: no other candidate")
            for rule in part.not_matched:
                click.echo(f"  {rule.effect:<6} {rule.id}")
                for unmet in rule.unmet:
                    click.echo(f"           {unmet}")
            if part.not_considered:
                click.echo(
                    f"not considered: {count(part.not_considered, 'rule')} for other "
                    "endpoints or groups"
                )


def _facts_line(req: PolicyRequest) -> str:
    """``endpoint=messages method=POST model=... tools=[bash_20250124]``: what policy saw."""
    shown = []
    for key, value in request_facts(req).items():
        if key == "label" or value in (None, [], False):
            continue
        if isinstance(value, list):
            shown.append(f"{key}=[{', '.join(value)}]")
        else:
            shown.append(f"{key}={'true' if value is True else value}")
    return " ".join(shown)


def _simulation_data(result: Simulation) -> dict[str, Any]:
    return {
        "summary": {
            "considered": result.considered,
            "changed": len(result.changes),
            "effect_changed": sum(1 for c in result.changes if c.effect_changed),
            "unchanged": result.unchanged,
            "skipped": len(result.skipped),
            "transitions": [
                {"from": old, "to": new, "count": n}
                for (old, new), n in sorted(result.transitions().items())
            ],
        },
        "changes": [
            {
                "seq": c.seq,
                "time": iso_time(c.at),
                "request_id": c.request_id,
                "principal": c.principal,
                "endpoint": c.endpoint,
                "model": c.model,
                "old": {
                    "effect": c.old.effect,
                    "rule_ids": list(c.old.rule_ids),
                    "reason": c.old.reason,
                },
                "new": {
                    "effect": c.new.effect.value,
                    "rule_ids": list(c.new.rule_ids),
                    "reason": c.new.reason,
                },
                "why": list(c.why),
            }
            for c in result.changes
        ],
        "skipped": [{"seq": s.seq, "reason": s.reason} for s in result.skipped],
    }


def _print_simulation(result: Simulation) -> None:
    for change in result.changes:
        old = f"{change.old.effect} ({', '.join(change.old.rule_ids) or 'default'})"
        new = f"{change.new.effect.value} ({', '.join(change.new.rule_ids) or 'default'})"
        where = " ".join(x for x in (change.endpoint, change.model) if x)
        click.echo(
            f"{iso_time(change.at)}  seq {change.seq}  {change.principal or '?'}  {where}  "
            f"{change.request_id or ''}".rstrip()
        )
        click.echo(f"  {old} -> {new}")
        for line in change.why:
            click.echo(f"  - {line}")
    transitions = ", ".join(
        f"{old} -> {new}: {n}" for (old, new), n in sorted(result.transitions().items())
    )
    changed = len(result.changes)
    summary = (
        f"{count(result.considered, 'recorded request')} decided again: "
        f"{changed} would change"
        + (f" ({transitions})" if transitions else "")
        + f", {result.unchanged} unchanged"
    )
    if result.skipped:
        summary += f", {len(result.skipped)} skipped (no recorded facts: purged or older events)"
    click.echo(("" if not result.changes else "\n") + summary)
