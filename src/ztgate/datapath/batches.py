"""Batch responses carry an absolute ``results_url``: point it back at ztgate.

Otherwise the SDK would fetch results straight from the upstream, bypassing the gateway
(and sending the caller's token there).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import orjson


def rewrite_results_urls(body: bytes, public_base: str) -> bytes:
    """The body with every ``results_url`` re-rooted at ``public_base``; unchanged if none."""
    if b'"results_url"' not in body:
        return body
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    batches = document.get("data") if isinstance(document, dict) else None
    items: list[Any] = batches if isinstance(batches, list) else [document]
    changed = False
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("results_url"), str):
            item["results_url"] = _rebase(item["results_url"], public_base)
            changed = True
    return orjson.dumps(document) if changed else body


def _rebase(url: str, public_base: str) -> str:
    parts = urlsplit(url)
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    return public_base.rstrip("/") + tail
