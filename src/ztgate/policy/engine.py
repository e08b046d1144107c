"""Policy evaluation: a pure function from plain request facts to a decision, compiled once per
policy load (globs precompiled, rules indexed by endpoint and group).

Combination, deterministic and independent of rule order: any matching ``deny`` wins; else any
``review``; else any ``allow``; else the default. Limits of all matching allow and review rules
combine to the strictest. A batch is decided request by request and denied if any one is.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import translate
from typing import Literal
from urllib.parse import urlsplit

from ztgate.core.decision import Decision, Effect, LimitCheck, PolicyRequest, skill_id
from ztgate.core.identity import claim_strings
from ztgate.core.maskplan import MaskPlan
from ztgate.core.reviews import ReviewRequirement
from ztgate.detectors.guardrails import GuardrailChecks
from ztgate.policy.document import (
    ENDPOINTS,
    Conditions,
    GuardrailCondition,
    Limits,
    Mask,
    PolicyDocument,
    Review,
    Rule,
)

_Test = Callable[[PolicyRequest], object]  # truthy when the rule condition holds


def _globs(patterns: Sequence[str]) -> Callable[[str], object]:
    """A test whose result is truthy when the value matches any glob (the regex's own bound
    ``match``: no Python frame of ours per call on the hot path)."""
    if not patterns:
        return lambda value: False  # an empty alternation would match everything
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns)).match


def _skill_globs(patterns: Sequence[str]) -> Callable[[str], object]:
    """Skill patterns: ``xlsx`` names an id, ``anthropic:xlsx`` a type and id, and
    ``custom:skill_01*@3`` a version too; a skill matches if any form does."""
    by_id = _globs([p for p in patterns if ":" not in p])
    by_type = _globs([p for p in patterns if ":" in p and "@" not in p])
    by_version = _globs([p for p in patterns if "@" in p])

    def test(ref: str) -> bool:
        typed = ref.partition("@")[0]
        return bool(by_id(skill_id(ref)) or by_type(typed) or by_version(ref))

    return test


def _url_globs(patterns: Sequence[str]) -> Callable[[str], object]:
    """URL patterns with ``://`` match scheme, host[:port] and path separately, on the URL as
    parsed, so ``https://*.acme.com/*`` can never be met by ``https://evil.com/x.acme.com`` or
    ``https://evil.com?.acme.com``; a pattern without ``://`` (such as ``*``) matches whole URLs."""
    whole = _globs([p for p in patterns if "://" not in p])
    parts = []
    for pattern in (p for p in patterns if "://" in p):
        scheme, _, rest = pattern.partition("://")
        host, slash, path = rest.partition("/")
        parts.append(
            (_globs([scheme.lower()]), _globs([host.lower()]), _globs([slash + path or "/"]))
        )

    def test(url: str) -> bool:
        if whole(url):
            return True
        parsed = _parse_url(url)
        if parsed is None:
            return False
        scheme, host, path = parsed
        return any(s(scheme) and h(host) and p(path) for s, h, p in parts)

    return test


_HOST = re.compile(r"[a-z0-9.-]+(?::[0-9]{1,5})?|\[[0-9a-f:.]+\](?::[0-9]{1,5})?")


def _parse_url(url: str) -> tuple[str, str, str] | None:
    """Scheme, host[:port] and path of a URL, or None when its authority is anything but a
    plain host (userinfo, backslashes, odd characters): such a URL is never granted by a
    host pattern."""
    try:
        split = urlsplit(url)
    except ValueError:
        return None
    host = split.netloc.lower()
    if not _HOST.fullmatch(host):
        return None
    return split.scheme.lower(), host, split.path or "/"


_Values = Callable[[PolicyRequest], Sequence[str]]
_Matcher = Callable[[Sequence[str]], Callable[[str], object]]


def _grant(patterns: Sequence[str] | None, values: _Values, matcher: _Matcher = _globs) -> _Test:
    """Allow rules: every requested item must be named; naming nothing grants nothing."""
    if patterns is None:
        return lambda req: not values(req)
    match = matcher(patterns)

    def test(req: PolicyRequest) -> bool:
        for value in values(req):  # noqa: SIM110 (hot path: no generator per call)
            if not match(value):
                return False
        return True

    return test


def _trigger(patterns: Sequence[str], values: _Values, matcher: _Matcher = _globs) -> _Test:
    """Deny and review rules: any requested item that is named sets the rule off."""
    match = matcher(patterns)

    def test(req: PolicyRequest) -> bool:
        for value in values(req):  # noqa: SIM110 (hot path: no generator per call)
            if match(value):
                return True
        return False

    return test


