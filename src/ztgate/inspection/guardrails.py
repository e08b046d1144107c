"""Guardrails: what the checks found in a request's texts, weighed into scores per category
and place, for policy to decide on (docs/guardrails.md).

The checks themselves are detectors (``detectors/guardrails.py``, and a policy's rule packs)
found by the same scan as PII and secrets, as written and under every disguise
(``inspection/deep.py``). Here each finding becomes a :class:`~ztgate.core.guardrails.Signal`
with its check's score, adjusted for where it stands:

- words a person quotes (inside "double quotes" on one line, or in a code span or block) in
  their own turn or the system prompt count for half: a security engineer naming an attack
  is not making one. In tool results and documents nothing is discounted: quoting is no
  excuse for text no person in the conversation wrote.
- a finding under a disguise is also evidence of smuggling: strong when it hides an order,
  weak when it hides a value (a JWT's claims are base64 too).
- an optional classifier adds its own score for the texts people and tools wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from ztgate.config.model import CLASSIFIED_BY_DEFAULT
from ztgate.core.findings import VALUE_CATEGORIES, Finding
from ztgate.core.guardrails import (
    INDIRECT_LOCATIONS,
    INJECTION_FAMILY,
    GuardrailHit,
    Signal,
    combine,
)
from ztgate.detectors.catalogue import catalogue
from ztgate.detectors.guardrails import NO_CHECKS, CheckInfo, GuardrailChecks, builtin_checks
from ztgate.detectors.unveil import MARK_SCORES
from ztgate.inspection.deep import DECODE_LIMIT, DeepScanner, Scan
from ztgate.inspection.scanner import LayeredScanner, Scanner

if TYPE_CHECKING:
    from ztgate.inspection.classifier import TextClassifier

log = logging.getLogger("ztgate.inspection")

QUOTED_FACTOR = 0.5
_INDIRECT_FACTOR = 1.5
_PERSON_LOCATIONS = frozenset({"user", "system", "assistant"})
_SMUGGLED_ORDER = 0.9  # an order found only under a disguise
_SMUGGLED_VALUE = 0.3  # a value found only under a disguise: often innocent (JWT claims)
_DECODE_LIMIT_SCORE = 0.5
_MIN_CLASSIFIED = 32  # characters: shorter texts carry too little for the classifier
_CLASSIFIER_FLOOR = 0.3  # below this the classifier's score is not recorded


@dataclass(frozen=True, slots=True)
class GuardrailSettings:
    quoted_factor: float = QUOTED_FACTOR
    max_depth: int = 3
    max_decoded: int = 1 << 20
    classified: frozenset[str] = frozenset(CLASSIFIED_BY_DEFAULT)


def _quoted(text: str, start: int, end: int) -> bool:
    """Inside a code block, a code span, or quotes ("double", 'single', curly) opened before
    the match on its line and closed after it."""
    if text.count("```", 0, start) % 2:
        return True
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    before, after = text[line_start:start], text[end:line_end]
    for mark in ("`", '"'):
        if before.count(mark) % 2 and mark in after:
            return True
    if before.count("\u201c") > before.count("\u201d") and "\u201d" in after:
        return True
    # A single quote opens where no letter precedes it and closes where none follows (so
    # apostrophes in "don't" or "users'" are not taken for quotes).
    opened = any(
        c == "'" and (i == 0 or not before[i - 1].isalnum()) for i, c in enumerate(before)
    ) or before.count("\u2018") > before.count("\u2019")
    closed = any(
        c in "'\u2019" and (i + 1 == len(after) or not after[i + 1].isalnum())
        for i, c in enumerate(after)
    )
    return opened and closed


class GuardrailEngine:
    """Turns scans into signals; holds the scanners for the current rule packs."""

    def __init__(
        self,
        scanner: Scanner,
        *,
        settings: GuardrailSettings | None = None,
        classifier: TextClassifier | None = None,
        policy_checks: Callable[[], GuardrailChecks] | None = None,
    ) -> None:
        self.settings = settings or GuardrailSettings()
        self.classifier = classifier
        self._base = scanner
        self._policy_checks = policy_checks or (lambda: NO_CHECKS)
        self._builtin_infos = {i.id: i for i in builtin_checks()[1]}
        self._current: tuple[GuardrailChecks, DeepScanner, Mapping[str, CheckInfo]] | None = None

    @classmethod
    def default(cls, classifier: TextClassifier | None = None) -> GuardrailEngine:
        """The catalogue and the built-in pack, as the gateway runs them by default."""
        return cls(_default_scanner(), classifier=classifier)

    def deep(self) -> DeepScanner:
        """The scanner for the policy now deciding (compiled again only when its packs
        change)."""
        return self._layers()[0]

    def infos(self) -> Mapping[str, CheckInfo]:
        return self._layers()[1]

    def _layers(self) -> tuple[DeepScanner, Mapping[str, CheckInfo]]:
        checks = self._policy_checks()
        current = self._current
        if current is None or current[0] is not checks:
            packs = Scanner(checks.detectors) if checks.detectors else None
            layered = LayeredScanner(self._base, packs, checks.disabled)
            deep = DeepScanner(
                layered,
                max_depth=self.settings.max_depth,
                max_decoded=self.settings.max_decoded,
            )
            infos = {**self._builtin_infos, **{i.id: i for i in checks.infos}}
            current = self._current = (checks, deep, infos)
        return current[1], current[2]

    def signals(self, text: str, scan: Scan, location: str) -> list[Signal]:
        """What one text's scan says, weighed for where the text is."""
        detectors = self.deep().scanner.detectors
        person = location in _PERSON_LOCATIONS
        indirect = location in INDIRECT_LOCATIONS
        out: list[Signal] = []
        quoted: dict[str, list[Signal]] = {}
        for finding in scan.checks:
            score = _check_score(finding, detectors)
            if finding.via:  # a disguise is no quotation: it is there to hide
                out.append(_smuggled(finding, location, _SMUGGLED_ORDER))
            if (
                person
                and self.settings.quoted_factor < 1
                and _quoted(text, finding.start, finding.end)
            ):
                signal = Signal(
                    finding.category,
                    finding.detector,
                    location,
                    score * self.settings.quoted_factor,
                )
                quoted.setdefault(finding.category, []).append(signal)
                continue
            if indirect and finding.category in INJECTION_FAMILY:
                # Text no person wrote has no business giving the model orders.
                score = min(1.0, score * _INDIRECT_FACTOR)
            out.append(Signal(finding.category, finding.detector, location, score))
        for signals in quoted.values():
            # Quoted words are one piece of evidence however many checks they trip (a list of
            # attack samples trips many): the strongest counts, the rest are only named.
            strongest = max(signals, key=lambda s: s.score)
            out.extend(s if s is strongest else s._replace(score=0.0) for s in signals)
        for finding in scan.values:
            if finding.via:
                out.append(_smuggled(finding, location, _SMUGGLED_VALUE))
        if (
            self.classifier is not None
            and location in self.settings.classified
            and len(text) >= _MIN_CLASSIFIED
        ):
            score = self.classifier.score(text)
            if score >= _CLASSIFIER_FLOOR:
                out.append(
                    Signal(
                        "prompt_injection", f"classifier.{self.classifier.name}", location, score
                    )
                )
        return out

    def check(self, text: str, location: str = "user") -> tuple[GuardrailHit, ...]:
        """One text, checked alone: what policy would see of it (the benchmarks use this)."""
        return combine(self.signals(text, self.deep().scan(text), location))


