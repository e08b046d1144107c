"""The one transport to the Claude API. Third-party errors become gateway errors here, only here."""

from __future__ import annotations

from collections.abc import AsyncIterable

import aiohttp
from yarl import URL

from ztgate.config.model import UpstreamConfig
from ztgate.errors import UpstreamTimeout, UpstreamUnavailable


class UpstreamClient:
    def __init__(self, config: UpstreamConfig) -> None:
        self.base_url = config.url
        self._api_key = config.api_key.get_secret_value().encode("latin-1")
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=config.connect_timeout, sock_read=config.timeout
        )
        self._timeout_text = f"upstream sent nothing for {config.timeout:g} s"
        self._max_connections = config.max_connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def api_key(self) -> bytes:
        return self._api_key

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, ttl_dns_cache=300, enable_cleanup_closed=True
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=True,
            skip_auto_headers=("User-Agent", "Content-Type"),
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def open(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | AsyncIterable[bytes],
    ) -> aiohttp.ClientResponse:
        """Send a request and return once the response headers have arrived."""
        assert self._session is not None, "UpstreamClient.start() was not awaited"
        try:
            return await self._session.request(
                method,
                URL(self.base_url + target, encoded=True),
                headers=headers,
                data=body if body else None,
                allow_redirects=False,
            )
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamUnavailable("upstream is unreachable (connect timed out)") from exc
        except TimeoutError as exc:
            raise self.timeout_error() from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"upstream is unreachable ({type(exc).__name__})") from exc

    def timeout_error(self) -> UpstreamTimeout:
        return UpstreamTimeout(self._timeout_text)
