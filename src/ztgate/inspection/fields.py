"""Where text lives in a messages request. A pure walk over the parsed body.

Every field that carries text a person or a tool wrote: ``system`` (string or text blocks),
each message's string content and text blocks, ``tool_result`` content, every string inside a
``tool_use`` input, documents with a text source; for a batch, every request inside it. Paths
name the field (``messages.2.content.0.input.query``) so a finding can say where, never what.
Signed ``thinking`` blocks are left alone: altering one breaks its signature (see
docs/data-protection.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

MAX_DEPTH = 64  # tool inputs are JSON: a deeper one is refused, never skipped


class TooDeep(ValueError):
    """A tool input nests deeper than the walk goes: it cannot be inspected, so it is refused."""


class TextField(NamedTuple):
    """Where one text lives: ``holder[key]`` is the text, so masking can write it back."""

    path: str
    holder: Any  # the dict or list that holds it
    key: Any  # its key or index there

    @property
    def text(self) -> str:
        text: str = self.holder[self.key]
        return text

    def replace(self, text: str) -> None:
        self.holder[self.key] = text


def request_fields(payload: Mapping[str, Any], *, batch: bool = False) -> Iterator[TextField]:
    """Every text field of a messages request, or of every request of a batch."""
    if batch:
        requests = payload.get("requests")
        for index, item in enumerate(requests if isinstance(requests, list) else []):
            params = item.get("params") if isinstance(item, dict) else None
            if isinstance(params, dict):
                yield from _message_fields(params, f"requests.{index}.params.")
        return
    yield from _message_fields(payload, "")


def request_texts(payload: Mapping[str, Any], *, batch: bool = False) -> Iterator[tuple[str, str]]:
    """(path, text) for every text field: what ``request_fields`` finds, read."""
    for field in request_fields(payload, batch=batch):
        yield field.path, field.text


def _message_fields(body: Mapping[str, Any], prefix: str) -> Iterator[TextField]:
    yield from _content(body, "system", f"{prefix}system")
    messages = body.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if isinstance(message, dict):
            yield from _content(message, "content", f"{prefix}messages.{index}.content")


def _content(holder: Any, key: str, path: str) -> Iterator[TextField]:
    content = holder.get(key)
    if isinstance(content, str):
        yield TextField(path, holder, key)
        return
    if not isinstance(content, list):
        return
    for index, block in enumerate(content):
        if isinstance(block, dict):
            yield from _block(block, f"{path}.{index}")


def _block(block: dict[str, Any], path: str) -> Iterator[TextField]:
    kind = block.get("type")
    if kind == "text" and isinstance(block.get("text"), str):
        yield TextField(f"{path}.text", block, "text")
    elif kind == "tool_result":
        yield from _content(block, "content", f"{path}.content")
    elif kind in ("tool_use", "server_tool_use"):
        yield from json_fields(block, "input", f"{path}.input")
    elif kind == "document":
        source = block.get("source")
        if isinstance(source, dict) and source.get("type") == "text":
            if isinstance(source.get("data"), str):
                yield TextField(f"{path}.source.data", source, "data")
        elif isinstance(source, dict) and source.get("type") == "content":
            yield from _content(source, "content", f"{path}.source.content")


def json_fields(holder: Any, key: Any, path: str, depth: int = 0) -> Iterator[TextField]:
    """Every string inside a JSON value (a tool's input), keys excepted."""
    if depth > MAX_DEPTH:
        raise TooDeep(f"{path} nests deeper than {MAX_DEPTH} levels")
    value = holder[key]
    if isinstance(value, str):
        yield TextField(path, holder, key)
    elif isinstance(value, dict):
        for name in value:
            yield from json_fields(value, name, f"{path}.{name}", depth + 1)
    elif isinstance(value, list):
        for index in range(len(value)):
            yield from json_fields(value, index, f"{path}.{index}", depth + 1)
