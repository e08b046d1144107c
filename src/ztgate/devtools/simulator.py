"""A local stand-in for api.anthropic.com, for tests and the offline demo.

The simulator speaks the Claude API as the official SDK expects it (JSON bodies, the error
envelope, SSE framing, pagination shapes, absolute batch `results_url`s) and answers
deterministically, so a test can check that what reached "upstream" is what it echoes back.
Requests that load skills or use code execution get a container, which a later request may
name again by id (only ids the simulator created).
Named scenarios (see `Scenario`) produce failures a gateway must survive: error statuses,
slow, broken, truncated or hanging streams. A test can also script what "the model" says
(`REPLY_HEADER`: base64 of the reply text, also the chosen tool's input) and how finely a
stream splits it (`DELTA_CHARS_HEADER`), to plant data in responses that no request held.

Run it out of process with `python -m ztgate.devtools.simulator --port 8788`; it prints its
base URL. `GET /_simulator/received` shows what it received, `DELETE` clears that.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import email.message
import email.parser
import hashlib
import hmac
import mimetypes
import re
import secrets
import signal
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web

from ztgate.core.sse import frame

__all__ = [
    "DEFAULT_API_KEY",
    "DELTA_CHARS_HEADER",
    "REPLY_HEADER",
    "SCENARIO_HEADER",
    "ReceivedRequest",
    "Scenario",
    "UpstreamSimulator",
    "main",
]

DEFAULT_API_KEY: Final = "sk-ant-sim-upstream-key"
SCENARIO_HEADER: Final = "x-simulator-scenario"
REPLY_HEADER: Final = "x-simulator-reply"
DELTA_CHARS_HEADER: Final = "x-simulator-delta-chars"

JSONObject = dict[str, Any]
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_Event = tuple[str, JSONObject]
_T = TypeVar("_T")

_EVENT_DELAY: Final = 0.05  # seconds between events of the slow scenarios
_SHUTDOWN_GRACE: Final = 0.5  # seconds stop() lets in-flight handlers finish before cancelling
_MAX_BODY: Final = 512 * 1024 * 1024  # the Files API accepts uploads up to 500 MB
_WORDS_PER_DELTA: Final = 3
_JSON_FRAGMENT: Final = 12  # characters per input_json_delta
_MIDSTREAM_DELTAS: Final = 2  # deltas sent before a mid-stream failure
_LONG_STREAM_WORDS: Final = 600  # about 200 text deltas for sim-slow-long
_REPLY_ECHO: Final = 200
_CONTAINER_LIFETIME: Final = timedelta(days=30)
_REQUEST_ID: Final = web.RequestKey("request_id", str)


class Scenario(StrEnum):
    """Failure modes, chosen by the `model` name or the `x-simulator-scenario` header."""

    ERROR_429 = "sim-error-429"
    ERROR_529 = "sim-error-529"
    ERROR_500 = "sim-error-500"
    SLOW = "sim-slow"
    SLOW_LONG = "sim-slow-long"
    FAIL_MIDSTREAM = "sim-fail-midstream"
    DISCONNECT_MIDSTREAM = "sim-disconnect-midstream"
    HANG = "sim-hang"
    NO_STOP = "sim-no-stop"
    ECHO_KEY = "sim-echo-key"  # an error whose message and a header repeat the key received


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as it reached the simulator, for tests to assert on."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (raises if it is not JSON)."""
        return orjson.loads(self.body)


# --------------------------------------------------------------------------- wire helpers


class _ApiError(Exception):
    """A failure answered with the documented error envelope."""

    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.headers = dict(headers or {})


def _invalid(message: str) -> _ApiError:
    return _ApiError(400, "invalid_request_error", message)


def _find(store: Mapping[str, _T], object_id: str, what: str) -> _T:
    """The stored object, or the API's 404 naming what was missing."""
    if object_id not in store:
        raise _ApiError(404, "not_found_error", f"{what}: {object_id}")
    return store[object_id]


# status, error type, message, extra headers
_SCENARIO_ERRORS: Final[Mapping[Scenario, tuple[int, str, str, Mapping[str, str]]]] = {
    Scenario.ERROR_429: (
        429,
        "rate_limit_error",
        "Number of requests has exceeded your rate limit (simulated).",
        {"retry-after": "1"},
    ),
    Scenario.ERROR_529: (529, "overloaded_error", "Overloaded", {}),
    Scenario.ERROR_500: (500, "api_error", "Internal server error", {}),
}


