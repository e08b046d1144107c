"""Policy test cases: an identity and a request, built into the same context the gateway builds,
decided by the real engine. Pure functions, shared by ``ztgate policy test`` and ``explain``.

The case-table format is documented in ``docs/policy.md``; ``examples/policy/cases.yaml`` is a
worked example. Nothing here re-implements policy: a case goes through :func:`from_context` and
:meth:`Policy.decide`, exactly as a request through the gateway does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ztgate.config.model import IssuerConfig
from ztgate.config.yamlfile import read_yaml
from ztgate.core.context import Body, RequestContext
from ztgate.core.decision import Decision, LimitCheck, PolicyRequest
from ztgate.core.errors import AuthenticationFailed, InvalidRequest
from ztgate.core.identity import Identity, claim_at
from ztgate.identity.claims import IssuerRules, scopes
from ztgate.policy.document import Conditions, PolicyDocument, Rule
from ztgate.policy.engine import Policy
from ztgate.policy.request import from_context
from ztgate.wire.params import check_request
from ztgate.wire.routes import match_route

_GRANTS = ("skills", "tools", "mcp_servers")
_INDEXED = ("groups", "endpoints")  # enforced by the engine's index, not by a rule's tests
_IDENTITY_KEYS = frozenset({"issuer", "subject", "groups", "scopes", "claims"})
_Model = TypeVar("_Model", bound=BaseModel)


class CaseError(Exception):
    """A case (or an identity or request file) cannot be built; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentitySpec(_Strict):
    """Who asks: given outright (``issuer`` is the issuer's short name, as policy sees it), or
    as ``claims`` alone, from which the issuer in the config derives groups and scopes."""

    issuer: str | None = None
    subject: str | None = None
    groups: list[str] | None = None
    scopes: list[str] | None = None
    claims: dict[str, Any] = Field(default_factory=dict)

    @field_validator("issuer", "subject")
    @classmethod
    def _present(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty")
        return value

    @property
    def derived(self) -> bool:
        """Claims only: the config's issuer decides principal, groups and scopes."""
        return self.issuer is None

    @model_validator(mode="after")
    def _one_form(self) -> IdentitySpec:
        if self.issuer is None:
            given = [k for k in ("subject", "groups", "scopes") if getattr(self, k) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} need issuer; give issuer and subject, or claims alone "
                    "(with iss, and --config)"
                )
            if "iss" not in self.claims:
                raise ValueError("give issuer and subject, or claims with iss (and --config)")
        elif self.subject is None:
            raise ValueError("an identity with issuer needs subject")
        return self


class RequestSpec(_Strict):
    """What is asked: method and path (routed as the gateway routes them), headers, JSON body."""

    method: str
    path: str
    headers: dict[str, str | list[str]] = Field(default_factory=dict)
    body: dict[str, Any] | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        return value.upper()

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a path starts with '/', for example /v1/messages")
        return value


class Expectation(_Strict):
    effect: Literal["allow", "deny", "review"]
    rule: str | None = None  # must be among the decision's rule ids
    reason: str | None = None  # must appear in the decision's reason
    max_tokens: int | None = Field(default=None, ge=1)  # the max_tokens cap the decision sets


class Case(_Strict):
    name: str = Field(min_length=1)
    identity: IdentitySpec
    request: RequestSpec
    expect: Expectation


class CaseTable(_Strict):
    identities: dict[str, IdentitySpec] = Field(default_factory=dict)
    cases: list[Case] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: Case
    passed: bool
    detail: str  # why it failed, or the decision it got
    decision: Decision | None = None


def load_case_table(path: str | Path) -> CaseTable:
    """Read and validate a case table; raises :class:`CaseError` naming the case and key."""
    return parse_case_table(read_yaml(path, "case table", CaseError), source=str(path))


def parse_case_table(data: Any, *, source: str = "<cases>") -> CaseTable:
    """A table with ``cases`` (and optional named ``identities`` the cases refer to by name)."""
    if not isinstance(data, Mapping):
        raise CaseError(f"{source}: expected a mapping with 'cases'")
    problems: list[str] = []
    data, unresolved = _resolve_identity_names(data, problems)
    try:
        table = CaseTable.model_validate(data)
    except ValidationError as exc:
        problems += _errors(exc, data, skip={("cases", i, "identity") for i in unresolved})
        table = None
    if table is not None:
        seen: dict[str, int] = {}
        for index, case in enumerate(table.cases):
            if case.name in seen:
                problems.append(
                    f"cases[{index}] {case.name!r}: name: cases[{seen[case.name]}] has this name"
                )
            seen.setdefault(case.name, index)
    if problems or table is None:
        raise CaseError("\n".join([f"{source} is invalid:", *(f"  {p}" for p in problems)]))
    return table


