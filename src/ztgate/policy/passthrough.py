"""The decide stage before a policy is configured: every verified caller may proceed.

Authentication has already refused anyone without a token from a trusted issuer; this seam
is where the policy engine plugs in and starts denying what it does not name.
"""

from __future__ import annotations

from ztgate.context import RequestContext
from ztgate.policy.decision import Decision, Effect

_ALLOWED = Decision(Effect.ALLOW, "no policy configured: verified callers are allowed")


class AllowVerifiedCallers:
    def decide(self, ctx: RequestContext) -> Decision:
        return _ALLOWED
