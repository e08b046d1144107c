"""The simulator's server: the API areas composed into one aiohttp app behind a middleware that
records, authenticates and maps errors to the envelope; start/stop, and the command line."""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hmac
import signal
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson
from aiohttp import web

from ztgate.devtools.simulator import models
from ztgate.devtools.simulator.api import (
    DEFAULT_API_KEY,
    REQUEST_ID,
    ApiError,
    JSONObject,
    error_response,
    invalid,
    json_response,
    new_request_id,
)
from ztgate.devtools.simulator.batches import BatchesApi
from ztgate.devtools.simulator.files import FilesApi
from ztgate.devtools.simulator.messages import MessagesApi
from ztgate.devtools.simulator.scenarios import Enactor, header_scenario
from ztgate.devtools.simulator.skills import SkillsApi

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SHUTDOWN_GRACE: Final = 0.5  # seconds stop() lets in-flight handlers finish before cancelling
_MAX_BODY: Final = 512 * 1024 * 1024  # the Files API accepts uploads up to 500 MB


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as it reached the simulator, for tests to assert on."""

    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (raises if it is not JSON)."""
        return orjson.loads(self.body)


class UpstreamSimulator:
    """An in-process fake of api.anthropic.com; see the package docstring."""

    def __init__(self, api_key: str = DEFAULT_API_KEY) -> None:
        self.api_key = api_key
        # Keys of the organisation's other workspaces (one per team), also accepted.
        self.workspace_keys: set[str] = set()
        self.received: list[ReceivedRequest] = []
        self.cancelled: list[str] = []
        self.base_url = ""
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        # The enactor notes early leavers in our `cancelled`, which DELETE /_simulator/received
        # clears.
        self._enactor = Enactor(self.cancelled)
        self._messages = MessagesApi(self._enactor)
        self._batches = BatchesApi(lambda: self.base_url)
        self._files = FilesApi()
        self._skills = SkillsApi()

    # ----------------------------------------------------------------- lifecycle

    def app(self) -> web.Application:
        """The aiohttp application (built once), for callers that run it themselves."""
        if self._app is None:
            self._app = self._build_app()
        return self._app

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, *, tls: tuple[str, str] | None = None
    ) -> str:
        """Listen on host:port (0 picks a free port) and return the base URL; with ``tls``
        (certificate and key files), over HTTPS like the real API."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        self._enactor.restart()
        # handler_cancellation: a client that goes away cancels its handler at once, so a
        # hanging or paused stream notices without waiting for its next write.
        runner = web.AppRunner(
            self.app(), handler_cancellation=True, shutdown_timeout=_SHUTDOWN_GRACE, access_log=None
        )
        await runner.setup()
        context = None
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        self._runner = runner
        scheme = "https" if context is not None else "http"
        self.base_url = f"{scheme}://{_url_host(host)}:{runner.addresses[0][1]}"
        return self.base_url

    async def stop(self) -> None:
        """Stop listening; hanging requests are dropped, streams cut after a short grace."""
        if self._runner is None:
            return
        self._enactor.stop()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=_MAX_BODY)
        app.on_response_prepare.append(self._stamp_request_id)
        app.add_routes(
            [
                *self._messages.routes(),
                *models.routes(),
                *self._batches.routes(),
                *self._files.routes(),
                *self._skills.routes(),
                web.get("/_simulator/received", self._show_received),
                web.delete("/_simulator/received", self._clear_received),
            ]
        )
        return app

    # ----------------------------------------------------------------- cross-cutting

    @web.middleware
    async def _middleware(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Record, authenticate and apply header scenarios to /v1; map errors to the envelope."""
        request_id = new_request_id()
        request[REQUEST_ID] = request_id
        try:
            if request.path == "/v1" or request.path.startswith("/v1/"):
                await self._record(request)
                self._authenticate(request)
                dropped = await self._enactor.enact_blocking(request, header_scenario(request))
                if dropped is not None:
                    return dropped
            return await handler(request)
        except ApiError as exc:
            return error_response(exc, request_id)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            unknown = f"Not found: {request.method} {request.path}"
            return error_response(ApiError(404, "not_found_error", unknown), request_id)
        except web.HTTPRequestEntityTooLarge:
            too_large = ApiError(413, "request_too_large", "Request exceeds the maximum size")
            return error_response(too_large, request_id)

    @staticmethod
    async def _stamp_request_id(request: web.Request, response: web.StreamResponse) -> None:
        """Every answer, streamed or not, carries the `request-id` header."""
        response.headers.setdefault("request-id", request.get(REQUEST_ID, "req_sim_unknown"))

    async def _record(self, request: web.Request) -> None:
        headers: dict[str, str] = {}
        for name, value in request.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        received = ReceivedRequest(
            request.method, request.path, request.query_string, headers, await request.read()
        )
        self.received.append(received)

    def _authenticate(self, request: web.Request) -> None:
        """Accept the key as `x-api-key` or a Bearer token, then require `anthropic-version`."""
        presented: list[str] = []
        if "x-api-key" in request.headers:
            presented.append(request.headers["x-api-key"])
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            presented.append(token.strip())
        if not presented:
            raise ApiError(401, "authentication_error", "x-api-key header is required")
        accepted = [k.encode() for k in (self.api_key, *self.workspace_keys)]
        if not any(
            hmac.compare_digest(key.encode(), expected)
            for key in presented
            for expected in accepted
        ):
            raise ApiError(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            raise invalid("anthropic-version: header is required")

    # ----------------------------------------------------------------- control endpoints

    async def _show_received(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {
                "received": [_received_json(item) for item in self.received],
                "cancelled": list(self.cancelled),
            }
        )

    async def _clear_received(self, request: web.Request) -> web.StreamResponse:
        self.received.clear()
        self.cancelled.clear()
        return web.Response(status=204)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _received_json(received: ReceivedRequest) -> JSONObject:
    try:
        body, encoding = received.body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(received.body).decode(), "base64"
    return {
        "method": received.method,
        "path": received.path,
        "query_string": received.query_string,
        "headers": received.headers,
        "body": body,
        "body_encoding": encoding,
    }


# --------------------------------------------------------------------------- command line


async def _serve(host: str, port: int, api_key: str) -> None:
    simulator = UpstreamSimulator(api_key)
    print(await simulator.start(host, port), flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopped.set)
    try:
        await stopped.wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the simulator until killed, printing its base URL first."""
    parser = argparse.ArgumentParser(description="A local stand-in for the Claude API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8788)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the key clients must send")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.api_key))
