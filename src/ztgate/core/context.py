"""The one object a request carries through every stage, and the plain types it is made of."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from ztgate.core.decision import Decision, PolicyRequest
from ztgate.core.facts import ResponseFacts
from ztgate.core.findings import FindingRecord
from ztgate.core.guardrails import Signal
from ztgate.core.identity import Identity
from ztgate.core.reviews import ReviewRequirement
from ztgate.core.texts import BodyText
from ztgate.core.types import Headers


def new_request_id() -> str:
    """The id of one answer: in its ``request-id`` header, its error body, the log, the audit."""
    return "req_ztg_" + os.urandom(12).hex()


class Endpoint(StrEnum):
    """Endpoint classes: the unit that policy names."""

    MESSAGES = "messages"
    COUNT_TOKENS = "count_tokens"
    MODELS = "models"
    BATCHES = "batches"
    FILES = "files"
    SKILLS = "skills"


class Body(StrEnum):
    """How a route's request body is handled."""

    JSON = "json"  # read whole (bounded), parsed, inspected
    NONE = "none"  # the endpoint takes no body: any byte of one is refused
    UPLOAD = "upload"  # multipart, streamed upstream under its own bound


@dataclass(frozen=True, slots=True)
class Route:
    endpoint: Endpoint
    action: str
    body: Body


class StreamEnd(StrEnum):
    """How a streamed response ended, for the log and the audit record."""

    COMPLETE = "complete"
    UPSTREAM_ERROR_EVENT = "upstream_error_event"
    UPSTREAM_BROKEN = "upstream_broken"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    UPSTREAM_INCOMPLETE = "upstream_incomplete"
    CLIENT_DISCONNECTED = "client_disconnected"
    WITHHELD = "withheld"  # data protection stopped the response (a blocked finding, a failure)
    GATEWAY_SHUTDOWN = "gateway_shutdown"  # the graceful window ended before the answer did


class ResponseTap(Protocol):
    """Sees the response as the caller receives it, as it is sent (the recording does)."""

    def start(self, status: int, headers: Headers) -> None: ...

    def feed(self, data: bytes) -> None:
        """Bytes of a whole (not streamed) body."""
        ...

    def feed_events(self, frames: list[bytes]) -> None:
        """Whole SSE events of a stream, each one frame."""
        ...


@dataclass(slots=True)
class RequestContext:
    """Everything known about one request, filled in stage by stage, never holding a secret."""

    request_id: str
    method: str
    path: str
    query_string: bytes
    headers: Headers
    client: str | None
    scheme: str
    public_url: str | None = None
    # What the caller's verified TLS certificate says of it (``CN=...``, ``URI:spiffe://...``).
    client_certificate: tuple[str, ...] = ()
    received_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    route: Route | None = None
    identity: Identity | None = None
    body: bytes = b""  # a JSON body: what is forwarded, re-encoded from ``payload``
    payload: dict[str, Any] | None = None
    texts: BodyText | None = None  # every string of ``payload`` that inspection reads
    forwarded_query: bytes = b""  # the query string as checked and re-encoded
    forwarded_headers: Headers = field(default_factory=list)  # the caller's, cleaned
    decision: Decision | None = None
    status: int | None = None
    error_type: str | None = None
    upstream_status: int | None = None
    upstream_request_id: str | None = None
    upstream_key: str | None = None  # which Anthropic key (by its team's name) went upstream
    upstream_started: float | None = None
    upstream_first_byte: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    stream_end: StreamEnd | None = None
    facts: ResponseFacts = field(default_factory=ResponseFacts)
    findings: list[FindingRecord] = field(default_factory=list)
    # What the guardrail checks said, and the path of the text each said it of.
    signals: list[tuple[str, Signal]] = field(default_factory=list)
    response_checks: dict[str, int] = field(default_factory=dict)  # checks found in the answer
    # A review the guardrails ask for whatever policy says (their judge could not decide).
    forced_review: ReviewRequirement | None = None
    masked: dict[str, int] = field(default_factory=dict)  # detector -> actions taken on it
    # The inspector's own notes between its stages: opaque to every other stage.
    inspection: object | None = None
    policy_input: Sequence[PolicyRequest] = ()  # what the decision was made on
    capture: ResponseTap | None = None  # set when the response is being recorded
    review_id: str | None = None  # the review (or the approval's grant) this request waited on
    audited: bool = False  # the request's audit event is committed
    # When each stage the request passed ended (``time.perf_counter``), in order: what the
    # metrics and traces make of a request's time (``lap``).
    laps: list[tuple[str, float]] = field(default_factory=list)
    # The tracer's own notes (the request's span), opaque to every other stage.
    trace: object | None = None

    @property
    def model(self) -> str | None:
        model = self.payload.get("model") if self.payload else None
        return model if isinstance(model, str) else None

    @property
    def streaming(self) -> bool:
        return bool(self.payload and self.payload.get("stream") is True)

    @property
    def base_url(self) -> str:
        """Where callers reach ztgate: the configured public URL, else this request's host."""
        if self.public_url:
            return self.public_url
        return f"{self.scheme}://{(self.header(b'host') or b'localhost').decode('latin-1')}"

    def lap(self, stage: str) -> None:
        """Mark the end of ``stage``: it took the time since the previous mark (or the start)."""
        self.laps.append((stage, time.perf_counter()))

    def stage_durations(self) -> list[tuple[str, float, float]]:
        """Each stage passed as ``(stage, start, end)`` in ``time.perf_counter`` seconds; the
        upstream's answer (to its first byte) and the relay after it when the request got
        that far."""
        out: list[tuple[str, float, float]] = []
        start = self.started
        for stage, end in self.laps:
            out.append((stage, start, end))
            start = end
        if self.upstream_started is not None and self.upstream_first_byte is not None:
            out.append(("upstream", self.upstream_started, self.upstream_first_byte))
        return out

    def finding_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.detector] = counts.get(finding.detector, 0) + 1
        return counts

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None
