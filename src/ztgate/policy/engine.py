"""Policy evaluation: a pure function from plain request facts to a decision, compiled once per
policy load (globs precompiled, rules indexed by endpoint and group).

Combination, deterministic and independent of rule order: any matching ``deny`` wins; else any
``review``; else any ``allow``; else the default. Limits of all matching allow and review rules
combine to the strictest. A batch is decided request by request and denied if any one is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import translate
from typing import Literal

from ztgate.identity.claims import claim_at, matches
from ztgate.policy.decision import Decision, Effect, LimitCheck
from ztgate.policy.document import ENDPOINTS, Conditions, Limits, PolicyDocument, Rule
from ztgate.policy.request import PolicyRequest

_Test = Callable[[PolicyRequest], bool]
_ANY = "*"


def _globs(patterns: Sequence[str]) -> Callable[[str], bool]:
    if not patterns:
        return lambda value: False  # an empty alternation would match everything
    regex = re.compile("|".join(f"(?:{translate(p)})" for p in patterns))
    return lambda value: regex.match(value) is not None


def _url_globs(patterns: Sequence[str]) -> Callable[[str], bool]:
    """URL patterns match scheme, host and path separately, so ``https://*.acme.com/*`` can
    never match ``https://evil.com/x.acme.com/sse``: a ``*`` in the host stays in the host."""
    compiled = []
    for pattern in patterns:
        scheme, host, path = _url_parts(pattern)
        compiled.append((_globs([scheme]), _globs([host]), _globs([path or "/"])))

    def test(url: str) -> bool:
        scheme, host, path = _url_parts(url)
        return any(s(scheme) and h(host) and p(path or "/") for s, h, p in compiled)

    return test


def _url_parts(url: str) -> tuple[str, str, str]:
    scheme, _, rest = url.partition("://")
    host, slash, path = rest.partition("/")
    return scheme.lower(), host.lower(), slash + path


_Values = Callable[[PolicyRequest], Sequence[str]]
_Matcher = Callable[[Sequence[str]], Callable[[str], bool]]


def _grant(patterns: Sequence[str] | None, values: _Values, matcher: _Matcher = _globs) -> _Test:
    """Allow rules: every requested item must be named; naming nothing grants nothing."""
    if patterns is None:
        return lambda req: not values(req)
    match = matcher(patterns)
    return lambda req: all(match(v) for v in values(req))


def _trigger(patterns: Sequence[str], values: _Values, matcher: _Matcher = _globs) -> _Test:
    """Deny and review rules: any requested item that is named sets the rule off."""
    match = matcher(patterns)
    return lambda req: any(match(v) for v in values(req))


def _above(limit: int, value: Callable[[PolicyRequest], int | None]) -> _Test:
    def test(req: PolicyRequest) -> bool:
        got = value(req)
        return got is not None and got > limit

    return test


def _tests(when: Conditions, effect: str, scope_prefix: str) -> list[_Test]:
    tests: list[_Test] = []
    allow = effect == "allow"
    if when.principals is not None:
        principal = _globs(when.principals)
        tests.append(lambda req: principal(req.principal))
    if when.issuers is not None:
        issuers = frozenset(when.issuers)
        tests.append(lambda req: req.issuer in issuers)
    if when.claims is not None:
        wanted = dict(when.claims)
        tests.append(
            lambda req: all(matches(claim_at(req.claims, p), v) for p, v in wanted.items())
        )
    if when.scopes is not None:
        scopes = frozenset(when.scopes)
        tests.append(lambda req: not scopes.isdisjoint(req.scopes))
    if when.methods is not None:
        methods = frozenset(when.methods)
        tests.append(lambda req: req.method in methods)
    if when.models is not None:
        model = _globs(when.models)
        if allow:  # a request without a model (listing models, files) is not restricted by it
            tests.append(lambda req: req.model is None or model(req.model))
        else:
            tests.append(lambda req: req.model is not None and model(req.model))
    capabilities: list[tuple[list[str] | None, _Values, _Matcher]] = [
        (when.skills, lambda req: req.skills, _globs),
        (when.tools, lambda req: req.tools, _globs),
        (when.mcp_servers, lambda req: req.mcp_servers, _url_globs),
    ]
    for patterns, values, matcher in capabilities:
        if allow:
            tests.append(_grant(patterns, values, matcher))
        elif patterns is not None:
            tests.append(_trigger(patterns, values, matcher))
    if when.betas is not None:
        betas: list[str] = when.betas
        tests.append(
            _grant(betas, lambda r: r.betas) if allow else _trigger(betas, lambda r: r.betas)
        )
    if when.stream is not None:
        stream = when.stream
        tests.append(lambda req: req.stream is stream)
    if when.max_tokens_above is not None:
        tests.append(_above(when.max_tokens_above, lambda r: r.max_tokens))
    if when.thinking_budget_above is not None:
        tests.append(_above(when.thinking_budget_above, lambda r: r.thinking_budget))
    if when.request_bytes_above is not None:
        tests.append(_above(when.request_bytes_above, lambda r: r.request_bytes))
    if when.skills_outside_token_scope is not None:
        expected = when.skills_outside_token_scope
        tests.append(lambda req: _outside_scope(req, scope_prefix) is expected)
    if when.findings is not None:
        findings = frozenset(when.findings)
        tests.append(lambda req: not findings.isdisjoint(req.findings))
    return tests


