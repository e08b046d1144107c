"""Inspection through the real gateway: findings in any request field reach policy."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import anthropic
import pytest

from tests.stackrunner import RunningStack
from ztgate.datapath.app import Gateway
from ztgate.devtools.stack import demo_config
from ztgate.policy.loader import PolicyError

MODEL = "claude-haiku-5-5"
CARD = "4111 1111 1111 1111"  # the classic Visa test number: passes Luhn
AWS_KEY = "AKIAQYLPMN5HHHFPZAM2"

POLICY = {
    "rules": [
        {"id": "everyone", "effect": "allow", "when": {"tools": ["*"]}},
        {
            "id": "cards-need-review",
            "effect": "review",
            "when": {"findings": ["payment_card"]},
            "review": {"approvers": ["payments-leads"], "wait": "async"},
        },
        {
            "id": "no-cloud-keys",
            "effect": "deny",
            "when": {"findings": ["aws_access_key_id"]},
            "message": "cloud credentials may not be sent to the model",
        },
    ]
}


@pytest.fixture(scope="module")
def inspected() -> Iterator[RunningStack]:
    running = RunningStack(policy=POLICY)
    yield running
    running.close()


def call(client: anthropic.Anthropic, **params: object) -> None:
    client.messages.create(model=MODEL, max_tokens=32, **params)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("where", "params"),
    [
        (
            "system",
            {"system": f"card on file {CARD}", "messages": [{"role": "user", "content": "hi"}]},
        ),
        ("message", {"messages": [{"role": "user", "content": f"charge {CARD}"}]}),
        (
            "tool_result",
            {
                "messages": [
                    {"role": "user", "content": "look it up"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "t1", "name": "db", "input": {"q": "cards"}}
                        ],
                    },
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "t1", "content": f"found {CARD}"}
                        ],
                    },
                ],
                "tools": [{"name": "db", "input_schema": {"type": "object"}}],
            },
        ),
        (
            "tool_use input",
            {
                "messages": [
                    {"role": "user", "content": "go"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "t1", "name": "pay", "input": {"card": CARD}}
                        ],
                    },
                    {
                        "role": "user",
                        "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
                    },
                ],
                "tools": [{"name": "pay", "input_schema": {"type": "object"}}],
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
                                    "data": f"invoice paid with {CARD}",
                                },
                            },
                            {"type": "text", "text": "summarise"},
                        ],
                    }
                ]
            },
        ),
    ],
)
def test_a_card_anywhere_sends_the_request_to_review(
    inspected: RunningStack,
    sdk: Callable[..., anthropic.Anthropic],
    where: str,
    params: dict[str, object],
) -> None:
    before = len(inspected.received())
    with pytest.raises(anthropic.PermissionDeniedError, match="cards-need-review"):
        call(sdk(base_url=inspected.url, auth_token=inspected.token()), **params)
    assert len(inspected.received()) == before, where


def test_a_cloud_key_is_denied_and_never_forwarded(
    inspected: RunningStack, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    client = sdk(base_url=inspected.url, auth_token=inspected.token())
    before = len(inspected.received())
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        call(client, messages=[{"role": "user", "content": f"my key is {AWS_KEY}"}])
    message = info.value.body["error"]["message"]  # type: ignore[index]
    assert "no-cloud-keys" in message
    assert AWS_KEY not in message
    assert len(inspected.received()) == before


def test_clean_requests_and_count_tokens_pass(
    inspected: RunningStack, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    client = sdk(base_url=inspected.url, auth_token=inspected.token())
    call(client, messages=[{"role": "user", "content": "nothing sensitive here"}])
    with pytest.raises(anthropic.PermissionDeniedError):
        client.messages.count_tokens(
            model=MODEL, messages=[{"role": "user", "content": f"count {CARD}"}]
        )


def test_a_batch_request_with_a_card_names_its_custom_id(
    inspected: RunningStack, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    client = sdk(base_url=inspected.url, auth_token=inspected.token())
    clean = {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    dirty = {**clean, "messages": [{"role": "user", "content": f"card {CARD}"}]}
    with pytest.raises(anthropic.PermissionDeniedError, match="batch request 'second'"):
        client.messages.batches.create(
            requests=[  # type: ignore[list-item]
                {"custom_id": "first", "params": clean},
                {"custom_id": "second", "params": dirty},
            ]
        )


def test_with_inspection_off_a_policy_that_needs_it_refuses_to_start() -> None:
    # Fail closed: "review when a card is present" must never quietly stop firing.
    config = demo_config(
        "http://127.0.0.1:9", "http://127.0.0.1:9", policy=POLICY, inspection={"enabled": False}
    )
    with pytest.raises(PolicyError, match="cards-need-review': needs inspection"):
        Gateway(config)
