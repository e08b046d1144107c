"""The API's two list shapes: cursor pages (`after_id` / `before_id`) and opaque page tokens."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from aiohttp import web

from ztgate.devtools.simulator.api import JSONObject, invalid


def _page_limit(request: web.Request) -> int:
    raw = request.query.get("limit", "20")
    try:
        limit = int(raw)
    except ValueError:
        raise invalid("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise invalid("limit: Input should be between 1 and 1000")
    return limit


def cursor_page(request: web.Request, items: Sequence[JSONObject]) -> JSONObject:
    """`after_id` / `before_id` pagination, as for models and message batches."""
    limit = _page_limit(request)
    ids = [item["id"] for item in items]

    def position(param: str) -> int:
        try:
            return ids.index(request.query[param])
        except ValueError:
            raise invalid(f"{param}: no object with this id") from None

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


def token_page(request: web.Request, items: Sequence[JSONObject]) -> JSONObject:
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
        raise invalid("page: invalid page token") from None
    if offset < 0:
        raise invalid("page: invalid page token")
    return offset
