"""Where text lives in a messages request. A pure walk over the parsed body.

Every field that carries text a person or a tool wrote: ``system`` (string or text blocks),
each message's string content and text blocks, ``tool_result`` content, every string inside a
``tool_use`` input, documents with a text source; for a batch, every request inside it. Paths
name the field (``messages.2.content.0.input.query``) so a finding can say where, never what.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

MAX_DEPTH = 64  # tool inputs are JSON: bound the walk, a deeper document is refused upstream


def request_texts(payload: Mapping[str, Any], *, batch: bool = False) -> Iterator[tuple[str, str]]:
    """(path, text) for every text field of a messages request, or of every request of a batch."""
    if batch:
        requests = payload.get("requests")
        for index, item in enumerate(requests if isinstance(requests, list) else []):
            params = item.get("params") if isinstance(item, dict) else None
            if isinstance(params, dict):
                yield from _message_texts(params, f"requests.{index}.params.")
        return
    yield from _message_texts(payload, "")


def _message_texts(body: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, str]]:
    yield from _content(body.get("system"), f"{prefix}system")
    messages = body.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if isinstance(message, dict):
            yield from _content(message.get("content"), f"{prefix}messages.{index}.content")


def _content(content: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(content, str):
        yield path, content
        return
    if not isinstance(content, list):
        return
    for index, block in enumerate(content):
        if isinstance(block, dict):
            yield from _block(block, f"{path}.{index}")


def _block(block: Mapping[str, Any], path: str) -> Iterator[tuple[str, str]]:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        yield f"{path}.text", block["text"]
    elif kind == "tool_result":
        yield from _content(block.get("content"), f"{path}.content")
    elif kind in ("tool_use", "server_tool_use"):
        yield from _json_strings(block.get("input"), f"{path}.input", 0)
    elif kind == "document":
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") == "text":
            if isinstance(source.get("data"), str):
                yield f"{path}.source.data", source["data"]
        elif isinstance(source, dict) and source.get("type") == "content":
            yield from _content(source.get("content"), f"{path}.source.content")


def _json_strings(value: object, path: str, depth: int) -> Iterator[tuple[str, str]]:
    if depth > MAX_DEPTH:
        return
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _json_strings(item, f"{path}.{key}", depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _json_strings(item, f"{path}.{index}", depth + 1)