def _scenario_error(scenario: Scenario | None) -> _ApiError | None:
    """A fresh error for an error scenario (exceptions are not reusable: they keep tracebacks)."""
    spec = _SCENARIO_ERRORS.get(scenario) if scenario is not None else None
    return _ApiError(*spec) if spec is not None else None


def _model_scenario(model: str) -> Scenario | None:
    try:
        return Scenario(model)
    except ValueError:
        return None


def _error_body(error_type: str, message: str, request_id: str) -> JSONObject:
    """The one error envelope, shared by JSON answers and the SSE `error` event."""
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def _json_response(
    payload: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers
    )


def _error_response(exc: _ApiError, request_id: str) -> web.Response:
    body = _error_body(exc.error_type, exc.message, request_id)
    return _json_response(body, exc.status, exc.headers)


def _sse_frame(name: str, data: JSONObject) -> bytes:
    """Frame one event exactly as the API does: `event:` line, `data:` line, blank line."""
    return frame(name, orjson.dumps(data))


_ID_ALPHABET: Final = string.ascii_letters + string.digits


def _new_id(prefix: str) -> str:
    """An id shaped like the API's (`msg_01` + 22 base62 characters)."""
    return prefix + "01" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _now() -> datetime:
    return datetime.now(UTC)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# --------------------------------------------------------------------------- request parsing


async def _json_object(request: web.Request) -> JSONObject:
    """The body as a JSON object, or the 400 the API gives for anything else."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"There was an error parsing the body: {exc}") from exc
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object")
    return body


def _check_field(body: JSONObject, name: str, kind: type, prefix: str) -> None:
    value = body.get(name)
    if value is None:
        raise _invalid(f"{prefix}{name}: Field required")
    # bool is an int subclass, but the API rejects `true` as an integer.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _invalid(f"{prefix}{name}: Input should be a valid {kind.__name__}")


def _validate_message_params(
    body: JSONObject, *, prefix: str = "", require_max_tokens: bool = True
) -> None:
    """Reject a messages request the real API would reject, naming the field."""
    _check_field(body, "model", str, prefix)
    if require_max_tokens:
        _check_field(body, "max_tokens", int, prefix)
        if body["max_tokens"] < 1:
            raise _invalid(f"{prefix}max_tokens: Input should be greater than or equal to 1")
    _check_field(body, "messages", list, prefix)
    if not body["messages"]:
        raise _invalid(f"{prefix}messages: at least one message is required")
    for index, message in enumerate(body["messages"]):
        where = f"{prefix}messages.{index}"
        if not isinstance(message, dict):
            raise _invalid(f"{where}: Input should be a valid dictionary")
        # Claude Code 2.1 sends mid-conversation "system" turns (per-turn-control beta).
        if message.get("role") not in ("user", "assistant", "system"):
            raise _invalid(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        if not isinstance(message.get("content"), str | list):
            raise _invalid(f"{where}.content: Input should be a valid string or list")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise _invalid(f"{prefix}stream: Input should be a valid boolean")


@dataclass(frozen=True)
class _FormPart:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def _parse_multipart(content_type: str, body: bytes) -> list[_FormPart]:
    """Split a multipart/form-data body.

    Done by hand because aiohttp's reader cannot re-read a body the recording middleware
    has already consumed.
    """
    envelope = email.message.Message()
    envelope["content-type"] = content_type
    boundary = envelope.get_boundary()
    if envelope.get_content_type() != "multipart/form-data" or not boundary:
        raise _invalid("Expected a multipart/form-data body")
    parts: list[_FormPart] = []
    for segment in (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))[1:]:
        if segment.startswith(b"--"):
            return parts
        head, separator, data = segment.partition(b"\r\n\r\n")
        if not separator:
            raise _invalid("Malformed multipart body")
        headers = email.parser.BytesHeaderParser().parsebytes(head.lstrip(b" \t\r\n"))
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise _invalid("Multipart part without a name")
        part_type = headers.get_content_type() if "content-type" in headers else None
        parts.append(_FormPart(name, headers.get_filename(), part_type, data))
    raise _invalid("Malformed multipart body: no closing boundary")


async def _form_parts(request: web.Request) -> list[_FormPart]:
    return _parse_multipart(request.headers.get("content-type", ""), await request.read())


def _form_value(parts: Iterable[_FormPart], name: str) -> str | None:
    for part in parts:
        if part.name == name and part.filename is None:
            return part.data.decode("utf-8", "replace")
    return None


def _expires_in_seconds(raw: str | None) -> int | None:
    """The Files API's optional lifetime: one hour to ninety days."""
    if raw is None:
        return None
    try:
        seconds = int(raw)
    except ValueError:
        raise _invalid("expires_in_seconds: Input should be a valid integer") from None
    if not 3600 <= seconds <= 7_776_000:
        raise _invalid("expires_in_seconds: Input should be between 3600 and 7776000")
    return seconds


