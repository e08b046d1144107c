"""The Messages API: create a message, as JSON or streamed as SSE, under the request's scenario;
and count a request's tokens."""

from __future__ import annotations

import asyncio
from typing import Final

import orjson
from aiohttp import web

from ztgate.core.sse import frame
from ztgate.devtools.simulator.api import (
    DELTA_CHARS_HEADER,
    REQUEST_ID,
    ApiError,
    JSONObject,
    error_body,
    json_response,
)
from ztgate.devtools.simulator.bodies import json_object, validate_message_params
from ztgate.devtools.simulator.containers import Containers
from ztgate.devtools.simulator.replies import (
    build_message,
    input_token_estimate,
    scripted_reply,
    stream_events,
    until_deltas,
)
from ztgate.devtools.simulator.scenarios import (
    SCENARIO_ERRORS,
    Enactor,
    Scenario,
    drop_connection,
    request_scenario,
)

_EVENT_DELAY: Final = 0.05  # seconds between events of the slow scenarios
_MIDSTREAM_DELTAS: Final = 2  # deltas sent before a mid-stream failure


def _sse_frame(name: str, data: JSONObject) -> bytes:
    """Frame one event exactly as the API does: `event:` line, `data:` line, blank line."""
    return frame(name, orjson.dumps(data))


def _midstream_failure() -> ApiError:
    """What sim-fail-midstream fails with: the 529 overload, as JSON or as the SSE `error`."""
    return ApiError(*SCENARIO_ERRORS[Scenario.ERROR_529])


class MessagesApi:
    """Messages and token counting; the scenarios are played by the server's `enactor`."""

    def __init__(self, enactor: Enactor) -> None:
        self._enactor = enactor
        self._containers = Containers()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/messages", self._create_message),
            web.post("/v1/messages/count_tokens", self._count_tokens),
        ]

    async def _create_message(self, request: web.Request) -> web.StreamResponse:
        body = await json_object(request)
        validate_message_params(body)
        scenario = request_scenario(request, body["model"])
        dropped = await self._enactor.enact_blocking(request, scenario)
        if dropped is not None:
            return dropped
        if not body.get("stream"):
            if scenario is Scenario.DISCONNECT_MIDSTREAM:
                return drop_connection(request)
            if scenario is Scenario.FAIL_MIDSTREAM:
                raise _midstream_failure()
            message = build_message(body, scenario, scripted_reply(request))
            return json_response(self._containers.with_container(message, body))
        message = self._containers.with_container(
            build_message(body, scenario, scripted_reply(request)), body
        )
        return await self._stream(request, message, scenario)

    async def _stream(
        self, request: web.Request, message: JSONObject, scenario: Scenario | None
    ) -> web.StreamResponse:
        """Send the message as SSE, one write (and so one flush) per event."""
        slow = scenario in (Scenario.SLOW, Scenario.SLOW_LONG)
        chars = request.headers.get(DELTA_CHARS_HEADER)
        events = stream_events(
            message,
            ping_between_deltas=scenario is Scenario.SLOW,
            delta_chars=int(chars) if chars and chars.isdigit() and int(chars) > 0 else None,
        )
        if scenario in (Scenario.FAIL_MIDSTREAM, Scenario.DISCONNECT_MIDSTREAM):
            events = until_deltas(events, _MIDSTREAM_DELTAS)
        if scenario is Scenario.FAIL_MIDSTREAM:
            failure = _midstream_failure()
            events.append(
                ("error", error_body(failure.error_type, failure.message, request[REQUEST_ID]))
            )
        if scenario is Scenario.NO_STOP:
            events = events[:-2]
        response = web.StreamResponse(
            headers={
                "content-type": "text/event-stream; charset=utf-8",
                "cache-control": "no-cache",
            }
        )
        try:
            await response.prepare(request)
            for name, data in events:
                if slow:
                    await asyncio.sleep(_EVENT_DELAY)
                await response.write(_sse_frame(name, data))
            if scenario is Scenario.DISCONNECT_MIDSTREAM:
                return drop_connection(request, response)
            await response.write_eof()
        except ConnectionError:
            self._enactor.note_cancelled(request)
        except asyncio.CancelledError:
            self._enactor.note_cancelled(request)
            raise
        return response

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await json_object(request)
        validate_message_params(body, require_max_tokens=False)
        scenario = request_scenario(request, body["model"])
        dropped = await self._enactor.enact_blocking(request, scenario)
        if dropped is not None:
            return dropped
        return json_response({"input_tokens": input_token_estimate(body)})
