"""The HTTP layer against hostile clients, over raw sockets: malformed and oversized requests,
slow and idle clients, too many connections. Every answer is in the Anthropic envelope, no
client holds the gateway, and normal requests keep being served meanwhile."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic
import httpx2 as httpx
import orjson
import pytest

from tests.stackrunner import RunningStack

LIMITS = {
    "idle_timeout": "1s",
    "header_timeout": "1s",
    "body_timeout": "1s",
    "body_min_rate": 1024,
    "send_timeout": "1s",
}


@pytest.fixture(scope="module")
def strict() -> Iterator[RunningStack]:
    running = RunningStack(server=LIMITS)
    yield running
    running.close()


def address(stack: RunningStack) -> tuple[str, int]:
    host, port = stack.url.removeprefix("http://").split(":")
    return host, int(port)


def connect(stack: RunningStack, **options: int) -> socket.socket:
    sock = socket.socket()
    for name, value in options.items():
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, name), value)
    sock.settimeout(10)
    sock.connect(address(stack))
    return sock


# Bytes read past one response, per socket.
_LEFTOVERS: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers, body (by content-length, or to the end). Bytes of the
    next response (pipelining) are kept for the next call."""
    data = _LEFTOVERS.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if "content-length" not in headers:
        return status, headers, rest
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    if rest[length:]:
        _LEFTOVERS[sock] = rest[length:]
    return status, headers, rest[:length]


def exchange(stack: RunningStack, raw: bytes) -> tuple[int, dict[str, str], Any]:
    with connect(stack) as sock:
        sock.sendall(raw)
        status, headers, body = read_response(sock)
    return status, headers, orjson.loads(body) if body else None


def assert_envelope(headers: dict[str, str], body: Any, error_type: str) -> None:
    assert headers["content-type"] == "application/json"
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type
    assert body["request_id"].startswith("req_ztg_")
    assert headers["request-id"] == body["request_id"]


def closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the gateway closed the connection within ``seconds``, and what it said."""
    sock.settimeout(seconds)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


# --- refused shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"GARBAGE\r\n\r\n", "malformed HTTP request"),
        (b"GET /v1/models HTTP/1.1\r\n\r\n", "Host"),
        (b"GET /v1/models HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "Host"),
        (b"GET /v1/models HTTP/1.1\r\nHost: a b\r\n\r\n", "Host"),
        (b"GET http://evil.example/v1/models HTTP/1.1\r\nHost: a\r\n\r\n", "must be a path"),
        (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "must be a path"),
        (b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: a\r\n\r\n", "must be a path"),
        (
            b"GET /v1/models HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n",
            "upgrades",
        ),
        (b"GET /v1/models HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n folded\r\n\r\n", "malformed"),
        (
            b"POST /v1/messages HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            "malformed",
        ),
        (b"GET /v1/\xffmodels HTTP/1.1\r\nHost: a\r\n\r\n", "malformed HTTP request"),
    ],
)
def test_what_http_refuses_is_refused_in_the_anthropic_shape(
    strict: RunningStack, raw: bytes, words: str
) -> None:
    status, headers, body = exchange(strict, raw)
    assert status == 400
    assert_envelope(headers, body, "invalid_request_error")
    assert words in body["error"]["message"]
    assert headers["connection"] == "close"


def test_http_1_0_needs_no_host(strict: RunningStack) -> None:
    status, _, body = exchange(strict, b"GET /healthz HTTP/1.0\r\n\r\n")
    assert (status, body) == (200, {"status": "alive"})


def test_an_unknown_path_is_404_in_the_anthropic_shape(strict: RunningStack) -> None:
    status, headers, body = exchange(strict, b"GET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 404
    assert_envelope(headers, body, "not_found_error")


# --- heads: size and count, refused before authentication -----------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: a\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
        + b"\r\n",
        b"GET /v1/models?" + b"q" * 70_000 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
    ids=["one large header", "2000 headers", "a long URL"],
)
def test_oversized_heads_are_431_before_authentication(strict: RunningStack, head: bytes) -> None:
    status, headers, body = exchange(strict, head)  # no token at all
    assert status == 431
    assert_envelope(headers, body, "invalid_request_error")


def test_a_huge_header_is_refused_before_it_is_read_whole(strict: RunningStack) -> None:
    """4 MB of one header: the 431 is there while the caller is still sending."""
    with connect(strict) as sock:
        sock.sendall(b"POST /v1/messages HTTP/1.1\r\nHost: a\r\nX-Big: ")
        sent = 0
        answer = b""
        sock.settimeout(0.05)
        while sent < 4 * 1024 * 1024 and not answer:
            try:
                sock.sendall(b"a" * 16384)
                sent += 16384
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                break
            with contextlib.suppress(TimeoutError):
                answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 431 ")
        assert sent < 1024 * 1024


def test_head_limits_leave_room_for_three_tokens(strict: RunningStack) -> None:
    """Claude Code's apiKeyHelper sends the token in three headers: a 12 KB token passes."""
    token = strict.token(claims={"padding": "p" * 10_000})
    headers = {"authorization": f"Bearer {token}", "x-api-key": token}
    headers["proxy-authorization"] = f"Bearer {token}"
    response = httpx.get(f"{strict.url}/v1/models", headers={**headers, "anthropic-version": "1"})
    assert response.status_code == 200


