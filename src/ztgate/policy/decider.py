"""The decide stage: the live policy applied to the request's plain facts."""

from __future__ import annotations

from ztgate.context import RequestContext
from ztgate.policy.decision import Decision
from ztgate.policy.request import from_context
from ztgate.policy.source import PolicySource


class PolicyDecider:
    def __init__(self, source: PolicySource) -> None:
        self.source = source

    def decide(self, ctx: RequestContext) -> Decision:
        ctx.policy_input = requests = from_context(ctx)  # kept for the audit record
        return self.source.current.decide(requests)
