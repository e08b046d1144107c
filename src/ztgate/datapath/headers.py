"""Which headers cross the gateway, in each direction. Pure functions over header lists.

Requests keep every ``anthropic-*`` header and the rest of what clients send (an allow-list
would lose the betas Claude Code depends on); they lose hop-by-hop headers, every caller
credential, and anything that describes the inside of the network. Responses keep the
upstream's headers minus hop-by-hop and the framing ztgate recomputes.
"""

from __future__ import annotations

from ztgate.types import Headers

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
CALLER_CREDENTIALS = frozenset({b"authorization", b"x-api-key", b"proxy-authorization", b"cookie"})
_NOT_FORWARDED = (
    HOP_BY_HOP
    | CALLER_CREDENTIALS
    | {
        b"host",
        b"content-length",
        b"accept-encoding",
        b"expect",
        b"forwarded",
        b"x-real-ip",
    }
)
_NOT_FORWARDED_PREFIXES = (b"x-forwarded-", b"ztgate-")
_NOT_RETURNED = HOP_BY_HOP | {b"content-length"}


def _connection_tokens(headers: Headers) -> frozenset[bytes]:
    """Headers named in ``Connection`` are hop-by-hop too (RFC 9110 7.6.1)."""
    return frozenset(
        token.strip().lower()
        for name, value in headers
        if name == b"connection"
        for token in value.split(b",")
    )


def upstream_request_headers(caller: Headers, api_key: bytes) -> Headers:
    """The headers sent upstream: the caller's, cleaned, plus ztgate's own key."""
    dropped = _NOT_FORWARDED | _connection_tokens(caller)
    out = [
        (name, value)
        for name, value in caller
        if name not in dropped and not name.startswith(_NOT_FORWARDED_PREFIXES)
    ]
    out.append((b"x-api-key", api_key))
    out.append((b"accept-encoding", b"identity"))
    return out


def caller_response_headers(upstream: Headers) -> Headers:
    """The upstream's response headers as the caller receives them."""
    dropped = _NOT_RETURNED | _connection_tokens(upstream)
    return [(name, value) for name, value in upstream if name not in dropped]
