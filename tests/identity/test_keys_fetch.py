"""Fetching a JWKS over HTTP: the document is read whole however it arrives, and refused once
past its size limit (tests/reliability/test_faults.py has the same through a running gateway)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp import web

from tests.identity.keyring import AUDIENCE, ISSUER, SigningKey, jwks
from ztgate.config.model import IssuerConfig
from ztgate.identity.keys import KeyFetchError, http_fetcher

LIMIT = 1024 * 1024
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Fetch = Callable[[], Awaitable[object]]
Serve = Callable[[Handler], Awaitable[Fetch]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Serve one handler at /jwks; a fetcher of it, as the gateway builds one."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(handler: Handler) -> Fetch:
        app = web.Application()
        app.router.add_get("/jwks", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        config = IssuerConfig(
            name="idp", issuer=ISSUER, audiences=[AUDIENCE], jwks_uri=f"http://{host}:{port}/jwks"
        )
        session = aiohttp.ClientSession()
        sessions.append(session)
        return http_fetcher(config, session)

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


def in_pieces(body: bytes, pieces: int, *, length: bool) -> Handler:
    """A handler sending ``body`` in ``pieces`` writes, a pause between each (a slow IdP)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "application/json"})
        if length:
            response.content_length = len(body)
        await response.prepare(request)
        size = -(-len(body) // pieces)
        for start in range(0, len(body), size):
            await response.write(body[start : start + size])
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response

    return handler


async def test_a_document_sent_in_pieces_is_read_whole(serve: Serve) -> None:
    document = {**jwks(SigningKey.generate("ES256")), "padding": "x" * 200_000}
    body = orjson.dumps(document)
    for length in (True, False):  # with a Content-Length, and chunked
        fetch = await serve(in_pieces(body, 20, length=length))
        assert await fetch() == document


async def test_a_document_over_the_limit_is_refused_for_its_size(serve: Serve) -> None:
    body = b'{"keys": [' + b" " * (2 * LIMIT) + b"]}"
    for length in (True, False):
        fetch = await serve(in_pieces(body, 8, length=length))
        with pytest.raises(KeyFetchError, match=f"returned more than {LIMIT} bytes$"):
            await fetch()


async def test_a_document_of_exactly_the_limit_is_read(serve: Serve) -> None:
    body = b'{"keys": []' + b" " * (LIMIT - 12) + b"}"
    assert len(body) == LIMIT
    fetch = await serve(in_pieces(body, 4, length=False))
    assert await fetch() == {"keys": []}
