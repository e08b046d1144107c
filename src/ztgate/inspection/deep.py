"""Scanning a text as written and under every disguise it wears (``detectors/unveil.py``).

A finding under a disguise is mapped back to the text as written: through folded Unicode
character by character, through an encoding to the whole encoded stretch, which is what
masking then replaces (a base64-encoded key is redacted as a whole). Such findings carry
``via`` (``base64``, ``unicode``...), which the guardrails read as smuggling.

Decoding is bounded: at most ``max_depth`` encodings inside each other (0: texts are read as
written only, no disguise taken off) and ``max_decoded`` decoded characters per text. What
lies beyond is not expanded but reported, as a ``smuggling.decode_limit`` finding over the
stretch left undecoded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ztgate.core.findings import Finding
from ztgate.detectors.unveil import (
    MIN_ENCODED,
    encodings,
    folded,
    marks,
    origins,
    probe,
    rot13,
)
from ztgate.inspection.scanner import Contained, TextScanner, detections, mark_contained

DECODE_LIMIT = "smuggling.decode_limit"


@dataclass(slots=True)
class Scan:
    """What one text holds: value findings (resolved, as the scanner resolves them) and every
    guardrail check's findings, disguises included; and, apart, the value findings wholly
    inside another (``scanner.Contained``): no detections, but masking must see them.

    Built from ``scan_parts`` (contained findings among the values), it sets them apart."""

    values: list[Finding] = field(default_factory=list)
    checks: list[Finding] = field(default_factory=list)
    contained: list[Finding] = field(default_factory=list)

    def __post_init__(self) -> None:
        if any(isinstance(f, Contained) for f in self.values):
            self.contained = [
                *self.contained,
                *(f for f in self.values if isinstance(f, Contained)),
            ]
            self.values = detections(self.values)

    @property
    def masked_values(self) -> list[Finding]:
        """The values masking reads: the detections and the contained findings."""
        return [*self.values, *self.contained] if self.contained else self.values

    def __bool__(self) -> bool:
        return bool(self.values or self.checks)


@dataclass(slots=True)
class _Budget:
    left: int


class DeepScanner:
    """A scanner that also reads through disguises. Thread-safe, like the scanner."""

    def __init__(self, scanner: TextScanner, *, max_depth: int = 3, max_decoded: int = 1 << 20):
        self.scanner = scanner
        self.max_depth = max_depth
        self.max_decoded = max_decoded

    def scan(self, text: str) -> Scan:
        values, checks = self.scanner.scan_parts(text)
        result = Scan(values, checks)
        if self.max_depth == 0 or (len(text) < MIN_ENCODED and text.isascii()):
            # Read as written only; or too short to hold an encoding, and ASCII (no invisible
            # or look-alike characters).
            return result
        budget = _Budget(self.max_decoded)
        extra_values, extra_checks = self._unveil(text, 0, budget)
        if extra_values:
            resolved = _resolve_values(values, extra_values)
            result.values = detections(resolved)
            result.contained = [f for f in resolved if isinstance(f, Contained)]
        if extra_checks:
            seen = {(f.detector, f.start, f.end) for f in checks}
            result.checks = sorted(
                [*checks, *(f for f in extra_checks if (f.detector, f.start, f.end) not in seen)],
                key=lambda f: (f.start, f.end),
            )
        return result

    def _unveil(
        self, text: str, depth: int, budget: _Budget
    ) -> tuple[list[Finding], list[Finding]]:
        """Findings under the disguises of ``text``, in its own positions."""
        checks: list[Finding] = marks(text)
        plain = folded(text)
        if plain is not None:
            # Everything else is read in the folded text, and mapped back character by character.
            inner_values, inner_checks = self._all(plain, depth, budget)
            back = origins(text)
            return (
                _mapped(inner_values, back, "unicode"),
                checks + _mapped(inner_checks, back, "unicode"),
            )
        values: list[Finding] = []
        probed = probe(text)
        turned = rot13(text, probed)
        if turned is not None:
            inner_values, inner_checks = self.scanner.scan_parts(turned)
            values += [_via(f, f.start, f.end, "rot13") for f in inner_values]
            checks += [_via(f, f.start, f.end, "rot13") for f in inner_checks]
        if depth >= self.max_depth:
            return values, checks
        for encoded in encodings(text, probed):
            start, end = encoded.start, encoded.end
            if len(encoded.text) > budget.left:
                checks.append(Finding(DECODE_LIMIT, "smuggling", "SMUGGLING", start, end))
                break
            budget.left -= len(encoded.text)
            inner_values, inner_checks = self._all(encoded.text, depth + 1, budget)
            values += [_via(f, start, end, encoded.kind) for f in inner_values]
            checks += [_via(f, start, end, encoded.kind) for f in inner_checks]
        return values, checks

    def _all(self, text: str, depth: int, budget: _Budget) -> tuple[list[Finding], list[Finding]]:
        """Everything in ``text``: as written there, and under its own disguises."""
        values, checks = self.scanner.scan_parts(text)
        if depth < self.max_depth:
            more_values, more_checks = self._unveil(text, depth, budget)
            values, checks = values + more_values, checks + more_checks
        return values, checks


def _via(finding: Finding, start: int, end: int, kind: str) -> Finding:
    """``finding`` mapped to the disguised stretch; one contained stays contained."""
    via = f"{kind}+{finding.via}" if finding.via else kind
    return replace(finding, start=start, end=end, via=via)


def _mapped(findings: list[Finding], back: list[int], kind: str) -> list[Finding]:
    return [_via(f, back[f.start], back[f.end - 1] + 1, kind) for f in findings if f.end > f.start]


def _resolve_values(values: list[Finding], extra: list[Finding]) -> list[Finding]:
    """Values found as written win over the same span found again under a disguise (the
    sort is stable, written ones first); the rest resolve leftmost-longest, as the scanner's
    own do. What loses is marked contained, not dropped: masking still covers it where
    the finding that won changes no text."""
    return mark_contained([*values, *extra])
