"""Whole-text scanning: Hyperscan finds where matches can end, ``re`` confirms, validators judge.

The pipeline, and why each step is there:

1. **Prefilter.** One Hyperscan block-mode pass over all detectors at once, without
   start-of-match tracking (SOM costs speed and refuses many patterns). It reports every
   (detector, end offset) pair where some match ends, which is a superset of the ends of the
   matches ``re`` would find: both read the same ASCII-only patterns.
2. **Regions.** A match ending at ``e`` starts at or after ``e - max_length``. A detector's
   ends closer than ``max_length`` apart merge into one region, so each candidate area is
   confirmed once however many ends Hyperscan reported in it (one email yields several).
   A pattern that ends in a long run (``[A-Za-z0-9]{20,512}``, a PEM body) would report an
   end at every character of it; Hyperscan gets that pattern with the run cut to its minimum
   instead, one report per candidate, and the region reaches forward by the part cut off.
3. **Confirmation.** Inside each region, the detector's own ``re`` finds the exact spans,
   leftmost-first and non-overlapping per detector. A span its validator rejects is retried
   one character further on (for a detector that judges only its ``value`` group, from that
   value: an earlier start would carry the same value). Every match starting in a region
   also ends in it (overlapping regions were merged), so this gives exactly the spans one
   ``re`` pass over the whole text would, and the pure-``re`` fallback (no Hyperscan wheel
   for the platform) is that pass; the tests hold the two backends to identical findings.
4. **Resolution.** Across detectors, leftmost-longest order: the earliest start first, then
   the longer span, then the higher confidence, then the earlier detector. A finding wholly
   inside one before it (a repeat of its span included) is no detection of its own: its
   text is that one's part (an IBAN's digits are no phone number, a partial key block inside
   a whole one is the same key). It is kept, marked ``Contained``, for masking alone: when
   the finding around it changes no text (policy only reports it, or says nothing of it)
   while its own action would (a card number ending a ``token: ...`` value, the generic
   detector on ``report``), dropping it would send its value in clear. ``scan`` leaves contained
   findings out; ``scan_parts`` returns them among the values, for masking (``deep.Scan``
   sets them apart again). Findings that overlap only in part are both kept as detections:
   dropping either would leave its part outside the other in clear (a generic ``token: ...``
   value cut at its bound, with the tail of an Anthropic key beyond it). Masking
   (``masking.mask_range``) replaces their union once.

Offsets are character offsets into the ``str``. Hyperscan scans a one-byte-per-character
image of the text (code points up to U+00FF as Latin-1, the rest as ``\\x80``), so its byte
offsets are character offsets and a non-ASCII character is one opaque non-word unit in both
engines, never half of a match.
"""

from __future__ import annotations

import codecs
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal, Protocol

from ztgate.core.findings import VALUE_CATEGORIES, Finding
from ztgate.detectors.patterns import (
    HYPERSCAN_AVAILABLE,
    Detector,
    check_pattern,
    hyperscan_expression,
    hyperscan_flags,
    parse_pattern,
    python_flags,
)

if HYPERSCAN_AVAILABLE:
    import hyperscan as _hs

Backend = Literal["auto", "hyperscan", "re"]

_ONE_BYTE = "ztgate.one-byte-per-char"


