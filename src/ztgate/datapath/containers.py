"""Containers belong to the identity whose request created them.

A string ``container`` id would let one caller reuse a container another loaded with its own
skills and files, so ztgate remembers every container id it sees in a response and lets only
that response's caller name it again. An id ztgate never saw is refused: it was not created
through the gateway. Kept in process memory (for one replica).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ztgate.core.errors import PermissionDenied

_DEFAULT_TTL = 30 * 86400  # containers expire upstream well before this


def requested_container(body: Mapping[str, Any]) -> str | None:
    container = body.get("container")
    if isinstance(container, str):
        return container
    if isinstance(container, dict) and isinstance(container.get("id"), str):
        return str(container["id"])
    return None


class ContainerOwners:
    def __init__(
        self, max_entries: int = 200_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._owners: dict[str, tuple[str, float]] = {}
        self._max_entries = max_entries
        self._clock = clock

    def remember(self, container_id: str, principal: str) -> None:
        now = self._clock()
        if container_id in self._owners and self._owners[container_id][0] != principal:
            return  # first creator keeps it; a response can never hand it to someone else
        if len(self._owners) >= self._max_entries:
            self._owners = {k: v for k, v in self._owners.items() if v[1] > now}
            while len(self._owners) >= self._max_entries:
                del self._owners[next(iter(self._owners))]
        self._owners[container_id] = (principal, now + _DEFAULT_TTL)

    def check(self, body: Mapping[str, Any], principal: str) -> None:
        container_id = requested_container(body)
        if container_id is None:
            return
        owner = self._owners.get(container_id)
        if owner is None or owner[1] <= self._clock() or owner[0] != principal:
            raise PermissionDenied(
                f"container {container_id} was not created through this gateway by this identity"
            )