# --------------------------------------------------------------------------- pagination


def _page_limit(request: web.Request) -> int:
    raw = request.query.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        raise _invalid("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise _invalid("limit: Input should be between 1 and 1000")
    return limit


def _cursor_page(request: web.Request, items: Sequence[JSONObject]) -> JSONObject:
    """`after_id` / `before_id` pagination, as for models and message batches."""
    limit = _page_limit(request)
    ids = [item["id"] for item in items]

    def position(param: str) -> int:
        try:
            return ids.index(request.query[param])
        except ValueError:
            raise _invalid(f"{param}: no object with this id") from None

    if "before_id" in request.query:
        end = position("before_id")
        start = max(0, end - limit)
        has_more = start > 0
    else:
        start = position("after_id") + 1 if "after_id" in request.query else 0
        end = min(len(items), start + limit)
        has_more = end < len(items)
    page = list(items[start:end])
    return {
        "data": page,
        "has_more": has_more,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


def _token_page(request: web.Request, items: Sequence[JSONObject]) -> JSONObject:
    """Opaque `page` token pagination, as for files, skills and skill versions."""
    limit = _page_limit(request)
    start = _decode_page_token(request.query["page"]) if request.query.get("page") else 0
    end = min(len(items), start + limit)
    more = end < len(items)
    return {
        "data": list(items[start:end]),
        "has_more": more,
        "next_page": _encode_page_token(end) if more else None,
    }


def _encode_page_token(offset: int) -> str:
    return "page_" + base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


def _decode_page_token(token: str) -> int:
    try:
        encoded = token.removeprefix("page_")
        offset = int(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except ValueError:
        raise _invalid("page: invalid page token") from None
    if offset < 0:
        raise _invalid("page: invalid page token")
    return offset


# --------------------------------------------------------------------------- reply synthesis


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


def _input_tokens(body: JSONObject) -> int:
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


def _uses_code_execution(body: JSONObject) -> bool:
    tools = body.get("tools")
    return any(
        isinstance(tool, dict) and str(tool.get("type", "")).startswith("code_execution_")
        for tool in (tools if isinstance(tools, list) else [])
    )


def _container_skills(spec: object) -> list[JSONObject]:
    """The skills a `container` object asks for, as the response lists them."""
    skills = spec.get("skills") if isinstance(spec, dict) else None
    return [
        {
            "type": skill.get("type"),
            "skill_id": skill.get("skill_id"),
            "version": skill.get("version", "latest"),
        }
        for skill in (skills if isinstance(skills, list) else [])
        if isinstance(skill, dict)
    ]


def _usage(input_tokens: int, output_tokens: int) -> JSONObject:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _build_message(
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
            {"type": "tool_use", "id": _new_id("toolu_"), "name": tool_name, "input": tool_input}
        )
        stop_reason = "tool_use"
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": _usage(_input_tokens(body), _estimate_tokens(content)),
    }


def _scripted_reply(request: web.Request) -> str | None:
    value = request.headers.get(REPLY_HEADER)
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except ValueError:
        raise _invalid(f"{REPLY_HEADER}: not base64 of UTF-8 text") from None


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


def _stream_events(
    message: JSONObject, *, ping_between_deltas: bool = False, delta_chars: int | None = None
) -> list[_Event]:
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
    ping: _Event = ("ping", {"type": "ping"})
    events: list[_Event] = [("message_start", {"type": "message_start", "message": start}), ping]
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


def _until_deltas(events: list[_Event], count: int) -> list[_Event]:
    """The events up to and including the `count`-th content delta."""
    deltas = [i for i, (name, _) in enumerate(events) if name == "content_block_delta"]
    return events[: deltas[count - 1] + 1] if len(deltas) >= count else events


# --------------------------------------------------------------------------- catalogue

# (id, display name, model line, release date, max output tokens), newest first as listed.
_MODELS: Final = (
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "opus", "2025-11-24", 64000),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "haiku", "2025-10-15", 64000),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "sonnet", "2025-09-29", 64000),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "opus", "2025-08-05", 32000),
)

# (id, which is also the slug, display name, description)
_ANTHROPIC_SKILLS: Final = (
    ("pptx", "PowerPoint", "Create and edit presentations."),
    ("xlsx", "Excel", "Create and analyse spreadsheets."),
    ("docx", "Word", "Create and edit documents."),
    ("pdf", "PDF", "Read, fill and create PDF files."),
)
_ANTHROPIC_SKILL_DATE: Final = datetime(2025, 10, 2, tzinfo=UTC)


