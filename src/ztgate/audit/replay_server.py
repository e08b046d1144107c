"""A recorded session served back as an Anthropic-API upstream, so a client can be re-run
against exactly the answers it got the first time.

The n-th request for a method and path gets the n-th response recorded for them in the
session: whole bodies byte for byte, streams event by event with their recorded bytes (and,
with ``timing``, at their recorded offsets). Nothing is checked about the caller: this serves
what is already in the recording, to whoever the operator lets reach it (loopback by default).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson

from ztgate.audit.recording import Recording
from ztgate.core.errors import error_body, error_event
from ztgate.core.types import Headers, Message, Receive, Scope, Send

Sleep = Callable[[float], Awaitable[None]]

_JSON = b"application/json"
_SSE = b"text/event-stream"
TRUNCATED_MESSAGE = "the recording of this response was cut at its size limit; the rest is unknown"


@dataclass(frozen=True, slots=True)
class Frame:
    """Send ``data`` ``delay`` seconds after the previous frame."""

    delay: float
    data: bytes


@dataclass(frozen=True, slots=True)
class Reply:
    """What to answer for one request: status, headers and the body as timed frames."""

    status: int
    headers: Headers
    frames: tuple[Frame, ...]


def route_key(method: str, path: str) -> tuple[str, str]:
    """Requests are matched on method and path; the query string (``?beta=true``) is not part
    of what was asked for."""
    return method.upper(), path.split("?", 1)[0]


class ReplayBook:
    """The session's recorded responses, queued per method and path in the order they were
    recorded; each request takes the next one."""

    def __init__(self, session_id: str, recordings: Sequence[Recording]) -> None:
        self.session_id = session_id
        self._queues: dict[tuple[str, str], deque[Recording]] = defaultdict(deque)
        self._totals: dict[tuple[str, str], int] = defaultdict(int)
        for recording in sorted(recordings, key=lambda r: r.started_at):
            key = route_key(recording.method, recording.path)
            self._queues[key].append(recording)
            self._totals[key] += 1

    def take(self, method: str, path: str) -> tuple[Recording, int, int] | None:
        """The next recording for this request, its number and how many there are; None when
        every recorded response for it has been served."""
        key = route_key(method, path)
        queue = self._queues.get(key)
        if not queue:
            return None
        total = self._totals[key]
        return queue.popleft(), total - len(queue), total

    def remaining(self) -> int:
        return sum(len(q) for q in self._queues.values())


def reply_for(
    recording: Recording, number: int, total: int, *, timing: bool, speed: float = 1.0
) -> Reply:
    """The recorded response as it is to be sent again."""
    headers: Headers = [
        (b"request-id", recording.request_id.encode()),
        (b"ztgate-replay", f"{number}/{total}".encode()),
    ]
    if recording.status is None:
        message = (
            f"request {recording.request_id} has no recorded response: the gateway stopped "
            "before it ended, so the outcome is unknown"
        )
        return _error_reply(502, "api_error", message, recording.request_id, headers)
    if recording.events:
        frames = []
        previous = 0.0
        for offset, raw in recording.events:
            delay = max(offset - previous, 0.0) / speed if timing else 0.0
            frames.append(Frame(delay, raw))
            previous = offset
        if recording.truncated:
            frames.append(
                Frame(0.0, error_event("api_error", TRUNCATED_MESSAGE, recording.request_id))
            )
        content_type = (recording.content_type or "text/event-stream").encode("latin-1")
        headers += [(b"content-type", content_type), (b"cache-control", b"no-cache")]
        return Reply(recording.status, headers, tuple(frames))
    body = recording.response_body or b""
    if recording.truncated:
        return _error_reply(502, "api_error", TRUNCATED_MESSAGE, recording.request_id, headers)
    if recording.content_type is not None:
        headers.append((b"content-type", recording.content_type.encode("latin-1")))
    headers.append((b"content-length", str(len(body)).encode()))
    return Reply(recording.status, headers, (Frame(0.0, body),))


def exhausted_reply(book: ReplayBook, method: str, path: str) -> Reply:
    message = (
        f"session {book.session_id} has no more recorded responses for {method} "
        f"{path.split('?', 1)[0]}"
    )
    return _error_reply(404, "not_found_error", message, "req_ztg_replay", [])


def _error_reply(
    status: int, error_type: str, message: str, request_id: str, headers: Headers
) -> Reply:
    body = error_body(error_type, message, request_id)
    headers = [*headers, (b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
    return Reply(status, headers, (Frame(0.0, body),))


def same_request(recording: Recording, body: bytes) -> bool:
    """Whether the client asked the same thing as recorded (as JSON, so that key order and
    spacing do not count), for the ``ztgate-replay-request`` header."""
    if body == recording.request_body:
        return True
    try:
        return bool(orjson.loads(body) == orjson.loads(recording.request_body))
    except orjson.JSONDecodeError:
        return False


class ReplayUpstream:
    """The ASGI app. One request is answered at a time per path, in arrival order."""

    def __init__(
        self,
        book: ReplayBook,
        *,
        timing: bool = False,
        speed: float = 1.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.book = book
        self._timing = timing
        self._speed = speed
        self._sleep = sleep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        body = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        taken = self.book.take(method, path)
        if taken is None:
            reply = exhausted_reply(self.book, method, path)
        else:
            recording, number, total = taken
            reply = reply_for(recording, number, total, timing=self._timing, speed=self._speed)
            verdict = b"same" if same_request(recording, body) else b"different"
            reply.headers.append((b"ztgate-replay-request", verdict))
        await self._send(reply, send)

    async def _send(self, reply: Reply, send: Send) -> None:
        start: Message = {"type": "http.response.start", "status": reply.status}
        start["headers"] = reply.headers
        await send(start)
        for frame in reply.frames:
            if frame.delay > 0:
                await self._sleep(frame.delay)
            await send({"type": "http.response.body", "body": frame.data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