def _outside_scope(req: PolicyRequest, prefix: str) -> bool:
    granted = {s[len(prefix) :] for s in req.scopes if s.startswith(prefix)}
    return any(skill not in granted for skill in req.skills)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    order: int
    rule: Rule
    tests: tuple[_Test, ...]

    def matches(self, req: PolicyRequest) -> bool:
        return all(test(req) for test in self.tests)


class Policy:
    """A policy compiled for evaluation. Immutable: reloads build a new one and swap it in."""

    def __init__(self, document: PolicyDocument) -> None:
        self.document = document
        self.rules = tuple(
            CompiledRule(
                i, rule, tuple(_tests(rule.when, rule.effect, document.skill_scope_prefix))
            )
            for i, rule in enumerate(document.rules)
        )
        # index[endpoint][group or "*"] -> rules, so a decision looks only at rules that can apply
        self._index: dict[str, dict[str, tuple[CompiledRule, ...]]] = {}
        for endpoint in ENDPOINTS:
            by_group: dict[str, list[CompiledRule]] = {}
            for compiled in self.rules:
                when = compiled.rule.when
                if when.endpoints is not None and endpoint not in when.endpoints:
                    continue
                for group in when.groups or (_ANY,):
                    by_group.setdefault(group, []).append(compiled)
            self._index[endpoint] = {g: tuple(rules) for g, rules in by_group.items()}
        self._default = Decision(
            Effect(document.default),
            "no rule allows this request" if document.default == "deny" else "allowed by default",
        )

    def candidates(self, req: PolicyRequest) -> list[CompiledRule]:
        by_group = self._index.get(req.endpoint, {})
        found = {r.order: r for r in by_group.get(_ANY, ())}
        for group in req.groups:
            found.update((r.order, r) for r in by_group.get(group, ()))
        return [found[order] for order in sorted(found)]

    def matching(self, req: PolicyRequest) -> list[CompiledRule]:
        return [compiled for compiled in self.candidates(req) if compiled.matches(req)]

    def evaluate(self, req: PolicyRequest) -> Decision:
        matched = self.matching(req)
        for effect in (Effect.DENY, Effect.REVIEW):
            hits = [m.rule for m in matched if m.rule.effect == effect.value]
            if hits:
                return _decision(effect, hits, matched, req)
        allows = [m.rule for m in matched if m.rule.effect == "allow"]
        if allows:
            return _decision(Effect.ALLOW, allows, matched, req)
        return self._default

    def decide(self, requests: Sequence[PolicyRequest]) -> Decision:
        """One request, or a batch followed by its requests: the strictest decision wins."""
        decisions = [self.evaluate(req) for req in requests]
        for effect in (Effect.DENY, Effect.REVIEW):
            for req, decision in zip(requests, decisions, strict=True):
                if decision.effect is effect:
                    if req.label is None:
                        return decision
                    return decision.for_batch_request(req.label)
        return Decision.combine_allows(decisions)


def _decision(
    effect: Effect, decisive: list[Rule], matched: list[CompiledRule], req: PolicyRequest
) -> Decision:
    first = decisive[0]
    reason = (
        first.message
        or {
            Effect.DENY: f"denied by rule {first.id}",
            Effect.REVIEW: f"rule {first.id} requires human review",
            Effect.ALLOW: f"allowed by rule {first.id}",
        }[effect]
    )
    limited = [m.rule for m in matched if m.rule.limits is not None and m.rule.effect != "deny"]
    return Decision(
        effect,
        reason,
        tuple(rule.id for rule in decisive),
        max_tokens=_min(r.limits.max_tokens for r in limited if r.limits),
        limits=_limit_checks(limited, req) if effect is not Effect.DENY else (),
    )


def _min(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


_METRICS: tuple[tuple[str, Literal["requests", "tokens"], Literal["minute", "day"]], ...] = (
    ("requests_per_minute", "requests", "minute"),
    ("requests_per_day", "requests", "day"),
    ("tokens_per_minute", "tokens", "minute"),
    ("tokens_per_day", "tokens", "day"),
)


def _limit_checks(rules: Sequence[Rule], req: PolicyRequest) -> tuple[LimitCheck, ...]:
    """One check per counter, at the strictest limit any matching rule sets for it."""
    strictest: dict[tuple[str, str, str], LimitCheck] = {}
    for rule in rules:
        limits: Limits | None = rule.limits
        if limits is None:
            continue
        if limits.per == "group":
            owners = sorted(req.groups & set(rule.when.groups or ()))
            who = [f"group:{g}" for g in owners]
        else:
            who = [f"principal:{req.principal}"]
        for attribute, metric, window in _METRICS:
            limit = getattr(limits, attribute)
            if limit is None:
                continue
            for owner in who:
                key = (owner, metric, window)
                if key not in strictest or limit < strictest[key].limit:
                    strictest[key] = LimitCheck(owner, metric, window, limit, rule.id)
    return tuple(strictest[k] for k in sorted(strictest))
