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
from dataclasses import dataclass
from functools import lru_cache

from ztgate.core.findings import Finding
from ztgate.core.maskplan import Action, MaskPlan
from ztgate.detectors.patterns import Detector, python_flags
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import merge_findings, resolve_overlaps


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


def plan_findings(values: list[Finding], checks: list[Finding], plan: MaskPlan) -> list[Finding]:
    """What to mask in one text, sorted and non-overlapping, from its value findings and its
    guardrail checks' findings.

    A check policy masks (redact, block, hash) takes in the values it touches, so replacing
    its span leaves no part of them; a check policy only reports is kept where it touches no
    value; a check policy says nothing of is left out (the values it overlaps still apply)."""
    if not checks:
        return values
    acting: list[Finding] = []
    reporting: list[Finding] = []
    for check in checks:
        action = plan.action_for(check)
        if action == "report":
            reporting.append(check)
        elif action is not None:
            acting.append(check)
    merged = merge_findings(values, resolve_overlaps(acting), checks_first=True)
    return merge_findings(merged, resolve_overlaps(reporting), checks_first=False)
