"""The API's wire conventions as the simulator speaks them: the error envelope, JSON answers,
ids and timestamps; and the simulator's own headers and the types every handler shares."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import orjson
from aiohttp import web

DEFAULT_API_KEY: Final = "sk-ant-sim-upstream-key"
SCENARIO_HEADER: Final = "x-simulator-scenario"
REPLY_HEADER: Final = "x-simulator-reply"
DELTA_CHARS_HEADER: Final = "x-simulator-delta-chars"

JSONObject = dict[str, Any]
REQUEST_ID: Final = web.RequestKey("request_id", str)

_T = TypeVar("_T")
_ID_ALPHABET: Final = string.ascii_letters + string.digits


class ApiError(Exception):
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


def invalid(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def find(store: Mapping[str, _T], object_id: str, what: str) -> _T:
    """The stored object, or the API's 404 naming what was missing."""
    if object_id not in store:
        raise ApiError(404, "not_found_error", f"{what}: {object_id}")
    return store[object_id]


def error_body(error_type: str, message: str, request_id: str) -> JSONObject:
    """The one error envelope, shared by JSON answers and the SSE `error` event."""
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": request_id,
    }


def json_response(
    payload: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers
    )


def error_response(exc: ApiError, request_id: str) -> web.Response:
    body = error_body(exc.error_type, exc.message, request_id)
    return json_response(body, exc.status, exc.headers)


def new_id(prefix: str) -> str:
    """An id shaped like the API's (`msg_01` + 22 base62 characters)."""
    return prefix + "01" + _random_base62(22)


def new_request_id() -> str:
    """A `request-id` value (`req_sim_` + 24 base62 characters)."""
    return "req_sim_" + _random_base62(24)


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)
