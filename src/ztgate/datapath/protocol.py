"""The HTTP/1.1 server ztgate listens with: llhttp's parser (httptools), ztgate's limits and
answers. uvicorn still runs the process around it (sockets, workers, signals, lifespan and the
graceful drain); this is what it speaks on each connection.

It is ztgate's own because the connection is where a hostile client is met first. Every answer
a caller can get, including the ones given before any request exists (a malformed request, a
head too large, a client too slow, too many connections), is in the Anthropic error envelope
with a ``request-id``; and every resource a client can hold is bounded:

==================  ========================================================================
``max_connections`` open connections per process; one more is answered 503 and closed
``idle_timeout``    no request under way (a new connection, or between kept-alive requests)
``header_timeout``  from a request's first byte to the end of its head: else 408
``max_head_bytes``  request line and headers together; ``max_headers`` of them: else 431,
                    counted as bytes arrive (a 4 MB header is never read whole)
``body_timeout``    no body byte for this long, or on average less than ``body_min_rate``
                    bytes a second after it: the app is told, and answers 408
``send_timeout``    a caller that takes nothing of its response for this long is dropped
==================  ========================================================================

Once a request's body is in, no timer of this module runs: a stream lasts as long as the
upstream keeps it alive (the upstream's own read timeout bounds a silent one), and a request
held for approval sends its own keep-alive pings.

Requests the HTTP specification says to refuse are refused (400): an HTTP/1.1 request without
exactly one valid ``Host``, absolute-form and ``*`` targets, ``CONNECT``, upgrades, and all
that llhttp rejects (conflicting lengths, bad chunking, obsolete line folding). Header names
spelled with ``_`` are dropped before the application sees them: some servers read
``x_api_key`` as ``x-api-key``, so no part of ztgate may see two spellings of one name.
"""

from __future__ import annotations

import asyncio
import functools
import http
import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

import httptools

from ztgate.config.model import ServerConfig
from ztgate.core.context import new_request_id
from ztgate.core.errors import answer_headers, error_body
from ztgate.core.types import ASGIApp, Message
from ztgate.datapath.body import DRAINING, TIMED_OUT

log = logging.getLogger("ztgate.http")

_HIGH_WATER = 64 * 1024  # unread request body bytes before reading pauses
_LINGER = 2.0  # seconds a refused connection drops what still arrives before it closes
_HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]{1,5})?")
_UNSAFE_HEADER_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


_STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-connection limits, from ``server`` in the config (docs/security.md)."""

    max_connections: int
    max_head_bytes: int
    max_headers: int
    idle_timeout: float
    header_timeout: float
    body_timeout: float
    body_min_rate: int
    send_timeout: float

    @classmethod
    def from_config(cls, server: ServerConfig, max_connections: int) -> Limits:
        return cls(
            max_connections=max_connections,
            max_head_bytes=server.max_head_bytes,
            max_headers=server.max_headers,
            idle_timeout=server.idle_timeout,
            header_timeout=server.header_timeout,
            body_timeout=server.body_timeout,
            body_min_rate=server.body_min_rate,
            send_timeout=server.send_timeout,
        )


def protocol_factory(limits: Limits) -> Callable[..., asyncio.Protocol]:
    """What uvicorn's ``http`` option takes: a protocol class bound to these limits."""
    return functools.partial(HTTPProtocol, limits=limits)


class _Refusal(Exception):
    """Raised inside a parser callback to stop parsing; the refusal itself is on the protocol."""