def _placeholder_bytes(error: UnicodeError) -> tuple[bytes, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return b"\x80" * (error.end - error.start), error.end


codecs.register_error(_ONE_BYTE, _placeholder_bytes)


def _one_byte_per_char(text: str) -> bytes:
    """Latin-1 where possible (a C-speed copy), ``\\x80`` for every code point above U+00FF."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("latin-1", _ONE_BYTE)


def _collect(pattern_id: int, _start: int, end: int, _flags: int, ends: Any) -> None:
    """Hyperscan's match handler: a module-level function, so it can never be collected
    while Hyperscan holds it (a temporary callable there crashes the binding)."""
    found = ends.get(pattern_id)
    if found is None:
        ends[pattern_id] = [end]
    else:
        found.append(end)


@dataclass(frozen=True, slots=True)
class _Compiled:
    detector: Detector
    regex: re.Pattern[str]
    order: int
    prefilter: str  # what Hyperscan compiles
    forward: int  # how far past a reported end a match may still reach
    back: int  # how far before a reported end a match may start
    shortest: int  # how far before a reported end a match must start
    retry_at_value: bool  # after a rejected value, retry from the value, not one further on


_TRAILING_REPEAT = re.compile(r"\{(\d+),(\d+)\}\??(\)*)\Z")
_WORTH_CUTTING = 8


def _last_item(items: Any) -> Any:
    """The pattern's final element, looking through the groups that close it."""
    while len(items):
        op, av = items[-1]
        if str(op) != "SUBPATTERN":
            return items[-1]
        items = av[3]
    return None


def _prefilter(d: Detector) -> tuple[str, int]:
    """``d.pattern`` with a long trailing ``{m,n}`` cut to ``{m}``, and the reach cut off.

    Any match of the pattern has a prefix matching the cut one, ending at most ``forward``
    characters before the match does; so regions widened by ``forward`` still hold every
    match, and Hyperscan reports each candidate once instead of once per trailing character.
    Patterns whose source and parse tree do not agree on that trailing run are left whole.
    """
    tail = _TRAILING_REPEAT.search(d.pattern)
    if tail is None:
        return d.pattern, 0
    low, high = int(tail[1]), int(tail[2])
    last = _last_item(parse_pattern(d.pattern, d.flags))
    if last is None or str(last[0]) not in ("MAX_REPEAT", "MIN_REPEAT"):
        return d.pattern, 0
    if (last[1][0], last[1][1]) != (low, high):
        return d.pattern, 0
    forward = (high - low) * int(last[1][2].getwidth()[1])
    if forward < _WORTH_CUTTING:
        return d.pattern, 0
    # Hyperscan refuses {0}: keep one optional repeat instead.
    cut = f"{{{low}}}" if low else "{0,1}"
    return d.pattern[: tail.start()] + cut + tail[3], forward


# (start, -length, -confidence, detector order, end, compiled): sorting gives leftmost-longest.
_Candidate = tuple[int, int, float, int, int, _Compiled]


def _confirm(
    c: _Compiled, text: str, pos: int, stop: int, last_start: int, out: list[_Candidate]
) -> None:
    """The detector's validated matches starting in ``[pos, last_start]``, ending by ``stop``.

    ``re`` sees the text cut one character after ``stop``: every real match starting in the
    region ends by ``stop``, and a ``\\b`` at ``stop`` still sees its right-hand character.
    The cut can only invent a match that runs past ``stop`` (a ``\\b`` at the cut that the
    real text would deny); such a match is skipped, exactly as the real text would. No match
    can start after ``last_start``: its prefix would have been reported later than the
    region's last end.
    """
    search = c.regex.search
    validator = c.detector.validator
    confidence = -c.detector.confidence
    endpos = min(len(text), stop + 1)
    while pos <= last_start:
        match = search(text, pos, endpos)
        if match is None:
            return
        start, end = match.span()
        if start > last_start:
            return
        if end <= stop and (validator is None or validator(match.group())):
            out.append((start, start - end, confidence, c.order, end, c))
            pos = end
        elif end <= stop and c.retry_at_value:
            # A match starting before the rejected value would carry the same value.
            pos = max(start + 1, match.start("value"))
        else:
            pos = start + 1


@dataclass(frozen=True, slots=True)
class Contained(Finding):
    """A finding wholly inside an earlier one (or repeating its span): not a detection of its
    own (no policy condition, audit record or ``block`` sees it), only a span masking must
    still cover where the finding around it changes no text (``masking.mask_range``)."""


def contained(finding: Finding) -> Contained:
    """``finding`` marked as contained (itself if it is already)."""
    if isinstance(finding, Contained):
        return finding
    f = finding
    return Contained(f.detector, f.category, f.label, f.start, f.end, f.via)


def detections(findings: Iterable[Finding]) -> list[Finding]:
    """``findings`` without the contained ones: what detection-level decisions read."""
    return [f for f in findings if not isinstance(f, Contained)]


def _resolve(candidates: list[_Candidate]) -> list[Finding]:
    """Leftmost-longest findings, those wholly inside an earlier one marked ``Contained``;
    findings that overlap in part are all detections (see the module docstring, step 4)."""
    candidates.sort()
    findings: list[Finding] = []
    edge = 0
    for start, _length, _confidence, _order, end, c in candidates:
        d = c.detector
        if end > edge:
            findings.append(Finding(d.id, d.category, d.label, start, end))
            edge = end
        else:
            findings.append(Contained(d.id, d.category, d.label, start, end))
    return findings


def mark_contained(findings: Iterable[Finding]) -> list[Finding]:
    """``findings`` in leftmost-longest order, each one wholly inside an earlier detection (a
    repeat of a span included) marked ``Contained``; one marked already stays so, and of
    equal spans a detection comes first. Findings that overlap in part all stay detections:
    dropping one would leave its part outside the other in clear; masking merges them
    (``masking.mask_range``)."""
    out: list[Finding] = []
    edge = 0
    order = sorted(findings, key=lambda f: (f.start, f.start - f.end, isinstance(f, Contained)))
    for f in order:
        if f.end > edge and not isinstance(f, Contained):
            out.append(f)
            edge = f.end
        else:
            out.append(contained(f))
    return out


def merge_findings(
    values: list[Finding], checks: list[Finding], *, checks_first: bool
) -> list[Finding]:
    """One list, in leftmost-longest order, from value findings and check findings (findings
    may overlap: masking merges what overlaps; contained ones stay marked).

    With ``checks_first`` a check's finding takes in every value finding it touches (its span
    grows to cover them whole, so no part of a value escapes what replaces the check's span,
    and the check names it); otherwise the values stay and the checks that touch them are
    left out."""
    if not checks:
        return values
    if not values:
        return checks
    if not checks_first:
        kept = [c for c in checks if not any(v.start < c.end and c.start < v.end for v in values)]
        return mark_contained([*values, *kept])
    merged: list[Finding] = []
    for check in checks:
        start, end = check.start, check.end
        for v in values:
            if v.start < end and start < v.end:
                start, end = min(start, v.start), max(end, v.end)
        merged.append(replace(check, start=start, end=end))
    rest = [v for v in values if not any(v.start < m.end and m.start < v.end for m in merged)]
    # Nothing more is dropped: a check inside another may be the one that blocks.
    return sorted([*merged, *rest], key=lambda f: (f.start, f.start - f.end))


def _compile(d: Detector, order: int) -> _Compiled:
    prefilter, forward = _prefilter(d)
    shortest, back = parse_pattern(prefilter, d.flags).getwidth()
    regex = re.compile(d.pattern, python_flags(d.flags))
    retry_at_value = d.value_checked and "value" in regex.groupindex
    return _Compiled(d, regex, order, prefilter, forward, int(back), int(shortest), retry_at_value)


class Scanner:
    """Scans whole texts with a fixed set of detectors, compiled once. Thread-safe."""

    max_match_length: int
    min_match_length: int  # a shorter text cannot hold any finding: it need not be scanned
    detectors: Mapping[str, Detector]
    backend: Literal["hyperscan", "re"]

    def __init__(self, detectors: Sequence[Detector], *, backend: Backend = "auto") -> None:
        by_id: dict[str, Detector] = {}
        for d in detectors:
            if d.id in by_id:
                raise ValueError(f"detector {d.id!r} is defined twice")
            # The holdback guarantee rests on max_length: refuse a detector that understates it.
            check_pattern(
                d.id, d.pattern, d.flags, limit=d.max_length, word_list=True, hyperscan=False
            )
            by_id[d.id] = d
        self.detectors = MappingProxyType(by_id)
        self.max_match_length = max((d.max_length for d in detectors), default=0)
        self.min_match_length = min(
            (int(parse_pattern(d.pattern, d.flags).getwidth()[0]) for d in detectors), default=0
        )
        self._compiled = tuple(_compile(d, i) for i, d in enumerate(detectors))
        self._has_checks = any(d.category not in VALUE_CATEGORIES for d in detectors)
        if backend == "hyperscan" and not HYPERSCAN_AVAILABLE:
            raise RuntimeError("the hyperscan package is not available on this platform")
        use_hyperscan = backend != "re" and HYPERSCAN_AVAILABLE and bool(detectors)
        self.backend = "hyperscan" if use_hyperscan else "re"
        self._local = threading.local()
        self._handler = _collect
        if use_hyperscan:
            self._database = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            try:
                self._database.compile(
                    expressions=[hyperscan_expression(c.prefilter) for c in self._compiled],
                    ids=list(range(len(detectors))),
                    flags=[hyperscan_flags(d.flags) for d in detectors],
                )
            except _hs.error as exc:
                raise ValueError(f"Hyperscan cannot compile the detectors: {exc}") from None

    def scan(self, text: str) -> list[Finding]:
        """Validated detections in leftmost-longest order, none wholly inside another;
        findings of different detectors may overlap in part (masking merges them). A
        guardrail check's finding never hides a value: a check that overlaps one is left out.
        Masking reads ``scan_parts``, which keeps the contained findings too."""
        return _detected(*self.scan_parts(text))

    def scan_parts(self, text: str) -> tuple[list[Finding], list[Finding]]:
        """Value findings (PII, secrets, custom: resolved as ``scan`` does, those wholly
        inside another kept and marked ``Contained``, for masking) and every guardrail
        check's findings (each check's own non-overlapping matches; checks may overlap each
        other and values, since each is evidence of its own)."""
        if not text or not self._compiled:
            return [], []
        candidates: list[_Candidate] = []
        if self.backend == "hyperscan":
            self._scan_hyperscan(text, candidates)
        else:
            n = len(text)
            for c in self._compiled:
                _confirm(c, text, 0, n, n - 1, candidates)
        if not self._has_checks:
            return _resolve(candidates), []
        values = [c for c in candidates if c[5].detector.category in VALUE_CATEGORIES]
        checks = sorted(
            (
                Finding(c.detector.id, c.detector.category, c.detector.label, start, end)
                for start, _length, _confidence, _order, end, c in candidates
                if c.detector.category not in VALUE_CATEGORIES
            ),
            key=lambda f: (f.start, f.end),
        )
        return _resolve(values), checks

    def _scratch(self) -> Any:
        """Hyperscan scratch space is per thread: a shared one fails with ScratchInUse."""
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = _hs.Scratch(self._database)
            self._local.scratch = scratch
        return scratch

    def _scan_hyperscan(self, text: str, candidates: list[_Candidate]) -> None:
        # Only the detectors that hit get a list: most texts hit few of the ~80 patterns.
        hits: dict[int, list[int]] = {}
        self._database.scan(
            _one_byte_per_char(text),
            match_event_handler=self._handler,
            context=hits,
            scratch=self._scratch(),
        )
        n = len(text)
        compiled = self._compiled
        for index in sorted(hits):
            c, ends = compiled[index], hits[index]
            ends.sort()
            back, forward, shortest = c.back, c.forward, c.shortest
            gap = back + forward
            first = last = ends[0]
            for end in ends:
                if end - last > gap:
                    stop = min(n, last + forward)
                    _confirm(c, text, max(0, first - back), stop, last - shortest, candidates)
                    first = end
                last = end
            stop = min(n, last + forward)
            _confirm(c, text, max(0, first - back), stop, last - shortest, candidates)


def _detected(values: list[Finding], checks: list[Finding]) -> list[Finding]:
    """What ``scan`` returns of what ``scan_parts`` found."""
    if not checks:
        return detections(values)
    return detections(merge_findings(values, mark_contained(checks), checks_first=False))


class TextScanner(Protocol):
    """What masking, streams and the guardrails need of a scanner."""

    detectors: Mapping[str, Detector]
    min_match_length: int

    def __hash__(self) -> int: ...  # streams cache their bounds per scanner

    def scan(self, text: str) -> list[Finding]: ...

    def scan_parts(self, text: str) -> tuple[list[Finding], list[Finding]]: ...


class LayeredScanner:
    """The gateway's scanner with a policy's rule packs on top, and the built-in checks the
    policy switches off left out. Packs reload with the policy; only they are compiled again."""

    def __init__(
        self, base: Scanner, packs: Scanner | None = None, disabled: frozenset[str] = frozenset()
    ) -> None:
        self.base = base
        self.packs = packs
        self.disabled = disabled
        merged = dict(base.detectors)
        if packs is not None:
            merged.update(packs.detectors)
        self.detectors: Mapping[str, Detector] = MappingProxyType(
            {k: v for k, v in merged.items() if k not in disabled}
        )
        lengths = [base.min_match_length] + ([packs.min_match_length] if packs else [])
        self.min_match_length = min(lengths) if lengths else 0

    def scan(self, text: str) -> list[Finding]:
        return _detected(*self.scan_parts(text))

    def scan_parts(self, text: str) -> tuple[list[Finding], list[Finding]]:
        values, checks = self.base.scan_parts(text)
        if self.packs is not None:
            more = self.packs.scan_parts(text)[1]
            if more:
                checks = sorted([*checks, *more], key=lambda f: (f.start, f.end))
        if self.disabled and checks:
            checks = [f for f in checks if f.detector not in self.disabled]
        return values, checks
