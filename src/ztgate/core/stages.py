"""The interfaces of the pipeline's pluggable stages, which ``datapath/pipeline.py`` calls in
this order (parsing, transforming, forwarding and relaying are the data path's own)::

    authenticate -> inspect -> decide -> protect -> review -> admit (quotas)
        -> record (started) -> relay (through the response filter) -> record (finished)

Each stage either lets the request go on, changes the context, or raises a
:class:`~ztgate.core.errors.GatewayError` that ends it with an Anthropic-shaped answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ztgate.core.context import RequestContext
from ztgate.core.decision import Decision, PolicyRequest
from ztgate.core.identity import Identity
from ztgate.core.sse import SSEEvent


class Authenticator(Protocol):
    async def verify(self, token: str) -> Identity: ...


class ResponseFilter(Protocol):
    """Sees the response on its way back; returns what the caller receives instead."""

    def event(self, event: SSEEvent) -> list[bytes]:
        """The whole SSE events the caller gets for this one (none, it, or others)."""
        ...

    def body(self, body: bytes) -> bytes: ...


class Inspector(Protocol):
    def inspect_request(self, ctx: RequestContext) -> None:
        """Find what the request carries (before policy decides, which reads the findings)."""
        ...

    def protect_request(self, ctx: RequestContext) -> None:
        """Apply the decision's obligations to the request: mask, or refuse with ``block``."""
        ...

    def response_filter(self, ctx: RequestContext) -> ResponseFilter: ...


class Decider(Protocol):
    def decide(self, ctx: RequestContext) -> tuple[Decision, Sequence[PolicyRequest]]:
        """The decision, and the plain facts it was made on (kept for the audit record)."""
        ...


class Reviewer(Protocol):
    async def hold(self, ctx: RequestContext) -> None: ...


class Recorder(Protocol):
    async def request_started(self, ctx: RequestContext) -> None: ...

    async def request_finished(self, ctx: RequestContext) -> None: ...