def _claims_test(wanted: dict[str, str | list[str]]) -> _Test:
    """Claim conditions with paths split and patterns compiled once, at load."""
    compiled = [
        (path, _globs([pattern] if isinstance(pattern, str) else pattern))
        for path, pattern in wanted.items()
    ]

    def test(req: PolicyRequest) -> bool:
        for path, match in compiled:
            if not any(match(value) for value in claim_strings(req.claims, path)):
                return False
        return True

    return test


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
        tests.append(_claims_test(dict(when.claims)))
    if when.client_certificates is not None:
        certificate = _globs(when.client_certificates)
        tests.append(lambda req: any(certificate(name) for name in req.client_certificate))
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
        (when.skills, lambda req: req.skills, _skill_globs),
        (when.tools, lambda req: req.tools, _globs),
        (when.mcp_servers, lambda req: req.mcp_servers, _url_globs),
    ]
    if allow and all(patterns is None for patterns, _, _ in capabilities):
        capabilities = []  # one test instead of three: nothing granted, nothing may be asked
        tests.append(lambda req: not (req.skills or req.tools or req.mcp_servers))
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
    if when.guardrails is not None:
        tests.append(_guardrails_test(when.guardrails))
    return tests


def _guardrails_test(condition: GuardrailCondition) -> _Test:
    names = frozenset(condition.any)
    places = frozenset(condition.in_) if condition.in_ is not None else None
    threshold = condition.score_at_least

    def test(req: PolicyRequest) -> bool:
        for hit in req.guardrails:
            if (
                hit.score >= threshold
                and (hit.category in names or not names.isdisjoint(hit.checks))
                and (places is None or hit.location in places)
            ):
                return True
        return False

    return test


