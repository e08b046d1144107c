"""A tool's streamed JSON input masked string by string, as a client parses it: under any
chunking the output, parsed, is the input parsed and masked string by string."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.detectors.test_catalogue import AZURE_ACCOUNT_KEY, VISA
from tests.fuzzing import fuzz
from tests.inspection.test_masking import ANTHROPIC, EMAIL, KEY, full_scanner
from tests.inspection.test_streaming import chunkings
from ztgate.core.maskplan import MaskPlan
from ztgate.inspection.jsonstream import JsonStreamMasker, MalformedStream
from ztgate.inspection.masking import mask_text
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.streaming import StreamMasker, StreamRestorer

PLAN = MaskPlan({"payment_card": "block"}, {"secret": "redact", "pii": "redact"})
REDACT_CARDS = MaskPlan({}, {"secret": "redact", "pii": "redact"})


def masker(plan: MaskPlan = PLAN, vault: PseudonymVault | None = None) -> JsonStreamMasker:
    def new() -> StreamMasker:
        return StreamMasker(full_scanner(), plan, hash_key=KEY)

    return JsonStreamMasker(new, (lambda: StreamRestorer(vault)) if vault is not None else None)


def stream(source: str, sizes: list[int], plan: MaskPlan = PLAN) -> str:
    m = masker(plan)
    return "".join(m.feed(chunk) for chunk in chunkings(source, sizes)) + m.flush()


def masked(value: Any, plan: MaskPlan = PLAN) -> Any:
    """``value`` with every string and key masked whole, as a whole response masks them."""
    if isinstance(value, str):
        scanner = full_scanner()
        return mask_text(
            value, scanner.scan(value), plan, hash_key=KEY, detectors=scanner.detectors
        ).text
    if isinstance(value, list):
        return [masked(v, plan) for v in value]
    if isinstance(value, dict):
        return {masked(k, plan): masked(v, plan) for k, v in value.items()}
    return value


WORDS = ["the key is ", f" {ANTHROPIC} ", EMAIL, "\n", "\t", '"', "\\", "é", "\U0001f600",
         "/", " ok", "AccountKey=", AZURE_ACCOUNT_KEY, ";", "\x01", "\u2028"]  # fmt: skip
TEXT = st.lists(st.sampled_from(WORDS), max_size=8).map("".join)
VALUES = st.recursive(
    # Numbers no detector reads (a float's shortest repr can hold 17 digits: a card's length)
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(-1e3, 1e3).map(lambda f: round(f, 3))
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)


@fuzz(200)
@given(
    value=st.dictionaries(TEXT, VALUES, max_size=4),
    ascii_only=st.booleans(),
    indent=st.sampled_from([None, 2]),
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
)
def test_any_input_in_any_chunking_is_masked_string_by_string(
    value: dict[str, Any], ascii_only: bool, indent: int | None, sizes: list[int]
) -> None:
    """Whatever escapes the source uses (``\\uXXXX`` and surrogate pairs cut anywhere, ``\\n``
    before a key), the client reads the strings masked as a whole response masks them."""
    source = json.dumps(value, ensure_ascii=ascii_only, indent=indent)
    assert orjson.loads(stream(source, sizes)) == masked(value)


@pytest.mark.parametrize("before", ["\\n", "\\t", "\\r\\n", "\\u000a", "\\u2028", "\\/"])
def test_a_key_after_an_escape_is_read_as_the_client_reads_it(before: str) -> None:
    source = '{"content": "line one' + before + ANTHROPIC + before + '"}'
    out = orjson.loads(stream(source, [1]))
    assert ANTHROPIC not in out["content"]
    assert out == masked(orjson.loads(source))


def test_keys_are_masked_like_values() -> None:
    out = orjson.loads(stream(json.dumps({ANTHROPIC: 1}), [3]))
    assert out == {"[REDACTED:ANTHROPIC_API_KEY]": 1}


def test_a_number_policy_masks_is_masked() -> None:
    """A card written as a number is scanned too; masked, it comes out as a string."""
    source = '{"card": ' + VISA.replace(" ", "") + ', "n": 1}'
    assert orjson.loads(stream(source, [2], REDACT_CARDS)) == {
        "card": "[REDACTED:PAYMENT_CARD]",
        "n": 1,
    }
    m = masker()
    m.feed(source)
    assert m.blocked == ["payment_card"]


def test_pseudonyms_are_restored_inside_strings_and_encoded() -> None:
    vault = PseudonymVault()
    surrogate = vault.pseudonym("PASSWORD", 'p"a\\ss')
    m = masker(vault=vault)
    source = json.dumps({"q": f"use {surrogate} now"})
    out = "".join(m.feed(c) for c in chunkings(source, [2])) + m.flush()
    assert orjson.loads(out) == {"q": 'use p"a\\ss now'}


def test_a_stream_cut_inside_a_string_comes_out_masked_and_unfinished() -> None:
    m = masker()
    out = m.feed('{"q": "key ' + ANTHROPIC + " and more") + m.flush()
    assert out == '{"q": "key [REDACTED:ANTHROPIC_API_KEY] and more'
    assert masker().feed('{"n": tr') + "" == '{"n": '  # a literal cut short is held
    cut = masker()
    assert cut.feed('{"n": tr') + cut.flush() == '{"n": tr'


@pytest.mark.parametrize(
    "source",
    [
        '{"a": ' + ANTHROPIC + "}",  # a bare word
        '{"a": "x\\q"}',  # an unknown escape
        '{"a": "x\\u12G4"}',  # a bad \u escape
        '{"a": "\\ud83d"}',  # a lone high surrogate
        '{"a": "\\ude00"}',  # a lone low surrogate
        '{"a": "\\ud83d\\ud83d"}',  # two high ones
        '{"a": "x\ny"}',  # a raw control character
        '{"a": tru}',  # a literal that is not one
        '{"a": 1' + "0" * 2000 + "}",  # a number past the bound
        '{"a": #}',
    ],
)
def test_what_is_not_json_is_refused(source: str) -> None:
    def feed_all() -> None:
        m = masker()
        for chunk in chunkings(source, [5]):
            m.feed(chunk)
        m.flush()

    with pytest.raises(MalformedStream):
        feed_all()
