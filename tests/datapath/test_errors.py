"""Every error ztgate produces has the Anthropic envelope, the right status, and no secrets."""

from __future__ import annotations

import gzip
import socketserver
import threading
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import anthropic
import httpx2 as httpx
import orjson
import pytest

from tests.stackrunner import RunningStack

MODEL = "claude-sonnet-5-5"
HELLO = [{"role": "user", "content": "hi"}]


async def call(
    stack: RunningStack,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    token: str | None = "",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    all_headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
    if token is not None:
        all_headers["authorization"] = f"Bearer {token or stack.token()}"
    all_headers.update(headers or {})
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, stack.url + path, data=body, headers=all_headers) as response,
    ):
        raw = await response.read()
        document = orjson.loads(raw) if raw else None
        return response.status, {k.lower(): v for k, v in response.headers.items()}, document


def assert_envelope(document: Any, error_type: str, headers: dict[str, str]) -> None:
    assert document["type"] == "error"
    assert document["error"]["type"] == error_type
    assert document["error"]["message"]
    assert document["request_id"].startswith("req_ztg_")
    assert headers["request-id"] == document["request_id"]


async def test_malformed_json_is_400(stack: RunningStack) -> None:
    status, headers, doc = await call(stack, "POST", "/v1/messages", body=b'{"model": ')
    assert status == 400
    assert_envelope(doc, "invalid_request_error", headers)
    assert "not valid JSON" in doc["error"]["message"]


async def test_non_object_json_is_400(stack: RunningStack) -> None:
    status, headers, doc = await call(stack, "POST", "/v1/messages", body=b"[1, 2]")
    assert status == 400
    assert_envelope(doc, "invalid_request_error", headers)


async def test_unknown_path_is_404_after_authentication(stack: RunningStack) -> None:
    status, headers, doc = await call(stack, "POST", "/v1/agents", body=b"{}")
    assert status == 404
    assert_envelope(doc, "not_found_error", headers)
    status, headers, doc = await call(stack, "POST", "/v1/agents", body=b"{}", token=None)
    assert status == 401


async def test_paths_outside_v1_need_no_token_and_leak_nothing(stack: RunningStack) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.head(stack.url + "/api/hello") as response:
            assert response.status == 404
        async with http.get(stack.url + "/healthz") as response:
            assert response.status == 200
        async with http.get(stack.url + "/readyz") as response:
            assert response.status == 200
            assert await response.json() == {"status": "ready"}  # nothing of the configuration


@pytest.mark.parametrize(
    ("model", "status", "error_type"),
    [
        ("sim-error-429", 429, "rate_limit_error"),
        ("sim-error-529", 529, "overloaded_error"),
        ("sim-error-500", 500, "api_error"),
    ],
)
async def test_upstream_errors_pass_through_unchanged(
    stack: RunningStack, model: str, status: int, error_type: str
) -> None:
    body = orjson.dumps({"model": model, "max_tokens": 10, "messages": HELLO})
    got, headers, doc = await call(stack, "POST", "/v1/messages", body=body)
    assert got == status
    assert doc["error"]["type"] == error_type
    assert doc["request_id"].startswith("req_sim")  # the upstream's own body, untouched
    if status == 429:
        assert headers["retry-after"] == "1"


@pytest.fixture(scope="module")
def tight_stack() -> Iterator[RunningStack]:
    """A gateway with small limits: 4 KiB bodies, a 1 s upstream timeout."""
    running = RunningStack(
        server={"max_json_body": "4KiB", "max_upload_body": "8KiB"}, upstream={"timeout": "1s"}
    )
    yield running
    running.close()


async def test_body_over_the_limit_is_413_and_not_forwarded(tight_stack: RunningStack) -> None:
    before = len(tight_stack.received())
    big = orjson.dumps(
        {"model": MODEL, "max_tokens": 10, "messages": [{"role": "user", "content": "x" * 5000}]}
    )
    status, headers, doc = await call(tight_stack, "POST", "/v1/messages", body=big)
    assert status == 413
    assert_envelope(doc, "request_too_large", headers)
    assert len(tight_stack.received()) == before


async def test_chunked_body_over_the_limit_is_413(tight_stack: RunningStack) -> None:
    async def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 1024

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            tight_stack.url + "/v1/messages",
            data=chunks(),
            headers={"authorization": f"Bearer {tight_stack.token()}"},
        ) as response,
    ):
        assert response.status == 413


def test_upload_over_the_limit_is_413(
    tight_stack: RunningStack, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    client = sdk(base_url=tight_stack.url, auth_token=tight_stack.token())
    with pytest.raises(anthropic.APIStatusError) as info:
        client.beta.files.upload(file=("big.bin", b"\0" * 20000, "application/octet-stream"))
    assert info.value.status_code == 413


async def test_upstream_timeout_is_504(tight_stack: RunningStack) -> None:
    body = orjson.dumps({"model": "sim-hang", "max_tokens": 10, "messages": HELLO})
    status, headers, doc = await call(tight_stack, "POST", "/v1/messages", body=body)
    assert status == 504
    assert_envelope(doc, "timeout_error", headers)


async def test_unreachable_upstream_is_502() -> None:
    running = RunningStack(upstream={"url": "http://127.0.0.1:9"})
    try:
        body = orjson.dumps({"model": MODEL, "max_tokens": 10, "messages": HELLO})
        status, headers, doc = await call(running, "POST", "/v1/messages", body=body)
    finally:
        running.close()
    assert status == 502
    assert_envelope(doc, "api_error", headers)
    assert "sk-ant" not in doc["error"]["message"]


class _TruncatingUpstream(socketserver.BaseRequestHandler):
    """Promises 1000 bytes of a download, sends 10, and hangs up."""

    def handle(self) -> None:
        self.request.recv(65536)
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
            b"content-length: 1000\r\n\r\n0123456789"
        )


def test_download_broken_by_the_upstream_is_not_passed_off_as_complete() -> None:
    upstream = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _TruncatingUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    running = RunningStack(upstream={"url": f"http://127.0.0.1:{upstream.server_address[1]}"})
    try:
        with pytest.raises(httpx.TransportError):
            httpx.get(
                running.url + "/v1/files/file_1/content",
                headers={"authorization": f"Bearer {running.token()}"},
                timeout=10,
            )
    finally:
        running.close()
        upstream.shutdown()
        upstream.server_close()


class _GzipUpstream(socketserver.BaseRequestHandler):
    """Compresses its JSON answer although ztgate asked for identity."""

    def handle(self) -> None:
        self.request.recv(65536)
        body = gzip.compress(b'{"type":"message","content":[]}')
        self.request.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


def test_compressed_json_that_cannot_be_inspected_is_refused() -> None:
    upstream = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _GzipUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    running = RunningStack(upstream={"url": f"http://127.0.0.1:{upstream.server_address[1]}"})
    try:
        response = httpx.get(
            running.url + "/v1/models",
            headers={"authorization": f"Bearer {running.token()}"},
            timeout=10,
        )
    finally:
        running.close()
        upstream.shutdown()
        upstream.server_close()
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"
