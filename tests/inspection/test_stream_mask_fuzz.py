"""Fuzzing the stream masker: a secret split across deltas at every offset is masked, and no
part of it is ever released in clear; junk among the events changes nothing of that.

test_streaming.py compares streamed with whole-text masking on random chunkings, and
test_response.py the filter on one key. Here every detector format that masks (Anthropic,
OpenAI, AWS, Google, Azure, GitHub, GitLab, Slack, Stripe, npm and PyPI keys, a JWT, a
private key, an e-mail address, a card that blocks, a French NIR) is cut in two at every
offset, and sent a character per delta, through the response filter as a client receives it
(the SDK's decoder reads the filter's output): in a text block and inside a tool's streamed
JSON. The long form (``FUZZ_SCALE`` of 10 or more) also cuts each in three at every pair of
offsets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import orjson
import pytest
from anthropic._streaming import SSEDecoder
from hypothesis import given
from hypothesis import strategies as st

from tests.detectors import test_catalogue as formats
from tests.fuzzing import SCALE, fuzz
from tests.inspection.test_masking import EMAIL, KEY, full_scanner
from tests.inspection.test_response import context, event, text_stream
from ztgate.core.maskplan import MaskPlan
from ztgate.core.sse import SSEEvent, SSESplitter
from ztgate.inspection.masking import mask_text
from ztgate.inspection.response import ResponseProtector, ResponseWithheld

PLAN = MaskPlan({"payment_card": "block"}, {"secret": "redact", "pii": "redact"})
PREFIX = "Sure, here it is.\n"
SUFFIX = " and that is all you need. Let me know"


@dataclass(frozen=True)
class Planted:
    name: str
    value: str
    context: str = "the value is {} ok"

    @property
    def text(self) -> str:
        return PREFIX + self.context.format(self.value) + SUFFIX


SECRETS = [
    Planted("anthropic", formats.ANTHROPIC),
    Planted("anthropic_own_line", formats.ANTHROPIC, "in the file:\n{}\n"),
    Planted("anthropic_admin", formats.ANTHROPIC_ADMIN),
    Planted("openai_project", formats.OPENAI_PROJECT),
    Planted("openai_legacy", formats.OPENAI_LEGACY),
    Planted("aws_key_id", formats.AWS_KEY_ID),
    Planted("aws_secret", formats.AWS_SECRET, "aws_secret_access_key = {}"),
    Planted("google", formats.GOOGLE_KEY),
    Planted("azure_account", formats.AZURE_ACCOUNT_KEY, "AccountKey={};"),
    Planted("azure_client_secret", formats.AZURE_CLIENT_SECRET),
    Planted("github_pat", formats.GITHUB_PAT),
    Planted("gitlab", formats.GITLAB),
    Planted("slack_bot", formats.SLACK_BOT),
    Planted("slack_webhook", formats.SLACK_WEBHOOK),
    Planted("stripe", formats.STRIPE),
    Planted("npm", formats.NPM),
    Planted("pypi", formats.PYPI),
    Planted("password", formats.PASSWORD, "password: {}"),
    Planted("jwt", formats.JWT),
    Planted("private_key", formats.pem("RSA PRIVATE KEY", 2), "key:\n{}\n"),
    Planted("email", EMAIL),
    Planted("fr_nir", formats.NIR),
    Planted("card", formats.VISA),  # blocks: the stream is withheld from there on
]
_LABEL = re.compile(r"\[REDACTED:[A-Z0-9_]+\]")


def fragments(planted: Planted, size: int = 8) -> set[str]:
    """Every run of ``size`` characters of the secret that its context does not hold."""
    value = planted.value
    around = planted.text.replace(value, "\x00")
    return {
        value[i : i + size]
        for i in range(len(value) - size + 1)
        if value[i : i + size] not in around and not value[i : i + size].isspace()
    }


def tool_input(planted: Planted) -> dict[str, object]:
    return {"query": planted.text, "n": 1}


def tool_json(planted: Planted) -> str:
    """A tool's input as the model streams it: JSON source, the secret inside a string (with
    the line breaks around it as escapes)."""
    return json.dumps(tool_input(planted))


def client_text(wire: bytes) -> tuple[str, bool]:
    """The block's text as the SDK reads it from the filter's output, and whether an error
    event ended it."""
    text, errored = "", False
    for sse in SSEDecoder().iter_bytes(iter([wire])):
        if sse.event == "error":
            errored = True
        elif sse.event == "content_block_delta":
            delta = orjson.loads(sse.data)["delta"]
            text += delta.get("text", delta.get("partial_json", ""))
    return text, errored


def run(events: list[SSEEvent]) -> tuple[bytes, bool]:
    """The filter's output for ``events`` (as the relay writes it), and whether it withheld
    the rest (the relay then ends the stream with an error event)."""
    protector = ResponseProtector(
        context(), full_scanner(), PLAN, vault=None, holdback=128, hash_key=KEY
    )
    out: list[bytes] = []
    try:
        for item in events:
            out.extend(protector.event(item))
    except ResponseWithheld:
        out.append(b'event: error\ndata: {"type":"error"}\n\n')
        return b"".join(out), True
    return b"".join(out), False


def expected(text: str) -> str:
    scanner = full_scanner()
    return mask_text(text, scanner.scan(text), PLAN, hash_key=KEY, detectors=scanner.detectors).text


def whole_tool_input(planted: Planted) -> object:
    """The tool's input as a whole (not streamed) response masks it: string by string."""
    message = {
        "type": "message",
        "content": [{"type": "tool_use", "id": "t", "name": "n", "input": tool_input(planted)}],
    }
    protector = ResponseProtector(
        context(), full_scanner(), PLAN, vault=None, holdback=128, hash_key=KEY
    )
    return orjson.loads(protector.body(orjson.dumps(message)))["content"][0]["input"]