def _check_score(finding: Finding, detectors: Mapping[str, object]) -> float:
    if finding.detector == DECODE_LIMIT:
        return _DECODE_LIMIT_SCORE
    mark = MARK_SCORES.get(finding.detector)
    if mark is not None:
        return mark
    detector = detectors.get(finding.detector)
    confidence = getattr(detector, "confidence", None)
    return float(confidence) if confidence is not None else 0.5


def _smuggled(finding: Finding, location: str, score: float) -> Signal:
    """A finding under a disguise is evidence of smuggling in itself."""
    kind = finding.via.partition("+")[0]
    if finding.category in VALUE_CATEGORIES:
        return Signal("smuggling", f"smuggling.{kind}_value", location, score)
    return Signal("smuggling", f"smuggling.{kind}", location, score)


def derived_check_ids() -> frozenset[str]:
    """Checks that are no pattern but still name what they found, for policy to name: the
    disguise marks, the decoding limit, smuggling by each disguise, the classifier, the
    judge."""
    kinds = ("unicode", "base64", "base32", "hex", "url", "html", "quoted-printable", "rot13")
    return frozenset(
        {
            *MARK_SCORES,
            DECODE_LIMIT,
            *(f"smuggling.{kind}" for kind in kinds),
            *(f"smuggling.{kind}_value" for kind in kinds),
            "classifier.linear",
            "judge.attack",
            "judge.benign",
            "judge.unavailable",
        }
    )


@lru_cache(maxsize=1)
def _default_scanner() -> Scanner:
    return Scanner([*catalogue(), *builtin_checks()[0]])


def messages_for(
    hits: Sequence[GuardrailHit], infos: Mapping[str, CheckInfo], threshold: float
) -> list[str]:
    """What people read about the hits at or above ``threshold``: category, place, score,
    and what the strongest check that fired is for."""
    lines = []
    for hit in sorted(hits, key=lambda h: -h.score):
        if hit.score < threshold:
            continue
        described = [infos[c].message for c in sorted(hit.checks) if c in infos]
        why = f": {described[0]}" if described else ""
        lines.append(f"{hit.category} in {hit.location} (score {hit.score:.2f}{why})")
    return lines
