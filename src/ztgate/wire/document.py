"""A JSON request body as ztgate reads it, and the one encoding it forwards.

ztgate never forwards the caller's bytes for a JSON endpoint: it forwards ``encode`` of the
payload it parsed, inspected, decided on and masked. Whatever the upstream's JSON parser
would have made of the caller's bytes (the first of two duplicated keys, a number written
``4096e0``, escapes, white space) it now reads exactly the document ztgate judged, with one
value per key. docs/data-protection.md says why this and not refusing duplicates.
"""

from __future__ import annotations

from typing import Any

import orjson


class MalformedBody(ValueError):
    """The bytes are not one JSON object."""


def parse_object(body: bytes) -> dict[str, Any]:
    """One JSON object: strict UTF-8, no byte order mark, finite numbers (orjson's rules)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"request body is not valid JSON: {exc.msg}") from None
    if not isinstance(payload, dict):
        raise MalformedBody("request body must be a JSON object")
    return payload


def encode(payload: dict[str, Any]) -> bytes:
    """The bytes that go upstream: compact, one value per key, in the payload's order."""
    return orjson.dumps(payload)
