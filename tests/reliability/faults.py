"""Fault injectors for tests/reliability/test_faults.py, each of the test's own (never the
machine's PostgreSQL or Redis): a TCP proxy that delays answers or resets connections, an HTTP
server serving whatever a JWKS endpoint should not, an upstream that misbehaves at the socket,
and a tmpfs to fill. Each runs on a :class:`BackgroundLoop`, so synchronous tests drive them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
import pytest
from aiohttp import web

T = TypeVar("T")


class BackgroundLoop:
    """An event loop on a thread of its own, for servers a synchronous test talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the loop's thread (where the servers' state lives)."""

        async def call() -> T:
            return function()

        return self.run(call())

    def close(self) -> None:
        """Cancel what still runs on the loop (and let it finish), then stop it."""

        async def cancel() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (RST), as a crashed host or a failover does, not a clean FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)
class _Link:
    """One proxied connection: the caller's side and the server's."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    # Set by a cut "after" the marker went through: the server's next answer is dropped and
    # the connection reset, so the caller never learns that it was done.
    doomed: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def reset(self) -> None:
        _reset(self.client)
        _reset(self.server)


class TcpProxy:
    """A TCP proxy to ``target`` on loopback that can be made slow or broken while it runs.

    - ``delay``: seconds added to every chunk the server sends back (each chunk leaves that
      long after it arrived, in order): a slow server rather than a dead one;
    - ``reset_all()``: every open connection reset at once (both sides), as at a failover;
    - ``refusing``: new connections are reset as soon as they are accepted;
    - ``cut(marker, when, count)``: the next ``count`` connections that send ``marker`` are
      reset, "before" it reaches the server or "after" it did (the server's answer is lost).
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._background = BackgroundLoop()
        self._links: set[_Link] = set()
        self._cuts: deque[tuple[bytes, Literal["before", "after"]]] = deque()
        self.delay = 0.0
        self.refusing = False
        self.accepted = 0
        self.resets = 0  # connections reset by reset_all, refusing or a cut
        self.cuts_done = 0
        self._server: asyncio.Server = self._background.run(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port: int = self._server.sockets[0].getsockname()[1]

    def reset_all(self) -> int:
        """Reset every open connection; how many there were."""

        def reset() -> int:
            links = list(self._links)
            for link in links:
                link.reset()
            self.resets += len(links)
            return len(links)

        return self._background.call(reset)

    def cut(self, marker: bytes, when: Literal["before", "after"], count: int = 1) -> None:
        def add() -> None:
            self._cuts.extend([(marker, when)] * count)

        self._background.call(add)

    def pending_cuts(self) -> int:
        return self._background.call(lambda: len(self._cuts))

    def close(self) -> None:
        async def close() -> None:
            self._server.close()
            for link in list(self._links):
                link.reset()
            await self._server.wait_closed()

        with contextlib.suppress(Exception):
            self._background.run(close(), timeout=10)
        self._background.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refusing:
            self.resets += 1
            _reset(writer)
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            _reset(writer)
            return
        link = _Link(writer, server_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._upstream(link, reader)),
            asyncio.create_task(self._downstream(link, server_reader)),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        except asyncio.CancelledError:  # closing: a cancelled handler would be logged as a crash
            link.reset()
        finally:
            self._links.discard(link)
            for side in (writer, server_writer):
                side.close()

    async def _upstream(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """The caller's bytes to the server, unless a cut says otherwise."""
        try:
            while data := await reader.read(65536):
                cut = self._cut_for(data)
                if cut == "before":
                    self._cut(link)
                    return
                if cut == "after":
                    link.doomed = True
                link.server.write(data)
                await link.server.drain()
            link.server.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            link.reset()

    async def _downstream(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """The server's bytes to the caller, each chunk ``delay`` seconds late, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if not data:
                    link.client.write_eof()
                    return
                link.client.write(data)
                await link.client.drain()

        delivering = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(65536)
                if data and link.doomed:
                    self._cut(link)
                    return
                queue.put_nowait((loop.time() + self.delay, data))
                if not data:
                    break
            await delivering
        except (ConnectionError, OSError, RuntimeError):
            link.reset()
        finally:
            delivering.cancel()

    def _cut_for(self, data: bytes) -> Literal["before", "after"] | None:
        for index, (marker, when) in enumerate(self._cuts):
            if marker in data:
                del self._cuts[index]
                return when
        return None

    def _cut(self, link: _Link) -> None:
        self.cuts_done += 1
        self.resets += 1
        link.reset()


class JwksServer:
    """An HTTP server whose one document (served at ``/jwks``) the test changes at will."""

    def __init__(self) -> None:
        self._background = BackgroundLoop()
        self.body = b'{"keys": []}'
        self.content_type = "application/json"
        self.status = 200
        self.fetches = 0
        self._runner = web.AppRunner(self._app(), access_log=None)
        self.url: str = self._background.run(self._start())

    def serve(self, body: bytes, content_type: str = "application/json", status: int = 200) -> None:
        def change() -> None:
            self.body, self.content_type, self.status = body, content_type, status

        self._background.call(change)

    def serve_json(self, document: object) -> None:
        self.serve(orjson.dumps(document))

    def fetched(self) -> int:
        return self._background.call(lambda: self.fetches)

    def close(self) -> None:
        self._background.run(self._runner.cleanup())
        self._background.close()

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/jwks", self._jwks)
        return app

    async def _jwks(self, request: web.Request) -> web.Response:
        self.fetches += 1
        return web.Response(body=self.body, status=self.status, content_type=self.content_type)

    async def _start(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}/jwks"


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
_MESSAGE_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_f",'
    b'"type":"message","role":"assistant","model":"m","content":[],"stop_reason":null,'
    b'"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}}\n\n'
)
_ANSWER = orjson.dumps(
    {
        "id": "msg_f",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [{"type": "text", "text": "fine"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class MisbehavingUpstream:
    """A Claude API stand-in that fails at the socket, as the request's ``model`` says:
    ``reset`` (RST once the request is read), ``truncate`` (a JSON answer promising 1000 bytes
    and sending 10), ``stall`` (reads the request, answers nothing), ``garbage`` (bytes that
    are not HTTP), ``stream-stall`` (a stream that starts, then goes silent), ``ok``."""

    def __init__(self) -> None:
        self._background = BackgroundLoop()
        self.requests: list[str] = []  # the faults asked for, in order
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server = self._background.run(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        async def close() -> None:
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            await self._server.wait_closed()

        self._background.run(close())
        self._background.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                body = orjson.loads(await reader.readexactly(length)) if length else {}
                fault = str(body.get("model", "ok"))
                self.requests.append(fault)
                if not await self._answer(fault, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            return
        except asyncio.CancelledError:  # closing (a stall): a cancelled handler would be logged
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer(self, fault: str, writer: asyncio.StreamWriter) -> bool:
        """Answer (or not); whether the connection can carry another request."""
        if fault == "reset":
            _reset(writer)
            return False
        if fault == "truncate":
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b'content-length: 1000\r\n\r\n{"id": "ms'
            )
            await writer.drain()
            return False
        if fault == "stall":
            await asyncio.sleep(3600)
        if fault == "garbage":
            writer.write(b"\x16\x03\x01\x02\x00SSH-2.0-OpenSSH_9.6 what is HTTP?\r\n\r\n")
            await writer.drain()
            return False
        if fault == "stream-stall":
            writer.write(_STREAM_HEAD + _chunk(_MESSAGE_START))
            await writer.drain()
            await asyncio.sleep(3600)
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(_ANSWER)}\r\nrequest-id: req_f\r\n\r\n".encode()
            + _ANSWER
        )
        await writer.drain()
        return True


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (``4m``) mounted at ``path`` for the test, unmounted afterwards
    (lazily if something still holds it). Skips the test where mounting is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        done = subprocess.run(["umount", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def fill(path: Path, leave: int, name: str = "filler") -> Path:
    """Fill the file system holding ``path`` until about ``leave`` bytes are free, with one
    file (``name`` in ``path``) that the test shrinks or deletes to give space back.

    A gateway may write between measuring the free space and allocating it; the allocation
    then fails with ENOSPC, and tmpfs undoes all of it (the disk is left as it was, not
    full). So measure again and retry until the allocation holds."""
    filler = path / name
    with filler.open("ab") as file:
        for _ in range(50):
            size = os.fstat(file.fileno()).st_size + free_bytes(path) - leave
            if size <= os.fstat(file.fileno()).st_size:
                break
            try:
                os.posix_fallocate(file.fileno(), 0, size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                continue
            break
        else:
            raise AssertionError(f"could not fill {path} to {leave} bytes free")
    return filler


def wait_for(condition: Callable[[], T | None], timeout: float = 10, every: float = 0.05) -> T:
    """Poll until ``condition()`` is truthy (what it returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not so after {timeout} s: {condition}")
        time.sleep(every)
