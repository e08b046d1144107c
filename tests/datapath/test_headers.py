from __future__ import annotations

from ztgate.datapath.headers import caller_response_headers, upstream_request_headers


def as_text(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in headers}


CALLER = [
    (b"host", b"127.0.0.1:8787"),
    (b"authorization", b"Bearer caller-token"),
    (b"x-api-key", b"caller-token"),
    (b"proxy-authorization", b"Bearer caller-token"),
    (b"cookie", b"session=1"),
    (b"anthropic-version", b"2023-06-01"),
    (b"anthropic-beta", b"skills-2025-10-02,files-api-2025-04-14"),
    (b"anthropic-future-thing", b"x"),
    (b"x-stainless-lang", b"python"),
    (b"connection", b"keep-alive, x-secret-hop"),
    (b"x-secret-hop", b"1"),
    (b"keep-alive", b"timeout=5"),
    (b"transfer-encoding", b"chunked"),
    (b"content-length", b"12"),
    (b"x-forwarded-for", b"10.0.0.7"),
    (b"ztgate-session-id", b"s1"),
    (b"content-type", b"text/plain"),
    (b"content-encoding", b"identity"),
    (b"x_api_key", b"another-token"),
    (b"anthropic_version", b"2023-06-01"),
]


def test_credentials_hop_by_hop_and_underscored_names_are_dropped() -> None:
    out = as_text(upstream_request_headers(CALLER, json=False))
    assert "x-api-key" not in out  # ztgate adds its own key later (UpstreamClient)
    assert "authorization" not in out
    assert "proxy-authorization" not in out
    assert "cookie" not in out
    assert "caller-token" not in " ".join(out.values())
    for dropped in (
        "connection",
        "keep-alive",
        "transfer-encoding",
        "x-secret-hop",
        "host",
        "content-length",
        "x-forwarded-for",
        "ztgate-session-id",
        "x_api_key",
        "anthropic_version",
    ):
        assert dropped not in out
    assert out["content-type"] == "text/plain"  # an upload's own framing stays


def test_a_json_body_is_framed_by_ztgate() -> None:
    """ztgate forwards its own encoding of a JSON body, so the caller's framing goes."""
    out = upstream_request_headers(CALLER, json=True)
    assert [v for n, v in out if n == b"content-type"] == [b"application/json"]
    assert b"content-encoding" not in {n for n, _ in out}


def test_anthropic_headers_pass_unchanged() -> None:
    out = as_text(upstream_request_headers(CALLER, json=True))
    assert out["anthropic-version"] == "2023-06-01"
    assert out["anthropic-beta"] == "skills-2025-10-02,files-api-2025-04-14"
    assert out["anthropic-future-thing"] == "x"
    assert out["x-stainless-lang"] == "python"


def test_repeated_headers_are_all_forwarded() -> None:
    caller = [(b"anthropic-beta", b"a-1"), (b"anthropic-beta", b"b-2")]
    out = upstream_request_headers(caller, json=False)
    assert [v for n, v in out if n == b"anthropic-beta"] == [b"a-1", b"b-2"]


def test_response_headers_lose_framing_and_hop_by_hop() -> None:
    upstream = [
        (b"content-type", b"application/json"),
        (b"request-id", b"req_1"),
        (b"content-length", b"10"),
        (b"transfer-encoding", b"chunked"),
        (b"connection", b"keep-alive"),
        (b"anthropic-ratelimit-requests-remaining", b"9"),
    ]
    assert caller_response_headers(upstream) == [
        (b"content-type", b"application/json"),
        (b"request-id", b"req_1"),
        (b"anthropic-ratelimit-requests-remaining", b"9"),
    ]
