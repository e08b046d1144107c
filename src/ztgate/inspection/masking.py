"""Applying policy actions to findings: redact, pseudonymize, hash, block or report.

Pure functions over the scanner's findings. The returned structures name detectors, actions
and offsets, never a raw value: only the masked text carries text, and it carries a value
only where the plan leaves it (``report`` or no action at all).

Context detectors (``password = hunter2secret``, ``AccountKey=...``) match their keyword too;
their pattern marks the secret with a named group ``value`` and only that part is replaced,
so the masked text keeps telling the model what kind of thing was there.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from types import MappingProxyType
from typing import Literal, get_args

from ztgate.inspection.detectors import Detector, python_flags
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import Finding

Action = Literal["redact", "pseudonymize", "hash", "block", "report"]
ACTIONS: frozenset[str] = frozenset(get_args(Action))


def _check_actions(where: str, actions: Mapping[str, Action]) -> Mapping[str, Action]:
    for key, action in actions.items():
        if action not in ACTIONS:
            raise ValueError(f"{where} {key!r}: unknown action {action!r}")
    return MappingProxyType(dict(actions))


# From least to most protective: when several policy rules apply, the strictest wins.
STRICTNESS: Mapping[str, int] = MappingProxyType(
    {"report": 0, "pseudonymize": 1, "hash": 2, "redact": 3, "block": 4}
)


@dataclass(frozen=True, slots=True)
class MaskPlan:
    """Which action applies to which finding: per detector id, else per category, else
    ``default``. A finding no rule covers (``default=None``) is left alone and unrecorded.

    ``also`` holds the plans of other policy rules that apply to the same request: each
    finding gets the strictest action any of them gives it."""

    by_detector: Mapping[str, Action]
    by_category: Mapping[str, Action]
    default: Action | None = None
    also: tuple[MaskPlan, ...] = ()
    # Actions that cannot apply where the plan is used, and what they become there.
    substitutes: Mapping[str, Action] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        # Frozen in depth: a plan is shared by every request its policy rule matches.
        object.__setattr__(self, "by_detector", _check_actions("detector", self.by_detector))
        object.__setattr__(self, "by_category", _check_actions("category", self.by_category))
        if self.default is not None and self.default not in ACTIONS:
            raise ValueError(f"unknown default action {self.default!r}")

    @staticmethod
    def strictest(plans: Sequence[MaskPlan]) -> MaskPlan | None:
        """One plan for several rules' plans (None for none)."""
        layers = [layer for plan in plans for layer in (plan, *plan.also)]
        if not layers:
            return None
        if len(layers) == 1:
            return layers[0]
        first, *rest = layers
        return MaskPlan(
            first.by_detector,
            first.by_category,
            first.default,
            tuple(replace(layer, also=()) for layer in rest),
        )

    def substituting(self, substitutes: Mapping[str, Action]) -> MaskPlan:
        """This plan where some actions become others: on responses ``pseudonymize`` only
        reports (the caller may see its own values); in batches, whose results cannot be
        restored, it redacts."""
        return replace(self, substitutes=MappingProxyType(dict(substitutes)))

    def action_for(self, finding: Finding) -> Action | None:
        """The detector's own rule beats its category's, which beats the default."""
        action = self._own_action(finding.detector, finding.category)
        for other in self.also:
            candidate = other._own_action(finding.detector, finding.category)
            if candidate is not None and (
                action is None or STRICTNESS[candidate] > STRICTNESS[action]
            ):
                action = candidate
        if action is not None and self.substitutes:
            action = self.substitutes.get(action, action)
        return action

    def _own_action(self, detector: str, category: str) -> Action | None:
        action = self.by_detector.get(detector)
        if action is None:
            action = self.by_category.get(category, self.default)
        return action


@dataclass(frozen=True, slots=True)
class AppliedFinding:
    """One action taken: on which detector's finding, and where (the replaced span, which is
    the ``value`` group for context detectors) in the input text. Never the value."""

    detector: str
    category: str
    action: Action
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class MaskResult:
    """The masked text, what was done, and the detectors whose ``block`` refuses the request
    (each named once, in order of first finding)."""

    text: str
    applied: list[AppliedFinding]
    blocked: list[str]


