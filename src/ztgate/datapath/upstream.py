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
from ztgate.datapath.scrub import KeyScrubber


class UpstreamClient:
    def __init__(self, config: UpstreamConfig) -> None:
        self.base_url = config.url
        self._api_key = config.api_key.get_secret_value().encode("latin-1")
        self._scrubber = KeyScrubber(self._api_key)
        self._timeout_text = f"upstream sent nothing for {config.timeout:g} s"
        self._pool = ConnectionPool(
            config.url,
            connect_timeout=config.connect_timeout,
            read_timeout=config.timeout,
            max_idle=config.max_connections,
        )

    @property
    def credential_headers(self) -> Headers:
        """What every upstream request carries: ztgate's key, and a request for bodies it can
        inspect (a compressed JSON or SSE answer is refused)."""
        return [(b"x-api-key", self._api_key), (b"accept-encoding", b"identity")]

    async def close(self) -> None:
        self._pool.close()

    async def open(
        self, method: str, target: str, headers: Headers, body: bytes | AsyncIterable[bytes]
    ) -> UpstreamResponse:
        """Send a request and return once the response headers have arrived: headers and body
        with ztgate's own key removed wherever the upstream put it."""
        try:
            response = await self._pool.request(method, target, headers, body)
        except UpstreamConnectError as exc:
            raise UpstreamUnavailable(f"upstream is unreachable ({exc})") from exc
        except UpstreamBroken as exc:
            raise UpstreamUnavailable(f"upstream failed: {exc}") from exc
        except TimeoutError as exc:
            raise self.timeout_error() from exc
        response.headers = self._scrubber.headers(response.headers)
        response.body_filter = self._scrubber.stream()
        return response

    async def exchange(
        self, method: str, target: str, headers: Headers, body: bytes, *, limit: int
    ) -> tuple[int, bytes | None]:
        """A whole request and its whole answer (None when longer than ``limit``), for
        ztgate's own calls (the guardrails' judge)."""
        response = await self.open(method, target, headers, body)
        try:
            return response.status, await response.read(limit)
        finally:
            response.close()

    def timeout_error(self) -> UpstreamTimeout:
        return UpstreamTimeout(self._timeout_text)