def _model_info(model_id: str, name: str, line: str, released: str, max_tokens: int) -> JSONObject:
    return {
        "id": model_id,
        "type": "model",
        "display_name": name,
        "line": line,
        "created_at": f"{released}T00:00:00Z",
        "lifecycle": "active",
        "max_input_tokens": 200000,
        "max_tokens": max_tokens,
    }


def _frontmatter(markdown: str) -> dict[str, str]:
    """The `key: value` lines of a SKILL.md YAML front matter (enough for name/description)."""
    lines = markdown.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, separator, value = line.partition(":")
        if separator:
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


@dataclass
class _Skill:
    name: str  # the immutable slug every version must keep
    info: JSONObject
    versions: list[JSONObject] = field(default_factory=list)  # newest first


@dataclass(frozen=True)
class _StoredFile:
    metadata: JSONObject
    data: bytes


@dataclass(frozen=True)
class _Batch:
    info: JSONObject
    results: bytes


def _skill_version(skill_id: str, name: str, description: str, created: datetime) -> JSONObject:
    return {
        "id": _new_id("skillver_"),
        "type": "skill_version",
        "skill_id": skill_id,
        "name": name,
        "description": description,
        "version": str(int(created.timestamp() * 1_000_000)),
        "created_at": _rfc3339(created),
    }


def _skill_upload(parts: Sequence[_FormPart]) -> tuple[str, str, str]:
    """Check an upload is one folder with SKILL.md at its root.

    Returns the skill's name (front matter `name`, else the folder), description and display name.
    """
    files = [part for part in parts if part.name in ("files", "files[]") and part.filename]
    if not files:
        raise _invalid("files: Field required")
    folders = {PurePosixPath(part.filename or "").parts[0] for part in files}
    paths = {PurePosixPath(part.filename or "") for part in files}
    if len(folders) != 1 or any(len(path.parts) < 2 for path in paths):
        raise _invalid("files: all files must be in the same top-level directory")
    folder = folders.pop()
    manifest = next(
        (p for p in files if PurePosixPath(p.filename or "") == PurePosixPath(folder, "SKILL.md")),
        None,
    )
    if manifest is None:
        raise _invalid("files: SKILL.md file must be exactly in the top-level folder")
    meta = _frontmatter(manifest.data.decode("utf-8", "replace"))
    name = meta.get("name") or folder
    return name, meta.get("description", ""), _form_value(parts, "display_name") or name


# --------------------------------------------------------------------------- the server


