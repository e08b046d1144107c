"""What guardrails conclude about a request, in plain data: per category and place in the
conversation, how sure the checks are that something is an attack, and which checks said so.

Inspection produces :class:`Signal` records (one check firing once somewhere); :func:`combine`
turns them into the :class:`GuardrailHit` records policy decides on and the audit keeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, get_args

Location = Literal[
    "system",  # the system prompt
    "user",  # what the user wrote
    "assistant",  # earlier model turns sent back
    "tool_result",  # what a tool or a server tool (web fetch, search, MCP) brought back
    "document",  # a document block's text or context
    "tool_input",  # the input of an earlier tool call
    "tool_definition",  # a tool's description and schema (an MCP server writes these)
    "output",  # the model's answer, on the way back
    "other",  # anything else a body carries (metadata, stop sequences, headers)
]
LOCATIONS: frozenset[str] = frozenset(get_args(Location))

# Text that no person in the conversation wrote: instructions found there are an agent's
# biggest risk, and are never the user asking for something.
INDIRECT_LOCATIONS: frozenset[str] = frozenset({"tool_result", "document", "tool_definition"})
# Categories that, found in indirect text, are reported as ``indirect_injection``.
INJECTION_FAMILY: frozenset[str] = frozenset({"prompt_injection", "jailbreak", "prompt_extraction"})
INDIRECT = "indirect_injection"
# Every category a hit can carry (the checks' own, and the indirect label).
HIT_CATEGORIES: frozenset[str] = frozenset(
    {*INJECTION_FAMILY, "smuggling", "exfiltration", INDIRECT}
)
# The score at which a category counts as found, unless a policy rule says otherwise.
DEFAULT_THRESHOLD = 0.5
# The judge read the text and found no attack: its score caps the hit instead of adding up.
JUDGED_BENIGN = "judge.benign"


class Signal(NamedTuple):
    """One check firing once: its category, its id, where, and how sure (0-1)."""

    category: str
    check: str
    location: str
    score: float


class GuardrailHit(NamedTuple):
    """Everything the checks found of one category in one place of a request."""

    category: str
    location: str
    score: float
    checks: frozenset[str]


def reported_category(category: str, location: str) -> str:
    """The category a hit is reported under: injection arriving through tools or documents
    is ``indirect_injection``, never confused with the user asking."""
    if category in INJECTION_FAMILY and location in INDIRECT_LOCATIONS:
        return INDIRECT
    return category


def combine(signals: Iterable[Signal]) -> tuple[GuardrailHit, ...]:
    """One hit per (category, location). A check that fires many times counts once (its
    highest score); distinct checks add up as independent evidence (noisy-or), so two weak
    signals together outweigh either alone. A judge's benign verdict caps the result."""
    best: dict[tuple[str, str], dict[str, float]] = {}
    for signal in signals:
        key = (reported_category(signal.category, signal.location), signal.location)
        checks = best.setdefault(key, {})
        if signal.score > checks.get(signal.check, -1.0):
            checks[signal.check] = signal.score
    hits = []
    for (category, location), checks in sorted(best.items()):
        miss = 1.0
        for check, score in checks.items():
            if check != JUDGED_BENIGN:
                miss *= 1.0 - min(1.0, max(0.0, score))
        score = 1.0 - miss
        if JUDGED_BENIGN in checks:
            score = min(score, checks[JUDGED_BENIGN])
        hits.append(GuardrailHit(category, location, round(score, 4), frozenset(checks)))
    return tuple(hits)


def hits_json(hits: Sequence[GuardrailHit]) -> list[dict[str, Any]]:
    """Hits as JSON objects (checks sorted), for the audit and policy input."""
    return [
        {
            "category": h.category,
            "location": h.location,
            "score": h.score,
            "checks": sorted(h.checks),
        }
        for h in hits
    ]


def hits_from_json(data: object) -> tuple[GuardrailHit, ...]:
    """The inverse of :func:`hits_json`; ValueError naming what is wrong."""
    if not isinstance(data, list):
        raise ValueError("guardrails must be a list")
    hits = []
    for item in data:
        if not isinstance(item, Mapping):
            raise ValueError("each guardrail hit must be an object")
        category, location, score, checks = (
            item.get("category"),
            item.get("location"),
            item.get("score"),
            item.get("checks"),
        )
        if (
            not isinstance(category, str)
            or not isinstance(location, str)
            or not isinstance(score, int | float)
            or isinstance(score, bool)
            or not isinstance(checks, list)
            or not all(isinstance(c, str) for c in checks)
        ):
            raise ValueError("a guardrail hit needs category, location, score and checks")
        hits.append(GuardrailHit(category, location, float(score), frozenset(checks)))
    return tuple(hits)
