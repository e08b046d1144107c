"""Errors that ztgate answers itself, each mapped to the Anthropic error envelope.

The tree::

    GatewayError                 status  error.type
    ├── InvalidRequest            400    invalid_request_error
    ├── AuthenticationFailed      401    authentication_error
    ├── PermissionDenied          403    permission_error
    ├── NotFound                  404    not_found_error
    ├── RequestTooLarge           413    request_too_large
    ├── RateLimited               429    rate_limit_error
    ├── UpstreamUnavailable       502    api_error
    ├── ServiceUnavailable        503    api_error
    └── UpstreamTimeout           504    timeout_error

A deny is a normal answer and an internal failure is an error; both end as one of these,
built into bytes in exactly one place (:func:`error_body`).
"""

from __future__ import annotations

import orjson

from ztgate.core.sse import frame


class GatewayError(Exception):
    """An error the caller sees. ``message`` must never contain a token, a key or a body."""

    status: int = 500
    error_type: str = "api_error"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return []
        return [(b"retry-after", str(self.retry_after).encode())]


class InvalidRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(GatewayError):
    status = 401
    error_type = "authentication_error"


class PermissionDenied(GatewayError):
    status = 403
    error_type = "permission_error"


class NotFound(GatewayError):
    status = 404
    error_type = "not_found_error"


class RequestTooLarge(GatewayError):
    status = 413
    error_type = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    error_type = "rate_limit_error"


class UpstreamUnavailable(GatewayError):
    status = 502
    error_type = "api_error"


class ServiceUnavailable(GatewayError):
    status = 503
    error_type = "api_error"


class ShuttingDown(GatewayError):
    """The gateway's graceful window ran out with this request's answer unfinished: the SDKs
    retry an ``overloaded_error``, on another replica."""

    status = 503
    error_type = "overloaded_error"


class UpstreamTimeout(GatewayError):
    status = 504
    error_type = "timeout_error"


def error_body(error_type: str, message: str, request_id: str) -> bytes:
    """The Anthropic error envelope, byte for byte as the SDKs parse it."""
    return orjson.dumps(
        {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": request_id,
        }
    )


def error_event(error_type: str, message: str, request_id: str) -> bytes:
    """An SSE ``error`` event: how a stream that already started reports a failure."""
    return frame("error", error_body(error_type, message, request_id))


def answer_headers(body: bytes, request_id: str) -> list[tuple[bytes, bytes]]:
    """The headers of every JSON answer ztgate writes itself, at every layer: its type, its
    length, and the ``request-id`` clients log and quote."""
    return [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"request-id", request_id.encode()),
    ]
