"""What a response says about itself: token usage and container ids. Pure functions.

Used to correct quota estimates and to remember which identity created which container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ztgate.core.sse import SSEEvent


@dataclass(slots=True)
class ResponseFacts:
    input_tokens: int | None = None
    output_tokens: int | None = None
    container_id: str | None = None

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0) + (self.output_tokens or 0)

    def _take_usage(self, usage: object) -> None:
        if not isinstance(usage, dict):
            return
        inputs = [
            usage.get(k)
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        ]
        counted = [v for v in inputs if isinstance(v, int)]
        if counted:
            self.input_tokens = sum(counted)
        if isinstance(usage.get("output_tokens"), int):
            self.output_tokens = usage["output_tokens"]  # cumulative in message_delta

    def _take_container(self, container: object) -> None:
        if isinstance(container, dict) and isinstance(container.get("id"), str):
            self.container_id = container["id"]

    def read_message(self, message: Any) -> None:
        if isinstance(message, dict):
            self._take_usage(message.get("usage"))
            self._take_container(message.get("container"))

    def read_body(self, body: bytes) -> None:
        """A JSON message response."""
        try:
            self.read_message(orjson.loads(body))
        except orjson.JSONDecodeError:
            return

    def read_event(self, event: SSEEvent) -> None:
        """``message_start`` and ``message_delta`` carry usage and the container; others don't."""
        if event.event not in ("message_start", "message_delta"):
            return
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(data, dict):
            return
        if event.event == "message_start":
            self.read_message(data.get("message"))
        else:
            self._take_usage(data.get("usage"))
            delta = data.get("delta")
            if isinstance(delta, dict):
                self._take_container(delta.get("container"))
