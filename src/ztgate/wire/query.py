"""The query parameters each endpoint takes, and the one query string forwarded upstream.

Only parameters the API defines for an endpoint cross the gateway, each once (list
parameters, ``ids[]``, may repeat), each with a value of the shape the API uses; anything
else is refused with a 400 naming it. The string forwarded is rebuilt from the parsed pairs,
so the upstream reads exactly the parameters ztgate checked, never a second spelling of one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from urllib.parse import parse_qsl, quote

from ztgate.core.errors import InvalidRequest

_ID = re.compile(r"[A-Za-z0-9_:.-]{1,256}")
_CURSOR = re.compile(r"[A-Za-z0-9_:.=+/~-]{1,1024}")
_WORD = re.compile(r"[a-z_]{1,32}")

Check = Callable[[str], bool]


def _one_of(*values: str) -> Check:
    allowed = frozenset(values)
    return allowed.__contains__


def _limit(value: str) -> bool:
    return value.isascii() and value.isdigit() and 1 <= int(value) <= 1000


def _matches(pattern: re.Pattern[str]) -> Check:
    return lambda value: pattern.fullmatch(value) is not None


_BETA: Mapping[str, Check] = {"beta": _one_of("true", "false")}
_ID_PAGES: Mapping[str, Check] = {
    **_BETA,
    "after_id": _matches(_ID),
    "before_id": _matches(_ID),
    "limit": _limit,
}
_CURSOR_PAGES: Mapping[str, Check] = {**_BETA, "page": _matches(_CURSOR), "limit": _limit}

# (endpoint, action) -> the parameters it takes; a name ending in ``[]`` is a list.
PARAMETERS: Mapping[tuple[str, str], Mapping[str, Check]] = {
    ("models", "list"): {**_ID_PAGES, "lifecycle[]": _one_of("active", "deprecated", "retired")},
    ("batches", "list"): _ID_PAGES,
    ("files", "list"): {**_CURSOR_PAGES, "ids[]": _matches(_ID), "scope_id": _matches(_ID)},
    ("skills", "list"): {**_CURSOR_PAGES, "source": _matches(_WORD)},
    ("skills", "list_versions"): _CURSOR_PAGES,
}


def canonical_query(endpoint: str, action: str, query_string: bytes) -> bytes:
    """The query string to forward, rebuilt from the checked parameters (empty for none)."""
    if not query_string:
        return b""
    try:
        text = query_string.decode("ascii")
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the query string is malformed") from None
    allowed = PARAMETERS.get((endpoint, action), _BETA)
    seen: set[str] = set()
    for name, value in pairs:
        check = allowed.get(name)
        if check is None:
            raise InvalidRequest(f"query parameter {_shown(name)} is not accepted on this endpoint")
        if name in seen and not name.endswith("[]"):
            raise InvalidRequest(f"query parameter {name} is given more than once")
        if not check(value):
            raise InvalidRequest(f"query parameter {name} has a value this endpoint does not take")
        seen.add(name)
    encoded = "&".join(f"{quote(name, safe='[]')}={quote(value, safe='')}" for name, value in pairs)
    return encoded.encode("ascii")


def _shown(name: str) -> str:
    """A parameter's name in an error: only when it looks like one (a name can carry a value)."""
    return name if _WORD.fullmatch(name.removesuffix("[]")) else "(unnamed)"
