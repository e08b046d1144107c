"""The review stage before approvals exist: a request that needs review is refused, not run."""

from __future__ import annotations

from ztgate.context import RequestContext
from ztgate.errors import PermissionDenied
from ztgate.policy.decision import Effect


class ReviewUnavailable:
    async def hold(self, ctx: RequestContext) -> None:
        if ctx.decision is not None and ctx.decision.effect is Effect.REVIEW:
            raise PermissionDenied(
                "this request needs human approval, and no approval workflow is configured"
            )
