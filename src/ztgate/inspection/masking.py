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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

from ztgate.core.findings import Finding
from ztgate.core.maskplan import STRICTNESS, Action, MaskPlan
from ztgate.detectors.patterns import Detector, python_flags
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import Contained, mark_contained, merge_findings


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


@dataclass(frozen=True, slots=True)
class _Masked:
    """One finding's part to replace, what the plan says of it, and how it ranks for naming
    a merged span (stricter action, then higher confidence, then longer, then earlier)."""

    lo: int
    hi: int
    action: Action
    finding: Finding
    rank: tuple[int, float, int, int]


_T = TypeVar("_T")


def overlap_groups(items: Iterable[_T], span: Callable[[_T], tuple[int, int]]) -> list[list[_T]]:
    """Items (sorted by start) in groups whose unions do not overlap: every character any of
    them covers is in exactly one group. Adjacent spans stay apart (nothing lies between).
    Masking merges each group under one placeholder; the stream cuts only between groups."""
    groups: list[list[_T]] = []
    edge = -1
    for item in items:
        lo, hi = span(item)
        if groups and lo < edge:
            groups[-1].append(item)
            edge = max(edge, hi)
        else:
            groups.append([item])
            edge = hi
    return groups


def _uncovered(inner: list[_Masked], spans: list[_Masked]) -> list[_Masked]:
    """The contained spans no detection's masked span (``spans``, sorted by ``lo``) holds
    whole: what the detections' replacements would leave in clear."""
    inner.sort(key=lambda m: m.lo)
    out: list[_Masked] = []
    reach = -1  # the furthest end of the detections starting at or before the span
    i = 0
    for m in inner:
        while i < len(spans) and spans[i].lo <= m.lo:
            reach = max(reach, spans[i].hi)
            i += 1
        if m.hi > reach:
            out.append(m)
    return out


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
    """Masks ``text[start:end]``, given findings inside it (in any order, overlapping or not).

    Every character that a finding whose action changes text covers (its ``value`` group for
    a context detector) is replaced: overlapping findings are merged, and their union gets one
    replacement. A merged span is named by the finding with the strictest action (then the
    highest confidence, the longest span, the earliest start), and is redacted, or blocked if
    any of its findings blocks: neither a pseudonym nor a hash of two values glued together
    names anything, and a pseudonym must stand for one value to be restored. Each finding is
    recorded in ``applied`` with the action taken on it (so a merged one shows both
    detectors); ``report`` findings change nothing and do not merge.

    A contained finding (``scanner.Contained``: wholly inside another, no detection of its
    own) counts only where no detection that changes text covers it already: then it is
    masked as its action says, but it never blocks (``block`` redacts it), and it is
    recorded only if it changed text. So a card number ending a ``token: ...`` value, with the
    generic detector on ``report`` and cards on ``redact``, is redacted, while a card-like
    run inside an IBAN never blocks a request for ``payment_card: block``: the IBAN explains
    its digits (a detection), yet they are not sent in clear where the IBAN is not masked.

    The text around the range is context only (word boundaries for re-matching the ``value``
    group); streams mask one released range at a time with it. Offsets in ``applied`` are
    ``offset`` plus positions in ``text``.
    """
    detectors = detectors or {}
    applied: list[AppliedFinding] = []
    blocked: list[str] = []
    spans: list[_Masked] = []
    inner: list[_Masked] = []  # contained findings that would change text
    for finding in sorted(findings, key=lambda f: (f.start, f.start - f.end)):
        action = plan.action_for(finding)
        is_contained = isinstance(finding, Contained)
        if action is None or (is_contained and action == "report"):
            continue
        if is_contained and action == "block":
            action = "redact"  # masked, never a reason to refuse (see above)
        detector = detectors.get(finding.detector)
        lo, hi = _value_span(text, finding, detector)
        lo, hi = max(lo, start), min(hi, end)
        if hi <= lo and is_contained:
            continue
        if action == "block" and finding.detector not in blocked:
            blocked.append(finding.detector)
        if action == "report" or hi <= lo:
            applied.append(
                AppliedFinding(finding.detector, finding.category, action, lo + offset, hi + offset)
            )
            continue
        confidence = detector.confidence if detector is not None else 0.0
        rank = (STRICTNESS[action], confidence, hi - lo, -lo)
        (inner if is_contained else spans).append(_Masked(lo, hi, action, finding, rank))
    spans.sort(key=lambda m: m.lo)
    if inner:
        spans = sorted([*spans, *_uncovered(inner, spans)], key=lambda m: m.lo)
    parts: list[str] = []
    pos = start
    for group in overlap_groups(spans, lambda s: (s.lo, s.hi)):
        lo, hi = group[0].lo, max(m.hi for m in group)
        if len(group) == 1:
            action = group[0].action
        else:
            action = "block" if any(m.action == "block" for m in group) else "redact"
        name = max(group, key=lambda m: m.rank).finding.label
        replacement = _replacement(action, name, text[lo:hi], pseudonyms, hash_key)
        if replacement is not None:
            parts.append(text[pos:lo])
            parts.append(replacement)
            pos = hi
        for m in group:
            taken = m.action if m.action == "block" else action
            applied.append(
                AppliedFinding(
                    m.finding.detector, m.finding.category, taken, m.lo + offset, m.hi + offset
                )
            )
    parts.append(text[pos:end])
    applied.sort(key=lambda a: a.start)
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
    """What to mask in one text, in leftmost-longest order, from its value findings and its
    guardrail checks' findings (they may overlap: ``mask_range`` masks their union).

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
    merged = merge_findings(values, mark_contained(acting), checks_first=True)
    return merge_findings(merged, mark_contained(reporting), checks_first=False)