class HTTPProtocol(asyncio.Protocol):
    """One client connection."""

    def __init__(
        self,
        config: Any,  # uvicorn.Config: its loaded app, the server's shared state
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: Limits,
    ) -> None:
        if not config.loaded:
            config.load()
        self._app: ASGIApp = config.loaded_app
        self._loop = _loop or asyncio.get_event_loop()
        self._limits = limits
        self._state = server_state
        self._app_state = app_state
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._server: tuple[str, int] | None = None
        self._client: tuple[str, int] | None = None
        self._scheme = "http"
        self._tls: dict[str, Any] | None = None
        self._read_paused = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._refusal: tuple[int, str, str] | None = None  # set before a callback raises
        self._closing = False
        # The request whose head is being read, if any.
        self._in_head = False
        self._head_seen = 0  # bytes received while the head is incomplete
        self._head_size = 0
        self._header_count = 0
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._hosts = 0
        self._expect_continue = False
        # Exchanges: the one answering now, the one whose body is arriving, those waiting.
        self._current: _Exchange | None = None
        self._reading: _Exchange | None = None
        self._queue: deque[_Exchange] = deque()
        self._idle_timer: asyncio.TimerHandle | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server = _address(transport.get_extra_info("sockname"))
        self._client = _address(transport.get_extra_info("peername"))
        if transport.get_extra_info("sslcontext") is not None:
            self._scheme = "https"
            ssl_object = transport.get_extra_info("ssl_object")
            peer = ssl_object.getpeercert() if ssl_object is not None else None
            # A verified client certificate, as the ASGI TLS extension names it.
            self._tls = {"peer": peer} if peer else None
        connections = self._state.connections
        if len(connections) >= self._limits.max_connections:
            self._refuse(503, "overloaded_error", "the gateway has too many open connections")
            return
        connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._state.connections.discard(self)
        self._closing = True
        self._cancel_timers()
        for exchange in (self._current, self._reading, *self._queue):
            if exchange is not None:
                exchange.lost()
        self._writable.set()

    def eof_received(self) -> bool | None:
        return None  # close the connection; an exchange under way learns of it as a disconnect

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return  # lingering after a refusal: what still arrives is read and dropped
        if not self._in_head and self._reading is None:
            self._begin_head()
        if self._in_head:
            self._head_seen += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self._refusal is None:  # not one of ours: a bug, still answered in the shape
                log.exception("an HTTP parser callback failed")
                self._refusal = (500, "api_error", "internal error in the gateway")
        except httptools.HttpParserUpgrade:
            self._refusal = (400, "invalid_request_error", "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refusal = (400, "invalid_request_error", f"malformed HTTP request: {exc}")
        if (
            self._refusal is None
            and self._in_head
            and self._head_seen > self._limits.max_head_bytes
        ):
            self._refusal = _HEAD_TOO_LARGE
        if self._refusal is not None:
            self._refuse(*self._refusal)

    # --- llhttp callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if not self._in_head:
            self._begin_head()
        self._url = b""
        self._headers = []
        self._head_size = self._header_count = self._hosts = 0
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._grow_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._grow_head(len(name) + len(value) + 4)
        if self._header_count > self._limits.max_headers:
            self._stop(431, "invalid_request_error", "the request has too many headers")
        name = name.lower()
        if b"_" in name:
            return
        value = value.rstrip(b" \t")
        if name == b"host":
            self._hosts += 1
        elif name == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._parser.should_upgrade():  # llhttp counts CONNECT as one
            if self._parser.get_method() == b"CONNECT":
                self._stop(400, "invalid_request_error", "the request target must be a path")
            self._stop(400, "invalid_request_error", "protocol upgrades are not supported")
        self._in_head = False
        self._cancel(self._head_timer)
        self._head_timer = None
        exchange = _Exchange(self, self._scope(), self._expect_continue)
        self._reading = exchange
        if not self._expect_continue:  # else the caller waits for ztgate's 100 Continue
            exchange.start_body_clock()
        if self._current is None:
            self._run(exchange)
        else:  # pipelined behind an exchange still answering: it waits, and so does reading
            self._queue.append(exchange)
            self._pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self._reading
        if exchange is None or exchange.complete:
            return
        exchange.receive_body(body)
        if len(exchange.body) > _HIGH_WATER:
            self._pause_reading()

    def on_message_complete(self) -> None:
        exchange, self._reading = self._reading, None
        if exchange is not None:
            exchange.body_done()

    # --- the head ----------------------------------------------------------------------------

    def _begin_head(self) -> None:
        self._in_head = True
        self._head_seen = 0
        self._cancel(self._idle_timer)
        self._idle_timer = None
        if self._head_timer is None:
            self._head_timer = self._loop.call_later(
                self._limits.header_timeout, self._head_timed_out
            )

    def _grow_head(self, size: int) -> None:
        self._head_size += size
        if self._head_size > self._limits.max_head_bytes:
            self._stop(*_HEAD_TOO_LARGE)

    def _stop(self, status: int, error_type: str, message: str) -> None:
        self._refusal = (status, error_type, message)
        raise _Refusal

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self._closing:
            return
        if self._current is not None:  # a pipelined head waits while a response goes out
            self._head_timer = self._loop.call_later(
                self._limits.header_timeout, self._head_timed_out
            )
            return
        self._refuse(408, "timeout_error", "the request head did not arrive in time")

    def _scope(self) -> dict[str, Any]:
        parser = self._parser
        version = parser.get_http_version()
        method = parser.get_method().decode("ascii")
        url = self._url
        if (version == "1.1" and self._hosts != 1) or self._hosts > 1:
            self._stop(400, "invalid_request_error", "an HTTP/1.1 request needs one Host header")
        for name, value in self._headers:
            if name == b"host" and not _HOST.fullmatch(value):
                self._stop(400, "invalid_request_error", "the Host header is not a host")
        if method == "CONNECT" or not url.startswith(b"/"):
            self._stop(400, "invalid_request_error", "the request target must be a path")
        try:
            parsed = httptools.parse_url(url)
        except httptools.HttpParserInvalidURLError:
            self._stop(400, "invalid_request_error", "the request target is not a URL path")
        raw_path: bytes = parsed.path
        if not raw_path.isascii():
            self._stop(400, "invalid_request_error", "the request path is not ASCII")
        path = raw_path.decode("ascii")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "server": self._server,
            "client": self._client,
            "scheme": self._scheme,
            "root_path": "",
            "method": method,
            "path": unquote(path) if "%" in path else path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": self._headers,
            "state": self._app_state.copy(),
            "extensions": {"tls": self._tls} if self._tls else {},
            "keep_alive": version != "1.0" and parser.should_keep_alive(),
        }

    # --- exchanges ---------------------------------------------------------------------------

    def _run(self, exchange: _Exchange) -> None:
        self._current = exchange
        task = self._loop.create_task(exchange.run(self._app))
        task.add_done_callback(self._state.tasks.discard)
        self._state.tasks.add(task)

    def exchange_done(self, exchange: _Exchange) -> None:
        """A response is complete: start the next pipelined exchange, or wait for one."""
        self._state.total_requests += 1
        if self._current is exchange:
            self._current = None
        if self._closing or self._transport is None or self._transport.is_closing():
            return
        if not exchange.keep_alive:
            # The rest of an unread body may still be arriving: dropping the connection then
            # would reset it, and could take the answer with it.
            self._linger() if exchange.more_body else self._close()
            return
        self._resume_reading()
        if self._queue:
            self._run(self._queue.popleft())
        elif self._reading is None and not self._in_head:
            self._arm_idle()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: idle connections close, busy ones after their answer;
        the application hears of it once (a request held for review stops waiting)."""
        if self._current is None and self._reading is None:
            self._close()
            return
        for exchange in (self._current, self._reading, *self._queue):
            if exchange is not None:
                exchange.keep_alive = False
                exchange.drain()

    # --- writing -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(data)

    async def drain(self) -> bool:
        """Wait until the caller takes what was written; False when it stalled too long."""
        if self._writable.is_set():
            return True
        try:
            await asyncio.wait_for(self._writable.wait(), self._limits.send_timeout)
        except TimeoutError:
            log.info(
                "a caller took nothing of its response for too long; disconnected",
                extra={"event": "send_timeout", "client": _host(self._client)},
            )
            self.abort()
            return False
        return not self._closing

    def abort(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.abort()

    def _close(self) -> None:
        self._closing = True
        self._cancel_timers()
        if self._transport is not None:
            self._transport.close()

    def _refuse(self, status: int, error_type: str, message: str) -> None:
        """Answer at the HTTP layer, before any application saw a request, and close."""
        if self._closing:
            return
        request_id = new_request_id()
        body = error_body(error_type, message, request_id)
        headers = [
            *answer_headers(body, request_id),
            (b"ztgate-request-id", request_id.encode()),
            (b"connection", b"close"),
        ]
        if status == 503:
            headers.append((b"retry-after", b"1"))
        log.info(
            "refused at the HTTP layer",
            extra={
                "event": "http_refused",
                "status": status,
                "reason": message,
                "request_id": request_id,
                "client": _host(self._client),
            },
        )
        if self._current is None:  # never in the middle of another response
            self.write(_head(status, [*self._state.default_headers, *headers]) + body)
        self._linger()

    def _linger(self) -> None:
        """Close after a refusal without losing it: closing a socket with unread bytes makes
        the kernel send a reset, which can destroy the answer before the caller reads it. So
        ztgate stops writing, drops what still arrives for a moment, then closes."""
        self._closing = True
        self._cancel_timers()
        transport = self._transport
        if transport is None:
            return
        if transport.can_write_eof():
            transport.write_eof()
        self._resume_reading()
        self._idle_timer = self._loop.call_later(_LINGER, transport.close)

    # --- flow and timers ---------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
            if self._reading is not None:
                self._reading.pause_body_clock()

    def _resume_reading(self) -> None:
        if self._read_paused and self._transport is not None:
            self._read_paused = False
            self._transport.resume_reading()
            if self._reading is not None:
                self._reading.resume_body_clock()

    def wants_body(self, exchange: _Exchange) -> None:
        """The application is waiting for body bytes: let them in."""
        if exchange is self._reading and not self._queue:
            self._resume_reading()

    @property
    def read_paused(self) -> bool:
        return self._read_paused

    def _arm_idle(self) -> None:
        self._cancel(self._idle_timer)
        self._idle_timer = self._loop.call_later(self._limits.idle_timeout, self._idle_timed_out)

    def _idle_timed_out(self) -> None:
        self._idle_timer = None
        if self._current is None and self._reading is None and not self._in_head:
            self._close()  # nothing was asked: nothing to answer

    def _cancel_timers(self) -> None:
        self._cancel(self._idle_timer)
        self._cancel(self._head_timer)
        self._idle_timer = self._head_timer = None

    @staticmethod
    def _cancel(timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = self._state.default_headers
        return headers


_HEAD_TOO_LARGE = (431, "invalid_request_error", "the request head is too large")


class _Exchange:
    """One request and its response: the ASGI ``receive`` and ``send`` of one call."""

    def __init__(self, protocol: HTTPProtocol, scope: dict[str, Any], expect: bool) -> None:
        self._protocol = protocol
        self.keep_alive: bool = scope.pop("keep_alive")
        self.scope = scope
        self.body = bytearray()
        self.more_body = True
        self.complete = False  # the response is
        self._head_request = scope["method"] == "HEAD"
        self._expect_continue = expect
        self._arrived = asyncio.Event()
        self._body_delivered = False
        self._draining = False  # the server shuts down: told once, to a receive() that waits
        self._disconnected = False
        self._timed_out = False
        self._started = False
        self._chunked = False
        self._remaining = 0
        self._held_head = b""  # a sized response's head, sent with its first body bytes
        # The body clock: bytes received, when it started, how long reading was paused.
        self._received = 0
        self._clock_start = 0.0
        self._last_progress = 0.0
        self._paused_at: float | None = None
        self._paused_total = 0.0
        self._body_timer: asyncio.TimerHandle | None = None

    # --- the request body, as it arrives -------------------------------------------------------

    def start_body_clock(self) -> None:
        now = self._protocol.loop.time()
        self._clock_start = self._last_progress = now
        self._arm_body_timer(now + self._protocol.limits.body_timeout)

    def receive_body(self, data: bytes) -> None:
        self.body += data
        self._received += len(data)
        self._last_progress = self._protocol.loop.time()
        self._arrived.set()

    def body_done(self) -> None:
        self.more_body = False
        self._stop_body_timer()
        self._arrived.set()

    def pause_body_clock(self) -> None:
        if self._paused_at is None:
            self._paused_at = self._protocol.loop.time()

    def resume_body_clock(self) -> None:
        if self._paused_at is not None:
            now = self._protocol.loop.time()
            self._paused_total += now - self._paused_at
            self._paused_at = None
            self._last_progress = now  # the wait was ztgate's, not the caller's

    def _arm_body_timer(self, when: float) -> None:
        self._body_timer = self._protocol.loop.call_at(when, self._check_body)

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _check_body(self) -> None:
        """Too long without a byte, or too slow on average: the caller is holding the
        gateway, not sending a request."""
        self._body_timer = None
        if not self.more_body or self._disconnected:
            return
        limits = self._protocol.limits
        now = self._protocol.loop.time()
        if self._paused_at is not None:  # ztgate is not reading: nothing to judge
            self._arm_body_timer(now + limits.body_timeout)
            return
        stalled = now - self._last_progress >= limits.body_timeout
        elapsed = now - self._clock_start - self._paused_total
        slow = elapsed >= limits.body_timeout and self._received < limits.body_min_rate * elapsed
        if stalled or slow:
            self._timed_out = True
            self.keep_alive = False
            self._arrived.set()
            log.info(
                "a request body arrived too slowly",
                extra={"event": "body_timeout", "client": _host(self.scope["client"])},
            )
            if self._started:
                self._protocol.abort()
            return
        self._arm_body_timer(min(self._last_progress, now) + limits.body_timeout)

    def drain(self) -> None:
        self._draining = True
        self._arrived.set()

    def lost(self) -> None:
        self._disconnected = True
        self._stop_body_timer()
        self._arrived.set()

    # --- ASGI ----------------------------------------------------------------------------------

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._protocol.abort()  # the server gave up on it (shutdown): nothing to answer
            raise
        except BaseException:
            log.exception("unhandled error in the application")
            if not self._started and not self._disconnected:
                await self._internal_error()
            else:
                self._protocol.abort()
        else:
            if not self._started and not self._disconnected:
                log.error("the application returned without answering")
                await self._internal_error()
            elif not self.complete and not self._disconnected:
                self._protocol.abort()
        finally:
            self._stop_body_timer()

    async def _internal_error(self) -> None:
        request_id = new_request_id()
        body = error_body("api_error", "internal error in the gateway", request_id)
        headers = answer_headers(body, request_id)
        await self.send({"type": "http.response.start", "status": 500, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})

    async def receive(self) -> Message:
        """The body as it arrives; then, like every ASGI server, it waits until the caller
        leaves or the response is complete, and says ``http.disconnect``."""
        if self._expect_continue and not self._started:
            self._expect_continue = False
            self._protocol.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.start_body_clock()
        while True:
            if self._timed_out:
                return {"type": "http.disconnect", TIMED_OUT: True}
            if self._disconnected or self.complete:
                return {"type": "http.disconnect"}
            if self.body or (not self.more_body and not self._body_delivered):
                message = {
                    "type": "http.request",
                    "body": bytes(self.body),
                    "more_body": self.more_body,
                }
                self.body.clear()
                self._body_delivered = not self.more_body
                if self.more_body:
                    self._protocol.wants_body(self)
                return message
            if self._draining and not self.more_body:
                self._draining = False
                return {"type": DRAINING}
            if self.more_body:
                self._protocol.wants_body(self)
            self._arrived.clear()
            await self._arrived.wait()

    async def send(self, message: Message) -> None:
        if self._disconnected:
            return
        if not await self._protocol.drain():
            self._disconnected = True
            return
        if not self._started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {message['type']}")
            self._started = True
            self._expect_continue = False
            if self.more_body:
                # The rest of an unread body would have to be read and thrown away first.
                self.keep_alive = False
            head = self._response_head(message)
            if self._chunked:  # a stream's head goes now: its first event may be long coming
                self._protocol.write(head)
            else:  # one write, one packet for head and body (most answers are one body message)
                self._held_head = head
            return
        if self.complete or message["type"] != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {message['type']}")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        head, self._held_head = self._held_head, b""
        if self._head_request:
            if head:
                self._protocol.write(head)
        elif self._chunked:
            out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            self._protocol.write(out + (b"0\r\n\r\n" if not more else b""))
        else:
            if len(body) > self._remaining:
                raise RuntimeError("the response is longer than its content-length")
            self._remaining -= len(body)
            if head or body:
                self._protocol.write(head + body if head else body)
        if not more:
            if self._remaining and not self._head_request:
                raise RuntimeError("the response is shorter than its content-length")
            self.complete = True
            self._stop_body_timer()
            self._arrived.set()
            self._protocol.exchange_done(self)

    def _response_head(self, message: Message) -> bytes:
        status: int = message["status"]
        headers = [*self._protocol.default_headers, *message.get("headers", [])]
        length: int | None = None
        for name, value in headers:
            if _UNSAFE_HEADER_VALUE.search(value) or _UNSAFE_HEADER_VALUE.search(name):
                raise RuntimeError("a response header contains a control character")
            lowered = name.lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"connection" and b"close" in value.lower():
                self.keep_alive = False
        if not self.keep_alive:
            headers = [(n, v) for n, v in headers if n.lower() != b"connection"]
            headers.append((b"connection", b"close"))
        if length is not None:
            self._remaining = length
        elif not self._head_request and status not in (204, 304) and status >= 200:
            self._chunked = True
            headers.append((b"transfer-encoding", b"chunked"))
        return _head(status, headers)


def _head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    lines = [_STATUS_LINES.get(status) or _status_line(status)]
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    lines.append(b"\r\n")
    return b"".join(lines)


def _address(value: object) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


def _host(client: tuple[str, int] | None) -> str | None:
    return client[0] if client else None
