"""Findings that overlap in part are masked as their union: no character any of them covers
is released, in whole texts or in streams, whatever the plan says of the others.

The defect this guards against: resolution kept the leftmost-longest of two overlapping
findings and dropped the other, so ``token: Ab1Ab1...Ab1.sk-ant-api03-...`` (a generic value
cut at its 128-character bound) was released with the tail of the Anthropic key in clear.

The property test's oracle does not trust the full scanner's resolution: it scans with each
detector alone (so nothing is dropped for another detector's sake), keeps every finding not
wholly inside another (such a finding's text is the other's part: the scanner's one rule of
precedence), and requires the masked output to be the text with every character of their
masked spans replaced, and nothing else.
"""

from __future__ import annotations

import itertools
import re
from functools import cache

from hypothesis import example, given
from hypothesis import strategies as st

from tests.detectors import test_catalogue as formats
from tests.fuzzing import fuzz
from tests.inspection.test_masking import EMAIL, KEY, full_scanner
from ztgate.core.findings import Finding
from ztgate.core.maskplan import MaskPlan
from ztgate.detectors.catalogue import catalogue
from ztgate.detectors.patterns import python_flags
from ztgate.inspection.masking import MaskResult, mask_text
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import Scanner
from ztgate.inspection.streaming import StreamMasker

REDACT_ALL = MaskPlan({}, {"secret": "redact", "pii": "redact"})
FILLED = "token: " + "Ab1" * 10 + "."  # a generic value that runs on into what follows
BRIEF = FILLED + formats.ANTHROPIC  # the value ends at its bound, inside the key
_PLACEHOLDER = r"(?:\[REDACTED:[A-Z0-9_]+\])+"

PLANTED = [
    formats.ANTHROPIC,
    formats.ANTHROPIC_ADMIN,
    formats.OPENAI_PROJECT,
    formats.AWS_KEY_ID,
    formats.GOOGLE_KEY,
    formats.GITHUB_PAT,
    formats.GITLAB,
    formats.SLACK_BOT,
    formats.STRIPE,
    formats.NPM,
    formats.JWT,
    formats.VISA,
    formats.NIR,
    formats.PASSWORD,
    formats.AWS_SECRET,
    EMAIL,
    "DE89 3704 0044 0532 0130 00",
]
# What makes a context detector read on into whatever follows.
CONTEXTS = ["token: ", "password = ", "api_key=", "Bearer ", "aws_secret_access_key=", FILLED]
FILLER = ["", " ", ".", "-", "_", "\n", "=", "@", "ok", "Ab1", "x9", "é"]


@st.composite
def overlapping_texts(draw: st.DrawFn) -> str:
    """Values and contexts laid down, then more values written over them at any offset: a
    value written inside another (or inside a context's run) overlaps it, one written at its
    end is adjacent to it."""
    pieces = st.sampled_from(PLANTED) | st.sampled_from(CONTEXTS) | st.sampled_from(FILLER)
    text = "".join(draw(st.lists(pieces, min_size=1, max_size=6)))
    for _ in range(draw(st.integers(1, 3))):
        value = draw(st.sampled_from(PLANTED) | st.sampled_from(CONTEXTS))
        at = draw(st.integers(0, len(text)))
        lead = draw(st.sampled_from(FILLER))
        tail = text[at + len(lead) + len(value) :] if draw(st.booleans()) else text[at:]
        text = text[:at] + lead + value + tail
    return text


@cache
def _alone() -> list[tuple[Scanner, re.Pattern[str]]]:
    """Each catalogue detector on its own scanner, with its regex (for the ``value`` group)."""
    return [
        (Scanner([d], backend="re"), re.compile(d.pattern, python_flags(d.flags)))
        for d in catalogue()
    ]


def masked_spans(text: str) -> list[tuple[int, int]]:
    """What a correct masker replaces under REDACT_ALL: the masked span (the ``value`` group of
    a context detector) of every finding of any detector alone, but those wholly inside
    another finding (for equal spans, one stands for all)."""
    found: list[tuple[Finding, tuple[int, int]]] = []
    for scanner, regex in _alone():
        for f in scanner.scan(text):
            match = regex.fullmatch(text, f.start, f.end)
            has_value = match is not None and "value" in regex.groupindex
            span = match.span("value") if has_value and match.start("value") >= 0 else None
            found.append((f, span or (f.start, f.end)))
    kept = []
    for i, (f, span) in enumerate(found):
        inside = any(
            g.start <= f.start
            and f.end <= g.end
            and ((g.start, g.end) != (f.start, f.end) or j < i)
            for j, (g, _) in enumerate(found)
            if j != i
        )
        if not inside:
            kept.append(span)
    return kept


