"""Quotas: requests and tokens per principal or group, per minute and per day.

Counters live in the shared state (``ztgate.shared``): memory for one process, a file for one
machine's workers, PostgreSQL or Redis for replicas, so every process counts against one
budget. A store that cannot count fails closed (503): a quota that cannot be counted is not
waved through. A request is admitted while the counter, before it, is under the limit; tokens
are charged an estimate up front and corrected by the usage the response reports.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ztgate.core.decision import LimitCheck
from ztgate.core.errors import RateLimited
from ztgate.shared.base import SharedState

_WINDOWS = {"minute": 60, "day": 86400}


@dataclass
class Admission:
    """What a request was charged, so the response can correct the token estimate."""

    token_keys: list[tuple[str, int]] = field(default_factory=list)
    estimate: int = 0


class Quotas:
    def __init__(self, counters: SharedState, clock: Callable[[], float] = time.time) -> None:
        self._counters = counters
        self._clock = clock

    def _key(self, check: LimitCheck, now: float) -> tuple[str, int, float]:
        size = _WINDOWS[check.window]
        bucket = int(now // size)
        key = f"ztgate:quota:{check.owner}:{check.metric}:{check.window}:{bucket}"
        return key, size, (bucket + 1) * size - now

    async def admit(self, checks: Sequence[LimitCheck], estimated_tokens: int) -> Admission:
        """Charge the request against every counter, or refuse it with 429 and undo the charge."""
        admission = Admission(estimate=estimated_tokens)
        if not checks:
            return admission
        now = self._clock()
        items, waits = [], []
        for check in checks:
            key, ttl, wait = self._key(check, now)
            amount = 1 if check.metric == "requests" else estimated_tokens
            items.append((key, amount, ttl))
            waits.append(wait)
        values = await self._counters.add(items)
        for check, (key, amount, ttl), value, wait in zip(
            checks, items, values, waits, strict=True
        ):
            if value - amount >= check.limit:  # the counter was already full before this request
                await self._counters.add([(k, -a, t) for k, a, t in items])
                raise RateLimited(
                    f"quota exceeded: {check.metric} per {check.window} (rule {check.rule_id})",
                    retry_after=max(1, math.ceil(wait)),
                )
            if check.metric == "tokens":
                admission.token_keys.append((key, ttl))
        return admission

    async def settle(self, admission: Admission, actual_tokens: int | None) -> None:
        """Replace the token estimate with what the response reported."""
        if actual_tokens is None or not admission.token_keys:
            return
        delta = actual_tokens - admission.estimate
        if delta:
            await self._counters.add([(key, delta, ttl) for key, ttl in admission.token_keys])
