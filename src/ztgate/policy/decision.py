"""A policy decision: what to do with a request and why, in plain data."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Literal, NamedTuple

from ztgate.inspection.masking import MaskPlan


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

    def for_batch_request(self, label: str) -> Decision:
        return self._replace(reason=f"batch request {label!r}: {self.reason}")

    @staticmethod
    def combine_allows(decisions: Sequence[Decision]) -> Decision:
        """All allowed: rule ids of all, the strictest max_tokens, every limit (strictest),
        every mask (the strictest action per finding)."""
        first = decisions[0]
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
        )
