"""Where text lives in a request or a response body: a walk over all of it, nothing skipped.

Inspection is the default. Every string in a body is one of:

- **text** (``Kind.TEXT``): anything a person, a tool or a web page wrote, and every string
  the table below does not name: message and system text, tool results, documents and their
  titles and context, search results, citations, tool descriptions, URLs, stop sequences,
  ``metadata.user_id``, and every field or block type the API adds later. Scanned, and masked
  in place.
- **a name in free-form JSON** (``Kind.NAME``): a key inside a tool's ``input``, an
  ``input_schema``, an output schema. The model reads those too; masking renames the key.
- **fixed** (``Kind.FIXED``): identifiers and values the API checks or signs: block ``type``,
  ``role``, ``model``, ids, tool and server names, media types, a thinking block's text and a
  compaction block's summary (both signed). Scanned, so policy sees what they carry, but never
  rewritten: when policy would mask one, the request is refused instead.
- **opaque**: never scanned: base64 images and PDFs, signatures, encrypted blobs from the
  API's own tools, an MCP server's ``authorization_token`` (a credential meant for that
  server, which policy names).

The keys of the API's own objects are collected apart (``BodyText.keys``): a caller could
plant a value as a key as easily as a value. A body nested deeper than the walk's bound is
refused (``TooDeep``), never partly walked: the bound sits well below any encoder's limit.

Paths name the place (``messages.2.content.0.input.query``) so a finding can say where, never
what; a key that itself carries a finding is shown as ``<key>`` (``safe_path``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ztgate.core.texts import DEFAULT_MAX_DEPTH, BodyText, Kind, TextField


class TooDeep(ValueError):
    """A body nests deeper than the walk goes: it cannot be inspected, so it is refused."""


# In the API's own objects (not free-form JSON), what each key's string value is. A key not
# named here holds text.
_FIXED = Kind.FIXED
_OPAQUE = "opaque"
_OPAQUE_IN_BINARY = "opaque in binary"  # ``data``: opaque in base64 sources, text otherwise
_FIXED_IF_SIGNED = "fixed if signed"  # ``content``: a compaction block's summary is signed
_VALUE_ROLES: Mapping[str, Kind | str] = {
    **dict.fromkeys(
        (
            "type",
            "role",
            "model",
            "id",
            "tool_use_id",
            "custom_id",
            "name",
            "tool_name",
            "toolset_name",
            "server_name",
            "file_id",
            "skill_id",
            "version",
            "container",
            "media_type",
            "file_type",
            "service_tier",
            "speed",
            "effort",
            "display",
            "ttl",
            "inference_geo",
            "oversized_image",
            "error_code",
            "tool_id",
            "tab_id",
            "download_id",
            "previous_message_id",
            "workspace_id",
            "user_profile_id",
            "retrieved_at",
            "page_age",
            "stop_reason",
            "thinking",  # a thinking block's text: signed, so it cannot be masked
        ),
        _FIXED,
    ),
    **dict.fromkeys(
        (
            "signature",
            "encrypted_content",
            "encrypted_index",
            "encrypted_stdout",
            "authorization_token",
        ),
        _OPAQUE,
    ),
    "data": _OPAQUE_IN_BINARY,
    "content": _FIXED_IF_SIGNED,
}
_BINARY_SOURCES = frozenset({"base64", "redacted_thinking"})
SIGNED_BLOCKS = frozenset({"thinking", "redacted_thinking", "compaction"})
# Keys whose value is free-form JSON: every string in it is text, every key a name.
FREE_FORM_KEYS = frozenset({"input", "input_schema", "input_examples", "schema"})


def body_text(body: Mapping[str, Any], *, max_depth: int = DEFAULT_MAX_DEPTH) -> BodyText:
    """Walk a whole request or response body (any endpoint: a batch is a list of requests)."""
    found = BodyText(max_depth=max_depth)
    _api_object(found, body, "", 1)
    return found


def block_text(
    block: Mapping[str, Any], path: str, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> BodyText:
    """Walk one content block (a streamed block start, a delta): paths start at ``path``."""
    found = BodyText(max_depth=max_depth)
    _api_object(found, block, f"{path}.", 1)
    return found


def _api_object(found: BodyText, value: Any, prefix: str, depth: int) -> None:
    if depth > found.max_depth:
        raise TooDeep(
            f"{prefix.rstrip('.') or 'the body'} nests deeper than {found.max_depth} levels"
        )
    fields = found.fields
    if type(value) is dict:
        found.keys.update(value)
        source_type = value.get("type")
        if type(source_type) is not str:
            source_type = None  # a malformed ``type`` makes nothing opaque
        for key, item in value.items():
            kind = type(item)
            if kind is str:
                role = _VALUE_ROLES.get(key)
                if role is _FIXED or (role is _FIXED_IF_SIGNED and source_type in SIGNED_BLOCKS):
                    fields.append(TextField(prefix + key, value, key, _FIXED))
                elif (
                    role is None
                    or role is _FIXED_IF_SIGNED
                    or (role is _OPAQUE_IN_BINARY and source_type not in _BINARY_SOURCES)
                ):
                    fields.append(TextField(prefix + key, value, key))
            elif kind is dict or kind is list:
                if key in FREE_FORM_KEYS:
                    _free_form(found, value, key, prefix + key, depth + 1)
                else:
                    _api_object(found, item, f"{prefix}{key}.", depth + 1)
    elif type(value) is list:
        for index, item in enumerate(value):
            kind = type(item)
            if kind is str:
                fields.append(TextField(f"{prefix}{index}", value, index))
            elif kind is dict or kind is list:
                _api_object(found, item, f"{prefix}{index}.", depth + 1)


def _free_form(found: BodyText, holder: Any, key: Any, path: str, depth: int) -> None:
    """Every string inside a JSON value is text and every key a name; names come after the
    values they hold, so masking a value before renaming its key finds it where it was."""
    if depth > found.max_depth:
        raise TooDeep(f"it nests deeper than {found.max_depth} levels")
    value = holder[key]
    kind = type(value)
    if kind is str:
        found.fields.append(TextField(path, holder, key))
    elif kind is dict:
        for name in list(value):
            _free_form(found, value, name, f"{path}.{name}", depth + 1)
            found.fields.append(TextField(f"{path}.{name}", value, name, Kind.NAME))
    elif kind is list:
        for index in range(len(value)):
            _free_form(found, value, index, f"{path}.{index}", depth + 1)


def safe_path(path: str, tainted: set[str]) -> str:
    """``path`` with every key that carries a finding shown as ``<key>``: a path is logged,
    recorded and sent in errors, and must never spell a value."""
    for name in tainted:
        if name in path:
            path = path.replace(name, "<key>")
    return path


def text_blocks(content: object) -> list[str]:
    """The texts of a message's ``content``: the string itself, or its ``text`` blocks."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [
        block["text"]
        for block in content
        if isinstance(block, dict)
        and block.get("type") == "text"
        and isinstance(block.get("text"), str)
    ]
