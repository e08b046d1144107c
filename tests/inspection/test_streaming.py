"""Streamed masking equals whole-text masking under any chunking; no planted secret leaks."""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.inspection.test_masking import ANTHROPIC, EMAIL, KEY, custom_scanner, full_scanner
from ztgate.inspection.masking import MaskPlan, mask_text
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import Scanner
from ztgate.inspection.streaming import StreamMasker, StreamRestorer

VISA = "4111 1111 1111 1111"
PLANTED = [ANTHROPIC, EMAIL, VISA]
FILLER = ["hello", "the", "key:", " ", "\n", "password", "=", "pin = 1234", "T-0042", "bluebird",
          "x", "@", ".", "-", "é", "\u4e2d"]  # fmt: skip
PLANS = [
    MaskPlan({}, {"pii": "redact", "secret": "redact", "custom": "redact"}),
    MaskPlan({"email": "hash"}, {"pii": "pseudonymize", "secret": "pseudonymize"}),
    MaskPlan({"payment_card": "block"}, {}, default="report"),
]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@cache
def small_scanner() -> Scanner:
    return custom_scanner()


def texts(pieces: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=40).map("".join)


def chunkings(text: str, sizes: list[int]) -> list[str]:
    out, pos, i = [], 0, 0
    while pos < len(text):
        size = sizes[i % len(sizes)] if sizes else 1
        out.append(text[pos : pos + size])
        pos += size
        i += 1
    return out


def stream(
    scanner: Scanner, plan: MaskPlan, chunks: list[str], holdback: int
) -> tuple[str, StreamMasker]:
    masker = StreamMasker(
        scanner, plan, holdback=holdback, pseudonyms=PseudonymVault(), hash_key=KEY
    )
    return "".join(masker.feed(c) for c in chunks) + masker.flush(), masker


def whole(scanner: Scanner, plan: MaskPlan, text: str) -> object:
    return mask_text(
        text, scanner.scan(text), plan, hash_key=KEY, pseudonyms=PseudonymVault(),
        detectors=scanner.detectors,
    )  # fmt: skip


@SETTINGS
@given(
    text=texts([*FILLER, *PLANTED]),
    sizes=st.lists(st.integers(1, 40), max_size=8),
    plan=st.sampled_from(PLANS),
)
def test_stream_equals_whole_text_catalogue(text: str, sizes: list[int], plan: MaskPlan) -> None:
    scanner = full_scanner()
    expected = whole(scanner, plan, text)
    out, masker = stream(scanner, plan, chunkings(text, sizes), scanner.max_match_length)
    assert out == expected.text  # type: ignore[attr-defined]
    assert masker.applied == expected.applied  # type: ignore[attr-defined]
    assert masker.blocked == expected.blocked  # type: ignore[attr-defined]


@SETTINGS
@given(
    text=st.text(alphabet="pin =0123456789T-Bluebird x\n", max_size=120),
    sizes=st.lists(st.integers(1, 7), max_size=5),
    holdback_extra=st.integers(0, 5),
)
def test_stream_equals_whole_text_small_holdback(
    text: str, sizes: list[int], holdback_extra: int
) -> None:
    scanner = small_scanner()
    plan = PLANS[0]
    holdback = scanner.max_match_length + holdback_extra
    expected = whole(scanner, plan, text)
    out, masker = stream(scanner, plan, chunkings(text, sizes), holdback)
    assert out == expected.text  # type: ignore[attr-defined]
    assert masker.applied == expected.applied  # type: ignore[attr-defined]


@SETTINGS
@given(
    prefix=texts(FILLER), suffix=texts(FILLER), secret=st.sampled_from(PLANTED),
    sizes=st.lists(st.integers(1, 30), max_size=6),
)  # fmt: skip
def test_no_fragment_of_a_planted_secret_leaks(
    prefix: str, suffix: str, secret: str, sizes: list[int]
) -> None:
    scanner = full_scanner()
    text = f"{prefix} {secret} {suffix}"
    out, _ = stream(scanner, PLANS[0], chunkings(text, sizes), scanner.max_match_length)
    fragments = {secret[i : i + 4] for i in range(len(secret) - 3)} - {"1111", "111 ", " 111"}
    leaked = [f for f in fragments if f in out and f not in prefix + suffix]
    assert not leaked


def test_one_character_per_delta() -> None:
    scanner = full_scanner()
    text = f"Mail {EMAIL}, card {VISA}, key {ANTHROPIC} done. " * 3
    out, _masker = stream(scanner, PLANS[0], list(text), scanner.max_match_length)
    assert out == whole(scanner, PLANS[0], text).text  # type: ignore[attr-defined]
    assert EMAIL not in out
    assert ANTHROPIC[:20] not in out


def test_block_accumulates_in_stream() -> None:
    scanner = full_scanner()
    text = f"pay with {VISA} please"
    out, masker = stream(scanner, PLANS[2], chunkings(text, [3]), scanner.max_match_length)
    assert out == text
    assert masker.blocked == ["payment_card"]


def test_holdback_shorter_than_longest_match_is_refused() -> None:
    scanner = small_scanner()
    with pytest.raises(ValueError, match="holdback"):
        StreamMasker(scanner, PLANS[0], holdback=scanner.max_match_length - 1, hash_key=KEY)


def test_streamed_pseudonyms_round_trip() -> None:
    scanner = full_scanner()
    text = f"Write to {EMAIL} about key {ANTHROPIC}. Thanks, bob@example.net"
    vault = PseudonymVault()
    plan = MaskPlan({}, {"pii": "pseudonymize", "secret": "pseudonymize"})
    masker = StreamMasker(
        scanner, plan, holdback=scanner.max_match_length, pseudonyms=vault, hash_key=KEY
    )
    masked = "".join(masker.feed(c) for c in chunkings(text, [5])) + masker.flush()
    assert EMAIL not in masked
    answer = "Sure: I will email <email_1> and **<EMAIL_2>**; key <**ANTHROPIC_API_KEY_1**>."
    for size in (1, 2, 3, 7):
        restorer = StreamRestorer(vault)
        out = "".join(restorer.feed(c) for c in chunkings(answer, [size])) + restorer.flush()
        assert out == vault.restore(answer)
    assert EMAIL in out
    assert ANTHROPIC in out
    assert "bob@example.net" in out
