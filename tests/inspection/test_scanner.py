"""The scanning engine: overlap resolution, character offsets, backend equivalence, custom
detectors, and properties that must hold for any text."""

from __future__ import annotations

import random
import re
import string
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.detectors.test_catalogue import (
    ANTHROPIC,
    AWS_KEY_ID,
    BACKENDS,
    JWT,
    NEAR_MISSES,
    TRUE_POSITIVES,
    VISA,
    catalogue_scanner,
    found,
    grouped,
    pem,
    rand,
)
from ztgate.core.findings import Finding
from ztgate.detectors.catalogue import catalogue
from ztgate.detectors.custom import custom_detectors
from ztgate.detectors.patterns import HYPERSCAN_AVAILABLE, Detector, check_pattern, python_flags
from ztgate.inspection.scanner import Contained, Scanner

needs_hyperscan = pytest.mark.skipif(not HYPERSCAN_AVAILABLE, reason="no hyperscan wheel here")


def detector(
    id: str,
    pattern: str,
    confidence: float = 0.5,
    validator: object = None,
    flags: int = 0,
) -> Detector:
    length = check_pattern(id, pattern, flags, hyperscan=False)
    return Detector(id, "custom", id.upper(), pattern, length, confidence, validator, flags)  # type: ignore[arg-type]


def scan_both(detectors: list[Detector], text: str) -> list[Finding]:
    """Scans with every backend available and insists they agree."""
    results = [Scanner(detectors, backend=b).scan(text) for b in BACKENDS]  # type: ignore[arg-type]
    assert all(r == results[0] for r in results)
    return results[0]


def spans(findings: list[Finding], text: str) -> list[tuple[str, str]]:
    return [(f.detector, text[f.start : f.end]) for f in findings]


# --- overlap resolution ----------------------------------------------------------------------


def test_longest_wins_at_the_same_start() -> None:
    detectors = [detector("short", "abc"), detector("long", "abcdef")]
    text = "xx abcdef yy"
    assert spans(scan_both(detectors, text), text) == [("long", "abcdef")]


def test_findings_overlapping_in_part_are_both_kept() -> None:
    """Dropping the later one would leave its tail ("defg") in clear: masking merges them."""
    detectors = [detector("later", "bcdefg"), detector("earlier", "abc")]
    text = "abcdefg"
    assert spans(scan_both(detectors, text), text) == [("earlier", "abc"), ("later", "bcdefg")]


def test_a_finding_wholly_inside_another_is_no_detection_but_is_kept_for_masking() -> None:
    """Its text is the other's part, wherever it starts (an IBAN's digits are no phone):
    ``scan`` leaves it out; ``scan_parts`` keeps it, marked, for masking (where the other
    finding changes no text, its value must not go out in clear)."""
    detectors = [detector("inner", "cde"), detector("outer", "abcdefg"), detector("tail", "fgh")]
    text = "abcdefgh"
    assert spans(scan_both(detectors, text), text) == [("outer", "abcdefg"), ("tail", "fgh")]
    parts = [Scanner(detectors, backend=b).scan_parts(text)[0] for b in BACKENDS]  # type: ignore[arg-type]
    assert all(p == parts[0] for p in parts)
    assert [(type(f), f.detector) for f in parts[0]] == [
        (Finding, "outer"),
        (Contained, "inner"),
        (Finding, "tail"),
    ]
    # A repeat of a span is contained too: one detection stands for it.
    twice = [detector("first", "cde"), detector("again", "cde")]
    assert [(type(f), f.detector) for f in Scanner(twice).scan_parts(text)[0]] == [
        (Finding, "first"),
        (Contained, "again"),
    ]


def test_ties_go_to_confidence_then_order() -> None:
    text = "the word"
    low, high = detector("low", "word", 0.4), detector("high", "word", 0.9)
    assert spans(scan_both([low, high], text), text) == [("high", "word")]
    first, second = detector("first", "word"), detector("second", "wor[d]")
    assert spans(scan_both([first, second], text), text) == [("first", "word")]
    assert spans(scan_both([second, first], text), text) == [("second", "word")]


def test_rejected_match_is_retried_one_character_on() -> None:
    d = detector("num", "[0-9]{4}", validator=lambda s: not s.startswith("0"))
    text = "id 01234"
    assert spans(scan_both([d], text), text) == [("num", "1234")]


