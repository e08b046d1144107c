"""The decide stage: the live policy applied to the request's plain facts."""

from __future__ import annotations

from collections.abc import Sequence

from ztgate.core.context import RequestContext
from ztgate.core.decision import Decision, PolicyRequest
from ztgate.policy.request import from_context
from ztgate.policy.source import PolicySource


class PolicyDecider:
    def __init__(self, source: PolicySource) -> None:
        self.source = source

    def decide(self, ctx: RequestContext) -> tuple[Decision, Sequence[PolicyRequest]]:
        requests = from_context(ctx)
        return self.source.current.decide(requests), requests
