"""What a new policy would have decided on the requests the audit recorded.

Each request event keeps the facts policy decided on (``policy_input``: the request's
:class:`PolicyRequest` s, a batch followed by its requests). They are rebuilt and decided again
by the new policy with :meth:`Policy.decide`, the same call the gateway makes, and compared with
the decision recorded then. Pure: events in, a :class:`Simulation` out.

Quotas are not replayed: a request that went over a limit was refused after the decision, so
its recorded decision is still the policy's.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ztgate.audit.events import StoredEvent
from ztgate.core.decision import SET_FIELDS, TUPLE_FIELDS, Decision, PolicyRequest
from ztgate.core.guardrails import hits_from_json
from ztgate.offline.explain import unmet_conditions
from ztgate.policy.engine import Policy

_REQUIRED = ("principal", "issuer", "endpoint", "method")


class PolicyInputError(ValueError):
    """A recorded ``policy_input`` cannot be turned back into policy requests."""


def policy_requests(data: object) -> list[PolicyRequest]:
    """The policy requests a request event recorded, rebuilt exactly as they were decided."""
    if not isinstance(data, list) or not data:
        raise PolicyInputError("policy_input must be a non-empty list")
    return [_policy_request(item, index) for index, item in enumerate(data)]


def _policy_request(item: object, index: int) -> PolicyRequest:
    where = f"policy_input[{index}]"
    if not isinstance(item, dict):
        raise PolicyInputError(f"{where} must be an object")
    unknown = set(item) - set(PolicyRequest._fields)
    if unknown:
        raise PolicyInputError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    for name in _REQUIRED:
        if not isinstance(item.get(name), str):
            raise PolicyInputError(f"{where}.{name} must be a string")
    values: dict[str, Any] = dict(item)
    for name in (*SET_FIELDS, *TUPLE_FIELDS):
        value = values.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise PolicyInputError(f"{where}.{name} must be a list of strings")
        values[name] = frozenset(value) if name in SET_FIELDS else tuple(value)
    if not isinstance(values.get("claims", {}), dict):
        raise PolicyInputError(f"{where}.claims must be an object")
    values.setdefault("claims", {})
    try:
        values["guardrails"] = hits_from_json(values.get("guardrails", []))
    except ValueError as exc:
        raise PolicyInputError(f"{where}.guardrails: {exc}") from None
    return PolicyRequest(**values)


@dataclass(frozen=True, slots=True)
class RecordedDecision:
    effect: str
    reason: str
    rule_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Change:
    """A recorded request the new policy decides differently, and why."""

    seq: int
    at: float
    request_id: str | None
    principal: str | None
    endpoint: str | None
    model: str | None
    old: RecordedDecision
    new: Decision
    why: tuple[str, ...]

    @property
    def effect_changed(self) -> bool:
        return self.old.effect != self.new.effect.value


@dataclass(frozen=True, slots=True)
class Skipped:
    seq: int
    reason: str


@dataclass(slots=True)
class Simulation:
    considered: int = 0  # request events with recorded facts, decided again
    unchanged: int = 0
    changes: list[Change] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def transitions(self) -> Counter[tuple[str, str]]:
        """How many decisions went from each effect to each other (``allow -> deny``: 3)."""
        return Counter((c.old.effect, c.new.effect.value) for c in self.changes)

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def simulate(policy: Policy, events: Iterable[StoredEvent]) -> Simulation:
    """Decide every recorded request event again with ``policy``; other kinds are ignored.

    A change is a different effect, or the same effect by different rules (a request that
    another rule now allows can be limited differently)."""
    result = Simulation()
    for event in events:
        decide_again(policy, event, result)
    return result


async def simulate_async(policy: Policy, events: AsyncIterable[StoredEvent]) -> Simulation:
    """:func:`simulate` over a store's events, without holding them in memory."""
    result = Simulation()
    async for event in events:
        decide_again(policy, event, result)
    return result


