"""A policy decision: what to do with a request and why, in plain data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Effect(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    REVIEW = "review"


@dataclass(frozen=True, slots=True)
class Decision:
    effect: Effect
    reason: str
    rule_ids: tuple[str, ...] = ()
