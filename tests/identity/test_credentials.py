from __future__ import annotations

import pytest

from ztgate.core.errors import AuthenticationFailed
from ztgate.identity.credentials import extract_credential


@pytest.mark.parametrize(
    "headers",
    [
        [(b"authorization", b"Bearer tok")],
        [(b"authorization", b"bearer tok")],
        [(b"x-api-key", b"tok")],
        [(b"proxy-authorization", b"Bearer tok")],
        # Claude Code with an apiKeyHelper sends the same token three times.
        [
            (b"authorization", b"Bearer tok"),
            (b"x-api-key", b"tok"),
            (b"proxy-authorization", b"Bearer tok"),
        ],
    ],
)
def test_token_is_found_wherever_clients_put_it(headers: list[tuple[bytes, bytes]]) -> None:
    assert extract_credential(headers) == "tok"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ([], "no credential"),
        ([(b"authorization", b"Bearer ")], "no credential"),
        ([(b"authorization", b"Basic dXNlcjpwYXNz")], "Bearer scheme"),
        ([(b"authorization", b"Bearer a"), (b"x-api-key", b"b")], "several different"),
        ([(b"x-api-key", "tök".encode())], "malformed"),
    ],
)
def test_missing_or_ambiguous_credentials_are_refused(
    headers: list[tuple[bytes, bytes]], message: str
) -> None:
    with pytest.raises(AuthenticationFailed, match=message):
        extract_credential(headers)