def check(planted: Planted, chunks: list[str], kind: str) -> None:
    """No part of the secret reaches the client, and what does is what a whole response
    would hold: the text masked whole, or the tool input masked string by string."""
    wire, withheld = run(text_stream(chunks, kind))
    shown, errored = client_text(wire)
    assert errored == withheld
    where = f"{planted.name} cut as {[len(c) for c in chunks]}"
    assert planted.value not in shown, where
    leaked = {f for f in fragments(planted) if f in _LABEL.sub("", shown)}
    assert not leaked, f"{where}: {sorted(leaked)[:3]}"
    if withheld:
        return
    if kind == "text":
        assert shown == expected(planted.text), where
    else:
        assert orjson.loads(shown) == whole_tool_input(planted), where


def splits(text: str) -> Iterator[list[str]]:
    """In two at every offset, a character a delta, and (long form) in three at every pair."""
    for i in range(len(text) + 1):
        yield [text[:i], text[i:]]
    yield list(text)
    if SCALE >= 10:
        for i in range(len(text) + 1):
            for j in range(i, len(text) + 1):
                yield [text[:i], text[i:j], text[j:]]


def test_every_planted_value_is_masked_whole() -> None:
    """The list is no strawman: each value is something the plan masks or blocks."""
    for planted in SECRETS:
        assert planted.value not in expected(planted.text), planted.name


@pytest.mark.parametrize("planted", SECRETS, ids=[p.name for p in SECRETS])
@pytest.mark.parametrize("kind", ["text", "tool"])
def test_a_secret_cut_at_every_offset_is_never_shown(planted: Planted, kind: str) -> None:
    text = planted.text if kind == "text" else tool_json(planted)
    for chunks in splits(text):
        check(planted, chunks, kind)


# --- junk among the events -------------------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


def _junk() -> st.SearchStrategy[SSEEvent]:
    """Events a stream can carry besides the block's deltas, or that a broken upstream
    sends: pings, unknown names, deltas for other blocks or with odd values, bad JSON."""
    names = st.sampled_from(["ping", "message_delta", "content_block_delta", "x"])
    return st.one_of(
        st.just(event("ping", {"type": "ping"})),
        st.builds(
            lambda index, delta: event(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            ),
            # Never block 0's index (False and 0.0 are 0 to a dict): text inserted into the
            # block would change the secret itself.
            st.integers(1, 3) | _JSON.filter(lambda i: not (isinstance(i, int | float) and i == 0)),
            st.fixed_dictionaries({"type": st.just("text_delta"), "text": st.text(max_size=8)})
            | _JSON,
        ),
        st.builds(lambda name, data: event(name, {"type": name, "data": data}), names, _JSON),
        st.builds(
            lambda name, raw: SSESplitter(1 << 20).feed(
                b"event: " + name.encode() + b"\ndata: " + raw + b"\n\n"
            )[0],
            names,
            # UTF-8: the SDK's decoder fails on anything else, whatever the gateway does.
            st.text(st.characters(exclude_categories=["Cs"]), max_size=20).map(
                lambda t: re.sub(r"[\r\n]", "", t).encode()
            ),
        ),
    )


def _chunked(text: str, sizes: list[int]) -> list[str]:
    out, at, index = [], 0, 0
    while at < len(text):
        size = sizes[index % len(sizes)]
        out.append(text[at : at + size])
        at += size
        index += 1
    return out


