"""What every place the shared state can live offers: counters and claims, both expiring.

Two operations cover everything that must agree across processes. ``add`` (quotas): counters
that start at zero and expire after their window. ``claim`` (one-time tokens, container
owners): the first writer of a key holds it until it expires; everyone learns who holds it.
Each is atomic in the backing store, so no two processes ever both think they were first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class SharedState(Protocol):
    kind: str  # memory | sqlite | postgresql | redis (for the status and the log)

    async def add(self, items: Sequence[tuple[str, int, int]]) -> list[int]:
        """Add ``amount`` to each ``key`` (a counter that expires ``ttl`` seconds after it
        was created), in order; the values after each addition. ServiceUnavailable when the
        store cannot count."""
        ...

    async def claim(self, key: str, value: str, ttl: float) -> str:
        """Hold ``key`` for ``value`` for ``ttl`` seconds unless someone holds it already;
        the value that holds it now (``value`` when this call won)."""
        ...

    async def holder(self, key: str) -> str | None:
        """Who holds ``key`` now, or None (never claimed, or expired)."""
        ...

    async def close(self) -> None: ...