def count_masked(masked: dict[str, int], applied: Iterable[AppliedFinding]) -> None:
    """Adds the actions that changed text (``report`` changes none) to a per-detector tally."""
    for finding in applied:
        if finding.action != "report":
            masked[finding.detector] = masked.get(finding.detector, 0) + 1


@lru_cache(maxsize=512)
def _value_regex(pattern: str, flags: int) -> re.Pattern[str] | None:
    """The detector's regex, compiled once, when it marks a ``value`` group; else None."""
    regex = re.compile(pattern, python_flags(flags))
    return regex if "value" in regex.groupindex else None


def _value_span(text: str, finding: Finding, detector: Detector | None) -> tuple[int, int]:
    """The part of the finding to replace: the ``value`` group when the detector has one.

    The finding's span is re-matched in place (``\\b`` at its start still sees the character
    before it), so the group is the one the scanner's match had.
    """
    if detector is None:
        return finding.start, finding.end
    regex = _value_regex(detector.pattern, detector.flags)
    if regex is None:
        return finding.start, finding.end
    match = regex.fullmatch(text, finding.start, finding.end)
    if match is None or match.start("value") < 0:
        return finding.start, finding.end
    return match.span("value")


def keyed_hash(hash_key: bytes, value: str) -> str:
    """First 16 hex digits of HMAC-SHA256: stable for correlation, useless without the key."""
    return hmac.new(hash_key, value.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


def _replacement(
    action: Action,
    label: str,
    value: str,
    pseudonyms: PseudonymVault | None,
    hash_key: bytes,
) -> str | None:
    """What replaces ``value`` (None: the text stays as it is)."""
    if action in ("redact", "block"):
        # A blocked request is refused whole; a blocked response is withheld from there on:
        # either way the value itself must never be in what is released.
        return f"[REDACTED:{label}]"
    if action == "pseudonymize":
        if pseudonyms is None:
            # Fail closed: without a vault the value could be neither hidden nor restored.
            raise ValueError("the plan pseudonymizes but no pseudonym vault was given")
        return pseudonyms.pseudonym(label, value)
    if action == "hash":
        return f"[{label}:{keyed_hash(hash_key, value)}]"
    return None


def mask_range(
    text: str,
    start: int,
    end: int,
    findings: Iterable[Finding],
    plan: MaskPlan,
    *,
    pseudonyms: PseudonymVault | None,
    hash_key: bytes,
    detectors: Mapping[str, Detector] | None = None,
    offset: int = 0,
) -> MaskResult:
    """Masks ``text[start:end]``, given findings (sorted, non-overlapping) inside it.

    The text around the range is context only (word boundaries for re-matching the ``value``
    group); streams mask one released range at a time with it. Offsets in ``applied`` are
    ``offset`` plus positions in ``text``.
    """
    detectors = detectors or {}
    parts: list[str] = []
    applied: list[AppliedFinding] = []
    blocked: list[str] = []
    pos = start
    for finding in findings:
        action = plan.action_for(finding)
        if action is None:
            continue
        lo, hi = _value_span(text, finding, detectors.get(finding.detector))
        applied.append(
            AppliedFinding(finding.detector, finding.category, action, lo + offset, hi + offset)
        )
        if action == "block" and finding.detector not in blocked:
            blocked.append(finding.detector)
        replacement = _replacement(action, finding.label, text[lo:hi], pseudonyms, hash_key)
        if replacement is not None:
            parts.append(text[pos:lo])
            parts.append(replacement)
            pos = hi
    parts.append(text[pos:end])
    return MaskResult("".join(parts), applied, blocked)


def mask_text(
    text: str,
    findings: Sequence[Finding],
    plan: MaskPlan,
    *,
    pseudonyms: PseudonymVault | None = None,
    hash_key: bytes,
    detectors: Mapping[str, Detector] | None = None,
) -> MaskResult:
    """Masks a whole text given the scanner's findings on it.

    Pass the scanner's ``detectors`` to narrow context detectors to their ``value`` group;
    without them every finding's whole span is replaced. ``pseudonymize`` needs a vault.
    """
    return mask_range(
        text,
        0,
        len(text),
        findings,
        plan,
        pseudonyms=pseudonyms,
        hash_key=hash_key,
        detectors=detectors,
    )