def _resolve_identity_names(
    data: Mapping[str, Any], problems: list[str]
) -> tuple[Mapping[str, Any], list[int]]:
    """Cases may name an identity from ``identities`` instead of spelling it out."""
    named = data.get("identities")
    cases = data.get("cases")
    if not isinstance(cases, list):
        return data, []
    resolved = []
    unresolved = []
    for index, case in enumerate(cases):
        if isinstance(case, Mapping) and isinstance(case.get("identity"), str):
            name = case["identity"]
            if isinstance(named, Mapping) and name in named:
                case = {**case, "identity": named[name]}
            else:
                unresolved.append(index)
                problems.append(
                    f"{_case_label(cases, index)}: identity: no identity named {name!r} "
                    "under identities"
                )
        resolved.append(case)
    return {**data, "cases": resolved}, unresolved


def _case_label(cases: Sequence[Any], index: int) -> str:
    case = cases[index] if index < len(cases) else None
    name = case.get("name") if isinstance(case, Mapping) else None
    return f"cases[{index}] {name!r}" if isinstance(name, str) else f"cases[{index}]"


def _errors(exc: ValidationError, data: Mapping[str, Any], skip: set[tuple[Any, ...]]) -> list[str]:
    found = data.get("cases")
    cases = found if isinstance(found, list) else []
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        if tuple(loc[:3]) in skip:
            continue  # already reported as an unknown identity name
        if len(loc) >= 2 and loc[0] == "cases" and isinstance(loc[1], int):
            where = _case_label(cases, loc[1]) + ": " + (_dotted(loc[2:]) or "(the case)")
        else:
            where = _dotted(loc) or "(top level)"
        lines.append(f"{where}: {_message(error)}")
    return lines


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key (see docs/policy.md)"
    return str(error["msg"]).removeprefix("Value error, ")


def parse_identity(data: Any, *, source: str = "<identity>") -> IdentitySpec:
    """An identity file: the identity form, or a token's raw claims (with ``iss``)."""
    if isinstance(data, Mapping) and "iss" in data and not set(data) <= _IDENTITY_KEYS:
        data = {"claims": dict(data)}
    return _validate(IdentitySpec, data, source)


def parse_request(data: Any, *, source: str = "<request>") -> RequestSpec:
    return _validate(RequestSpec, data, source)


def _validate(model: type[_Model], data: Any, source: str) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {_dotted(e['loc']) or '(top level)'}: {_message(e)}"
            for e in exc.errors(include_url=False, include_input=False)
        ]
        raise CaseError("\n".join([f"{source} is invalid:", *lines])) from None


def build_identity(spec: IdentitySpec, issuers: Sequence[IssuerConfig] | None) -> Identity:
    """The identity the gateway would put on the context after verifying such a token.

    With claims alone, the issuer is the configured one whose ``issuer`` equals ``iss``, its
    claim rules are applied (a token they refuse is an error) and groups and scopes come from
    them, as in :class:`~ztgate.identity.verifier.TokenVerifier`. Signature, ``aud`` and ``exp``
    are not checked: a case describes a token that verified.
    """
    claims = dict(spec.claims)
    exp = claims.get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else 0.0
    if not spec.derived:
        assert spec.issuer is not None
        assert spec.subject is not None
        issuer_url = claims.get("iss") if isinstance(claims.get("iss"), str) else ""
        if issuers is not None:
            config = next((i for i in issuers if i.name == spec.issuer), None)
            if config is None:
                raise CaseError(f"identity.issuer: the config has no issuer named {spec.issuer!r}")
            issuer_url = config.issuer
        return Identity(
            issuer_name=spec.issuer,
            issuer=str(issuer_url),
            subject=spec.subject,
            claims=claims,
            expires_at=expires_at,
            groups=frozenset(spec.groups or ()),
            scopes=frozenset(spec.scopes or ()),
        )
    if issuers is None:
        raise CaseError("identity: claims alone need --config, to find the issuer of their iss")
    iss = claims.get("iss")
    config = next((i for i in issuers if i.issuer == iss), None)
    if config is None:
        raise CaseError(f"identity.claims.iss: no issuer in the config has issuer {iss!r}")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise CaseError("identity.claims.sub: a token needs a subject")
    rules = IssuerRules(config)
    try:
        rules.check(claims)
    except AuthenticationFailed as exc:
        raise CaseError(f"the gateway would refuse this token (401): {exc.message}") from None
    return Identity(
        issuer_name=config.name,
        issuer=config.issuer,
        subject=subject,
        claims=claims,
        expires_at=expires_at,
        groups=rules.groups(claims),
        scopes=scopes(claims),
    )


