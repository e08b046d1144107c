"""Named failure scenarios: how a request picks one, their errors, and playing the ones that
pre-empt any answer (an error status, a hang, a dropped connection)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from enum import StrEnum
from typing import Final

from aiohttp import web

from ztgate.devtools.simulator.api import REQUEST_ID, SCENARIO_HEADER, ApiError, invalid


class Scenario(StrEnum):
    """Failure modes, chosen by the `model` name or the `x-simulator-scenario` header."""

    ERROR_429 = "sim-error-429"
    ERROR_529 = "sim-error-529"
    ERROR_500 = "sim-error-500"
    SLOW = "sim-slow"
    SLOW_LONG = "sim-slow-long"
    FAIL_MIDSTREAM = "sim-fail-midstream"
    DISCONNECT_MIDSTREAM = "sim-disconnect-midstream"
    HANG = "sim-hang"
    NO_STOP = "sim-no-stop"
    ECHO_KEY = "sim-echo-key"  # an error whose message and a header repeat the key received


# status, error type, message, extra headers
SCENARIO_ERRORS: Final[Mapping[Scenario, tuple[int, str, str, Mapping[str, str]]]] = {
    Scenario.ERROR_429: (
        429,
        "rate_limit_error",
        "Number of requests has exceeded your rate limit (simulated).",
        {"retry-after": "1"},
    ),
    Scenario.ERROR_529: (529, "overloaded_error", "Overloaded", {}),
    Scenario.ERROR_500: (500, "api_error", "Internal server error", {}),
}


def scenario_error(scenario: Scenario | None) -> ApiError | None:
    """A fresh error for an error scenario (exceptions are not reusable: they keep tracebacks)."""
    spec = SCENARIO_ERRORS.get(scenario) if scenario is not None else None
    return ApiError(*spec) if spec is not None else None


def model_scenario(model: str) -> Scenario | None:
    try:
        return Scenario(model)
    except ValueError:
        return None


def header_scenario(request: web.Request) -> Scenario | None:
    value = request.headers.get(SCENARIO_HEADER)
    if value is None:
        return None
    try:
        return Scenario(value)
    except ValueError:
        raise invalid(f"{SCENARIO_HEADER}: unknown scenario {value!r}") from None


def request_scenario(request: web.Request, model: str) -> Scenario | None:
    """The header wins; otherwise a model named after a scenario selects it."""
    header = header_scenario(request)
    if header is not None:
        return header
    return model_scenario(model)


def drop_connection(
    request: web.Request, response: web.StreamResponse | None = None
) -> web.StreamResponse:
    """Close the TCP connection without finishing the answer, like a crashed upstream.

    aiohttp then fails to write the (unsent or unfinished) response and lets it go quietly.
    """
    if request.transport is not None:
        request.transport.close()
    return response if response is not None else web.Response(status=502)


class Enactor:
    """Plays the scenarios, with what they share with the server: whether it is stopping (which
    ends a hang) and the list of requests whose clients left early."""

    def __init__(self, cancelled: list[str]) -> None:
        self._cancelled = cancelled
        self._stopping = asyncio.Event()

    def restart(self) -> None:
        """A fresh stop signal for a new run of the server."""
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        """The server is stopping: hangs end, and clients that go away are not noted."""
        self._stopping.set()

    async def enact_blocking(
        self, request: web.Request, scenario: Scenario | None
    ) -> web.StreamResponse | None:
        """Scenarios that pre-empt any answer: raise its error, or hang until stopped."""
        failure = scenario_error(scenario)
        if failure is not None:
            raise failure
        if scenario is Scenario.ECHO_KEY:
            key = request.headers.get("x-api-key", "")
            raise ApiError(401, "authentication_error", f"invalid x-api-key {key}", {"x-echo": key})
        if scenario is not Scenario.HANG:
            return None
        try:
            await self._stopping.wait()
        except asyncio.CancelledError:
            self.note_cancelled(request)
            raise
        return drop_connection(request)

    def note_cancelled(self, request: web.Request) -> None:
        """Remember a client that left early; a shutdown of our own is not one."""
        if not self._stopping.is_set():
            self._cancelled.append(request[REQUEST_ID])
