"""Masking actions: what each one writes, value-group narrowing, keyed hashing, plans."""

from __future__ import annotations

import base64
import random
import string
from functools import cache

import pytest

from ztgate.core.findings import Finding
from ztgate.core.maskplan import MaskPlan
from ztgate.detectors.catalogue import catalogue
from ztgate.detectors.custom import custom_detectors
from ztgate.inspection.masking import keyed_hash, mask_text
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import Scanner

KEY = b"test-hash-key"
_B64URL = string.ascii_letters + string.digits + "-_"
_RNG = random.Random(7)
ANTHROPIC = "sk-ant-api03-" + "".join(_RNG.choice(_B64URL) for _ in range(93)) + "AA"
AZURE_KEY = base64.b64encode(_RNG.randbytes(64)).decode()
EMAIL = "alice.smith@example.org"


@cache
def full_scanner() -> Scanner:
    """The whole catalogue, compiled once for this module (~0.5 s)."""
    return Scanner(catalogue())


@cache
def custom_scanner() -> Scanner:
    return Scanner(
        custom_detectors(
            {
                "pin": r"\bpin[ \t]{0,2}=[ \t]{0,2}(?P<value>[0-9]{4,8})\b",
                "ticket": r"\bT-[0-9]{4}\b",
            },
            {"project": ["Bluebird"]},
        )
    )


def run(text: str, plan: MaskPlan, scanner: Scanner, **kw: object) -> object:
    return mask_text(
        text,
        scanner.scan(text),
        plan,
        hash_key=KEY,
        detectors=scanner.detectors,
        **kw,  # type: ignore[arg-type]
    )


def test_redact_uses_the_label() -> None:
    s = full_scanner()
    text = f"key {ANTHROPIC} mail {EMAIL}."
    result = mask_text(
        text, s.scan(text), MaskPlan({}, {"secret": "redact", "pii": "redact"}), hash_key=KEY
    )
    assert result.text == "key [REDACTED:ANTHROPIC_API_KEY] mail [REDACTED:EMAIL]."
    assert [(a.detector, a.action) for a in result.applied] == [
        ("anthropic_api_key", "redact"),
        ("email", "redact"),
    ]
    assert result.blocked == []


def test_detector_rule_beats_category_and_default() -> None:
    plan = MaskPlan({"email": "hash"}, {"pii": "redact"}, default="report")
    assert plan.action_for(Finding("email", "pii", "EMAIL", 0, 1)) == "hash"
    assert plan.action_for(Finding("phone", "pii", "PHONE", 0, 1)) == "redact"
    assert plan.action_for(Finding("jwt", "secret", "JWT", 0, 1)) == "report"
    assert MaskPlan({}, {"pii": "redact"}).action_for(Finding("jwt", "secret", "JWT", 0, 1)) is None


def test_plan_rejects_unknown_actions_and_is_immutable() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        MaskPlan({"email": "erase"}, {})  # type: ignore[dict-item]
    rules = {"email": "redact"}
    plan = MaskPlan(rules, {})  # type: ignore[arg-type]
    rules["email"] = "report"
    assert plan.by_detector["email"] == "redact"


def test_uncovered_detectors_are_left_alone_and_unrecorded() -> None:
    s = full_scanner()
    text = f"mail {EMAIL} key {ANTHROPIC}"
    result = mask_text(text, s.scan(text), MaskPlan({}, {"secret": "redact"}), hash_key=KEY)
    assert EMAIL in result.text
    assert [a.detector for a in result.applied] == ["anthropic_api_key"]


def test_report_leaves_text_and_records() -> None:
    s = full_scanner()
    text = f"mail {EMAIL} twice {EMAIL}"
    result = mask_text(text, s.scan(text), MaskPlan({"email": "report"}, {}), hash_key=KEY)
    assert result.text == text
    assert [(a.detector, a.action) for a in result.applied] == [("email", "report")] * 2
    assert result.blocked == []