@fuzz(150)
@given(
    planted=st.sampled_from(SECRETS),
    kind=st.sampled_from(["text", "tool"]),
    sizes=st.lists(st.integers(1, 60), min_size=1, max_size=6),
    junk=st.lists(st.tuples(st.integers(0, 200), _junk()), max_size=6),
)
def test_junk_among_the_deltas_never_lets_a_secret_out(
    planted: Planted, kind: str, sizes: list[int], junk: list[tuple[int, SSEEvent]]
) -> None:
    """Only events or a withheld stream come out (never another exception), and whatever the
    client reads of the block holds no part of the secret."""
    text = planted.text if kind == "text" else tool_json(planted)
    events = text_stream(_chunked(text, sizes), kind)
    for at, item in sorted(junk, key=lambda pair: pair[0], reverse=True):
        events.insert(1 + at % (len(events) - 1), item)
    wire, withheld = run(events)
    shown, errored = client_text_lenient(wire)
    assert errored == withheld
    assert planted.value not in shown
    assert not {f for f in fragments(planted) if f in _LABEL.sub("", shown)}


def client_text_lenient(wire: bytes) -> tuple[str, bool]:
    """``client_text`` for streams with junk: deltas of other blocks and undecodable data are
    what a client would skip or fail on, not text of the block."""
    text, errored = "", False
    for sse in SSEDecoder().iter_bytes(iter([wire])):
        if sse.event == "error":
            errored = True
            continue
        if sse.event != "content_block_delta":
            continue
        try:
            data = orjson.loads(sse.data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(data, dict) or data.get("index") != 0:
            continue
        delta = data.get("delta")
        if isinstance(delta, dict):
            piece = delta.get("text", delta.get("partial_json", ""))
            text += piece if isinstance(piece, str) else ""
    return text, errored


# --- regressions -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [formats.ANTHROPIC, formats.AZURE_ACCOUNT_KEY])
@pytest.mark.parametrize("before", ["\n", "\t", "\r\n"])
def test_a_key_after_a_line_break_in_streamed_tool_input_is_masked(value: str, before: str) -> None:
    """Regression (found by the every-offset test): streamed tool input was scanned as JSON
    source, where the line break before a key is the two characters backslash and ``n``; the
    key then stood glued to the letter ``n``, no detector's word boundary held and the key
    went out in clear, while a whole response (which reads the decoded string) masked it.
    Fails until the stream scanner reads JSON escapes as what they stand for."""
    context_ = "AccountKey={};" if value == formats.AZURE_ACCOUNT_KEY else "{}"
    planted = Planted("key", value, "file contents:" + before + context_ + before)
    wire, withheld = run(text_stream([tool_json(planted)], "tool"))
    shown, _ = client_text(wire)
    assert not withheld
    assert value not in shown
    assert orjson.loads(shown) == whole_tool_input(planted)


def _delta(index: int, kind: str, text: str) -> SSEEvent:
    key = "text" if kind == "text_delta" else "partial_json"
    return event(
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: text}},
    )


def _start(index: int, block: Mapping[str, object]) -> SSEEvent:
    return event(
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": dict(block)},
    )


_TEXT_BLOCK = {"type": "text", "text": ""}
_TOOL_BLOCK = {"type": "tool_use", "id": "t", "name": "n", "input": {}}
_SECRET_TEXT = f"the key is {formats.ANTHROPIC} ok"
OUT_OF_BLOCK = {
    "a delta for a block never started": [_delta(0, "text_delta", _SECRET_TEXT)],
    "a delta after its block stopped": [
        _start(0, _TEXT_BLOCK),
        _delta(0, "text_delta", "hello "),
        event("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _delta(0, "text_delta", _SECRET_TEXT),
    ],
    "a text delta into a tool block": [
        _start(0, _TOOL_BLOCK),
        _delta(0, "text_delta", _SECRET_TEXT),
    ],
    "a tool delta into a text block": [
        _start(0, _TEXT_BLOCK),
        _delta(0, "input_json_delta", _SECRET_TEXT),
    ],
}


@pytest.mark.parametrize("name", sorted(OUT_OF_BLOCK))
def test_a_delta_outside_the_blocks_the_filter_reads_is_never_relayed_in_clear(name: str) -> None:
    """Regression (found by fuzzing the filter with out-of-order events): a text or tool
    delta for no block the filter had opened (never started, already stopped, or of the
    other kind) was relayed as it came, unmasked; the SDK's accumulator appends a delta that
    follows its block's stop to that block's text. The API never sends these, so only a
    broken or hostile upstream could; failing closed costs nothing. Fails until the filter
    withholds such a delta."""
    wire, withheld = run(OUT_OF_BLOCK[name])
    assert formats.ANTHROPIC.encode() not in wire
    assert withheld
