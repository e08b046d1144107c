"""Streamed masking equals whole-text masking under any chunking; no planted secret leaks."""

from __future__ import annotations

import re
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.detectors.test_catalogue import JWT, pem
from tests.inspection.test_masking import ANTHROPIC, EMAIL, KEY, custom_scanner, full_scanner
from ztgate.core.maskplan import MaskPlan
from ztgate.detectors.custom import custom_detectors
from ztgate.inspection.masking import mask_text
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import Scanner
from ztgate.inspection.streaming import (
    DEFAULT_HOLDBACK,
    RELEASE_STEP,
    StreamMasker,
    StreamRestorer,
)

VISA = "4111 1111 1111 1111"
PEM = pem("RSA PRIVATE KEY", 4)
PEM_CUT = pem("PRIVATE KEY", 3, end=False)
PLANTED = [ANTHROPIC, EMAIL, VISA, JWT, PEM]
IN_CONTEXT = [f"Authorization: Bearer {JWT}", "password = hunter2-Tr0ub4dor&3"]
# The default, the least the catalogue allows, and the longest match (the old rule).
HOLDBACKS = [DEFAULT_HOLDBACK, 116, 300, 8142]
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
    text=texts([*FILLER, *PLANTED, *IN_CONTEXT]),
    sizes=st.lists(st.integers(1, 40), max_size=8),
    plan=st.sampled_from(PLANS),
    holdback=st.sampled_from(HOLDBACKS),
)
def test_stream_equals_whole_text_catalogue(
    text: str, sizes: list[int], plan: MaskPlan, holdback: int
) -> None:
    scanner = full_scanner()
    expected = whole(scanner, plan, text)
    out, masker = stream(scanner, plan, chunkings(text, sizes), holdback)
    assert out == expected.text  # type: ignore[attr-defined]
    assert masker.applied == expected.applied  # type: ignore[attr-defined]
    assert masker.blocked == expected.blocked  # type: ignore[attr-defined]


def test_prose_waits_no_more_than_the_holdback_then_flows_in_steps() -> None:
    scanner = full_scanner()
    masker = StreamMasker(scanner, PLANS[0], hash_key=KEY)
    released = 0
    fed = 0
    for word in ("The quick brown fox jumps over the lazy dog. " * 40).split(" "):
        released += len(masker.feed(word + " "))
        fed += len(word) + 1
        if not released:  # the first token waits for the window only
            assert fed <= DEFAULT_HOLDBACK + len(word) + 1
        assert fed - released < DEFAULT_HOLDBACK + RELEASE_STEP + len(word) + 1


def test_an_unfinished_key_block_is_held_until_it_ends() -> None:
    scanner = full_scanner()
    masker = StreamMasker(scanner, PLANS[0], hash_key=KEY)
    text = "Here is the key:\n" + PEM + "\nand some more prose after it. " * 10
    cut = text.index("-----END")
    out = "".join(masker.feed(c) for c in chunkings(text[:cut], [7]))
    assert "-----BEGIN" not in out  # everything from the BEGIN line waits
    out += "".join(masker.feed(c) for c in chunkings(text[cut:], [7])) + masker.flush()
    assert out.startswith("Here is the key:\n[REDACTED:PRIVATE_KEY]")


@SETTINGS
@given(sizes=st.lists(st.integers(1, 50), min_size=1, max_size=4))
def test_a_cut_off_key_block_never_leaks(sizes: list[int]) -> None:
    scanner = full_scanner()
    text = f"oops {PEM_CUT}\n\nis this right? " + "more words " * 30
    out, _ = stream(scanner, PLANS[0], chunkings(text, sizes), DEFAULT_HOLDBACK)
    body = PEM_CUT.splitlines()[1:]
    assert not [line for line in body if line[:8] in out]


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
    out, _ = stream(scanner, PLANS[0], chunkings(text, sizes), DEFAULT_HOLDBACK)
    fragments = {secret[i : i + 4] for i in range(len(secret) - 3)} - {"1111", "111 ", " 111"}
    shown = re.sub(r"\[REDACTED:[A-Z0-9_]+\]", "", out)  # the label is no fragment
    leaked = [f for f in fragments if f in shown and f not in prefix + suffix]
    assert not leaked


def test_one_character_per_delta() -> None:
    scanner = full_scanner()
    text = f"Mail {EMAIL}, card {VISA}, key {ANTHROPIC} done. " * 3
    out, _masker = stream(scanner, PLANS[0], list(text), DEFAULT_HOLDBACK)
    assert out == whole(scanner, PLANS[0], text).text  # type: ignore[attr-defined]
    assert EMAIL not in out
    assert ANTHROPIC[:20] not in out


def test_block_accumulates_in_stream() -> None:
    scanner = full_scanner()
    text = f"pay with {VISA} please"
    out, masker = stream(scanner, PLANS[2], chunkings(text, [3]), DEFAULT_HOLDBACK)
    assert out == "pay with [REDACTED:PAYMENT_CARD] please"
    assert masker.blocked == ["payment_card"]


def test_a_holdback_that_cannot_cover_a_detector_is_refused() -> None:
    # Long matches with spaces throughout and no fixed start: only a longer window is safe.
    scanner = Scanner(custom_detectors({"spaced": r"\bq[ a-z]{1,200}q\b"}, {}))
    with pytest.raises(ValueError, match=r"'spaced'.*at least 201"):
        StreamMasker(scanner, PLANS[0], holdback=128, hash_key=KEY)
    StreamMasker(scanner, PLANS[0], holdback=202, hash_key=KEY)
    with pytest.raises(ValueError, match="'payment_card'"):
        StreamMasker(full_scanner(), PLANS[0], holdback=32, hash_key=KEY)


def test_streamed_pseudonyms_round_trip() -> None:
    scanner = full_scanner()
    text = f"Write to {EMAIL} about key {ANTHROPIC}. Thanks, bob@example.net"
    vault = PseudonymVault()
    plan = MaskPlan({}, {"pii": "pseudonymize", "secret": "pseudonymize"})
    masker = StreamMasker(scanner, plan, pseudonyms=vault, hash_key=KEY)
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
