"""A lean HTTP/1.1 client for the one upstream ztgate talks to.

Why not a general client: on the gateway's hot path a general-purpose client (aiohttp, httpx)
spent more CPU per request than the rest of ztgate together (see docs/benchmarks.md). The
upstream is a single origin that speaks plain HTTP/1.1 with keep-alive, so this module does
only that: a pool of keep-alive connections, requests written in one go, responses parsed by
httptools (the same C parser uvicorn uses) and delivered chunk by chunk, with flow control so
a slow caller never makes ztgate buffer a whole download.

Errors are plain: :class:`UpstreamConnectError`, :class:`UpstreamBroken` and ``TimeoutError``.
``upstream.py`` maps them to gateway errors, in one place.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol, cast
from urllib.parse import urlsplit

import httptools

_HIGH_WATER = 1024 * 1024  # pause reading from the upstream past this many unread bytes
_LOW_WATER = 256 * 1024


class UpstreamConnectError(Exception):
    """No connection could be made (refused, DNS, TLS, connect timeout)."""


class UpstreamBroken(Exception):
    """The connection failed after the request was sent."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; carries one request/response at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_limit: float) -> None:
        self._loop = loop
        self._idle_limit = idle_limit  # the longest silence tolerated while waiting for bytes
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._paused_writing = False
        self.headers_done = False
        self.complete = False
        self.closed = False
        self.received_any = False
        self._close_delimited = False
        self._keep_alive = False
        self.error: BaseException | None = None
        self.reused = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"malformed upstream response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.complete and self._close_delimited and exc is None:
            self.complete = True  # a body without length ends when the connection does
            self._wake()
        elif not self.complete:
            self._fail(UpstreamBroken("the upstream closed the connection"))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(UpstreamBroken("connection lost while sending"))

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        names = {name for name, _ in self._headers}
        status = self._parser.get_status_code()
        self._close_delimited = (
            b"content-length" not in names
            and b"transfer-encoding" not in names
            and status not in (204, 304)
            and status >= 200
        )
        # Read it now: llhttp forgets it once the message is complete.
        self._keep_alive = self._parser.should_keep_alive()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused_reading and self._transport:
            self._paused_reading = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.complete = True
        self._wake()

    # -- used by the pool and the response
    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        self.abort()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    async def _wait(self) -> None:
        if self.error is not None:
            raise self.error
        self._waiter = self._loop.create_future()
        timer = self._loop.call_later(self._idle_limit, self._on_timeout, self._waiter)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _on_timeout(self, waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())
        self.abort()

    def write(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    async def drain(self) -> None:
        if self._paused_writing and not self.closed:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter

    async def wait_headers(self) -> tuple[int, list[tuple[bytes, bytes]]]:
        while not self.headers_done:
            await self._wait()
        return self._parser.get_status_code(), self._headers

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while not self._chunks:
            if self.complete:
                return None
            await self._wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused_reading and self._buffered < _LOW_WATER and self._transport:
            self._paused_reading = False
            self._transport.resume_reading()
        return chunk

    def reusable(self) -> bool:
        return self.complete and not self.closed and self._keep_alive

    def reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers = []
        self.headers_done = self.complete = self.received_any = self._keep_alive = False
        self.reused = True

    def abort(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.abort()


class BodyFilter(Protocol):
    """Sees every byte of a body in order; may hold some back until ``flush``."""

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class UpstreamResponse:
    """Status and headers as soon as they arrive; the body as it arrives, through
    ``body_filter`` when one is set."""

    def __init__(
        self,
        pool: ConnectionPool,
        connection: _Connection,
        status: int,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        self.status = status
        self.headers = headers
        self.body_filter: BodyFilter | None = None
        self._pool = pool
        self._connection: _Connection | None = connection

    def header(self, name: bytes) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            return
        body_filter = self.body_filter
        while (chunk := await connection.next_chunk()) is not None:
            if body_filter is not None:
                chunk = body_filter.feed(chunk)
            if chunk:
                yield chunk
        if body_filter is not None and (rest := body_filter.flush()):
            yield rest

    async def read(self, limit: int) -> bytes | None:
        """The whole body, or None if it is longer than ``limit``."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.iter_chunks():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        """Return the connection to the pool if the response was read whole, else drop it."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.reusable():
            self._pool.release(connection)
        else:
            connection.abort()


_MAX_PROXY_HEAD = 16 * 1024


class ConnectionPool:
    """Keep-alive connections to one origin (``http://`` or ``https://``)."""

    def __init__(
        self,
        base_url: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        max_idle: int,
        proxy: str | None = None,
        ca_file: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or ""
        self._https = parts.scheme == "https"
        self._port = parts.port or (443 if self._https else 80)
        default_port = (self._https and self._port == 443) or (not self._https and self._port == 80)
        self._host_header = (self._host if default_port else f"{self._host}:{self._port}").encode(
            "ascii"
        )
        self._ssl = ssl.create_default_context(cafile=ca_file) if self._https else None
        proxy_parts = urlsplit(proxy) if proxy else None
        self._proxy = (proxy_parts.hostname or "", proxy_parts.port or 80) if proxy_parts else None
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_idle = max_idle
        self._idle: list[_Connection] = []

    @property
    def idle(self) -> int:
        """Kept-alive connections waiting for a request (bounded by ``max_idle``)."""
        return len(self._idle)

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
    ) -> UpstreamResponse:
        """Send one request and wait for the response's status and headers."""
        head = self._head(method, target, headers, body)
        while True:
            connection = await self._acquire()
            try:
                await self._send(connection, head, body)
                status, response_headers = await connection.wait_headers()
            except UpstreamBroken:
                # A kept-alive connection the upstream had already closed: try once on a fresh
                # one, but only when nothing was answered and the body can be sent again.
                if connection.reused and not connection.received_any and isinstance(body, bytes):
                    continue
                raise
            except BaseException:
                connection.abort()
                raise
            return UpstreamResponse(self, connection, status, response_headers)

    def _head(
        self,
        method: str,
        target: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterable[bytes],
    ) -> bytes:
        lines = [f"{method} {target} HTTP/1.1".encode("latin-1"), b"host: " + self._host_header]
        has_length = False
        for name, value in headers:
            if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
                raise ValueError("a header contains a line break")
            has_length = has_length or name == b"content-length"
            lines.append(name + b": " + value)
        if isinstance(body, bytes):
            if body or method in ("POST", "PUT", "PATCH"):
                lines.append(b"content-length: " + str(len(body)).encode())
        elif not has_length:
            lines.append(b"transfer-encoding: chunked")
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _send(
        self, connection: _Connection, head: bytes, body: bytes | AsyncIterable[bytes]
    ) -> None:
        if isinstance(body, bytes):
            connection.write(head + body)
            return
        connection.write(head)
        chunked = b"transfer-encoding: chunked" in head
        async for chunk in body:
            if connection.closed:
                break
            connection.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            await connection.drain()
        if chunked and not connection.closed:
            connection.write(b"0\r\n\r\n")

    async def _acquire(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                connection.reset()
                return connection
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._proxy is not None:
                    _, protocol = await loop.create_connection(
                        lambda: _Connection(loop, self._read_timeout),
                        sock=await self._tunnel(self._proxy),
                        ssl=self._ssl,
                        server_hostname=self._host if self._https else None,
                    )
                else:
                    _, protocol = await loop.create_connection(
                        lambda: _Connection(loop, self._read_timeout),
                        self._host,
                        self._port,
                        ssl=self._ssl,
                        server_hostname=self._host if self._https else None,
                    )
        except TimeoutError as exc:
            raise UpstreamConnectError("connect timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamConnectError(type(exc).__name__) from exc
        return protocol

    async def _tunnel(self, proxy: tuple[str, int]) -> socket.socket:
        """A socket through the egress proxy to the upstream (HTTP CONNECT), ready for TLS."""
        loop = asyncio.get_running_loop()
        family, kind, protocol, _, address = (
            await loop.getaddrinfo(proxy[0], proxy[1], type=socket.SOCK_STREAM)
        )[0]
        sock = socket.socket(family, kind, protocol)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
            target = f"{self._host}:{self._port}".encode("ascii")
            await loop.sock_sendall(
                sock, b"CONNECT " + target + b" HTTP/1.1\r\nhost: " + target + b"\r\n\r\n"
            )
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = await loop.sock_recv(sock, 4096)
                if not chunk or len(head) > _MAX_PROXY_HEAD:
                    raise UpstreamConnectError("the egress proxy gave no usable answer")
                head += chunk
            status = head.split(b"\r\n", 1)[0].split()
            if len(status) < 2 or status[1] != b"200":
                raise UpstreamConnectError(
                    "the egress proxy refused the tunnel: "
                    + b" ".join(status[1:3]).decode("latin-1")
                )
            if not head.endswith(b"\r\n\r\n"):
                raise UpstreamConnectError("the egress proxy sent data before the tunnel")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except BaseException:
            sock.close()
            raise

    def release(self, connection: _Connection) -> None:
        if len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.abort()

    def close(self) -> None:
        for connection in self._idle:
            connection.abort()
        self._idle.clear()
