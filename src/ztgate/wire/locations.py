"""Where in the conversation a string of a request sits, by the API's shapes: the system
prompt, a person's turn, a tool's result, a document. Guardrails weigh the same words
differently by where they are: an order in a web page a tool fetched is an injection; the
same order from the user is the user asking."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ztgate.core.guardrails import Location

_TOOL_INPUTS = frozenset({"tool_use", "server_tool_use", "mcp_tool_use"})
_RESULTS = frozenset({"search_result", "web_fetch_result", "web_search_result"})


def location_of(path: str, body: Mapping[str, Any]) -> Location:
    """The location of the string at ``path`` (a ``wire/fields.py`` path) in ``body``."""
    parts = path.split(".")
    if len(parts) > 3 and parts[0] == "requests" and parts[2] == "params":
        request = _item(body.get("requests"), parts[1])
        body = request.get("params", {}) if isinstance(request, Mapping) else {}
        parts = parts[3:]
    head = parts[0]
    if head == "system":
        return "system"
    if head == "tools":
        return "tool_definition"
    if head != "messages" or len(parts) < 2:
        return "other"
    message = _item(body.get("messages"), parts[1])
    if not isinstance(message, Mapping):
        return "other"
    turn: Location = "assistant" if message.get("role") == "assistant" else "user"
    if len(parts) < 4 or parts[2] != "content":
        return turn
    block = _item(message.get("content"), parts[3])
    kind = block.get("type") if isinstance(block, Mapping) else None
    if not isinstance(kind, str):
        return turn
    if kind.endswith("tool_result") or kind in _RESULTS:
        return "tool_result"
    if kind == "document":
        return "document"
    if kind in _TOOL_INPUTS:
        return "tool_input"
    return turn


def _item(items: object, index: str) -> object:
    if not isinstance(items, list) or not (index.isascii() and index.isdigit()):
        return None
    position = int(index)
    return items[position] if position < len(items) else None
