"""Request bodies: JSON objects checked as the API checks them, and multipart/form-data uploads."""

from __future__ import annotations

import email.message
import email.parser
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from aiohttp import web

from ztgate.devtools.simulator.api import JSONObject, invalid


async def json_object(request: web.Request) -> JSONObject:
    """The body as a JSON object, or the 400 the API gives for anything else."""
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise invalid(f"There was an error parsing the body: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object")
    return body


def _check_field(body: JSONObject, name: str, kind: type, prefix: str) -> None:
    value = body.get(name)
    if value is None:
        raise invalid(f"{prefix}{name}: Field required")
    # bool is an int subclass, but the API rejects `true` as an integer.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise invalid(f"{prefix}{name}: Input should be a valid {kind.__name__}")


def validate_message_params(
    body: JSONObject, *, prefix: str = "", require_max_tokens: bool = True
) -> None:
    """Reject a messages request the real API would reject, naming the field."""
    _check_field(body, "model", str, prefix)
    if require_max_tokens:
        _check_field(body, "max_tokens", int, prefix)
        if body["max_tokens"] < 1:
            raise invalid(f"{prefix}max_tokens: Input should be greater than or equal to 1")
    _check_field(body, "messages", list, prefix)
    if not body["messages"]:
        raise invalid(f"{prefix}messages: at least one message is required")
    for index, message in enumerate(body["messages"]):
        where = f"{prefix}messages.{index}"
        if not isinstance(message, dict):
            raise invalid(f"{where}: Input should be a valid dictionary")
        # Claude Code 2.1 sends mid-conversation "system" turns (per-turn-control beta).
        if message.get("role") not in ("user", "assistant", "system"):
            raise invalid(f"{where}.role: Input should be 'user', 'assistant' or 'system'")
        if not isinstance(message.get("content"), str | list):
            raise invalid(f"{where}.content: Input should be a valid string or list")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise invalid(f"{prefix}stream: Input should be a valid boolean")


@dataclass(frozen=True)
class FormPart:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


def _parse_multipart(content_type: str, body: bytes) -> list[FormPart]:
    """Split a multipart/form-data body.

    Done by hand because aiohttp's reader cannot re-read a body the recording middleware
    has already consumed.
    """
    envelope = email.message.Message()
    envelope["content-type"] = content_type
    boundary = envelope.get_boundary()
    if envelope.get_content_type() != "multipart/form-data" or not boundary:
        raise invalid("Expected a multipart/form-data body")
    parts: list[FormPart] = []
    for segment in (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))[1:]:
        if segment.startswith(b"--"):
            return parts
        head, separator, data = segment.partition(b"\r\n\r\n")
        if not separator:
            raise invalid("Malformed multipart body")
        headers = email.parser.BytesHeaderParser().parsebytes(head.lstrip(b" \t\r\n"))
        name = headers.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            raise invalid("Multipart part without a name")
        part_type = headers.get_content_type() if "content-type" in headers else None
        parts.append(FormPart(name, headers.get_filename(), part_type, data))
    raise invalid("Malformed multipart body: no closing boundary")


async def form_parts(request: web.Request) -> list[FormPart]:
    return _parse_multipart(request.headers.get("content-type", ""), await request.read())


def form_value(parts: Iterable[FormPart], name: str) -> str | None:
    for part in parts:
        if part.name == name and part.filename is None:
            return part.data.decode("utf-8", "replace")
    return None