class UpstreamSimulator:
    """An in-process fake of api.anthropic.com; see the module docstring."""

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        self.api_key = api_key
        self.received: list[ReceivedRequest] = []
        self.cancelled: list[str] = []
        self.base_url = ""
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self._files: dict[str, _StoredFile] = {}
        self._batches: dict[str, _Batch] = {}
        self._containers: dict[str, JSONObject] = {}
        self._skills: dict[str, _Skill] = {}
        for skill_id, display_name, description in _ANTHROPIC_SKILLS:
            self._add_skill(
                skill_id,
                skill_id,
                description,
                source="anthropic",
                created=_ANTHROPIC_SKILL_DATE,
                display_name=display_name,
            )

    # ----------------------------------------------------------------- lifecycle

    def app(self) -> web.Application:
        """The aiohttp application (built once), for callers that run it themselves."""
        if self._app is None:
            self._app = self._build_app()
        return self._app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 picks a free port) and return the base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        self._stopping = asyncio.Event()
        # handler_cancellation: a client that goes away cancels its handler at once, so a
        # hanging or paused stream notices without waiting for its next write.
        runner = web.AppRunner(
            self.app(), handler_cancellation=True, shutdown_timeout=_SHUTDOWN_GRACE, access_log=None
        )
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        self._runner = runner
        self.base_url = f"http://{_url_host(host)}:{runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening; hanging requests are dropped, streams cut after a short grace."""
        if self._runner is None:
            return
        self._stopping.set()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=_MAX_BODY)
        app.on_response_prepare.append(self._stamp_request_id)
        routes = [
            web.post("/v1/messages", self._create_message),
            web.post("/v1/messages/count_tokens", self._count_tokens),
            web.get("/v1/models", self._list_models),
            web.get("/v1/models/{model_id}", self._get_model),
            web.post("/v1/messages/batches", self._create_batch),
            web.get("/v1/messages/batches", self._list_batches),
            web.get("/v1/messages/batches/{batch_id}", self._get_batch),
            web.delete("/v1/messages/batches/{batch_id}", self._delete_batch),
            web.post("/v1/messages/batches/{batch_id}/cancel", self._cancel_batch),
            web.get("/v1/messages/batches/{batch_id}/results", self._batch_results),
            web.post("/v1/files", self._upload_file),
            web.get("/v1/files", self._list_files),
            web.get("/v1/files/{file_id}", self._get_file),
            web.delete("/v1/files/{file_id}", self._delete_file),
            web.get("/v1/files/{file_id}/content", self._file_content),
            web.post("/v1/skills", self._create_skill),
            web.get("/v1/skills", self._list_skills),
            web.get("/v1/skills/{skill_id}", self._get_skill),
            web.delete("/v1/skills/{skill_id}", self._delete_skill),
            web.post("/v1/skills/{skill_id}/versions", self._create_skill_version),
            web.get("/v1/skills/{skill_id}/versions", self._list_skill_versions),
            web.get("/v1/skills/{skill_id}/versions/{version}", self._get_skill_version),
            web.delete("/v1/skills/{skill_id}/versions/{version}", self._delete_skill_version),
            web.get("/_simulator/received", self._show_received),
            web.delete("/_simulator/received", self._clear_received),
        ]
        app.add_routes(routes)
        return app

    # ----------------------------------------------------------------- cross-cutting

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Record, authenticate and apply header scenarios to /v1; map errors to the envelope."""
        request_id = "req_sim_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(24))
        request[_REQUEST_ID] = request_id
        try:
            if request.path == "/v1" or request.path.startswith("/v1/"):
                await self._record(request)
                self._authenticate(request)
                dropped = await self._enact_blocking(request, self._header_scenario(request))
                if dropped is not None:
                    return dropped
            return await handler(request)
        except _ApiError as exc:
            return _error_response(exc, request_id)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            unknown = f"Not found: {request.method} {request.path}"
            return _error_response(_ApiError(404, "not_found_error", unknown), request_id)
        except web.HTTPRequestEntityTooLarge:
            too_large = _ApiError(413, "request_too_large", "Request exceeds the maximum size")
            return _error_response(too_large, request_id)

    @staticmethod
    async def _stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
        """Every answer, streamed or not, carries the `request-id` header."""
        response.headers.setdefault("request-id", request.get(_REQUEST_ID, "req_sim_unknown"))

    async def _record(self, request: web.Request) -> None:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        received = ReceivedRequest(
            request.method, request.path, request.query_string, headers, await request.read()
        )
        self.received.append(received)

    def _authenticate(self, request: web.Request) -> None:
        """Accept the key as `x-api-key` or a Bearer token, then require `anthropic-version`."""
        presented: list[str] = []
        if "x-api-key" in request.headers:
            presented.append(request.headers["x-api-key"])
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            presented.append(token.strip())
        if not presented:
            raise _ApiError(401, "authentication_error", "x-api-key header is required")
        expected = self.api_key.encode()
        if not any(hmac.compare_digest(key.encode(), expected) for key in presented):
            raise _ApiError(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise _invalid("anthropic-version: header is required")

    @staticmethod
    def _header_scenario(request: web.Request) -> Scenario | None:
        value = request.headers.get(SCENARIO_HEADER)
        if value is None:
            return None
        try:
            return Scenario(value)
        except ValueError:
            raise _invalid(f"{SCENARIO_HEADER}: unknown scenario {value!r}") from None

    def _scenario(self, request: web.Request, model: str) -> Scenario | None:
        """The header wins; otherwise a model named after a scenario selects it."""
        header = self._header_scenario(request)
        if header is not None:
            return header
        return _model_scenario(model)

    async def _enact_blocking(
        self, request: web.Request, scenario: Scenario | None
    ) -> web.StreamResponse | None:
        """Scenarios that pre-empt any answer: raise its error, or hang until stopped."""
        failure = _scenario_error(scenario)
        if failure is not None:
            raise failure
        if scenario is Scenario.ECHO_KEY:
            key = request.headers.get("x-api-key", "")
            raise _ApiError(
                401, "authentication_error", f"invalid x-api-key {key}", {"x-echo": key}
            )
        if scenario is not Scenario.HANG:
            return None
        try:
            await self._stopping.wait()
        except asyncio.CancelledError:
            self._note_cancelled(request)
            raise
        return _drop_connection(request)

    def _note_cancelled(self, request: web.Request) -> None:
        """Remember a client that left early; a shutdown of our own is not one."""
        if not self._stopping.is_set():
            self.cancelled.append(request[_REQUEST_ID])

    # ----------------------------------------------------------------- messages

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        body = await _json_object(request)
        _validate_message_params(body)
        scenario = self._scenario(request, body["model"])
        dropped = await self._enact_blocking(request, scenario)
        if dropped is not None:
            return dropped
        if not body.get("stream"):
            if scenario is Scenario.DISCONNECT_MIDSTREAM:
                return _drop_connection(request)
            if scenario is Scenario.FAIL_MIDSTREAM:
                raise _ApiError(*_SCENARIO_ERRORS[Scenario.ERROR_529])
            message = _build_message(body, scenario, _scripted_reply(request))
            return _json_response(self._with_container(message, body))
        message = self._with_container(
            _build_message(body, scenario, _scripted_reply(request)), body
        )
        return await self._stream(request, message, scenario)

    def _with_container(self, message: JSONObject, body: JSONObject) -> JSONObject:
        """Add the container the request runs in, like the API: the one it names by id (which
        must be ours), else a new one when it loads skills or uses code execution."""
        requested = body.get("container")
        if requested is not None and not isinstance(requested, str | dict):
            raise _invalid("container: Input should be a valid string or object")
        reused = requested.get("id") if isinstance(requested, dict) else requested
        skills = _container_skills(requested)
        if reused is not None:
            container = self._containers.get(str(reused))
            if container is None:
                raise _invalid(f"container: container {reused} not found")
            if skills:
                container["skills"] = skills
        elif skills or _uses_code_execution(body):
            expires = _rfc3339(_now() + _CONTAINER_LIFETIME)
            container = {"id": _new_id("container_"), "expires_at": expires, "skills": skills}
            self._containers[container["id"]] = container
        else:
            return message
        return {**message, "container": dict(container)}

    async def _stream(
        self, request: web.Request, message: JSONObject, scenario: Scenario | None
    ) -> web.StreamResponse:
        """Send the message as SSE, one write (and so one flush) per event."""
        slow = scenario in (Scenario.SLOW, Scenario.SLOW_LONG)
        chars = request.headers.get(DELTA_CHARS_HEADER)
        events = _stream_events(
            message,
            ping_between_deltas=scenario is Scenario.SLOW,
            delta_chars=int(chars) if chars and chars.isdigit() and int(chars) > 0 else None,
        )
        if scenario in (Scenario.FAIL_MIDSTREAM, Scenario.DISCONNECT_MIDSTREAM):
            events = _until_deltas(events, _MIDSTREAM_DELTAS)
        if scenario is Scenario.FAIL_MIDSTREAM:
            error = _error_body("overloaded_error", "Overloaded", request[_REQUEST_ID])
            events.append(("error", error))
        if scenario is Scenario.NO_STOP:
            events = events[:-2]
        response = web.StreamResponse(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
            }
        )
        try:
            await response.prepare(request)
            for name, data in events:
                if slow:
                    await asyncio.sleep(_EVENT_DELAY)
                await response.write(_sse_frame(name, data))
            if scenario is Scenario.DISCONNECT_MIDSTREAM:
                return _drop_connection(request, response)
            await response.write_eof()
        except ConnectionError:
            self._note_cancelled(request)
        except asyncio.CancelledError:
            self._note_cancelled(request)
            raise
        return response

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await _json_object(request)
        _validate_message_params(body, require_max_tokens=False)
        dropped = await self._enact_blocking(request, self._scenario(request, body["model"]))
        if dropped is not None:
            return dropped
        return _json_response({"input_tokens": _input_tokens(body)})

    # ----------------------------------------------------------------- models

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        return _json_response(_cursor_page(request, [_model_info(*model) for model in _MODELS]))

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        models = {model[0]: model for model in _MODELS}
        return _json_response(_model_info(*_find(models, request.match_info["model_id"], "model")))

    # ----------------------------------------------------------------- message batches

    async def _create_batch(self, request: web.Request) -> web.StreamResponse:
        """Validate, then end the batch at once so results can be fetched immediately."""
        body = await _json_object(request)
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise _invalid("requests: Field required (a non-empty list)")
        seen: set[str] = set()
        for index, item in enumerate(requests):
            if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
                raise _invalid(f"requests.{index}.custom_id: Field required")
            if item["custom_id"] in seen:
                raise _invalid(f"requests.{index}.custom_id: duplicate custom_id")
            seen.add(item["custom_id"])
            if not isinstance(item.get("params"), dict):
                raise _invalid(f"requests.{index}.params: Field required")
            _validate_message_params(item["params"], prefix=f"requests.{index}.params.")
        lines = [self._batch_line(item, request[_REQUEST_ID]) for item in requests]
        succeeded = sum(line["result"]["type"] == "succeeded" for line in lines)
        batch_id = _new_id("msgbatch_")
        created = _now()
        info = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended",
            "request_counts": {
                "processing": 0,
                "succeeded": succeeded,
                "errored": len(lines) - succeeded,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": _rfc3339(created),
            "ended_at": _rfc3339(created),
            "expires_at": _rfc3339(created + timedelta(hours=24)),
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self._own_base_url(request)}/v1/messages/batches/{batch_id}/results",
        }
        results = b"".join(orjson.dumps(line) + b"\n" for line in lines)
        self._batches[batch_id] = _Batch(info, results)
        return _json_response(info)

    @staticmethod
    def _batch_line(item: JSONObject, request_id: str) -> JSONObject:
        params = item["params"]
        failure = _scenario_error(_model_scenario(params["model"]))
        if failure is not None:
            error = _error_body(failure.error_type, failure.message, request_id)
            return {"custom_id": item["custom_id"], "result": {"type": "errored", "error": error}}
        message = _build_message(params, None)
        return {"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": message}}

    def _own_base_url(self, request: web.Request) -> str:
        """Absolute like api.anthropic.com's, and ours even when a gateway forwards the call."""
        return self.base_url or f"{request.scheme}://{request.host}"

    def _batch(self, request: web.Request) -> _Batch:
        return _find(self._batches, request.match_info["batch_id"], "message batch")

    async def _list_batches(self, request: web.Request) -> web.StreamResponse:
        newest_first = [batch.info for batch in reversed(self._batches.values())]
        return _json_response(_cursor_page(request, newest_first))

    async def _get_batch(self, request: web.Request) -> web.StreamResponse:
        return _json_response(self._batch(request).info)

    async def _cancel_batch(self, request: web.Request) -> web.StreamResponse:
        """Batches end at creation, so cancelling one changes nothing, as for an ended batch."""
        return _json_response(self._batch(request).info)

    async def _delete_batch(self, request: web.Request) -> web.StreamResponse:
        batch = self._batch(request)
        del self._batches[batch.info["id"]]
        return _json_response({"id": batch.info["id"], "type": "message_batch_deleted"})

    async def _batch_results(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._batch(request).results, content_type="application/binary")

    # ----------------------------------------------------------------- files

    async def _upload_file(self, request: web.Request) -> web.StreamResponse:
        parts = await _form_parts(request)
        upload = next((p for p in parts if p.name == "file" and p.filename is not None), None)
        if upload is None:
            raise _invalid("file: Field required")
        filename = PurePosixPath(upload.filename or "").name or "unnamed"
        mime_type = (
            upload.content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        )
        created = _now()
        expires_in = _expires_in_seconds(_form_value(parts, "expires_in_seconds"))
        expires_at = created + timedelta(seconds=expires_in) if expires_in else None
        metadata: JSONObject = {
            "id": _new_id("file_"),
            "type": "file",
            "filename": filename,
            "mime_type": mime_type,
            "size_bytes": len(upload.data),
            "created_at": _rfc3339(created),
            "expires_at": _rfc3339(expires_at) if expires_at else None,
            "downloadable": True,
        }
        self._files[metadata["id"]] = _StoredFile(metadata, upload.data)
        return _json_response(metadata)

    def _file(self, request: web.Request) -> _StoredFile:
        return _find(self._files, request.match_info["file_id"], "file")

    async def _list_files(self, request: web.Request) -> web.StreamResponse:
        newest_first = [stored.metadata for stored in reversed(self._files.values())]
        return _json_response(_token_page(request, newest_first))

    async def _get_file(self, request: web.Request) -> web.StreamResponse:
        return _json_response(self._file(request).metadata)

    async def _delete_file(self, request: web.Request) -> web.StreamResponse:
        file_id = self._file(request).metadata["id"]
        del self._files[file_id]
        return _json_response({"id": file_id, "type": "file_deleted"})

    async def _file_content(self, request: web.Request) -> web.StreamResponse:
        stored = self._file(request)
        return web.Response(
            body=stored.data, headers={"content-type": stored.metadata["mime_type"]}
        )

    # ----------------------------------------------------------------- skills

    def _add_skill(
        self,
        skill_id: str,
        name: str,
        description: str,
        *,
        source: str,
        created: datetime,
        display_name: str | None = None,
    ) -> _Skill:
        version = _skill_version(skill_id, name, description, created)
        info = {
            "id": skill_id,
            "type": "skill",
            "display_name": display_name or name,
            "source": {"type": source},
            "latest_version_id": version["id"],
            "created_at": _rfc3339(created),
            "updated_at": _rfc3339(created),
        }
        skill = _Skill(name, info, [version])
        self._skills[skill_id] = skill
        return skill

    def _skill(self, request: web.Request, *, writable: bool = False) -> _Skill:
        skill = _find(self._skills, request.match_info["skill_id"], "skill")
        if writable and skill.info["source"]["type"] != "custom":
            raise _ApiError(403, "permission_error", f"skill {skill.info['id']} is read-only")
        return skill

    def _skill_version_of(self, request: web.Request, skill: _Skill) -> JSONObject:
        wanted = request.match_info["version"]
        if wanted == "latest" and skill.versions:
            return skill.versions[0]
        by_key = {key: v for v in skill.versions for key in (v["id"], v["version"])}
        return _find(by_key, wanted, "skill version")

    async def _create_skill(self, request: web.Request) -> web.StreamResponse:
        name, description, display_name = _skill_upload(await _form_parts(request))
        skill = self._add_skill(
            _new_id("skill_"),
            name,
            description,
            source="custom",
            created=_now(),
            display_name=display_name,
        )
        return _json_response(skill.info)

    async def _list_skills(self, request: web.Request) -> web.StreamResponse:
        source = request.query.get("source")
        skills = [
            skill.info
            for skill in reversed(self._skills.values())
            if source is None or skill.info["source"]["type"] == source
        ]
        return _json_response(_token_page(request, skills))

    async def _get_skill(self, request: web.Request) -> web.StreamResponse:
        return _json_response(self._skill(request).info)

    async def _delete_skill(self, request: web.Request) -> web.StreamResponse:
        skill_id = self._skill(request, writable=True).info["id"]
        del self._skills[skill_id]
        return _json_response({"id": skill_id, "type": "skill_deleted"})

    async def _create_skill_version(self, request: web.Request) -> web.StreamResponse:
        skill = self._skill(request, writable=True)
        name, description, _ = _skill_upload(await _form_parts(request))
        if name != skill.name:
            raise _invalid(f"files: the skill name must stay {skill.name!r}")
        created = _now()
        version = _skill_version(skill.info["id"], name, description, created)
        skill.versions.insert(0, version)
        skill.info.update(latest_version_id=version["id"], updated_at=_rfc3339(created))
        return _json_response(version)

    async def _list_skill_versions(self, request: web.Request) -> web.StreamResponse:
        return _json_response(_token_page(request, self._skill(request).versions))

    async def _get_skill_version(self, request: web.Request) -> web.StreamResponse:
        skill = self._skill(request)
        return _json_response(self._skill_version_of(request, skill))

    async def _delete_skill_version(self, request: web.Request) -> web.StreamResponse:
        skill = self._skill(request, writable=True)
        version = self._skill_version_of(request, skill)
        skill.versions.remove(version)
        if skill.versions:
            skill.info["latest_version_id"] = skill.versions[0]["id"]
        return _json_response({"id": version["id"], "type": "skill_version_deleted"})

    # ----------------------------------------------------------------- control endpoints

    async def _show_received(self, request: web.Request) -> web.StreamResponse:
        return _json_response(
            {
                "received": [_received_json(item) for item in self.received],
                "cancelled": list(self.cancelled),
            }
        )

    async def _clear_received(self, request: web.Request) -> web.StreamResponse:
        self.received.clear()
        self.cancelled.clear()
        return web.Response(status=204)


def _drop_connection(
    request: web.Request, response: web.StreamResponse | None = None
) -> web.StreamResponse:
    """Close the TCP connection without finishing the answer, like a crashed upstream.

    aiohttp then fails to write the (unsent or unfinished) response and lets it go quietly.
    """
    if request.transport is not None:
        request.transport.close()
    return response if response is not None else web.Response(status=502)


def _received_json(received: ReceivedRequest) -> JSONObject:
    try:
        body, encoding = received.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(received.body).decode(), "base64"
    return {
        "method": received.method,
        "path": received.path,
        "query_string": received.query_string,
        "headers": received.headers,
        "body": body,
        "body_encoding": encoding,
    }


# --------------------------------------------------------------------------- command line


async def _serve(host: str, port: int, api_key: str) -> None:
    simulator = UpstreamSimulator(api_key)
    print(await simulator.start(host, port), flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the simulator until killed, printing its base URL first."""
    parser = argparse.ArgumentParser(description="A local stand-in for the Claude API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the key clients must send")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.api_key))


if __name__ == "__main__":
    main()
