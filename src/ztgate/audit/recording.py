"""A request's recording: what went upstream (after masking) and what the caller received.

Plain data; ``storage`` keeps it as one (optionally sealed) blob beside the audit chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Recording:
    request_id: str
    session_id: str
    principal: str
    started_at: float  # seconds since the epoch, UTC
    method: str
    path: str
    request_body: bytes = b""  # as sent upstream, after masking
    status: int | None = None
    content_type: str | None = None
    response_body: bytes | None = None  # a whole (JSON or raw) response as the caller got it
    # A stream, event by event as the caller got it: (seconds since the request started, bytes)
    events: list[tuple[float, bytes]] = field(default_factory=list)
    truncated: bool = False  # the size cap cut it: what is kept is a prefix, and says so
