"""The interfaces of the pipeline's pluggable stages, which ``datapath/pipeline.py`` calls in
this order (parsing, transforming, forwarding and relaying are the data path's own)::

    authenticate -> inspect -> judge -> decide -> protect -> admit (quotas) -> review
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
from ztgate.core.types import Headers


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

    def guardrail_summary(self, ctx: RequestContext) -> str:
        """What the guardrails found in the request, for the caller refused because of it
        (``""`` when nothing reached the default threshold)."""
        ...

    def redacted(self, text: str) -> str | None:
        """``text`` with every finding redacted, for people who may see no value at all
        (approvers, notifications); None when nothing can be inspected."""
        ...


class Judge(Protocol):
    async def weigh(self, ctx: RequestContext) -> None:
        """Weigh what the guardrails could not settle (before policy decides): add verdicts
        to ``ctx.signals``, refuse, or set ``ctx.forced_review``."""
        ...


class Decider(Protocol):
    def decide(self, ctx: RequestContext) -> tuple[Decision, Sequence[PolicyRequest]]:
        """The decision, and the plain facts it was made on (kept for the audit record)."""
        ...


class HeldResponse(Protocol):
    """What the data path offers a request held for review: a stream may begin at once and
    keep the caller listening while people decide."""

    async def begin(self) -> None:
        """Send a streamed request's response headers now."""
        ...

    async def ping(self) -> None: ...


class Reviewer(Protocol):
    async def hold(self, ctx: RequestContext, held: HeldResponse) -> None:
        """Return when the request may run (no review needed, a grant covers it, or people
        approved it); raise a GatewayError when it may not, or not yet."""
        ...


class Recorder(Protocol):
    async def request_started(self, ctx: RequestContext) -> None: ...

    async def request_finished(self, ctx: RequestContext) -> None: ...


class Observer(Protocol):
    """Watches requests for operators (metrics, traces); never changes what happens to them.
    Called on the event loop; must not block or raise."""

    def request_received(self, ctx: RequestContext) -> None:
        """Before the first stage (a trace begins here, in the caller's trace if it sent one)."""
        ...

    def forwarding(self, ctx: RequestContext) -> Headers:
        """The request is recorded and goes upstream now: headers to add to it (a trace
        context, when configured)."""
        ...

    def request_finished(self, ctx: RequestContext) -> None:
        """After the last stage: the answer is sent and the audit has it."""
        ...