def test_block_names_the_detector_once_and_never_releases_the_value() -> None:
    s = full_scanner()
    text = f"mail {EMAIL} twice {EMAIL}"
    result = mask_text(text, s.scan(text), MaskPlan({"email": "block"}, {}), hash_key=KEY)
    assert EMAIL not in result.text
    assert result.blocked == ["email"]
    assert [(a.detector, a.action) for a in result.applied] == [("email", "block")] * 2


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        (["report", "redact"], "redact"),
        (["pseudonymize", "hash"], "hash"),
        (["redact", "block", "hash"], "block"),
        (["pseudonymize", None], "pseudonymize"),
    ],
)
def test_strictest_of_several_rules_wins(actions: list[str | None], expected: str) -> None:
    plans = [MaskPlan({"email": a} if a else {}, {}) for a in actions]  # type: ignore[dict-item]
    plan = MaskPlan.strictest(plans)
    assert plan is not None
    assert plan.action_for(Finding("email", "pii", "EMAIL", 0, 1)) == expected
    assert MaskPlan.strictest([]) is None


def test_value_group_narrows_the_replacement() -> None:
    s = custom_scanner()
    text = "set pin = 482913 for T-1234 on Bluebird"
    result = mask_text(
        text, s.scan(text), MaskPlan({}, {"custom": "redact"}), hash_key=KEY, detectors=s.detectors
    )
    assert result.text == "set pin = [REDACTED:PIN] for [REDACTED:TICKET] on [REDACTED:PROJECT]"
    pin = result.applied[0]
    assert text[pin.start : pin.end] == "482913"
    # Without the detectors the whole span goes.
    whole = mask_text(text, s.scan(text), MaskPlan({"pin": "redact"}, {}), hash_key=KEY)
    assert whole.text.startswith("set [REDACTED:PIN] for")


def test_catalogue_context_detector_keeps_its_keyword() -> None:
    s = full_scanner()
    text = "AccountKey=" + AZURE_KEY + ";"
    findings = s.scan(text)
    assert [f.detector for f in findings] == ["azure_storage_key"]
    result = mask_text(
        text, findings, MaskPlan({}, {"secret": "redact"}), hash_key=KEY, detectors=s.detectors
    )
    assert result.text == "AccountKey=[REDACTED:AZURE_STORAGE_KEY];"


def test_hash_is_keyed_and_stable() -> None:
    s = full_scanner()
    text = f"from {EMAIL} and again {EMAIL}"
    plan = MaskPlan({"email": "hash"}, {})
    one = mask_text(text, s.scan(text), plan, hash_key=KEY).text
    again = mask_text(text, s.scan(text), plan, hash_key=KEY).text
    other = mask_text(text, s.scan(text), plan, hash_key=b"another key").text
    digest = keyed_hash(KEY, EMAIL)
    assert one == again == f"from [EMAIL:{digest}] and again [EMAIL:{digest}]"
    assert len(digest) == 16
    assert all(c in "0123456789abcdef" for c in digest)
    assert other != one


def test_pseudonymize_needs_a_vault_and_numbers_per_label() -> None:
    s = full_scanner()
    text = f"{EMAIL}, bob@example.net, {EMAIL}, key {ANTHROPIC}"
    plan = MaskPlan({}, {"pii": "pseudonymize", "secret": "pseudonymize"})
    with pytest.raises(ValueError, match="vault"):
        mask_text(text, s.scan(text), plan, hash_key=KEY)
    vault = PseudonymVault()
    result = mask_text(text, s.scan(text), plan, hash_key=KEY, pseudonyms=vault)
    assert result.text == "<EMAIL_1>, <EMAIL_2>, <EMAIL_1>, key <ANTHROPIC_API_KEY_1>"
    assert vault.restore(result.text) == text


def test_no_raw_value_in_returned_structures() -> None:
    s = full_scanner()
    text = f"mail {EMAIL} key {ANTHROPIC}"
    for action in ("redact", "pseudonymize", "hash", "block", "report"):
        plan = MaskPlan({}, {"pii": action, "secret": action})
        result = mask_text(text, s.scan(text), plan, hash_key=KEY, pseudonyms=PseudonymVault())
        metadata = repr(result.applied) + repr(result.blocked)
        assert EMAIL not in metadata
        assert ANTHROPIC[:20] not in metadata
