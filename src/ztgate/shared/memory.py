"""Shared state for one process: what a single worker needs, nothing to reach.

Expired counters and claims are swept at most once a minute, by the call that finds a minute
has passed (as the SQLite and PostgreSQL states sweep their rows): a quota adds a counter per
principal and window, so without it a long-running gateway would keep every counter it ever
made. Sweeping is amortised on the calls that add entries; no task of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from ztgate.core.errors import ServiceUnavailable

_MAX_ENTRIES = 1_000_000
_SWEEP_EVERY = 60.0  # seconds between sweeps of expired entries


class MemoryState:
    kind = "memory"

    def __init__(
        self, clock: Callable[[], float] = time.time, max_entries: int = _MAX_ENTRIES
    ) -> None:
        self._counters: dict[str, tuple[int, float]] = {}
        self._claims: dict[str, tuple[str, float]] = {}
        self._clock = clock
        self._max_entries = max_entries
        self._swept_at = clock()

    def size(self) -> int:
        """Entries held, expired ones not yet swept included (what the memory holds)."""
        return len(self._counters) + len(self._claims)

    async def add(self, items: Sequence[tuple[str, int, int]]) -> list[int]:
        now = self._clock()
        self._sweep(now, full=len(self._counters) >= self._max_entries)
        out = []
        for key, amount, ttl in items:
            value, expires = self._counters.get(key, (0, now + ttl))
            if expires <= now:
                value, expires = 0, now + ttl
            self._counters[key] = (value + amount, expires)
            out.append(value + amount)
        return out

    async def claim(self, key: str, value: str, ttl: float) -> str:
        now = self._clock()
        held = self._claims.get(key)
        if held is not None and held[1] > now:
            return held[0]
        self._sweep(now, full=len(self._claims) >= self._max_entries)
        if len(self._claims) >= self._max_entries:
            # Forgetting a claim could let a one-time token in twice: refuse instead.
            raise ServiceUnavailable("too many claims held in memory", retry_after=1)
        self._claims[key] = (value, now + ttl)
        return value

    async def holder(self, key: str) -> str | None:
        held = self._claims.get(key)
        return held[0] if held is not None and held[1] > self._clock() else None

    async def close(self) -> None:
        return None

    def _sweep(self, now: float, *, full: bool) -> None:
        """Drop what has expired, once ``_SWEEP_EVERY`` has passed since the last sweep, or
        now when a table is ``full``. One pass over both tables: a minute's worth of calls
        pays for it, so each call's share is constant."""
        if not full and now - self._swept_at < _SWEEP_EVERY:
            return
        self._swept_at = now
        self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        self._claims = {k: v for k, v in self._claims.items() if v[1] > now}