def test_a_rejected_value_is_retried_from_the_value_and_later_ones_still_found() -> None:
    # Both key words lead to the first value; once it is rejected, only matches from it on
    # are tried (a detector that judges its value group only), and the second one is found.
    pattern = r"(?:api_key|key)[ =]{1,3}(?P<value>[A-Za-z0-9]{4,8})"
    seen: list[str] = []

    def judge(match: str) -> bool:
        value = match.rsplit(" ", 1)[-1]
        seen.append(value)
        return value != "aaaa"

    length = check_pattern("kv", pattern, 0, hyperscan=False)
    d = Detector("kv", "custom", "KV", pattern, length, 0.5, judge, 0, value_checked=True)
    text = "api_key aaaa then key b7c9"
    assert spans(scan_both([d], text), text) == [("kv", "key b7c9")]
    # "api_key aaaa" was judged once per backend, not again from "pi_key", "i_key"... "key".
    assert seen.count("aaaa") == len(BACKENDS)


def test_adjacent_and_repeated_matches() -> None:
    d = detector("abc", "abc")
    text = "abcabc abc"
    assert [(f.start, f.end) for f in scan_both([d], text)] == [(0, 3), (3, 6), (7, 10)]


def test_findings_from_many_detectors_apart_are_all_found() -> None:
    text = f"key {ANTHROPIC} card {VISA} mail a.b@example.com jwt {JWT}"
    for backend in BACKENDS:
        findings = catalogue_scanner(backend).scan(text)
        assert [f.detector for f in findings] == [
            "anthropic_api_key",
            "payment_card",
            "email",
            "jwt",
        ]


# --- character offsets with non-ASCII text ---------------------------------------------------


def test_offsets_are_characters_around_and_inside_non_ascii() -> None:
    detectors = [
        *custom_detectors({}, {"names": ["Müller", "café au lait"], "emoji": ["👍 deal"]}),
        *catalogue(),
    ]
    text = (
        "😀 Grüße — écrire à jane@example.org 👍 deal; MÜLLER said: CAFÉ  au\nlait\n"
        "clone https://bob:pässwörd1@example.com/x 中文 key " + ANTHROPIC + " ∎"
    )
    got = spans(scan_both(detectors, text), text)
    assert got == [
        ("email", "jane@example.org"),
        ("emoji", "👍 deal"),
        ("names", "MÜLLER"),
        ("names", "CAFÉ  au\nlait"),
        ("url_credentials", "https://bob:pässwörd1@example.com"),
        ("anthropic_api_key", ANTHROPIC),
    ]


def test_astral_characters_and_lone_surrogates() -> None:
    text = "\ud800 😀😀 " + AWS_KEY_ID + " \udfff é"
    for backend in BACKENDS:
        findings = catalogue_scanner(backend).scan(text)
        assert spans(findings, text) == [("aws_access_key_id", AWS_KEY_ID)]
        assert findings[0].start == text.index("AKIA")


def test_non_ascii_letters_are_not_word_characters() -> None:
    """One rule in both engines: under re.ASCII, é is punctuation, so \\b sits beside it."""
    d = detector("word", r"\bkey\b")
    text = "ékeyé keys"
    assert spans(scan_both([d], text), text) == [("word", "key")]


# --- both backends, the whole catalogue ------------------------------------------------------


def _mixed_corpus(seed: int) -> str:
    rng = random.Random(seed)
    prose = [
        "Lorem ipsum dolor sit amet,",
        "Grüße aus Köln —",
        "naïve café",
        "日本語のテキスト",
        "😀👍",
    ]
    samples = [t for _, t, _ in TRUE_POSITIVES] + [t for _, t in NEAR_MISSES]
    parts = []
    for _ in range(600):
        parts.append(rng.choice(samples) if rng.random() < 0.4 else rng.choice(prose))
        parts.append(rng.choice([" ", "\n", ", ", " — ", "\t"]))
    return "".join(parts)


@needs_hyperscan
def test_backends_agree_on_a_mixed_corpus() -> None:
    text = _mixed_corpus(7)
    hyperscan = catalogue_scanner("hyperscan").scan(text)
    assert len(hyperscan) > 100
    assert hyperscan == catalogue_scanner("re").scan(text)


@needs_hyperscan
def test_long_tails_and_dense_reports() -> None:
    """Patterns Hyperscan sees cut short (long trailing runs) and regions that merge many ends."""
    bearer = "Bearer " + rand(string.ascii_letters + string.digits, 500, "long")
    partial = pem("PRIVATE KEY", 120, end=False)
    emails = " ".join(f"user{i}@host{i}.example.com" for i in range(300))
    text = f"{bearer}\n{partial} {emails}"  # a partial key's body runs to the first space
    hyperscan = catalogue_scanner("hyperscan").scan(text)
    assert hyperscan == catalogue_scanner("re").scan(text)
    got = spans(hyperscan, text)
    assert got[0] == ("bearer_token", bearer)
    assert got[1] == ("private_key_partial", partial)
    assert len(got) == 302