def decide_again(policy: Policy, event: StoredEvent, result: Simulation) -> None:
    """Add one event's outcome to ``result``."""
    if event.kind != "request":
        return
    if event.body is None:
        result.skipped.append(Skipped(event.seq, "its body was purged by retention"))
        return
    data = event.data()
    try:
        old = _recorded_decision(data.get("decision"))
        requests = policy_requests(data.get("policy_input"))
    except PolicyInputError as exc:
        result.skipped.append(Skipped(event.seq, str(exc)))
        return
    result.considered += 1
    new = policy.decide(requests)
    if new.effect.value == old.effect and set(new.rule_ids) == set(old.rule_ids):
        result.unchanged += 1
        return
    result.changes.append(
        Change(
            seq=event.seq,
            at=event.at,
            request_id=event.request_id,
            principal=event.principal or requests[0].principal,
            endpoint=requests[0].endpoint,
            model=_text(data.get("model")) or next((r.model for r in requests if r.model), None),
            old=old,
            new=new,
            why=explain_change(policy, requests, old, new),
        )
    )


def explain_change(
    policy: Policy, requests: Sequence[PolicyRequest], old: RecordedDecision, new: Decision
) -> tuple[str, ...]:
    """Why the decision moved: recorded rules that are gone, no longer match or are outranked,
    and new rules that decide now."""
    by_id = {c.rule.id: c for c in policy.rules}
    matched = {c.rule.id for req in requests for c in policy.matching(req)}
    reasons = []
    for rule_id in old.rule_ids:
        if rule_id in new.rule_ids:
            continue
        compiled = by_id.get(rule_id)
        if compiled is None:
            reasons.append(f"rule {rule_id} is no longer in the policy")
        elif rule_id in matched:
            outranked = ", ".join(new.rule_ids) or "the default"
            reasons.append(
                f"rule {rule_id} ({compiled.effect.value}) still matches, but "
                f"{new.effect.value} by {outranked} takes precedence"
            )
        else:
            reasons.append(f"rule {rule_id} no longer matches: {_unmet(policy, rule_id, requests)}")
    for rule_id in new.rule_ids:
        if rule_id not in old.rule_ids:
            reasons.append(f"rule {rule_id} ({by_id[rule_id].effect.value}) now decides")
    if not new.rule_ids:
        reasons.append(f"no rule decides now: the default ({new.effect.value}) applies")
    reasons.append(f"new reason: {new.reason}")
    return tuple(reasons)


def _unmet(policy: Policy, rule_id: str, requests: Sequence[PolicyRequest]) -> str:
    """Why a rule that matches none of the requests fails the first: out of its endpoints or
    groups, or the conditions it does not meet."""
    compiled = next(c for c in policy.rules if c.rule.id == rule_id)
    for req in requests:
        prefix = "" if req.label is None else f"batch request {req.label!r}: "
        if compiled not in policy.candidates(req):
            when = compiled.rule.when
            scope = []
            if when.endpoints is not None:
                scope.append(f"endpoints {when.endpoints}, request is {req.endpoint!r}")
            if when.groups is not None:
                scope.append(f"groups {when.groups}, caller has {sorted(req.groups)}")
            return prefix + "; ".join(scope)
        unmet = unmet_conditions(policy, compiled.rule, req)
        return prefix + ("; ".join(str(u) for u in unmet) or "its conditions")
    return "its conditions"


def _recorded_decision(value: object) -> RecordedDecision:
    if not isinstance(value, Mapping) or not isinstance(value.get("effect"), str):
        raise PolicyInputError("no recorded decision")
    rule_ids = value.get("rule_ids") or []
    if not isinstance(rule_ids, list) or not all(isinstance(r, str) for r in rule_ids):
        raise PolicyInputError("decision.rule_ids must be a list of strings")
    return RecordedDecision(value["effect"], _text(value.get("reason")) or "", tuple(rule_ids))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
