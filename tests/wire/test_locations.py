"""Where each string of a request sits in the conversation."""

from __future__ import annotations

from typing import Any

import pytest

from ztgate.wire.fields import body_text
from ztgate.wire.locations import location_of

BODY: dict[str, Any] = {
    "system": [{"type": "text", "text": "S"}],
    "tools": [{"name": "t", "description": "D", "input_schema": {"type": "object"}}],
    "metadata": {"user_id": "M"},
    "messages": [
        {"role": "user", "content": "U"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "A"},
                {"type": "tool_use", "id": "x", "name": "t", "input": {"q": "I"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "x",
                    "content": [{"type": "text", "text": "R"}],
                },
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "DOC"},
                },
                {"type": "text", "text": "U2"},
            ],
        },
    ],
}
EXPECTED = {
    "S": "system",
    "D": "tool_definition",
    "M": "other",
    "U": "user",
    "A": "assistant",
    "I": "tool_input",
    "R": "tool_result",
    "DOC": "document",
    "U2": "user",
}


@pytest.mark.parametrize(("text", "where"), sorted(EXPECTED.items()))
def test_each_string_has_its_place(text: str, where: str) -> None:
    fields = {f.text: f.path for f in body_text(BODY).fields}
    assert location_of(fields[text], BODY) == where


def test_a_batch_request_is_read_in_its_own_params() -> None:
    batch = {"requests": [{"custom_id": "a", "params": BODY}]}
    fields = {f.text: f.path for f in body_text(batch).fields}
    assert location_of(fields["R"], batch) == "tool_result"
    assert location_of(fields["S"], batch) == "system"


@pytest.mark.parametrize(
    "path", ["messages.9.content", "messages.x.content.0.text", "messages", "requests.5.params.x"]
)
def test_paths_that_lead_nowhere_are_other_or_the_turn(path: str) -> None:
    assert location_of(path, BODY) in ("other", "user")