# --- slow and idle clients ----------------------------------------------------------------------


def test_an_idle_connection_is_closed(strict: RunningStack) -> None:
    with connect(strict) as sock:
        closed, said = closed_within(sock, 4)
    assert closed
    assert said == b""  # nothing was asked: nothing is answered


def test_a_kept_alive_connection_is_closed_when_idle(strict: RunningStack) -> None:
    with connect(strict) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        assert read_response(sock)[0] == 200
        closed, said = closed_within(sock, 4)
    assert closed
    assert said == b""


def test_a_head_sent_a_byte_at_a_time_gets_408(strict: RunningStack) -> None:
    with connect(strict) as sock:
        started = time.monotonic()
        for byte in b"GET /v1/models HTTP/1.1\r\nHost: a\r\n":
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
            if time.monotonic() - started > 4:
                break
        sock.settimeout(5)
        status, headers, body = read_response(sock)
    assert status == 408
    assert_envelope(headers, orjson.loads(body), "timeout_error")
    assert time.monotonic() - started < 4


def request_head(stack: RunningStack, length: int) -> bytes:
    return (
        b"POST /v1/messages HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
        b"Anthropic-Version: 2023-06-01\r\n"
        b"Authorization: Bearer " + stack.token().encode() + b"\r\n"
        b"Content-Length: %d\r\n\r\n" % length
    )


def test_a_stalled_body_gets_408_and_is_recorded(strict: RunningStack) -> None:
    with connect(strict) as sock:
        sock.sendall(request_head(strict, 1000) + b'{"model": ')
        status, headers, body = read_response(sock)
    assert status == 408
    document = orjson.loads(body)
    assert_envelope(headers, document, "timeout_error")
    outcome = strict.run(_outcome(strict, document["request_id"]))
    assert outcome is not None
    assert outcome["status"] == 408


async def _outcome(stack: RunningStack, request_id: str) -> dict[str, Any] | None:
    store = stack.stack.gateway.audit.store
    async for event in store.events():
        if event.request_id == request_id and event.kind == "outcome":
            return dict(event.data())
    return None


def test_a_body_dripped_too_slowly_gets_408(strict: RunningStack) -> None:
    """Never silent for long, but far below the minimum rate."""
    with connect(strict) as sock:
        sock.sendall(request_head(strict, 100_000))
        sock.settimeout(0.3)
        answer = b""
        started = time.monotonic()
        while not answer and time.monotonic() - started < 6:
            try:
                sock.send(b" ")
                answer = sock.recv(65536)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 4


