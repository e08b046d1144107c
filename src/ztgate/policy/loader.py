"""Loading policy: parse, validate, compile and lint. An invalid policy is never half-applied.

Whatever the document holds, loading it ends one of two ways: a policy that compiles, or a
``PolicyError`` that names each place that is wrong, one line each (``config/problems.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ztgate.config.problems import dotted, invalid, problems
from ztgate.config.yamlfile import read_yaml
from ztgate.detectors.guardrails import CheckInfo, GuardrailChecks, builtin_checks, pack_checks
from ztgate.detectors.holdback import check_holdback
from ztgate.detectors.patterns import Detector
from ztgate.policy.document import ENDPOINTS, Conditions, PolicyDocument, Rule
from ztgate.policy.engine import Policy

_REQUEST_BODY_ENDPOINTS = {"messages", "count_tokens", "batches"}
_BODY_TRIGGERS = (
    "models", "skills", "tools", "mcp_servers", "stream", "max_tokens_above",
    "thinking_budget_above", "skills_outside_token_scope",
)  # fmt: skip
_SCOPE_ONLY = {"groups", "endpoints", "methods"}


class PolicyError(Exception):
    """The policy cannot be used; the message names the rule and the key."""


@dataclass(frozen=True)
class Serving:
    """What the gateway that will serve a policy offers, which every load of it (reloads too)
    is checked against: the detectors its scanner has (a misspelt ``payment_crad: block`` must
    not quietly block nothing), and the approvers a review rule that names none falls back on
    (a review nobody may approve must not hold requests forever)."""

    detectors: frozenset[str]
    default_approvers: frozenset[str] = frozenset()
    holdback: int | None = None  # the stream holdback every rule pack check must fit


def load_policy_file(
    path: str | Path, *, serving: Serving | None = None
) -> tuple[Policy, list[str]]:
    data = read_yaml(path, "policy file", PolicyError)
    return build_policy(data, source=str(path), serving=serving)


def build_policy(
    data: Any, *, source: str = "<policy>", serving: Serving | None = None
) -> tuple[Policy, list[str]]:
    """A compiled policy and its lint warnings, from a mapping with a top-level ``policy`` key
    (a policy file) or the policy document itself (inline in the config); checked against what
    the gateway offers when ``serving`` says it."""
    if isinstance(data, Mapping) and set(data) == {"policy"}:
        data = data["policy"]
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: expected a mapping with 'default' and 'rules'")
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(_describe(exc, data, source)) from None
    checks = _guardrail_checks(document, source, serving)
    if serving is not None:
        known = set(serving.detectors)
        if known:
            known |= {d.id for d in checks.detectors}
        _check_detectors(document, known, source)
        _check_approvers(document, serving.default_approvers, source)
    return Policy(document, checks), lint(document)


def _guardrail_checks(
    document: PolicyDocument, source: str, serving: Serving | None
) -> GuardrailChecks:
    """The rule packs compiled (each check held to the custom detectors' rules and, when the
    gateway says its holdback, to what a stream can cover), and the built-in checks that
    are switched off, which must exist."""
    builtin = {d.id for d in builtin_checks()[0]}
    guardrails = document.guardrails
    problems = [
        f"guardrails.disable: {name!r} is not a built-in check"
        for name in guardrails.disable
        if name not in builtin
    ]
    specs = [
        (c.id, c.category, c.score, c.message, c.patterns, c.words)
        for pack in guardrails.packs
        for c in pack.checks
    ]
    problems += [
        f"guardrails: check {check_id!r} shadows a built-in check"
        for check_id, *_ in specs
        if check_id in builtin
    ]
    detectors: list[Detector] = []
    infos: list[CheckInfo] = []
    for spec in [] if problems else specs:
        try:
            found, info = pack_checks([spec])
        except (ValueError, OverflowError, RecursionError) as exc:
            # ``re`` says a repeat count too large to compile (``a{99999999999}``) with an
            # OverflowError, and a pattern nested too deep for its parser with RecursionError.
            problems.append(f"guardrails: {_pattern_problem(spec[0], exc)}")
            continue
        detectors += found
        infos += info
    if not problems and serving is not None and serving.holdback is not None and detectors:
        try:
            check_holdback(detectors, serving.holdback)
        except ValueError as exc:
            problems.append(f"guardrails: {exc}")
    if problems:
        raise PolicyError(invalid(source, problems, footer="(see docs/guardrails.md)"))
    return GuardrailChecks(tuple(detectors), tuple(infos), frozenset(guardrails.disable))


def _check_detectors(document: PolicyDocument, known: set[str], source: str) -> None:
    """No detectors known means inspection is off: then no rule may depend on it."""
    if not known:
        problems = [
            f"rule {rule.id!r}: needs inspection (mask or findings), which is switched off"
            for rule in document.rules
            if rule.mask is not None or rule.when.findings is not None
        ]
    else:
        problems = [
            f"rule {rule.id!r}: unknown detector or guardrail check {name!r}"
            for rule in document.rules
            for name in sorted(rule.detector_names() - known)
        ]
    if problems:
        raise PolicyError(invalid(source, problems, footer="(see docs/data-protection.md)"))


def _check_approvers(document: PolicyDocument, defaults: frozenset[str], source: str) -> None:
    if defaults:
        return
    problems = [
        f"rule {rule.id!r}: a review rule needs approvers: name them under review.approvers, "
        "or set reviews.approvers in the config"
        for rule in document.rules
        if rule.effect == "review" and (rule.review is None or rule.review.approvers is None)
    ]
    if problems:
        raise PolicyError(invalid(source, problems))


def _describe(exc: ValidationError, data: Mapping[str, Any], source: str) -> str:
    found = data.get("rules")
    rules = found if isinstance(found, list) else []

    def locate(loc: Sequence[Any]) -> str:
        """A rule by its id, where it has one."""
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int) and loc[1] < len(rules):
            rule = rules[loc[1]]
            rule_id = rule.get("id") if isinstance(rule, Mapping) else None
            if isinstance(rule_id, str) and rule_id:
                return f"rule {rule_id!r}: " + (dotted(loc[2:]) or "(the rule)")
        return dotted(loc) or "(top level)"

    lines = problems(exc, unknown_key="unknown key (see docs/policy.md)", locate=locate)
    return invalid(source, lines)


def _pattern_problem(check_id: str, exc: Exception) -> str:
    """What is wrong with one rule pack check (its ValueError names it already)."""
    if isinstance(exc, ValueError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return f"check {check_id!r}: a pattern is nested too deeply to compile"
    return f"check {check_id!r}: a pattern cannot be compiled: {exc}"


def _set_conditions(when: Conditions) -> set[str]:
    return {name for name in Conditions.model_fields if getattr(when, name) is not None}


def _covers(wider: Rule, narrower: Rule) -> bool:
    """True when ``wider`` matches every request ``narrower`` can match (conservatively)."""
    a, b = wider.when, narrower.when
    if not _set_conditions(a) <= _SCOPE_ONLY:
        return False
    for name in ("groups", "endpoints", "methods"):
        mine, theirs = getattr(a, name), getattr(b, name)
        if mine is not None and (theirs is None or not set(theirs) <= set(mine)):
            return False
    return True


def lint(document: PolicyDocument) -> list[str]:
    """Rules that can never take effect: unreachable, or shadowed by a deny."""
    warnings: list[str] = []
    for rule in document.rules:
        when = rule.when
        endpoints = set(when.endpoints or ENDPOINTS)
        body = [c for c in _BODY_TRIGGERS if getattr(when, c) is not None]
        if body and rule.effect != "allow" and not endpoints & _REQUEST_BODY_ENDPOINTS:
            warnings.append(
                f"rule {rule.id!r} is unreachable: {', '.join(body)} never occur on "
                f"{', '.join(sorted(endpoints))}"
            )
        if rule.effect == "allow" and when.skills_outside_token_scope and when.skills is None:
            warnings.append(
                f"rule {rule.id!r} is unreachable: an allow rule that names no skills grants "
                "none, so no requested skill can be outside the token's scope"
            )
        if rule.effect != "deny":
            for other in document.rules:
                if other.effect == "deny" and _covers(other, rule):
                    warnings.append(f"rule {rule.id!r} is shadowed by deny rule {other.id!r}")
                    break
    seen: dict[str, str] = {}
    for rule in document.rules:
        key = rule.effect + rule.when.model_dump_json()
        if key in seen:
            warnings.append(f"rule {rule.id!r} repeats rule {seen[key]!r}")
        seen.setdefault(key, rule.id)
    return warnings
