"""Masking through the real gateway, with the real SDK: what reaches Claude, what comes back.

The simulator stands in for Claude. It echoes the last user turn (so pseudonyms make the round
trip), and a test can script its reply (``REPLY_HEADER``) to plant data no request held, split
as finely as it likes (``DELTA_CHARS_HEADER``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import orjson
import pytest

from tests.inspection.test_masking import ANTHROPIC, EMAIL
from tests.stackrunner import RunningStack
from ztgate.devtools.simulator import DELTA_CHARS_HEADER, REPLY_HEADER

MODEL = "claude-haiku-5-5"
CARD = "4111 1111 1111 1111"
SSN = "536-22-1234"
IP = "203.0.113.7"
AWS_KEY = "AKIAQYLPMN5HHHFPZAM2"

POLICY = {
    "rules": [
        {
            "id": "protect-everyone",
            "effect": "allow",
            "when": {"tools": ["*"]},
            "mask": {
                "categories": ["secret"],
                "action": "redact",
                "detectors": {
                    "email": "pseudonymize",
                    "payment_card": "block",
                    "us_ssn": "hash",
                    "ipv4": "report",
                },
            },
        }
    ]
}
TOOLS = [{"name": "lookup", "input_schema": {"type": "object"}}]


@pytest.fixture(scope="module")
def protected() -> Iterator[RunningStack]:
    running = RunningStack(policy=POLICY, inspection={"hash_key": "a-test-hash-key-for-ssn"})
    yield running
    running.close()


@pytest.fixture
def client(protected: RunningStack, sdk: Callable[..., anthropic.Anthropic]) -> anthropic.Anthropic:
    return sdk(base_url=protected.url, auth_token=protected.token())


def scripted(text: str, delta_chars: int | None = None) -> dict[str, str]:
    headers = {REPLY_HEADER: base64.b64encode(text.encode()).decode()}
    if delta_chars:
        headers[DELTA_CHARS_HEADER] = str(delta_chars)
    return headers


def last_upstream_body(running: RunningStack) -> bytes:
    return running.received("/v1/messages")[-1].body


def streamed(client: anthropic.Anthropic, **params: Any) -> tuple[str, list[Any]]:
    """The text a caller sees from a stream, and the final message's content."""
    with client.messages.stream(model=MODEL, max_tokens=64, **params) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return text, list(final.content)


# --- what reaches Claude ---------------------------------------------------------------------

SECRET_TEXT = f"key {ANTHROPIC} and aws {AWS_KEY}"
FIELDS: list[tuple[str, dict[str, Any]]] = [
    ("system string", {"system": SECRET_TEXT, "messages": [{"role": "user", "content": "hi"}]}),
    (
        "system blocks",
        {
            "system": [{"type": "text", "text": SECRET_TEXT}],
            "messages": [{"role": "user", "content": "hi"}],
        },
    ),
    ("message string", {"messages": [{"role": "user", "content": SECRET_TEXT}]}),
    (
        "text block",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": SECRET_TEXT}]}]},
    ),
    (
        "tool_use input and tool_result",
        {
            "messages": [
                {"role": "user", "content": "look"},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "t1",
                            "name": "lookup",
                            "input": {"q": SECRET_TEXT, "nested": [{"v": SECRET_TEXT}]},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": SECRET_TEXT},
                        {
                            "type": "tool_result",
                            "tool_use_id": "t2",
                            "content": [{"type": "text", "text": SECRET_TEXT}],
                        },
                    ],
                },
            ],
            "tools": TOOLS,
        },
    ),
    (
        "document",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {
                                "type": "text",
                                "media_type": "text/plain",
                                "data": SECRET_TEXT,
                            },
                        },
                        {"type": "text", "text": "summarise"},
                    ],
                }
            ]
        },
    ),
]


@pytest.mark.parametrize(("where", "params"), FIELDS, ids=[f[0] for f in FIELDS])
def test_secrets_in_every_request_field_never_reach_claude(
    protected: RunningStack, client: anthropic.Anthropic, where: str, params: dict[str, Any]
) -> None:
    client.messages.create(model=MODEL, max_tokens=32, **params)
    sent = last_upstream_body(protected)
    assert ANTHROPIC.encode() not in sent, where
    assert AWS_KEY.encode() not in sent, where
    assert b"[REDACTED:ANTHROPIC_API_KEY]" in sent
    assert b"[REDACTED:AWS_ACCESS_KEY_ID]" in sent


