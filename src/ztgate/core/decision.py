"""A policy decision in plain data: what it is decided on (:class:`PolicyRequest`), and what
to do with the request and why (:class:`Decision`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Literal, NamedTuple

from ztgate.core.guardrails import GuardrailHit, hits_json
from ztgate.core.maskplan import MaskPlan
from ztgate.core.reviews import ReviewRequirement


class PolicyRequest(NamedTuple):
    """One request (or one request inside a batch) as policy sees it. (A named tuple: one is
    built per request, and tuples are the cheapest immutable records to build.)"""

    principal: str
    issuer: str
    groups: frozenset[str]
    scopes: frozenset[str]
    claims: Mapping[str, Any]
    endpoint: str
    method: str
    model: str | None = None
    skills: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    mcp_servers: tuple[str, ...] = ()
    betas: tuple[str, ...] = ()
    stream: bool = False
    max_tokens: int | None = None
    thinking_budget: int | None = None
    request_bytes: int = 0
    findings: frozenset[str] = frozenset()
    guardrails: tuple[GuardrailHit, ...] = ()  # what the guardrail checks concluded
    client_certificate: tuple[str, ...] = ()  # a verified client certificate's names
    label: str | None = None  # which request of a batch, for messages


# How a PolicyRequest's collections are written in the audit: sets as sorted lists, tuples as lists.
SET_FIELDS = ("groups", "scopes", "findings")
TUPLE_FIELDS = ("skills", "tools", "mcp_servers", "betas", "client_certificate")


def policy_input_json(requests: Sequence[PolicyRequest]) -> list[dict[str, Any]]:
    """Policy requests as JSON objects for the audit (sets as sorted lists, tuples as lists):
    the inverse of :func:`policy_requests`."""
    documents = []
    for req in requests:
        document: dict[str, Any] = req._asdict()
        for name in SET_FIELDS:
            document[name] = sorted(document[name])
        for name in TUPLE_FIELDS:
            document[name] = list(document[name])
        document["claims"] = dict(req.claims)
        document["guardrails"] = hits_json(req.guardrails)
        documents.append(document)
    return documents


def skill_id(ref: str) -> str:
    """The bare id of a skill reference (``anthropic:xlsx@latest`` -> ``xlsx``)."""
    return ref.partition(":")[2].partition("@")[0] if ":" in ref else ref.partition("@")[0]


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REVIEW = "review"


class LimitCheck(NamedTuple):
    """A counter a request must fit in: ``owner`` is ``principal:...`` or ``group:...``.
    (A named tuple: decisions are built on the hot path, and tuples are cheap to make.)"""

    owner: str
    metric: Literal["requests", "tokens"]
    window: Literal["minute", "day"]
    limit: int
    rule_id: str


class Decision(NamedTuple):
    effect: Effect
    reason: str
    rule_ids: tuple[str, ...] = ()
    max_tokens: int | None = None
    limits: tuple[LimitCheck, ...] = ()
    mask: MaskPlan | None = None  # what to do with findings, in the request and the response
    reviews: tuple[ReviewRequirement, ...] = ()  # for a review: what each rule that asked wants

    def for_batch_request(self, label: str) -> Decision:
        return self._replace(reason=f"batch request {label!r}: {self.reason}")

    @staticmethod
    def combine(decisions: Sequence[Decision]) -> Decision:
        """None denied (a batch's requests): a review if any needs one, with every rule that
        asked (an approval must satisfy them all); rule ids of all, the strictest max_tokens,
        every limit (strictest), every mask (the strictest action per finding), since an
        approved batch runs every request in it."""
        reviewing = [d for d in decisions if d.effect is Effect.REVIEW]
        first = reviewing[0] if reviewing else decisions[0]
        if len(decisions) == 1:
            return first
        caps = [d.max_tokens for d in decisions if d.max_tokens is not None]
        strictest: dict[tuple[str, str, str], LimitCheck] = {}
        for check in (c for d in decisions for c in d.limits):
            key = (check.owner, check.metric, check.window)
            if key not in strictest or check.limit < strictest[key].limit:
                strictest[key] = check
        rule_ids = tuple(dict.fromkeys(r for d in decisions for r in d.rule_ids))
        return Decision(
            first.effect,
            first.reason,
            rule_ids,
            max_tokens=min(caps) if caps else None,
            limits=tuple(strictest[k] for k in sorted(strictest)),
            mask=MaskPlan.strictest([d.mask for d in decisions if d.mask is not None]),
            reviews=tuple({r.rule_id: r for d in reviewing for r in d.reviews}.values()),
        )
