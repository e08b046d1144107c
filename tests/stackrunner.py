"""Runs a whole local deployment (issuer, simulator, gateway) in a background event loop,
so that tests can drive it with the synchronous SDK, the async SDK or subprocesses alike."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from ztgate.devtools.stack import LocalStack

T = TypeVar("T")


class RunningStack:
    def __init__(self, **sections: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.stack: LocalStack = self.run(LocalStack.start(**sections))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def url(self) -> str:
        return self.stack.gateway_url

    def token(self, subject: str = "demo/alice", **kwargs: Any) -> str:
        return self.stack.token(subject, **kwargs)

    def received(self, path_prefix: str = "/v1/") -> list[Any]:
        return [r for r in self.stack.simulator.received if r.path.startswith(path_prefix)]

    def close(self) -> None:
        try:
            self.run(self.stack.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
