"""Replaying a recorded session in a terminal: what each request asked and how the answer
arrived, with its original timing.

Pure: recordings in, a timed script out. :func:`session_script` turns a session's recordings
into :class:`Step` s (text to write, and when, in seconds after the session began);
:func:`paced` rescales that timing. The CLI only sleeps and writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from ztgate.audit.recording import Recording
from ztgate.audit.views import iso_time
from ztgate.core.sse import parse_event

Style = Literal["header", "request", "answer", "thinking", "tool", "meta", "error"]

_SUMMARY_CHARS = 400  # of a system prompt or a tool result: enough to recognise it
_TALKING_PATHS = ("/v1/messages", "/v1/messages/count_tokens")


@dataclass(frozen=True, slots=True)
class Step:
    """Write ``text`` at ``at`` seconds after the session's first request."""

    at: float
    text: str
    style: Style


def session_script(recordings: Sequence[Recording]) -> list[Step]:
    """Every exchange in order: a header, the request's summary, then the answer piece by piece
    at the offsets it was relayed at. Exchanges that overlapped in time are shown one after
    the other, never interleaved (a step never goes back in time)."""
    if not recordings:
        return []
    origin = min(r.started_at for r in recordings)
    steps: list[Step] = []
    clock = 0.0
    at_line_start = True
    for number, recording in enumerate(recordings, start=1):
        start = max(clock, recording.started_at - origin)
        for offset, text, style in exchange(recording, number, len(recordings)):
            clock = max(clock, start + offset)
            if at_line_start and text.startswith("\n") and style != "header":
                text = text[1:]  # a block that opens on a new line, after one that closed its own
            if text:
                steps.append(Step(clock, text, style))
                at_line_start = text.endswith("\n")
    return steps


def paced(
    steps: Iterable[Step], *, speed: float = 1.0, max_pause: float | None = None
) -> list[Step]:
    """The same steps at ``speed`` times the original pace, with any wait between two steps
    shortened to ``max_pause`` seconds (a session idle for an hour need not be watched)."""
    if speed <= 0:
        raise ValueError("speed must be positive")
    result: list[Step] = []
    previous_original = 0.0
    clock = 0.0
    for step in steps:
        gap = (step.at - previous_original) / speed
        if max_pause is not None:
            gap = min(gap, max_pause)
        clock += max(gap, 0.0)
        previous_original = step.at
        result.append(Step(clock, step.text, step.style))
    return result


def exchange(recording: Recording, number: int, total: int) -> list[tuple[float, str, Style]]:
    """One request and its answer as (offset after the request started, text, style)."""
    pieces: list[tuple[float, str, Style]] = [(0.0, header(recording, number, total), "header")]
    pieces.extend((0.0, line + "\n", "request") for line in request_summary(recording))
    pieces.extend(answer_pieces(recording))
    if recording.truncated:
        pieces.append((_last_offset(pieces), "[the recording was cut at its size limit]\n", "meta"))
    return pieces


def header(recording: Recording, number: int, total: int) -> str:
    """``── 2/5 · 2025-06-01T12:00:03.250Z · POST /v1/messages · claude-x · stream ──``."""
    parts = [
        f"{number}/{total}",
        iso_time(recording.started_at),
        recording.method + " " + recording.path,
    ]
    body = _json_object(recording.request_body)
    if isinstance(body.get("model"), str):
        parts.append(body["model"])
    if body.get("stream") is True:
        parts.append("stream")
    return "\n── " + " · ".join(parts) + " ──\n"


def request_summary(recording: Recording) -> list[str]:
    """What was asked: the system prompt (abridged) and the last user turn, as lines. Only
    message requests have a conversation; other requests are summarised by their header."""
    if recording.path.split("?")[0] not in _TALKING_PATHS:
        return []
    body = _json_object(recording.request_body)
    lines = []
    system = _blocks_text(body.get("system"))
    if system:
        lines.append("system: " + _abridge(system))
    tools = [t.get("name") or t.get("type") for t in _dicts(body.get("tools"))]
    if tools:
        lines.append("tools: " + ", ".join(str(t) for t in tools))
    messages = _dicts(body.get("messages"))
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if last_user is not None:
        lines.append("user: " + _user_text(last_user.get("content")))
    if len(messages) > 1:
        lines.append(f"({len(messages)} messages in the conversation)")
    return lines


def answer_pieces(recording: Recording) -> list[tuple[float, str, Style]]:
    """The answer as it reached the caller: a stream event by event, or a whole body at once."""
    if recording.status is None:
        return [(0.0, "[no response was recorded: the outcome is unknown]\n", "error")]
    if recording.events:
        return _stream_pieces(recording.events)
    body = recording.response_body or b""
    if recording.status >= 400:
        return [(0.0, f"[HTTP {recording.status}] {_error_text(body)}\n", "error")]
    document = _json_object(body)
    if document.get("type") == "message":
        return _message_pieces(document)
    if isinstance(document.get("input_tokens"), int) and len(document) == 1:
        return [(0.0, f"[input_tokens: {document['input_tokens']}]\n", "meta")]
    return [(0.0, f"[HTTP {recording.status}, {len(body)} bytes]\n", "meta")]


