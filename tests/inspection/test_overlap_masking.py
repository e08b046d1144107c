"""Findings that overlap are masked as their union: no character that a finding whose action
changes text covers is released, in whole texts or in streams, whatever the plan says of the
others, and whether the finding overlaps another in part or lies wholly inside it.

The defect this guards against: resolution kept the leftmost-longest of two overlapping
findings and dropped the other, so ``token: Ab1Ab1...Ab1.sk-ant-api03-...`` (a generic value
cut at its 128-character bound) was released with the tail of the Anthropic key in clear.

The property test's oracle does not trust the full scanner's resolution: it scans with each
detector alone (so nothing is dropped for another detector's sake), keeps every finding not
wholly inside another (such a finding's text is the other's part: the scanner's one rule of
precedence), and requires the masked output to be the text with every character of their
masked spans replaced, and nothing else.

The second defect: a finding wholly inside another was dropped by the scanner, so where the
outer one changed no text (policy reports it, or says nothing of it) the inner one's value
went out in clear (a card number at the end of a ``token: ...`` value, a Stripe key glued to
an e-mail address). The random-plan properties draw each detector's action (none, report,
redact, pseudonymize, hash, block) and require every character any finding of any detector
alone covers, if its action changes text, to be masked, and no other; and a request to be
blocked by the detections alone (a finding inside another never blocks).
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
from ztgate.core.maskplan import Action, MaskPlan
from ztgate.detectors.catalogue import catalogue
from ztgate.detectors.patterns import python_flags
from ztgate.inspection.deep import DeepScanner
from ztgate.inspection.masking import MaskResult, mask_text, plan_findings
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import Contained, Scanner
from ztgate.inspection.streaming import StreamMasker

REDACT_ALL = MaskPlan({}, {"secret": "redact", "pii": "redact"})
FILLED = "token: " + "Ab1" * 10 + "."  # a generic value that runs on into what follows
BRIEF = FILLED + formats.ANTHROPIC  # the value ends at its bound, inside the key
_PLACEHOLDER = r"(?:\[REDACTED:[A-Z0-9_]+\])+"
# Any replacement: redacted, pseudonymised, hashed.
_ANY_PLACEHOLDER = r"(?:\[REDACTED:[A-Z0-9_]+\]|<[A-Z0-9_]+_[0-9]+>|\[[A-Z0-9_]+:[0-9a-f]{16}\])+"
CHANGES_TEXT = frozenset({"redact", "pseudonymize", "hash", "block"})
CARD_IN_GENERIC = "token: " + "Ab1" * 7 + "Ab." + formats.VISA  # the value ends in a card
KEY_IN_EMAIL = formats.STRIPE + EMAIL  # a key glued to an address: the address holds it
CARD_IN_IBAN = "DE15 4078 3622 3160 2507 89"  # a valid IBAN ending in a Luhn-valid run

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
# Findings wholly inside another one.
NESTS = [
    CARD_IN_GENERIC,
    KEY_IN_EMAIL,
    CARD_IN_IBAN,
    formats.GITLAB + EMAIL,
    "Bearer i_key=" + formats.VISA,
]


@st.composite
def overlapping_texts(draw: st.DrawFn) -> str:
    """Values and contexts laid down, then more values written over them at any offset: a
    value written inside another (or inside a context's run) overlaps it, one written at its
    end is adjacent to it."""
    values = st.sampled_from(PLANTED) | st.sampled_from(CONTEXTS) | st.sampled_from(NESTS)
    text = "".join(draw(st.lists(values | st.sampled_from(FILLER), min_size=1, max_size=6)))
    for _ in range(draw(st.integers(1, 3))):
        value = draw(values)
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


def changing_spans(text: str, plan: MaskPlan) -> list[tuple[int, int]]:
    """What a correct masker replaces under ``plan``: the masked span of every finding of any
    detector alone whose action changes text, wholly inside another finding or not."""
    spans: list[tuple[int, int]] = []
    for scanner, regex in _alone():
        for f in scanner.scan(text):
            if plan.action_for(f) not in CHANGES_TEXT:
                continue
            match = regex.fullmatch(text, f.start, f.end)
            has_value = match is not None and "value" in regex.groupindex
            span = match.span("value") if has_value and match.start("value") >= 0 else None
            spans.append(span or (f.start, f.end))
    return spans


def expected_shape(
    text: str, spans: list[tuple[int, int]], placeholder: str = _PLACEHOLDER
) -> re.Pattern[str]:
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
        parts.append(placeholder if covered[i] else re.escape(text[i:j]))
        i = j
    return re.compile("".join(parts), re.DOTALL)


def whole(text: str, plan: MaskPlan = REDACT_ALL, **kw: object) -> MaskResult:
    """Masks as the gateway does: the scanner's parts, planned, then masked."""
    s = full_scanner()
    findings = plan_findings(*s.scan_parts(text), plan)
    return mask_text(text, findings, plan, hash_key=KEY, detectors=s.detectors, **kw)  # type: ignore[arg-type]


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


# --- a finding wholly inside another ------------------------------------------------------------


def test_a_card_at_the_end_of_a_reported_generic_value_is_masked() -> None:
    plan = MaskPlan({"generic_secret": "report", "payment_card": "redact"}, {})
    result = whole(CARD_IN_GENERIC, plan)
    assert result.text == CARD_IN_GENERIC.replace(formats.VISA, "[REDACTED:PAYMENT_CARD]")
    assert {(a.detector, a.action) for a in result.applied} == {
        ("generic_secret", "report"),
        ("payment_card", "redact"),
    }
    for size in (1, 5, 64):
        assert streamed(CARD_IN_GENERIC, list(range(0, 80, size)), plan)[0] == result.text
    # Where the outer finding masks, it covers the inner one: one placeholder, its name.
    assert whole(CARD_IN_GENERIC).text == "token: [REDACTED:SECRET]"


def test_a_key_inside_an_address_nobody_masks_is_masked_with_its_own_action() -> None:
    plan = MaskPlan({"stripe_key": "pseudonymize"}, {})  # the plan says nothing of e-mail
    vault = PseudonymVault()
    result = whole(KEY_IN_EMAIL, plan, pseudonyms=vault)
    assert formats.STRIPE[:12] not in result.text
    assert result.text.startswith("<STRIPE_KEY_1>")
    assert vault.restore(result.text) == KEY_IN_EMAIL


def test_a_run_inside_an_iban_never_blocks_but_is_masked_where_the_iban_is_not() -> None:
    """Detections are unchanged: the IBAN explains its digits, so ``payment_card: block``
    refuses nothing and policy sees one IBAN; the card-like run is still not sent in clear
    when the IBAN itself is only reported (``block`` on it redacts)."""
    assert [f.detector for f in full_scanner().scan(CARD_IN_IBAN)] == ["iban"]
    values = full_scanner().scan_parts(CARD_IN_IBAN)[0]
    assert [(type(f), f.detector) for f in values] == [
        (Finding, "iban"),
        (Contained, "payment_card"),
    ]
    masked = whole(CARD_IN_IBAN, MaskPlan({"payment_card": "block", "iban": "redact"}, {}))
    assert (masked.text, masked.blocked) == ("[REDACTED:IBAN]", [])
    assert [a.detector for a in masked.applied] == ["iban"]
    reported = whole(CARD_IN_IBAN, MaskPlan({"payment_card": "block", "iban": "report"}, {}))
    assert reported.blocked == []
    assert reported.text == "DE15 4078 [REDACTED:PAYMENT_CARD]"
    assert {(a.detector, a.action) for a in reported.applied} == {
        ("iban", "report"),
        ("payment_card", "redact"),
    }
    # A finding inside another reports nothing of its own.
    only = whole(CARD_IN_IBAN, MaskPlan({"payment_card": "report"}, {}))
    assert (only.text, only.applied) == (CARD_IN_IBAN, [])


def test_a_deep_scan_sets_contained_findings_apart() -> None:
    """Detection-level readers (policy conditions, audit, guardrails) read ``values``; masking
    reads ``masked_values``."""
    found = DeepScanner(full_scanner()).scan(f"pay to {CARD_IN_IBAN} please")
    assert [f.detector for f in found.values] == ["iban"]
    assert [f.detector for f in found.contained] == ["payment_card"]
    assert [f.detector for f in found.masked_values] == ["iban", "payment_card"]


def test_a_contained_finding_under_a_disguise_is_masked_too() -> None:
    """Base64 of a reported generic value ending in a card: both map to the encoded stretch,
    the generic one as the detection; the card's redaction still covers the stretch."""
    import base64

    encoded = base64.b64encode(CARD_IN_GENERIC.encode()).decode()
    text = f"config {encoded} end"
    found = DeepScanner(full_scanner()).scan(text)
    plan = MaskPlan({"generic_secret": "report", "payment_card": "redact"}, {})
    findings = plan_findings(found.masked_values, found.checks, plan)
    out = mask_text(text, findings, plan, hash_key=KEY, detectors=full_scanner().detectors)
    assert encoded not in out.text
    assert out.text == "config [REDACTED:PAYMENT_CARD] end"


_ACTIONS: list[Action | None] = [None, "report", "redact", "pseudonymize", "hash", "block"]


@st.composite
def random_plans(draw: st.DrawFn) -> MaskPlan:
    """Each catalogue detector's action drawn on its own (None: the plan says nothing)."""
    actions = {d.id: draw(st.sampled_from(_ACTIONS)) for d in catalogue()}
    return MaskPlan({k: v for k, v in actions.items() if v is not None}, {})


def _check_random_plan(text: str, plan: MaskPlan, out: str) -> None:
    shape = expected_shape(text, changing_spans(text, plan), _ANY_PLACEHOLDER)
    assert shape.fullmatch(out), (text, out)


@fuzz(150)
@given(overlapping_texts(), random_plans())
@example(CARD_IN_GENERIC, MaskPlan({"generic_secret": "report", "payment_card": "redact"}, {}))
@example(KEY_IN_EMAIL, MaskPlan({"stripe_key": "pseudonymize"}, {}))
@example(CARD_IN_IBAN, MaskPlan({"iban": "report", "phone": "redact", "payment_card": "block"}, {}))
def test_every_character_a_changing_finding_covers_is_masked_under_any_plan(
    text: str, plan: MaskPlan
) -> None:
    result = whole(text, plan, pseudonyms=PseudonymVault())
    _check_random_plan(text, plan, result.text)
    s = full_scanner()
    assert set(result.blocked) == {
        f.detector for f in s.scan(text) if plan.action_for(f) == "block"
    }


@fuzz(100)
@given(overlapping_texts(), random_plans(), st.lists(st.integers(0, 4000), max_size=12))
@example(CARD_IN_GENERIC, MaskPlan({"generic_secret": "report", "payment_card": "redact"}, {}), [9])
def test_every_character_a_changing_finding_covers_is_masked_in_streams_under_any_plan(
    text: str, plan: MaskPlan, cuts: list[int]
) -> None:
    out, masker = streamed(text, cuts, plan)
    expected = whole(text, plan, pseudonyms=PseudonymVault())
    assert out == expected.text
    assert set(masker.blocked) == set(expected.blocked)
    _check_random_plan(text, plan, out)


def test_a_request_is_masked_and_judged_on_its_detections() -> None:
    """Through the inspect and protect stages: policy sees one IBAN (no card), nothing
    blocks, and neither the card-like run nor the card at the end of a reported generic
    value is forwarded."""
    from tests.inspection.test_inspector import context, decide, message
    from ztgate.inspection.inspector import ScanningInspector

    inspector = ScanningInspector(full_scanner(), hash_key=KEY)
    ctx = context(message(f"pay {CARD_IN_IBAN}, then {CARD_IN_GENERIC}"))
    inspector.inspect_request(ctx)
    assert sorted(f.detector for f in ctx.findings) == ["generic_secret", "iban"]
    decide(ctx, MaskPlan({"iban": "report", "generic_secret": "report"}, {"pii": "block"}))
    inspector.protect_request(ctx)
    assert ctx.payload is not None
    assert ctx.payload["messages"][0]["content"] == (
        "pay DE15 4078 [REDACTED:PAYMENT_CARD], then "
        + CARD_IN_GENERIC.replace(formats.VISA, "[REDACTED:PAYMENT_CARD]")
    )
    assert ctx.masked == {"payment_card": 2}


def test_values_as_written_inside_a_stretch_read_under_a_disguise_are_masked() -> None:
    """``=46`` reads as quoted-printable, so the whole stretch decodes to an IBAN, which
    holds the generic value and the card as written: with IBANs only reported, both used to
    be dropped and the secret went out in clear. The secret is found under the disguise too,
    so, as for any encoded value, the whole stretch it was read in is replaced."""
    text = f"pay {CARD_IN_IBAN}, then " + CARD_IN_GENERIC.replace("Ab.", "Ab=")
    found = DeepScanner(full_scanner()).scan(text)
    assert [(f.detector, f.via) for f in found.values] == [("iban", "quoted-printable")]
    plan = MaskPlan({"iban": "report"}, {"secret": "redact"})
    findings = plan_findings(found.masked_values, found.checks, plan)
    out = mask_text(text, findings, plan, hash_key=KEY, detectors=full_scanner().detectors)
    assert out.text == "pay [REDACTED:SECRET]"
    assert [(a.detector, a.action) for a in out.applied if a.action != "report"] == [
        ("generic_secret", "redact")
    ] * 2
