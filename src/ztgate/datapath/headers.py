"""Which headers cross the gateway, in each direction. Pure functions over header lists.

Requests keep every ``anthropic-*`` header and the rest of what clients send (an allow-list
would lose the betas Claude Code depends on); they lose hop-by-hop headers, every caller
credential, a trace context (ztgate sends its own when configured), any name spelled with
``_`` (some servers read ``x_api_key`` as ``x-api-key``),
and anything that describes the inside of the network. A JSON body's framing is ztgate's
own: it forwards its re-encoding of the body. Responses keep the upstream's headers minus
hop-by-hop and the framing ztgate recomputes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import unquote_to_bytes

from ztgate.core.context import RequestContext
from ztgate.core.errors import InvalidRequest
from ztgate.core.types import Headers

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
        # A caller's trace context ends at ztgate; ztgate sends its own when configured to.
        b"traceparent",
        b"tracestate",
        b"baggage",
    }
)
_NOT_FORWARDED_PREFIXES = (b"x-forwarded-", b"ztgate-")
_JSON_FRAMING = frozenset({b"content-type", b"content-encoding"})
_JSON = (b"content-type", b"application/json")
_NOT_RETURNED = HOP_BY_HOP | {b"content-length"}


def _connection_tokens(headers: Headers) -> frozenset[bytes]:
    """Headers named in ``Connection`` are hop-by-hop too (RFC 9110 7.6.1)."""
    return frozenset(
        token.strip().lower()
        for name, value in headers
        if name == b"connection"
        for token in value.split(b",")
    )


def upstream_request_headers(caller: Headers, *, json: bool) -> Headers:
    """The caller's headers as they go upstream, cleaned (ztgate adds its own key later)."""
    dropped = _NOT_FORWARDED | _connection_tokens(caller)
    if json:
        dropped |= _JSON_FRAMING
    out = [
        (name, value)
        for name, value in caller
        if name not in dropped and b"_" not in name and not name.startswith(_NOT_FORWARDED_PREFIXES)
    ]
    if json:
        out.append(_JSON)
    return out


def refuse_echoed_credential(credential: str, ctx: RequestContext) -> None:
    """The caller's token goes nowhere but ztgate: not in the path, the query string or another
    header, however it is spelled there (percent-encoded in a URL). Checked before routing, so
    no answer repeats it either; a refused context forgets where it was, since the path and
    query are logged and recorded."""
    token = credential.encode("ascii")
    places = [
        ("the path", unquote_to_bytes(ctx.path)),
        ("the query string", unquote_to_bytes(ctx.query_string)),
        *(
            (f"the {name.decode('latin-1')} header", value)
            for name, value in ctx.headers
            if name not in CALLER_CREDENTIALS
        ),
    ]
    for where, value in places:
        if token in value:
            ctx.path = ctx.path.replace(credential, "<credential>")
            ctx.query_string = b""
            raise InvalidRequest(f"the request repeats its credential in {where}; send it once")


def caller_response_headers(upstream: Headers) -> Headers:
    """The upstream's response headers as the caller receives them."""
    dropped = _NOT_RETURNED | _connection_tokens(upstream)
    return [(name, value) for name, value in upstream if name not in dropped]


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def trusted_networks(cidrs: Sequence[str]) -> Networks:
    return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)


def _trusted(address: str, networks: Networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def forwarded_origin(
    headers: Headers, peer: str | None, scheme: str, networks: Networks
) -> tuple[str | None, str]:
    """The caller's address and scheme: the connection's own, unless it comes from a trusted
    proxy, which says them in ``X-Forwarded-For`` and ``X-Forwarded-Proto``. Of the addresses
    ``X-Forwarded-For`` lists, the last one not a trusted proxy is the caller (the ones before
    it were written by whoever sent the request, and prove nothing)."""
    if peer is None or not networks or not _trusted(peer, networks):
        return peer, scheme
    hops: list[str] = []
    proto: str | None = None
    for name, value in headers:
        if name == b"x-forwarded-for":
            hops.extend(h.strip() for h in value.decode("latin-1").split(","))
        elif name == b"x-forwarded-proto":
            proto = value.decode("latin-1").split(",")[-1].strip().lower()
    client = peer
    for hop in reversed(hops):
        client = hop
        if not _trusted(hop, networks):
            break
    return client, proto if proto in ("http", "https") else scheme