def _outside_scope(req: PolicyRequest, prefix: str) -> bool:
    if not req.skills:
        return False
    granted = {s[len(prefix) :] for s in req.scopes if s.startswith(prefix)}
    return any(skill_id(ref) not in granted for ref in req.skills)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with its tests and obligations worked out once, at load."""

    order: int
    rule: Rule
    effect: Effect
    tests: tuple[_Test, ...]
    reason: str
    limits: tuple[tuple[Literal["requests", "tokens"], Literal["minute", "day"], int], ...]
    per_group: bool
    groups: frozenset[str]
    mask: MaskPlan | None
    review: ReviewRequirement | None

    def matches(self, req: PolicyRequest) -> bool:
        # A plain loop: this is the hot path, and a generator in all() costs a frame per rule.
        for test in self.tests:  # noqa: SIM110
            if not test(req):
                return False
        return True


_CANDIDATE_CACHE = 4096  # distinct (endpoint, groups) pairs remembered
_PRECEDENCE = (Effect.DENY, Effect.REVIEW, Effect.ALLOW)
_REASONS = {
    "deny": "this rule denies the request",
    "review": "this rule requires human review",
    "allow": "allowed by rule {}",
}


def _compile(order: int, rule: Rule, scope_prefix: str) -> CompiledRule:
    limits = rule.limits
    return CompiledRule(
        order=order,
        rule=rule,
        effect=Effect(rule.effect),
        tests=tuple(_tests(rule.when, rule.effect, scope_prefix)),
        reason=rule.message or _REASONS[rule.effect].format(rule.id),
        limits=_limit_specs(rule),
        per_group=limits is not None and limits.per == "group",
        groups=frozenset(rule.when.groups or ()),
        mask=_mask_plan(rule.mask),
        review=_review(rule) if rule.effect == "review" else None,
    )


def _review(rule: Rule) -> ReviewRequirement:
    spec = rule.review or Review()
    return ReviewRequirement(
        rule_id=rule.id,
        message=rule.message or _REASONS["review"],
        approvers=frozenset(spec.approvers or ()),
        require=str(spec.require),
        expires_in=spec.expires,
        grant_for=spec.grant,
        wait=spec.wait,
        caller_chooses_wait=spec.caller_chooses_wait,
    )


def _mask_plan(mask: Mask | None) -> MaskPlan | None:
    if mask is None:
        return None
    categories = mask.categories or (["pii", "secret", "custom"] if mask.action else [])
    return MaskPlan(
        dict(mask.detectors or {}),
        dict.fromkeys(categories, mask.action) if mask.action else {},
    )


class Policy:
    """A policy compiled for evaluation. Immutable: reloads build a new one and swap it in."""

    def __init__(self, document: PolicyDocument, checks: GuardrailChecks | None = None) -> None:
        self.document = document
        # The policy's rule packs, compiled at load; inspection scans with them.
        self.checks = checks if checks is not None else GuardrailChecks()
        self.rules = tuple(
            _compile(i, rule, document.skill_scope_prefix) for i, rule in enumerate(document.rules)
        )
        # index[endpoint][group, or None for rules about any group] -> rules, so a decision
        # looks only at rules that can apply (None cannot collide with a group's name)
        self._index: dict[str, dict[str | None, tuple[CompiledRule, ...]]] = {}
        for endpoint in ENDPOINTS:
            by_group: dict[str | None, list[CompiledRule]] = {}
            for compiled in self.rules:
                when = compiled.rule.when
                if when.endpoints is not None and endpoint not in when.endpoints:
                    continue
                groups: Sequence[str | None] = when.groups or (None,)
                for group in groups:
                    by_group.setdefault(group, []).append(compiled)
            self._index[endpoint] = {g: tuple(rules) for g, rules in by_group.items()}
        self._candidates: dict[tuple[str, frozenset[str]], tuple[CompiledRule, ...]] = {}
        self._default = Decision(
            Effect(document.default),
            "no rule allows this request" if document.default == "deny" else "allowed by default",
        )

    def candidates(self, req: PolicyRequest) -> tuple[CompiledRule, ...]:
        """The rules indexed under the request's endpoint and groups, once each, in file order.

        Remembered per (endpoint, groups): callers with the same groups share one list."""
        key = (req.endpoint, req.groups)
        found = self._candidates.get(key)
        if found is None:
            by_group = self._index.get(req.endpoint, {})
            rules = {c.order: c for c in by_group.get(None, ())}
            for group in req.groups:
                rules.update((c.order, c) for c in by_group.get(group, ()))
            found = tuple(rules[order] for order in sorted(rules))
            if len(self._candidates) >= _CANDIDATE_CACHE:
                self._candidates.clear()
            self._candidates[key] = found
        return found

    def matching(self, req: PolicyRequest) -> list[CompiledRule]:
        """The matching rules, in file order."""
        return [c for c in self.candidates(req) if c.matches(req)]

    def evaluate(self, req: PolicyRequest) -> Decision:
        matched = self.matching(req)
        if not matched:
            return self._default
        for effect in _PRECEDENCE:
            hits = [m for m in matched if m.effect is effect]
            if hits:
                return _decision(effect, hits, matched, req)
        return self._default

    def decide(self, requests: Sequence[PolicyRequest]) -> Decision:
        """One request, or a batch followed by its requests: the strictest decision wins."""
        if len(requests) == 1 and requests[0].label is None:
            return self.evaluate(requests[0])
        decisions = [
            d.for_batch_request(req.label)
            if req.label is not None and d.effect is not Effect.ALLOW
            else d
            for req, d in zip(requests, (self.evaluate(req) for req in requests), strict=True)
        ]
        denied = next((d for d in decisions if d.effect is Effect.DENY), None)
        return denied or Decision.combine(decisions)


def _decision(
    effect: Effect, decisive: list[CompiledRule], matched: list[CompiledRule], req: PolicyRequest
) -> Decision:
    first = decisive[0]
    ids = tuple(c.rule.id for c in decisive)
    if effect is Effect.DENY:
        return Decision(effect, first.reason, ids)
    reviews = tuple(c.review for c in decisive if c.review is not None)
    masks = [c.mask for c in matched if c.mask is not None and c.effect is not Effect.DENY]
    limited = [c for c in matched if c.rule.limits is not None and c.effect is not Effect.DENY]
    if not limited and not masks:
        return Decision(effect, first.reason, ids, reviews=reviews)
    caps = [c.rule.limits.max_tokens for c in limited if c.rule.limits and c.rule.limits.max_tokens]
    return Decision(
        effect,
        first.reason,
        ids,
        max_tokens=min(caps) if caps else None,
        limits=_limit_checks(limited, req),
        mask=MaskPlan.strictest(masks),
        reviews=reviews,
    )


_METRICS: tuple[tuple[str, Literal["requests", "tokens"], Literal["minute", "day"]], ...] = (
    ("requests_per_minute", "requests", "minute"),
    ("requests_per_day", "requests", "day"),
    ("tokens_per_minute", "tokens", "minute"),
    ("tokens_per_day", "tokens", "day"),
)


def _limit_specs(
    rule: Rule,
) -> tuple[tuple[Literal["requests", "tokens"], Literal["minute", "day"], int], ...]:
    limits: Limits | None = rule.limits
    if limits is None:
        return ()
    return tuple(
        (metric, window, getattr(limits, attribute))
        for attribute, metric, window in _METRICS
        if getattr(limits, attribute) is not None
    )


def _limit_checks(rules: Sequence[CompiledRule], req: PolicyRequest) -> tuple[LimitCheck, ...]:
    """One check per counter, at the strictest limit any matching rule sets for it."""
    strictest: dict[tuple[str, str, str], LimitCheck] = {}
    for compiled in rules:
        if compiled.per_group:
            owners = sorted(req.groups & compiled.groups)
            who = [f"group:{g}" for g in owners]
        else:
            who = [f"principal:{req.principal}"]
        for metric, window, limit in compiled.limits:
            for owner in who:
                key = (owner, metric, window)
                if key not in strictest or limit < strictest[key].limit:
                    strictest[key] = LimitCheck(owner, metric, window, limit, compiled.rule.id)
    return tuple(strictest[k] for k in sorted(strictest))
