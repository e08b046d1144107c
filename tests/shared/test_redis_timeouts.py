"""Redis slow rather than down, seen from RedisState: a caller is held for one socket timeout
(a timeout is not retried: only a broken connection is), and a bounded pool never opens more
than its bound to a Redis that stopped answering (tests/reliability/test_faults.py has the
same through a running gateway)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

import ztgate.shared.redis as shared_redis
from ztgate.core.errors import ServiceUnavailable
from ztgate.shared.redis import RedisState

TIMEOUT = 0.3


class SilentRedis:
    """Accepts connections and reads what is sent; never answers (a Redis too slow to)."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while await reader.read(65536):
            pass


@pytest.fixture
async def silent(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SilentRedis]:
    monkeypatch.setattr(shared_redis, "SOCKET_TIMEOUT", TIMEOUT)
    monkeypatch.setattr(shared_redis, "MAX_CONNECTIONS", 8)
    server = SilentRedis()
    await server.start()
    yield server
    await server.stop()


async def test_a_redis_that_does_not_answer_costs_one_socket_timeout(silent: SilentRedis) -> None:
    state = RedisState(silent.url)
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable, match=r"shared state \(Redis\) is unavailable"):
            await state.add([("k", 1, 60)])
        took = time.monotonic() - started
    finally:
        await state.close()
    assert TIMEOUT <= took < 2 * TIMEOUT, took  # not retried after its timeout
    assert silent.connections == 1


async def test_callers_beyond_the_pool_wait_for_it_and_are_refused(silent: SilentRedis) -> None:
    state = RedisState(silent.url)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(state.add([(f"k{n}", 1, 60)]) for n in range(20)), return_exceptions=True
        )
        took = time.monotonic() - started
    finally:
        await state.close()
    assert all(isinstance(result, ServiceUnavailable) for result in results), results
    assert silent.connections <= 8  # the bound, not one connection per caller
    assert took < 3 * TIMEOUT, took  # waiting for a connection is bounded by the timeout too