def test_count_tokens_and_batches_are_masked_too(
    protected: RunningStack, client: anthropic.Anthropic
) -> None:
    client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": SECRET_TEXT}])
    assert ANTHROPIC.encode() not in protected.received("/v1/messages/count_tokens")[-1].body
    params = {
        "model": MODEL,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": f"{SECRET_TEXT}, mail {EMAIL}"}],
    }
    client.messages.batches.create(requests=[{"custom_id": "one", "params": params}])  # type: ignore[list-item]
    sent = protected.received("/v1/messages/batches")[-1].body
    assert ANTHROPIC.encode() not in sent
    # A batch's results are fetched later, past any restore: pseudonymize redacts there.
    assert EMAIL.encode() not in sent
    assert b"[REDACTED:EMAIL]" in sent


def test_block_refuses_with_400_naming_the_detector_never_the_value(
    protected: RunningStack, client: anthropic.Anthropic
) -> None:
    before = len(protected.received())
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": f"pay {CARD}"}]
        )
    message = info.value.body["error"]["message"]  # type: ignore[index]
    assert "payment_card" in message
    assert "messages.0.content" in message
    assert "4111" not in message
    assert len(protected.received()) == before


def test_report_passes_the_value_and_hash_is_keyed_and_stable(
    protected: RunningStack, client: anthropic.Anthropic
) -> None:
    text = f"host {IP}, ssn {SSN}"
    client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": text}])
    first = last_upstream_body(protected).decode()
    assert IP in first
    assert SSN not in first
    assert "[US_SSN:" in first
    client.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": text}])
    assert last_upstream_body(protected).decode() == first  # same value, same keyed hash


# --- pseudonyms: Claude never sees the value, the caller gets a coherent answer -----------------


def test_pseudonyms_round_trip_in_a_json_answer(
    protected: RunningStack, client: anthropic.Anthropic
) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": f"write to {EMAIL} and cc bob@example.net"}],
    )
    sent = last_upstream_body(protected).decode()
    assert EMAIL not in sent
    assert "<EMAIL_1>" in sent
    assert "<EMAIL_2>" in sent
    text = message.content[0].text  # type: ignore[union-attr]
    assert f"write to {EMAIL} and cc bob@example.net" in text


@pytest.mark.parametrize("delta_chars", [None, 1, 3])
def test_pseudonyms_round_trip_in_a_streamed_answer(
    client: anthropic.Anthropic, delta_chars: int | None
) -> None:
    reply = "Sure, I wrote to <EMAIL_1>. Then **<email_1>** again."
    text, content = streamed(
        client,
        messages=[{"role": "user", "content": f"write to {EMAIL}"}],
        extra_headers=scripted(reply, delta_chars),
    )
    assert text == f"Sure, I wrote to {EMAIL}. Then **{EMAIL}** again."
    assert content[0].text == text


def test_restore_never_invents_a_value(client: anthropic.Anthropic) -> None:
    # This request issued no pseudonym: a surrogate-looking reply stays as written.
    text, _ = streamed(
        client,
        messages=[{"role": "user", "content": "hello"}],
        extra_headers=scripted("Contact <EMAIL_1> or PHONE_1.", 2),
    )
    assert text == "Contact <EMAIL_1> or PHONE_1."


def test_pseudonyms_are_restored_inside_streamed_tool_input(client: anthropic.Anthropic) -> None:
    _, content = streamed(
        client,
        messages=[{"role": "user", "content": f'mail "{EMAIL}" please'}],
        tools=TOOLS,
        tool_choice={"type": "any"},
        extra_headers=scripted('to: <EMAIL_1> "quoted"', 4),
    )
    tool = next(block for block in content if block.type == "tool_use")
    assert tool.input == {"query": f'to: {EMAIL} "quoted"'}


# --- what comes back -------------------------------------------------------------------------

LEAKY_REPLY = f"Here you go: {ANTHROPIC} and {AWS_KEY}. Done."


def test_secrets_in_a_json_answer_never_reach_the_caller(client: anthropic.Anthropic) -> None:
    message = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers=scripted(LEAKY_REPLY),
    )
    text = message.content[0].text  # type: ignore[union-attr]
    assert ANTHROPIC not in text
    assert AWS_KEY not in text
    assert (
        text == "Here you go: [REDACTED:ANTHROPIC_API_KEY] and [REDACTED:AWS_ACCESS_KEY_ID]. Done."
    )


@pytest.mark.parametrize("delta_chars", [1, 5, 17, None])
def test_secrets_split_across_deltas_never_reach_the_caller(
    protected: RunningStack, client: anthropic.Anthropic, delta_chars: int | None
) -> None:
    raw: list[bytes] = []
    with client.messages.with_streaming_response.create(
        model=MODEL,
        max_tokens=64,
        stream=True,
        messages=[{"role": "user", "content": "hi"}],
        extra_headers=scripted(LEAKY_REPLY, delta_chars),
    ) as response:
        raw.extend(response.iter_bytes())
    wire = b"".join(raw).decode()
    for fragment in (ANTHROPIC[i : i + 8] for i in range(0, len(ANTHROPIC) - 8, 4)):
        assert fragment not in wire
    assert AWS_KEY[4:12] not in wire
    text = "".join(
        json.loads(line[6:])["delta"]["text"]
        for line in wire.splitlines()
        if line.startswith("data: ") and '"text_delta"' in line
    )
    assert (
        text == "Here you go: [REDACTED:ANTHROPIC_API_KEY] and [REDACTED:AWS_ACCESS_KEY_ID]. Done."
    )