def test_scanner_attributes_and_empty_input() -> None:
    scanner = catalogue_scanner(BACKENDS[0])
    assert scanner.max_match_length == max(d.max_length for d in catalogue())
    assert list(scanner.detectors) == [d.id for d in catalogue()]
    with pytest.raises(TypeError):
        scanner.detectors["x"] = catalogue()[0]  # type: ignore[index]
    assert scanner.scan("") == []
    assert Scanner([]).scan("anything") == []
    assert Scanner([]).max_match_length == 0


def test_scanner_refuses_bad_detector_sets() -> None:
    d = detector("abc", "abc")
    with pytest.raises(ValueError, match="'abc' is defined twice"):
        Scanner([d, d])
    understated = Detector("x", "custom", "X", "a{1,50}", 10, 0.5)
    with pytest.raises(ValueError, match=r"'x'.*50 characters long; the limit is 10"):
        Scanner([understated])


@needs_hyperscan
def test_scanning_from_many_threads() -> None:
    scanner = catalogue_scanner("hyperscan")
    text = _mixed_corpus(3)
    expected = scanner.scan(text)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(scanner.scan, [text] * 8))
    assert all(r == expected for r in results)


def test_fallback_backend_is_chosen_by_name() -> None:
    assert Scanner(catalogue()[:2], backend="re").backend == "re"
    if HYPERSCAN_AVAILABLE:
        assert Scanner(catalogue()[:2]).backend == "hyperscan"
    else:
        with pytest.raises(RuntimeError):
            Scanner(catalogue()[:2], backend="hyperscan")


# --- custom detectors ------------------------------------------------------------------------


def test_custom_patterns_and_word_lists() -> None:
    detectors = custom_detectors(
        {"ticket": r"TICKET-[0-9]{4,8}", "project.code": r"(?i)\bprj_[a-z]{3}\b"},
        {"codenames": ["Project Falcon", "a.b", "C++", "Blue Heron"]},
    )
    by_id = {d.id: d for d in detectors}
    assert by_id["ticket"].category == "custom"
    assert by_id["ticket"].label == "TICKET"
    assert by_id["project.code"].label == "PROJECT_CODE"
    assert by_id["ticket"].max_length == 15
    text = (
        "see TICKET-12345 and PRJ_abc; project  falcon is on, PROJECT FALCONER is not; "
        "axb is not a.b; we write C++ daily; blue\nheron"
    )
    assert spans(scan_both(detectors, text), text) == [
        ("ticket", "TICKET-12345"),
        ("project.code", "PRJ_abc"),
        ("codenames", "project  falcon"),
        ("codenames", "a.b"),
        ("codenames", "C++"),
        ("codenames", "blue\nheron"),
    ]


def test_word_lists_prefer_the_longer_phrase() -> None:
    detectors = custom_detectors({}, {"places": ["New York", "New York City"]})
    text = "in New York City today"
    assert spans(scan_both(detectors, text), text) == [("places", "New York City")]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (r"ACME-\d+", "unbounded quantifiers"),
        (r"ACME-[0-9]{4,}", "unbounded quantifiers"),
        (r"key=.*", "unbounded quantifiers"),
        (r"(?<=x)y{1,3}", "lookarounds"),
        (r"a(?!b)", "lookarounds"),
        (r"(a)\1", "backreferences"),
        (r"^abc$", "anchors"),
        (r"abc\Z", "anchors"),
        (r"a{,5}", r"\{0,n\}"),
        (r"a?", "empty string"),
        (r"x.{0,2000}", "2001 characters long; the limit is 1024"),
        (r"caf\u00e9", "non-ASCII"),
        ("café", "must be ASCII"),
        (r"(a", "not a valid regular expression"),
        (r"[[:alpha:]]{1,5}", "not a valid regular expression"),
        (r"(?>ab)c", "atomic groups"),
        (r"a{1,3}+", "possessive quantifiers"),
        ("", "empty"),
    ],
)
def test_custom_patterns_are_refused_with_the_detector_named(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"'acme_ids'.*" + message):
        custom_detectors({"acme_ids": pattern}, {})


