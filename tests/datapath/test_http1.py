"""The upstream HTTP/1.1 client against a raw TCP server that answers exactly what we script."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ztgate.datapath.http1 import ConnectionPool, UpstreamBroken, UpstreamConnectError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]


class RawServer:
    """Counts connections and hands each one to a scripted handler."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return head + body


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Any]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> tuple[RawServer, str]:
        raw = RawServer(handler)
        server = await asyncio.start_server(raw._serve, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return raw, f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()


def pool(url: str, read_timeout: float = 5) -> ConnectionPool:
    return ConnectionPool(url, connect_timeout=2, read_timeout=read_timeout, max_idle=4)


JSON_OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


async def test_keep_alive_connections_are_reused(serve: Any) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await raw.read_request(reader)
            writer.write(JSON_OK)

    raw, url = await serve(handler)
    upstream = pool(url)
    for _ in range(5):
        response = await upstream.request("POST", "/v1/messages", [], b'{"a":1}')
        assert (response.status, await response.read(100)) == (200, b"{}")
        response.close()
    assert raw.connections == 1
    assert raw.requests[0].startswith(b"POST /v1/messages HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"content-length: 7\r\n" in raw.requests[0]


async def test_chunked_body_arrives_chunk_by_chunk(serve: Any) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await release.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    raw, url = await serve(handler)
    response = await pool(url).request("GET", "/x", [], b"")
    chunks = response.iter_chunks()
    assert await anext(chunks) == b"first"  # delivered before the rest exists
    release.set()
    assert [c async for c in chunks] == [b"second"]


async def test_body_delimited_by_close(serve: Any) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end")

    raw, url = await serve(handler)
    response = await pool(url).request("GET", "/x", [], b"")
    assert await response.read(100) == b"until the end"


async def test_truncated_body_is_an_error_not_an_end(serve: Any) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly a little")

    raw, url = await serve(handler)
    response = await pool(url).request("GET", "/x", [], b"")
    with pytest.raises(UpstreamBroken):
        await response.read(1000)


async def test_stale_kept_alive_connection_is_retried_once_on_a_fresh_one(serve: Any) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(JSON_OK)  # then close: the pooled connection is stale

    raw, url = await serve(handler)
    upstream = pool(url)
    first = await upstream.request("POST", "/a", [], b"{}")
    await first.read(10)
    first.close()
    await asyncio.sleep(0.05)
    second = await upstream.request("POST", "/b", [], b"{}")
    assert await second.read(10) == b"{}"
    assert raw.connections == 2


async def test_silence_past_the_read_timeout_raises(serve: Any) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        await asyncio.sleep(5)

    raw, url = await serve(handler)
    with pytest.raises(TimeoutError):
        await pool(url, read_timeout=0.2).request("GET", "/x", [], b"")


async def test_malformed_response_is_broken(serve: Any) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await raw.read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")

    raw, url = await serve(handler)
    with pytest.raises(UpstreamBroken):
        await pool(url).request("GET", "/x", [], b"")


async def test_refused_connection_is_a_connect_error() -> None:
    with pytest.raises(UpstreamConnectError):
        await pool("http://127.0.0.1:9").request("GET", "/x", [], b"")


async def test_streamed_request_body_is_sent_chunked(serve: Any) -> None:
    received = asyncio.get_running_loop().create_future()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        body = await reader.readuntil(b"0\r\n\r\n")
        received.set_result(head + body)
        writer.write(JSON_OK)

    async def parts() -> AsyncIterator[bytes]:
        yield b"abc"
        yield b"defgh"

    _raw, url = await serve(handler)
    response = await pool(url).request("POST", "/v1/files", [], parts())
    assert response.status == 200
    sent = await received
    assert b"transfer-encoding: chunked" in sent
    assert sent.endswith(b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n")


async def test_header_injection_is_refused(serve: Any) -> None:
    _raw, url = await serve(lambda r, w: None)
    with pytest.raises(ValueError, match="line break"):
        await pool(url).request("GET", "/x", [(b"x-a", b"1\r\nx-injected: yes")], b"")
