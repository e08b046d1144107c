"""The review stage before approvals exist: a request that needs review is refused, not run."""

from __future__ import annotations

from ztgate.core.context import RequestContext
from ztgate.core.decision import Effect
from ztgate.core.errors import PermissionDenied


class ReviewUnavailable:
    async def hold(self, ctx: RequestContext) -> None:
        decision = ctx.decision
        if decision is not None and decision.effect is Effect.REVIEW:
            rule = f" (rule {decision.rule_ids[0]}: {decision.reason})" if decision.rule_ids else ""
            raise PermissionDenied(
                f"this request needs human approval{rule}, and no approval workflow is configured"
            )
