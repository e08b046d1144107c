"""Reading the caller's body under a size bound, whole or as a stream for uploads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ztgate.core.errors import GatewayError, InvalidRequest, RequestTooLarge
from ztgate.core.types import Headers, Message, Receive

# The key ztgate's HTTP protocol sets on the ``http.disconnect`` it gives an application when
# a request body stopped arriving in time (``server.body_timeout``): the caller is still there.
TIMED_OUT = "ztgate.body_timed_out"
# The type of the message ztgate's HTTP protocol gives an application once, when the server
# starts shutting down: a request held for review stops waiting. Everything else ignores it.
DRAINING = "ztgate.draining"


class ClientDisconnected(Exception):
    """The caller went away; there is nobody left to answer."""


class BodyTimedOut(GatewayError):
    """The caller stopped sending its body (or sends it too slowly to be a request)."""

    status = 408
    error_type = "timeout_error"

    def __init__(self) -> None:
        super().__init__("the request body did not arrive in time")


def _gone(message: Message) -> Exception:
    return BodyTimedOut() if message.get(TIMED_OUT) else ClientDisconnected()


def declared_length(headers: Headers, limit: int) -> int | None:
    """The ``content-length`` if any, refusing an oversized body before reading a byte."""
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit() or len(value) > 18:  # int() refuses 4,300+ digits
                raise InvalidRequest("content-length is not a number")
            length = int(value)
            if length > limit:
                raise RequestTooLarge(_too_large(limit))
            return length
    return None


def _too_large(limit: int) -> str:
    return f"request body exceeds this gateway's limit of {limit} bytes"


async def read_no_body(headers: Headers, receive: Receive) -> None:
    """For an endpoint that takes no body: refuse one rather than forward it uninspected."""
    for name, value in headers:
        # A chunked body may still turn out empty, but nothing that takes no body is chunked.
        if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
            raise InvalidRequest(_NO_BODY)
    while True:
        message = await receive()
        if message["type"] == DRAINING:
            continue
        if message["type"] == "http.disconnect":
            raise _gone(message)
        if message.get("body"):
            raise InvalidRequest(_NO_BODY)
        if not message.get("more_body", False):
            return


_NO_BODY = "this endpoint takes no request body"


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == DRAINING:
            continue
        if message["type"] == "http.disconnect":
            raise _gone(message)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(_too_large(limit))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


class BodyStream:
    """An upload relayed upstream chunk by chunk; remembers why it stopped early, if it did."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self.size = 0
        self.error: Exception | None = None
        self.done = asyncio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                message = await self._receive()
                if message["type"] == DRAINING:
                    continue
                if message["type"] == "http.disconnect":
                    self.error = _gone(message)
                    raise self.error
                chunk = message.get("body", b"")
                self.size += len(chunk)
                if self.size > self._limit:
                    self.error = RequestTooLarge(_too_large(self._limit))
                    raise self.error
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return
        finally:
            self.done.set()