def test_hundreds_of_slow_clients_are_closed_while_others_are_served(
    strict: RunningStack, sdk: Any
) -> None:
    count = 300
    sockets = []
    for index in range(count):
        sock = connect(strict)
        if index % 3 == 0:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: a\r\n")  # an unfinished head
        elif index % 3 == 1:
            sock.sendall(request_head(strict, 5000) + b"{")  # an unfinished body
        sockets.append(sock)  # and a third that says nothing
    try:
        client: anthropic.Anthropic = sdk(base_url=strict.url, auth_token=strict.token())
        started = time.monotonic()
        message = client.messages.create(
            model="claude-haiku-5-5", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.content
        assert time.monotonic() - started < 2  # served at once, not after the slow ones

        with ThreadPoolExecutor(max_workers=32) as pool:
            results = list(pool.map(lambda s: closed_within(s, 6)[0], sockets))
        assert all(results), f"{results.count(False)} of {count} connections still open"
    finally:
        for sock in sockets:
            sock.close()


# --- connections and exchanges -------------------------------------------------------------------


def test_keep_alive_pipelining_head_and_continue(strict: RunningStack) -> None:
    with connect(strict) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\nGET /nowhere HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        assert read_response(sock)[0] == 200
        assert read_response(sock)[0] == 404  # pipelined, answered in order
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        sock.settimeout(2)
        head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert head.endswith(b"\r\n\r\n")
        body = orjson.dumps(
            {
                "model": "claude-haiku-5-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "x"}],
            }
        )
        sock.sendall(
            request_head(strict, len(body)).replace(
                b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"
            )
        )
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert read_response(sock)[0] == 200


def test_underscored_names_never_reach_the_application(strict: RunningStack) -> None:
    token = strict.token()
    raw = (
        b"GET /v1/models HTTP/1.1\r\nHost: a\r\nX_Api_Key: other-token\r\n"
        b"Anthropic-Version: 2023-06-01\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\n\r\n"
    )
    status, _, _ = exchange(strict, raw)
    assert status == 200
    upstream = strict.received("/v1/models")[-1]
    assert "x_api_key" not in {name.lower() for name in upstream.headers}


def test_a_caller_that_reads_nothing_is_dropped(strict: RunningStack) -> None:
    """A download nobody reads does not hold the gateway: after ``send_timeout`` it is cut."""
    headers = {
        "authorization": f"Bearer {strict.token()}",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "files-api-2025-04-14",
    }
    content = b"0123456789abcdef" * (2 * 1024 * 1024)  # 32 MB
    uploaded = httpx.post(
        f"{strict.url}/v1/files", headers=headers, files={"file": ("big.bin", content)}, timeout=60
    )
    assert uploaded.status_code == 200, uploaded.text
    with connect(strict, SO_RCVBUF=4096) as sock:
        head = f"GET /v1/files/{uploaded.json()['id']}/content HTTP/1.1\r\nHost: a\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode())
        time.sleep(3)  # read nothing: the gateway's writes stall
        sock.settimeout(5)
        received = 0
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    assert received < len(content)


def test_http_refusals_are_logged_without_secrets(
    strict: RunningStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ztgate.http")
    exchange(strict, b"GET /v1/models HTTP/1.1\r\nHost: a\r\nX-Big: " + b"s" * 80_000 + b"\r\n\r\n")
    refusals = [r for r in caplog.records if getattr(r, "event", None) == "http_refused"]
    assert refusals
    assert refusals[-1].status == 431  # type: ignore[attr-defined]
    assert "sss" not in caplog.text


# --- how many connections -------------------------------------------------------------------------


def test_connections_beyond_the_limit_are_answered_503() -> None:
    running = RunningStack(server={**LIMITS, "idle_timeout": "30s", "max_connections": 8})
    try:
        held = [connect(running) for _ in range(8)]
        time.sleep(0.2)
        with connect(running) as extra:
            status, headers, body = read_response(extra)
        assert status == 503
        assert_envelope(headers, orjson.loads(body), "overloaded_error")
        assert headers["retry-after"] == "1"
        for sock in held[:2]:
            sock.close()
        time.sleep(0.2)
        assert httpx.get(f"{running.url}/healthz").status_code == 200  # room again
        for sock in held[2:]:
            sock.close()
    finally:
        running.close()


def test_a_limit_beyond_the_open_file_limit_refuses_to_start() -> None:
    from ztgate.datapath.server import ConnectionLimitError, connection_limit
    from ztgate.devtools.stack import demo_config

    config = demo_config(
        "http://127.0.0.1:9", "http://127.0.0.1:9", server={"max_connections": 10**9}
    )
    with pytest.raises(ConnectionLimitError, match="ulimit"):
        connection_limit(config)
