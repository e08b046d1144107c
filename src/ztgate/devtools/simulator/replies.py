"""Reply synthesis: the assistant message a request gets (an echo of the last user turn, or a
scripted reply, with thinking and tool use when asked for), and the SSE events that stream it."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

import orjson
from aiohttp import web

from ztgate.devtools.simulator.api import REPLY_HEADER, JSONObject, invalid, new_id
from ztgate.devtools.simulator.scenarios import Scenario

Event = tuple[str, JSONObject]

_WORDS_PER_DELTA: Final = 3
_JSON_FRAGMENT: Final = 12  # characters per input_json_delta
_LONG_STREAM_WORDS: Final = 600  # about 200 text deltas for sim-slow-long
_REPLY_ECHO: Final = 200


def _block_texts(content: object) -> list[str]:
    """Texts a user turn carries: plain strings, text blocks and tool results."""
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    for block in content if isinstance(content, list) else []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_result":
            texts.extend(_block_texts(block.get("content")))
    return texts


def _last_user_text(body: JSONObject) -> str:
    for message in reversed(body["messages"]):
        if message.get("role") == "user":
            return "\n".join(_block_texts(message.get("content")))
    return ""


def _estimate_tokens(payload: object) -> int:
    """Roughly four bytes a token, like the usual rule of thumb; never zero."""
    return max(1, len(orjson.dumps(payload)) // 4)


def input_token_estimate(body: JSONObject) -> int:
    return _estimate_tokens([body.get("system"), body.get("messages"), body.get("tools")])


def _custom_tool_names(body: JSONObject) -> list[str]:
    tools = body.get("tools")
    return [
        tool["name"]
        for tool in (tools if isinstance(tools, list) else [])
        if isinstance(tool, dict)
        and isinstance(tool.get("name"), str)
        and tool.get("type") in (None, "custom")
    ]


def _tool_choice(body: JSONObject, user_text: str) -> tuple[str | None, bool]:
    """Which custom tool to call, if any, and whether `tool_choice` forces it."""
    names = _custom_tool_names(body)
    choice = body.get("tool_choice")
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not names or kind == "none":
        return None, False
    if kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        return choice["name"], True
    if kind == "any":
        return names[0], True
    return (names[0] if "use a tool" in user_text.lower() else None), False


def _thinking_requested(body: JSONObject) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def _apply_stop_sequences(text: str, body: JSONObject) -> tuple[str, str | None]:
    """Cut the text at the earliest stop sequence it contains, as the model would stop."""
    sequences = body.get("stop_sequences")
    hits = [
        (text.index(seq), seq)
        for seq in (sequences if isinstance(sequences, list) else [])
        if isinstance(seq, str) and seq and seq in text
    ]
    if not hits:
        return text, None
    position, sequence = min(hits)
    return text[:position], sequence


def _usage(input_tokens: int, output_tokens: int) -> JSONObject:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def build_message(
    body: JSONObject, scenario: Scenario | None, scripted: str | None = None
) -> JSONObject:
    """The complete assistant message a (validated) request gets, streamed or not: an echo of
    the last user turn, or the ``scripted`` reply."""
    user_text = _last_user_text(body)
    tool_name, forced = _tool_choice(body, user_text)
    content: list[JSONObject] = []
    if _thinking_requested(body):
        thinking = f"Simulated thinking about: {user_text[:100]}"
        signature = base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()
        content.append({"type": "thinking", "thinking": thinking, "signature": signature})
    stop_reason, stop_sequence = "end_turn", None
    if not forced:
        text = (
            scripted if scripted is not None else f"Simulated reply to: {user_text[:_REPLY_ECHO]}"
        )
        if scenario is Scenario.SLOW_LONG:
            text += "".join(f" filler{index}" for index in range(_LONG_STREAM_WORDS))
        text, stop_sequence = _apply_stop_sequences(text, body)
        if stop_sequence is not None:
            stop_reason, tool_name = "stop_sequence", None
        content.append({"type": "text", "text": text})
    if tool_name is not None:
        tool_input = {"query": scripted if scripted is not None else user_text[:60]}
        content.append(
            {"type": "tool_use", "id": new_id("toolu_"), "name": tool_name, "input": tool_input}
        )
        stop_reason = "tool_use"
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(input_token_estimate(body), _estimate_tokens(content)),
    }


def scripted_reply(request: web.Request) -> str | None:
    value = request.headers.get(REPLY_HEADER)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except ValueError:
        raise invalid(f"{REPLY_HEADER}: not base64 of UTF-8 text") from None


def _word_chunks(text: str) -> list[str]:
    """Split text into deltas of a few words; joined back they give the text exactly."""
    words = re.split(r"(?<=\s)(?=\S)", text)
    step = _WORDS_PER_DELTA
    return ["".join(words[i : i + step]) for i in range(0, len(words), step)]


def _char_chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _block_deltas(block: JSONObject, delta_chars: int | None = None) -> list[JSONObject]:
    if block["type"] == "text":
        text = block["text"]
        chunks = _char_chunks(text, delta_chars) if delta_chars else _word_chunks(text)
        return [{"type": "text_delta", "text": chunk} for chunk in chunks]
    if block["type"] == "thinking":
        deltas = [
            {"type": "thinking_delta", "thinking": c} for c in _word_chunks(block["thinking"])
        ]
        return [*deltas, {"type": "signature_delta", "signature": block["signature"]}]
    encoded = orjson.dumps(block["input"]).decode()
    return [
        {"type": "input_json_delta", "partial_json": chunk}
        for chunk in _char_chunks(encoded, delta_chars or _JSON_FRAGMENT)
    ]


def _empty_block(block: JSONObject) -> JSONObject:
    """A block as `content_block_start` announces it, before any delta."""
    if block["type"] == "text":
        return {"type": "text", "text": ""}
    if block["type"] == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {**block, "input": {}}


def stream_events(
    message: JSONObject, *, ping_between_deltas: bool = False, delta_chars: int | None = None
) -> list[Event]:
    """The documented event sequence that streams `message`."""
    usage = message["usage"]
    container = message.get("container")
    start = {
        **{key: value for key, value in message.items() if key != "container"},
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    ping: Event = ("ping", {"type": "ping"})
    events: list[Event] = [("message_start", {"type": "message_start", "message": start}), ping]
    for index, block in enumerate(message["content"]):
        start_event = {"type": "content_block_start", "index": index}
        events.append(
            ("content_block_start", {**start_event, "content_block": _empty_block(block)})
        )
        for delta in _block_deltas(block, delta_chars):
            events.append(
                (
                    "content_block_delta",
                    {**start_event, "type": "content_block_delta", "delta": delta},
                )
            )
            if ping_between_deltas:
                events.append(ping)
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    final_usage = {
        key: usage[key]
        for key in (
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
            "output_tokens",
        )
    }
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    if container is not None:  # the container comes with the final delta, as the API sends it
        stop["container"] = container
    events.append(("message_delta", {"type": "message_delta", "delta": stop, "usage": final_usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def until_deltas(events: list[Event], count: int) -> list[Event]:
    """The events up to and including the `count`-th content delta."""
    deltas = [i for i, (name, _) in enumerate(events) if name == "content_block_delta"]
    return events[: deltas[count - 1] + 1] if len(deltas) >= count else events