def _stream_pieces(events: Sequence[tuple[float, bytes]]) -> list[tuple[float, str, Style]]:
    pieces: list[tuple[float, str, Style]] = [(events[0][0], "assistant: ", "answer")]
    blocks: dict[int, str] = {}
    for offset, raw in events:
        event = parse_event(raw)
        data = _json_object(event.data)
        name = event.event if event.event != "message" else str(data.get("type", ""))
        for text, style in _event_text(name, data, blocks):
            pieces.append((offset, text, style))
    return pieces


def _event_text(
    name: str, data: Mapping[str, Any], blocks: dict[int, str]
) -> list[tuple[str, Style]]:
    raw_index = data.get("index")
    index = raw_index if isinstance(raw_index, int) else -1
    if name == "content_block_start":
        block = data.get("content_block")
        block = block if isinstance(block, dict) else {}
        kind = str(block.get("type", ""))
        blocks[index] = kind
        opening = _block_opening(kind, block)
        return [opening] if opening else []
    if name == "content_block_delta":
        delta = data.get("delta")
        delta = delta if isinstance(delta, dict) else {}
        delta_type = delta.get("type")
        if delta_type == "text_delta" and isinstance(delta.get("text"), str):
            return [(delta["text"], "answer")]
        if delta_type == "thinking_delta" and isinstance(delta.get("thinking"), str):
            return [(delta["thinking"], "thinking")]
        if delta_type == "input_json_delta" and isinstance(delta.get("partial_json"), str):
            return [(delta["partial_json"], "tool")]
        return []
    if name == "content_block_stop":
        closing = blocks.pop(index, "")
        if closing in ("thinking", "tool_use", "server_tool_use", "mcp_tool_use"):
            return [("]\n", "thinking" if closing == "thinking" else "tool")]
        return []
    if name == "message_delta":
        delta = data.get("delta")
        stop = delta.get("stop_reason") if isinstance(delta, dict) else None
        return [("\n" + _stop_line(stop, data.get("usage")), "meta")]
    if name == "error":
        return [("\n[error] " + _error_text(orjson.dumps(data)) + "\n", "error")]
    return []


def _block_opening(kind: str, block: Mapping[str, Any]) -> tuple[str, Style] | None:
    if kind == "thinking":
        return ("[thinking: ", "thinking")
    if kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
        return (f"\n[{kind} {block.get('name', '?')}: ", "tool")
    if kind.endswith("_tool_result"):
        return (f"\n[{kind}]\n", "tool")
    if kind == "redacted_thinking":
        return ("[redacted thinking]\n", "thinking")
    return None


def _message_pieces(message: Mapping[str, Any]) -> list[tuple[float, str, Style]]:
    pieces: list[tuple[float, str, Style]] = [(0.0, "assistant: ", "answer")]
    for block in _dicts(message.get("content")):
        kind = str(block.get("type", ""))
        if kind == "text" and isinstance(block.get("text"), str):
            pieces.append((0.0, block["text"], "answer"))
        elif kind == "thinking" and isinstance(block.get("thinking"), str):
            pieces.append((0.0, f"[thinking: {block['thinking']}]\n", "thinking"))
        elif kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
            arguments = orjson.dumps(block.get("input", {})).decode()
            pieces.append((0.0, f"\n[{kind} {block.get('name', '?')}: {arguments}]\n", "tool"))
        else:
            opening = _block_opening(kind, block)
            if opening is not None:
                pieces.append((0.0, *opening))
    pieces.append(
        (0.0, "\n" + _stop_line(message.get("stop_reason"), message.get("usage")), "meta")
    )
    return pieces


def _stop_line(stop_reason: object, usage: object) -> str:
    parts = [f"stop: {stop_reason}"] if isinstance(stop_reason, str) else []
    if isinstance(usage, dict) and isinstance(usage.get("output_tokens"), int):
        parts.append(f"{usage['output_tokens']} output tokens")
    return "[" + (", ".join(parts) or "end") + "]\n"


def _error_text(body: bytes) -> str:
    document = _json_object(body)
    error = document.get("error")
    if isinstance(error, dict):
        return f"{error.get('type', 'error')}: {error.get('message', '')}"
    return body[:_SUMMARY_CHARS].decode("utf-8", "replace")


def _user_text(content: object) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in _dicts(content):
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append(block["text"])
        elif kind == "tool_result":
            result = _blocks_text(block.get("content"))
            parts.append(f"[tool_result {block.get('tool_use_id', '?')}: {_abridge(result)}]")
        else:
            parts.append(f"[{kind}]")
    return "\n".join(parts)


def _blocks_text(value: object) -> str:
    """A string, or the text of a list of content blocks."""
    if isinstance(value, str):
        return value
    return "\n".join(
        b["text"]
        for b in _dicts(value)
        if b.get("type") == "text" and isinstance(b.get("text"), str)
    )


def _abridge(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SUMMARY_CHARS else flat[: _SUMMARY_CHARS - 1] + "…"


def _last_offset(pieces: Sequence[tuple[float, str, Style]]) -> float:
    return max((offset for offset, _, _ in pieces), default=0.0)


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(data) if data else None
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
