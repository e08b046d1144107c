"""Only the query parameters the API defines cross the gateway, each once, each of the shape
the API uses; what is forwarded is rebuilt from what was checked."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.core.errors import InvalidRequest
from ztgate.wire.query import PARAMETERS, canonical_query


@pytest.mark.parametrize(
    ("endpoint", "action", "query", "forwarded"),
    [
        ("messages", "create", b"", b""),
        ("messages", "create", b"beta=true", b"beta=true"),
        ("models", "list", b"limit=20&after_id=claude-x", b"limit=20&after_id=claude-x"),
        (
            "models",
            "list",
            b"lifecycle[]=active&lifecycle[]=retired",
            b"lifecycle[]=active&lifecycle[]=retired",
        ),
        ("models", "list", b"lifecycle%5B%5D=active", b"lifecycle[]=active"),
        (
            "files",
            "list",
            b"ids%5B%5D=file_01&ids%5B%5D=file_02&page=abc%3D",
            b"ids[]=file_01&ids[]=file_02&page=abc%3D",
        ),
        ("skills", "list", b"source=custom&limit=5", b"source=custom&limit=5"),
        ("skills", "list_versions", b"page=cursor_1", b"page=cursor_1"),
    ],
)
def test_defined_parameters_are_forwarded_rebuilt(
    endpoint: str, action: str, query: bytes, forwarded: bytes
) -> None:
    assert canonical_query(endpoint, action, query) == forwarded


@pytest.mark.parametrize(
    ("endpoint", "action", "query", "reason"),
    [
        ("messages", "create", b"access_token=eyJhbGciOi.x.y", "access_token is not accepted"),
        ("messages", "create", b"beta=true&beta=false", "more than once"),
        ("messages", "create", b"beta=yes", "value"),
        ("messages", "create", b"beta", "malformed"),
        ("messages", "create", b"beta=true;x=1", "value"),
        ("messages", "create", b"%ff=1", "malformed"),
        ("models", "list", b"limit=0", "value"),
        ("models", "list", b"limit=1e3", "value"),
        ("models", "list", b"after_id=../x/y", "value"),
        ("models", "get", b"limit=5", "limit is not accepted"),
        ("files", "list", b"page=a%20b", "value"),
        ("messages", "create", b"sk-ant-api03-abc=1", "(unnamed) is not accepted"),
    ],
)
def test_anything_else_is_refused(endpoint: str, action: str, query: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason.replace("(", r"\(").replace(")", r"\)")):
        canonical_query(endpoint, action, query)


@settings(deadline=None, max_examples=500)
@given(
    st.sampled_from([*PARAMETERS, ("messages", "create")]),
    st.lists(st.tuples(st.text(max_size=12), st.text(max_size=20)), max_size=5).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "replace")
    )
    | st.binary(max_size=40),
)
def test_whatever_is_forwarded_is_exactly_what_was_checked(
    route: tuple[str, str], query: bytes
) -> None:
    """A forwarded query re-parses to parameters the endpoint defines, each valid, and
    checking it again changes nothing: no second spelling reaches the upstream."""
    try:
        forwarded = canonical_query(*route, query)
    except InvalidRequest:
        return
    assert canonical_query(*route, forwarded) == forwarded
    assert forwarded.isascii()
