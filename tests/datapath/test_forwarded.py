"""X-Forwarded-For and -Proto are believed only from the proxies the config trusts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ztgate.datapath.headers import forwarded_origin, trusted_networks

PROXIES = trusted_networks(["10.0.0.0/8", "fd00::/8"])


def origin(peer: str, *headers: tuple[str, str]) -> tuple[str | None, str]:
    raw = [(k.encode(), v.encode()) for k, v in headers]
    return forwarded_origin(raw, peer, "http", PROXIES)


def test_a_trusted_proxy_names_the_caller_and_the_scheme() -> None:
    assert origin(
        "10.1.2.3", ("x-forwarded-for", "203.0.113.9"), ("x-forwarded-proto", "https")
    ) == (
        "203.0.113.9",
        "https",
    )


def test_the_last_untrusted_hop_is_the_caller() -> None:
    forged = ("x-forwarded-for", "198.51.100.1, 203.0.113.9, 10.9.9.9")
    assert origin("10.1.2.3", forged)[0] == "203.0.113.9"


def test_a_caller_that_is_no_proxy_is_not_believed() -> None:
    assert origin(
        "203.0.113.50", ("x-forwarded-for", "10.0.0.1"), ("x-forwarded-proto", "https")
    ) == (
        "203.0.113.50",
        "http",
    )


def test_a_strange_scheme_is_ignored() -> None:
    assert origin("10.0.0.1", ("x-forwarded-proto", "gopher"))[1] == "http"


addresses = st.ip_addresses(v=4).map(str)


@given(addresses, st.lists(st.text(max_size=30), max_size=5), st.text(max_size=10))
def test_no_header_moves_a_caller_that_is_no_proxy(peer: str, hops: list[str], proto: str) -> None:
    if any(peer.startswith(p) for p in ("10.",)):
        return
    headers = [(b"x-forwarded-for", ", ".join(hops).encode("utf-8", "replace")),
               (b"x-forwarded-proto", proto.encode("utf-8", "replace"))]  # fmt: skip
    assert forwarded_origin(headers, peer, "http", PROXIES) == (peer, "http")