def expected_shape(text: str, spans: list[tuple[int, int]]) -> re.Pattern[str]:
    """The text with each run of covered characters replaced by one or more placeholders
    (findings that only touch get one each), and every other character as it was."""
    covered = [False] * len(text)
    for lo, hi in spans:
        for i in range(lo, hi):
            covered[i] = True
    parts: list[str] = []
    i = 0
    while i < len(text):
        j = i
        while j < len(text) and covered[j] == covered[i]:
            j += 1
        parts.append(_PLACEHOLDER if covered[i] else re.escape(text[i:j]))
        i = j
    return re.compile("".join(parts), re.DOTALL)


def whole(text: str, plan: MaskPlan = REDACT_ALL, **kw: object) -> MaskResult:
    s = full_scanner()
    return mask_text(text, s.scan(text), plan, hash_key=KEY, detectors=s.detectors, **kw)  # type: ignore[arg-type]


def streamed(text: str, cuts: list[int], plan: MaskPlan = REDACT_ALL) -> tuple[str, StreamMasker]:
    masker = StreamMasker(full_scanner(), plan, pseudonyms=PseudonymVault(), hash_key=KEY)
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    out = "".join(masker.feed(text[a:b]) for a, b in itertools.pairwise(bounds))
    return out + masker.flush(), masker


# --- the defect, as found ----------------------------------------------------------------------


def test_the_tail_of_a_key_beyond_a_generic_value_is_masked() -> None:
    result = whole(BRIEF)
    assert result.text == "token: [REDACTED:ANTHROPIC_API_KEY]"
    # Both detectors are recorded; the key, the more certain, names the merged span.
    assert sorted(a.detector for a in result.applied) == ["anthropic_api_key", "generic_secret"]
    for sizes in ([1], [7], [64], [200]):
        cuts = list(range(0, len(BRIEF), sizes[0]))
        assert streamed(BRIEF, cuts)[0] == result.text


def test_the_whole_union_is_one_placeholder_and_adjacent_findings_stay_apart() -> None:
    text = f"{BRIEF} and {formats.AWS_KEY_ID} then {EMAIL}"
    assert whole(text).text == (
        "token: [REDACTED:ANTHROPIC_API_KEY] and [REDACTED:AWS_ACCESS_KEY_ID] then [REDACTED:EMAIL]"
    )


def test_a_finding_that_only_reports_leaves_the_other_masked_alone() -> None:
    plan = MaskPlan({"generic_secret": "report"}, {"secret": "redact"})
    result = whole(BRIEF, plan)
    assert result.text == FILLED + "[REDACTED:ANTHROPIC_API_KEY]"
    assert {(a.detector, a.action) for a in result.applied} == {
        ("generic_secret", "report"),
        ("anthropic_api_key", "redact"),
    }


def test_a_merged_span_is_redacted_never_pseudonymised() -> None:
    """A pseudonym stands for one value and is restored to it: two glued together are no
    value, so their union is redacted; a value on its own still gets its pseudonym."""
    plan = MaskPlan({}, {"secret": "pseudonymize", "pii": "pseudonymize"})
    vault = PseudonymVault()
    result = whole(f"{BRIEF} mail {EMAIL}", plan, pseudonyms=vault)
    assert result.text == "token: [REDACTED:ANTHROPIC_API_KEY] mail <EMAIL_1>"
    assert vault.restore("<EMAIL_1>") == EMAIL
    assert {(a.detector, a.action) for a in result.applied} == {
        ("generic_secret", "redact"),
        ("anthropic_api_key", "redact"),
        ("email", "pseudonymize"),
    }


def test_a_merged_span_with_a_blocking_finding_blocks() -> None:
    plan = MaskPlan({"anthropic_api_key": "block"}, {"secret": "hash"})
    result = whole(BRIEF, plan)
    assert result.blocked == ["anthropic_api_key"]
    assert result.text == "token: [REDACTED:ANTHROPIC_API_KEY]"


# --- the property, whole texts and streams -----------------------------------------------------


@fuzz(150)
@given(overlapping_texts())
@example(BRIEF)
@example(formats.OPENAI_PROJECT[:40] + formats.GITHUB_PAT)
def test_every_character_a_finding_covers_is_masked(text: str) -> None:
    spans = masked_spans(text)
    out = whole(text).text
    assert expected_shape(text, spans).fullmatch(out), (text, spans, out)


@fuzz(100)
@given(overlapping_texts(), st.lists(st.integers(0, 4000), max_size=12))
@example(BRIEF, [20, 60, 130])
def test_every_character_a_finding_covers_is_masked_in_streams(text: str, cuts: list[int]) -> None:
    out, _ = streamed(text, cuts)
    assert out == whole(text).text
    assert expected_shape(text, masked_spans(text)).fullmatch(out), (text, out)