@pytest.mark.parametrize(
    ("patterns", "words", "message"),
    [
        ({"bad name!": "abc"}, {}, "'bad name!'"),
        ({"x": "abc"}, {"x": ["abc"]}, "'x': defined both"),
        ({}, {"w": ["ok", "  "]}, "'w': word lists may not hold empty entries"),
        ({}, {"w": []}, "'w': a word list must be a non-empty list"),
        ({}, {"w": "abc"}, "'w': a word list must be a non-empty list"),
        ({}, {"w": ["x" * 1100]}, "'w'.*the limit is 1024"),
    ],
)
def test_custom_configuration_errors(
    patterns: dict[str, str], words: dict[str, list[str]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        custom_detectors(patterns, words)


def test_custom_detectors_scan_with_the_catalogue() -> None:
    scanner = Scanner([*catalogue(), *custom_detectors({}, {"secret_words": ["Heron"]})])
    text = "Heron lives at jane@example.org"
    assert spans(scanner.scan(text), text) == [
        ("secret_words", "Heron"),
        ("email", "jane@example.org"),
    ]


# --- properties ------------------------------------------------------------------------------

FRAGMENTS = [
    ANTHROPIC,
    ANTHROPIC[:40],
    "sk-ant-api03-",
    AWS_KEY_ID,
    "AKIA",
    VISA,
    grouped(VISA, (4, 4, 4, 4)),
    "4111 1111",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "jane.doe@example.org",
    "@",
    ".com",
    JWT,
    "eyJhbGciOiJub25lIn0.",
    pem("EC PRIVATE KEY", 2),
    "-----BEGIN RSA PRIVATE KEY-----\n",
    "-----END RSA PRIVATE KEY-----",
    "password = ",
    "Xk9#mP2vLq8w",
    "postgres://u:S3cretPw9@db",
    "DOB: ",
    "12/05/1988",
    "+44 20 7946 0958",
    "201-555-0123",
    "536-22-1234",
    "192.168.1.20",
    "2001:db8::1",
    "::",
    "AB 12 34 56 C",
    "Bearer ",
    "ghp_",
    ";Password=",
    "é",
    "😀",
    "—",
]
NOISE = st.text(alphabet=string.ascii_letters + string.digits + " .:-_/=@\n+é😀", max_size=6)
TEXTS = st.lists(st.sampled_from(FRAGMENTS) | NOISE, max_size=25).map("".join)
_COMPILED = {d.id: re.compile(d.pattern, python_flags(d.flags)) for d in catalogue()}
_PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@_PROPERTY_SETTINGS
@given(TEXTS)
def test_findings_are_sorted_none_inside_another_and_valid(text: str) -> None:
    results = [catalogue_scanner(b).scan(text) for b in BACKENDS]
    assert all(r == results[0] for r in results), "backends disagree"
    findings = results[0]
    start = edge = 0
    for f in findings:
        # Sorted by start; each reaches past all before it (none lies wholly inside another).
        assert start <= f.start < f.end <= len(text)
        assert f.end > edge
        start, edge = f.start, f.end
        d = catalogue_scanner(BACKENDS[0]).detectors[f.detector]
        matched = text[f.start : f.end]
        assert _COMPILED[d.id].fullmatch(matched), (d.id, matched)
        assert d.validator is None or d.validator(matched), (d.id, matched)
        assert len(matched) <= d.max_length


PLANTED = [
    ("anthropic_api_key", ANTHROPIC),
    ("aws_access_key_id", AWS_KEY_ID),
    ("payment_card", VISA),
    ("payment_card", grouped(VISA, (4, 4, 4, 4))),
    ("email", "jane.doe@example.org"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("jwt", JWT),
    ("private_key", pem("PRIVATE KEY", 3)),
    ("github_token", "ghp_" + rand(string.ascii_letters + string.digits, 36, "ghp")),
]
# Characters that neither form a match nor extend one: whitespace, brackets, and non-ASCII.
SAFE = st.text(alphabet=" \n\t,;!?()[]{}éüß中😀—", max_size=40)


@_PROPERTY_SETTINGS
@given(st.sampled_from(PLANTED), SAFE, SAFE)
def test_a_planted_value_is_found_at_its_offsets(
    planted: tuple[str, str], prefix: str, suffix: str
) -> None:
    detector_id, value = planted
    text = prefix + value + suffix
    for backend in BACKENDS:
        findings = catalogue_scanner(backend).scan(text)
        assert [(f.detector, f.start, f.end) for f in findings] == [
            (detector_id, len(prefix), len(prefix) + len(value))
        ]
    assert found(catalogue_scanner(BACKENDS[0]), prefix + suffix) == []
