"""The one transport to the Claude API. Transport errors become gateway errors here, only here."""

from __future__ import annotations

from collections.abc import AsyncIterable

from ztgate.config.model import UpstreamConfig
from ztgate.core.errors import UpstreamTimeout, UpstreamUnavailable
from ztgate.core.types import Headers
from ztgate.datapath.http1 import (
    ConnectionPool,
    UpstreamBroken,
    UpstreamConnectError,
    UpstreamResponse,
)
from ztgate.datapath.upstream_keys import Credential, UpstreamKeys


class UpstreamClient:
    def __init__(self, config: UpstreamConfig) -> None:
        self.base_url = config.url
        self.keys = UpstreamKeys(config)
        self._timeout_text = f"upstream sent nothing for {config.timeout:g} s"
        self._pool = ConnectionPool(
            config.url,
            connect_timeout=config.connect_timeout,
            read_timeout=config.timeout,
            max_idle=config.max_connections,
            proxy=config.proxy,
            ca_file=config.ca_file,
        )

    @property
    def idle_connections(self) -> int:
        return self._pool.idle

    async def close(self) -> None:
        self._pool.close()

    async def open(
        self,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | AsyncIterable[bytes],
        credential: Credential,
    ) -> UpstreamResponse:
        """Send a request with ``credential`` and return once the response headers have
        arrived: headers and body with that key removed wherever the upstream put it."""
        sent = [*headers, *credential.headers]
        try:
            response = await self._pool.request(method, target, sent, body)
        except UpstreamConnectError as exc:
            raise UpstreamUnavailable(f"upstream is unreachable ({exc})") from exc
        except UpstreamBroken as exc:
            raise UpstreamUnavailable(f"upstream failed: {exc}") from exc
        except TimeoutError as exc:
            raise self.timeout_error() from exc
        response.headers = credential.scrubber.headers(response.headers)
        response.body_filter = credential.scrubber.stream()
        return response

    async def exchange(
        self, method: str, target: str, headers: Headers, body: bytes, *, limit: int
    ) -> tuple[int, bytes | None]:
        """A whole request with the gateway's own key and its whole answer (None when longer
        than ``limit``), for ztgate's own calls (the guardrails' judge)."""
        response = await self.open(method, target, headers, body, self.keys.default)
        try:
            return response.status, await response.read(limit)
        finally:
            response.close()

    def timeout_error(self) -> UpstreamTimeout:
        return UpstreamTimeout(self._timeout_text)
