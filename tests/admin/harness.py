"""A real gateway with an audit store and the admin API mounted, served over HTTP in a
background event loop, with a real OIDC issuer minting the tokens."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx2 as httpx
import uvicorn

from ztgate.audit.store.base import AuditStore
from ztgate.audit.store.factory import open_store
from ztgate.datapath.app import Gateway
from ztgate.devtools.issuer import DevIssuer
from ztgate.devtools.stack import demo_config

T = TypeVar("T")
ADMIN_PREFIX = "/ztgate/api/v1"


class AdminGateway:
    def __init__(self, store_url: str, **sections: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.issuer = DevIssuer()
        self.run(self.issuer.start())
        config = demo_config(
            self.issuer.base_url, "http://127.0.0.1:9", store={"url": store_url}, **sections
        )
        self.gateway = Gateway(config)
        self.store: AuditStore = open_store(store_url)
        self.gateway.audit_store = self.store
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self._server = uvicorn.Server(
            uvicorn.Config(self.gateway, lifespan="on", log_config=None, access_log=False)
        )
        self._task = self.run(self._serve(sock))
        self.client = httpx.Client(base_url=self.url + ADMIN_PREFIX, timeout=30)

    async def _serve(self, sock: socket.socket) -> asyncio.Task[None]:
        task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        return task

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def token(self, *groups: str, subject: str = "ops/carol") -> str:
        return self.issuer.mint(subject, claims={"groups": list(groups)})

    def get(self, path: str, token: str | None = None, **params: str) -> httpx.Response:
        headers = {} if token is None else {"authorization": f"Bearer {token}"}
        return self.client.get(path, headers=headers, params=params)

    def close(self) -> None:
        self.client.close()

        async def stop() -> None:
            self._server.should_exit = True
            await self._task
            await self.store.close()
            await self.issuer.stop()

        try:
            self.run(stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
