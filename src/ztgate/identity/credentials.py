"""Where callers put their token: clients differ, so all three places are read."""

from __future__ import annotations

from collections.abc import Iterable

from ztgate.core.errors import AuthenticationFailed

MISSING_CREDENTIAL = (
    "no credential: send a token from a trusted issuer as 'Authorization: Bearer <token>' "
    "or 'x-api-key: <token>'"
)


def extract_credential(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The caller's token, from ``Authorization``, ``x-api-key`` or ``Proxy-Authorization``.

    Claude Code with an ``apiKeyHelper`` sends the same token in all three; differing values
    are refused rather than guessed between.
    """
    found: set[bytes] = set()
    for name, value in headers:
        if name == b"x-api-key":
            found.add(value.strip())
        elif name in (b"authorization", b"proxy-authorization"):
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() != b"bearer":
                raise AuthenticationFailed(
                    f"{name.decode()} must use the Bearer scheme: 'Bearer <token>'"
                )
            found.add(token.strip())
    found.discard(b"")
    if not found:
        raise AuthenticationFailed(MISSING_CREDENTIAL)
    if len(found) > 1:
        raise AuthenticationFailed("the request carries several different credentials; send one")
    try:
        return found.pop().decode("ascii")
    except UnicodeDecodeError:
        raise AuthenticationFailed("token is malformed") from None