def build_context(identity: Identity, spec: RequestSpec) -> RequestContext:
    """The context as the gateway has it when it decides: routed, parsed, identified."""
    path, _, query = spec.path.partition("?")
    route = match_route(spec.method, path)
    if route is None:
        raise CaseError(
            f"{spec.method} {path} is not an endpoint this gateway serves (it answers 404)"
        )
    headers = [
        (name.lower().encode(), value.encode())
        for name, values in spec.headers.items()
        for value in ([values] if isinstance(values, str) else values)
    ]
    ctx = RequestContext(
        request_id="policy-case",
        method=spec.method,
        path=path,
        query_string=query.encode(),
        headers=headers,
        client=None,
        scheme="http",
        route=route,
        identity=identity,
    )
    if route.body is Body.JSON:
        if spec.body is None:
            raise CaseError(f"request.body: {spec.method} {path} needs a JSON body")
        try:
            ctx.body = orjson.dumps(spec.body)
        except TypeError as exc:
            raise CaseError(f"request.body: cannot be written as JSON: {exc}") from None
        ctx.payload = orjson.loads(ctx.body)  # what the gateway parses: YAML dates become strings
        ctx.bytes_in = len(ctx.body)
        try:
            check_request(route.endpoint.value, ctx.payload)
        except InvalidRequest as exc:
            raise CaseError(f"request.body: the gateway refuses it before policy: {exc}") from None
    elif spec.body is not None:
        raise CaseError(f"request.body: {spec.method} {path} takes no JSON body")
    return ctx


def decide(policy: Policy, ctx: RequestContext) -> Decision:
    """The gateway's decision for this context."""
    return policy.decide(from_context(ctx))


def run_case(
    policy: Policy, case: Case, issuers: Sequence[IssuerConfig] | None = None
) -> CaseResult:
    """Decide one case and compare the decision with what it expects."""
    try:
        ctx = build_context(build_identity(case.identity, issuers), case.request)
    except CaseError as exc:
        return CaseResult(case, False, str(exc))
    decision = decide(policy, ctx)
    return CaseResult(case, *_compare(policy, case.expect, decision), decision)


def _compare(policy: Policy, expect: Expectation, decision: Decision) -> tuple[bool, str]:
    got = describe(decision)
    if expect.rule is not None and expect.rule not in {r.rule.id for r in policy.rules}:
        return False, f"expected rule {expect.rule!r} is not in the policy; got {got}"
    wanted = expect.effect + (f" by {expect.rule}" if expect.rule else "")
    if decision.effect.value != expect.effect or (
        expect.rule is not None and expect.rule not in decision.rule_ids
    ):
        return False, f"expected {wanted}, got {got}"
    if expect.reason is not None and expect.reason not in decision.reason:
        return False, f"expected a reason containing {expect.reason!r}, got {got}"
    if expect.max_tokens is not None and decision.max_tokens != expect.max_tokens:
        cap = "no cap" if decision.max_tokens is None else f"a cap of {decision.max_tokens}"
        return False, f"expected a max_tokens cap of {expect.max_tokens}, got {cap}"
    return True, got


def describe(decision: Decision) -> str:
    """``allow by ci-summaries (allowed by rule ci-summaries)``, for one line of output."""
    by = ", ".join(decision.rule_ids) if decision.rule_ids else "default"
    return f"{decision.effect.value} by {by} ({decision.reason})"


def describe_limit(check: LimitCheck) -> str:
    return (
        f"{check.metric} per {check.window} <= {check.limit} for {check.owner} "
        f"(rule {check.rule_id})"
    )


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
