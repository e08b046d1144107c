"""Why a policy decided as it did: every rule, and for each request the conditions it failed."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ztgate.core.context import RequestContext
from ztgate.core.decision import Decision, PolicyRequest
from ztgate.core.identity import claim_at
from ztgate.policy.document import Conditions, PolicyDocument, Rule
from ztgate.policy.engine import Policy
from ztgate.policy.request import from_context

_GRANTS = ("skills", "tools", "mcp_servers")
_INDEXED = ("groups", "endpoints")  # enforced by the engine's index, not by a rule's tests


@dataclass(frozen=True, slots=True)
class Unmet:
    """A condition a request failed: what the rule asks (None: an allow rule's grant of
    nothing) and what the request has, as plain JSON data."""

    condition: str
    rule: Any
    request: Any

    def __str__(self) -> str:
        if self.rule is None:
            return f"{self.condition}: requested {_show(self.request)}, the rule grants none"
        return f"{self.condition}: rule wants {_show(self.rule)}, request has {_show(self.request)}"


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    id: str
    effect: str
    unmet: tuple[Unmet, ...] = ()  # for a rule that did not match: the conditions it failed


@dataclass(frozen=True, slots=True)
class RequestExplanation:
    request: PolicyRequest
    matched: tuple[RuleOutcome, ...]
    not_matched: tuple[RuleOutcome, ...]  # candidates: rules for its endpoint and groups
    not_considered: int  # rules for other endpoints or groups


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    requests: tuple[RequestExplanation, ...]  # one, or a batch followed by its requests


def explain(policy: Policy, ctx: RequestContext) -> Explanation:
    """The decision, and for each request the rules that matched and why the others did not."""
    requests = from_context(ctx)
    parts = []
    for req in requests:
        candidates = policy.candidates(req)
        matched = {c.order for c in policy.matching(req)}
        hits = [c for c in candidates if c.order in matched]
        misses = [c for c in candidates if c.order not in matched]
        parts.append(
            RequestExplanation(
                req,
                tuple(RuleOutcome(c.rule.id, c.rule.effect) for c in hits),
                tuple(
                    RuleOutcome(c.rule.id, c.rule.effect, unmet_conditions(policy, c.rule, req))
                    for c in misses
                ),
                len(policy.rules) - len(candidates),
            )
        )
    return Explanation(policy.decide(requests), tuple(parts))


def unmet_conditions(policy: Policy, rule: Rule, req: PolicyRequest) -> tuple[Unmet, ...]:
    """The conditions of ``rule`` that ``req`` fails, each decided alone by the real engine.

    In an allow rule, ``skills``, ``tools`` and ``mcp_servers`` it does not name are grants of
    nothing, so they are conditions too; while one is tried the other grants are opened to
    ``*`` so that only it can fail.
    """
    when = rule.when
    names = [n for n in Conditions.model_fields if getattr(when, n) is not None]
    names = [n for n in names if n not in _INDEXED]
    allow = rule.effect == "allow"
    if allow:
        names += [g for g in _GRANTS if getattr(when, g) is None]
    unmet = []
    for name in names:
        probe: dict[str, Any] = {g: ["*"] for g in _GRANTS if g != name} if allow else {}
        probe[name] = getattr(when, name)
        single = PolicyDocument(
            skill_scope_prefix=policy.document.skill_scope_prefix,
            rules=[Rule(id=rule.id, effect=rule.effect, when=Conditions.model_validate(probe))],
        )
        if not Policy(single).matching(req):
            unmet.append(_unmet(name, probe[name], req, policy))
    return tuple(unmet)


def _unmet(name: str, wanted: Any, req: PolicyRequest, policy: Policy) -> Unmet:
    facts: dict[str, Any] = {
        "principals": req.principal,
        "issuers": req.issuer,
        "scopes": req.scopes,
        "methods": req.method,
        "models": req.model,
        "skills": req.skills,
        "tools": req.tools,
        "mcp_servers": req.mcp_servers,
        "betas": req.betas,
        "stream": req.stream,
        "max_tokens_above": req.max_tokens,
        "thinking_budget_above": req.thinking_budget,
        "request_bytes_above": req.request_bytes,
        "findings": req.findings,
    }
    if name == "claims":
        fact: Any = {path: claim_at(req.claims, path) for path in wanted}
    elif name == "skills_outside_token_scope":
        prefix = policy.document.skill_scope_prefix
        scoped = sorted(s for s in req.scopes if s.startswith(prefix))
        fact = {"skills": req.skills, "scopes": scoped}
    else:
        fact = facts[name]
    return Unmet(name, _plain(wanted), _plain(fact))


def request_facts(req: PolicyRequest) -> dict[str, Any]:
    """What policy saw of the request, as plain JSON data."""
    return {
        "label": req.label,
        "endpoint": req.endpoint,
        "method": req.method,
        "model": req.model,
        "skills": list(req.skills),
        "tools": list(req.tools),
        "mcp_servers": list(req.mcp_servers),
        "betas": list(req.betas),
        "stream": req.stream,
        "max_tokens": req.max_tokens,
        "thinking_budget": req.thinking_budget,
        "request_bytes": req.request_bytes,
    }


def _show(value: Any) -> str:
    return json.dumps(_plain(value), ensure_ascii=False, sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