def test_secrets_inside_streamed_tool_input_are_masked_and_the_json_stays_valid(
    client: anthropic.Anthropic,
) -> None:
    _, content = streamed(
        client,
        messages=[{"role": "user", "content": "use a tool"}],
        tools=TOOLS,
        tool_choice={"type": "any"},
        extra_headers=scripted(f"use {ANTHROPIC}", 3),
    )
    tool = next(block for block in content if block.type == "tool_use")
    assert tool.input == {"query": "use [REDACTED:ANTHROPIC_API_KEY]"}


def test_a_blocked_finding_withholds_the_answer(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError, match="payment_card") as info:
        client.messages.create(
            model=MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers=scripted(f"the card is {CARD}"),
        )
    assert info.value.status_code == 502
    assert "4111" not in str(info.value.body)
    with pytest.raises(anthropic.APIStatusError, match="payment_card"):
        _text, _ = streamed(
            client,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers=scripted(f"the card is {CARD} ok", 2),
        )


def test_thinking_blocks_pass_unchanged(client: anthropic.Anthropic) -> None:
    with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": f"mail {EMAIL}"}],
    ) as stream:
        final = stream.get_final_message()
    thinking = next(block for block in final.content if block.type == "thinking")
    # Claude thought about the pseudonym, and the signed block reaches the caller as signed.
    assert "<EMAIL_1>" in thinking.thinking  # type: ignore[union-attr]
    assert thinking.signature  # type: ignore[union-attr]


# --- fail closed -----------------------------------------------------------------------------


def test_uninspectable_requests_are_refused(
    protected: RunningStack, client: anthropic.Anthropic
) -> None:
    deep: Any = "bottom"
    for _ in range(80):
        deep = {"k": deep}
    before = len(protected.received())
    with pytest.raises(anthropic.BadRequestError, match="cannot be inspected"):
        client.messages.create(
            model=MODEL,
            max_tokens=8,
            messages=[
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t", "name": "lookup", "input": deep}],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]},
            ],
            tools=TOOLS,
        )
    assert len(protected.received()) == before


def test_too_much_text_to_inspect_is_refused(sdk: Callable[..., anthropic.Anthropic]) -> None:
    running = RunningStack(policy=POLICY, inspection={"max_text": "1KiB"})
    try:
        client = sdk(base_url=running.url, auth_token=running.token())
        with pytest.raises(anthropic.APIStatusError, match="can be inspected") as info:
            client.messages.create(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x" * 2000}]
            )
        assert info.value.status_code == 413
        assert running.received() == []
    finally:
        running.close()


def test_policy_naming_an_unknown_detector_refuses_to_start() -> None:
    from ztgate.datapath.app import Gateway
    from ztgate.devtools.stack import demo_config
    from ztgate.policy.loader import PolicyError

    policy = orjson.loads(orjson.dumps(POLICY))
    policy["rules"][0]["mask"]["detectors"]["payment_crad"] = "block"
    config = demo_config("http://127.0.0.1:9", "http://127.0.0.1:9", policy=policy)
    with pytest.raises(PolicyError, match="unknown detector or guardrail check 'payment_crad'"):
        Gateway(config)


def test_custom_detectors_from_config_are_masked_like_built_in_ones(
    sdk: Callable[..., anthropic.Anthropic],
) -> None:
    policy = {
        "rules": [
            {
                "id": "projects-stay-inside",
                "effect": "allow",
                "mask": {"detectors": {"codename": "redact", "ticket": "block"}},
            }
        ]
    }
    running = RunningStack(
        policy=policy,
        inspection={
            "custom": {
                "patterns": {"ticket": r"\bT-[0-9]{4}\b"},
                "words": {"codename": ["Nightjar"]},
            }
        },
    )
    try:
        client = sdk(base_url=running.url, auth_token=running.token())
        client.messages.create(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "status of nightjar?"}]
        )
        sent = last_upstream_body(running)
        assert b"nightjar" not in sent.lower()
        assert b"[REDACTED:CODENAME]" in sent
        with pytest.raises(anthropic.BadRequestError, match="ticket"):
            client.messages.create(
                model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "see T-1234"}]
            )
    finally:
        running.close()
