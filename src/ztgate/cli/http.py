"""The CLI's HTTP: one JSON exchange with an IdP or a gateway, safe to print about.

Credentials go only where they were meant to: https (plain http on loopback only), no
redirects followed, proxies as curl honours them, answers bounded in size. Every failure is an
:class:`HttpError` whose message is one line for a person and never holds a secret.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.request
from collections.abc import Callable, Collection, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

HTTP_TIMEOUT_SECONDS = 10.0

_MAX_BODY_BYTES = 1 << 20
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]+")

# What an error answer says, for the message: the OAuth (RFC 6749 5.2) or the Anthropic shape.
Explain = Callable[[Mapping[str, Any] | None, Collection[str]], str]


class HttpError(Exception):
    """The exchange failed. The message is one line for a person, free of secrets."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_secure_url(url: str, what: str) -> None:
    """https, or plain http on loopback only: tokens and secrets never cross a network in clear."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or parts.scheme not in ("https", "http"):
        raise HttpError(f"{what} is not an http(s) URL: {url!r}")
    if parts.scheme == "http" and not is_loopback(host):
        raise HttpError(f"{what} must use https (plain http only on loopback): {url!r}")


def client_session(timeout: float = HTTP_TIMEOUT_SECONDS) -> aiohttp.ClientSession:
    # Not trust_env: aiohttp would then also read ~/.netrc, whose credentials clash with ours.
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))


def proxy_for(url: str) -> str | None:
    """HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment, as curl honours them."""
    host = urlsplit(url).hostname or ""
    if is_loopback(host) or bool(urllib.request.proxy_bypass(host)):
        return None
    return urllib.request.getproxies_environment().get(urlsplit(url).scheme)


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    what: str,
    headers: Mapping[str, str],
    secrets: Collection[str],
    explain: Explain,
    form: Mapping[str, str] | None = None,
    json: Any = None,
) -> dict[str, Any]:
    """One HTTP exchange whose answer must be a 2xx JSON object; redirects are not followed."""
    try:
        async with session.request(
            method,
            url,
            headers=dict(headers),
            data=dict(form) if form is not None else None,
            json=json,
            allow_redirects=False,  # credentials go only where they were meant to
            proxy=proxy_for(url),
        ) as response:
            status = response.status
            body = await _read_limited(response)
    except TimeoutError:
        raise HttpError(f"{what}: no answer within {session.timeout.total:g} s") from None
    except aiohttp.ClientError as exc:
        reason = one_line(str(exc) or type(exc).__name__, ())  # headers are never in it
        raise HttpError(f"{what} failed: {reason}") from None
    document = _json_object(body)
    if not 200 <= status < 300:
        raise HttpError(f"{what}: HTTP {status}{explain(document, secrets)}", status)
    if document is None:
        raise HttpError(f"{what}: the answer is not a JSON object")
    return document


def one_line(text: str, secrets: Collection[str]) -> str:
    """``text`` fit for one line of output: no control characters, no secret, not too long."""
    # A server may echo what it was sent; whatever it says, the secret is not repeated here.
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _UNPRINTABLE.sub(" ", text).strip()
    return text if len(text) <= 300 else text[:297] + "..."


async def _read_limited(response: aiohttp.ClientResponse) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 << 10):
        body += chunk
        if len(body) > _MAX_BODY_BYTES:
            raise HttpError(f"the answer from {response.url.host} is too large")
    return bytes(body)


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        document = orjson.loads(body)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None
