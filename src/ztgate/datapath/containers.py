"""Containers belong to the identity whose request created them.

A string ``container`` id would let one caller reuse a container another loaded with its own
skills and files, so ztgate remembers every container id it sees in a response and lets only
that response's caller name it again. An id ztgate never saw is refused: it was not created
through the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ztgate.core.errors import PermissionDenied
from ztgate.shared.base import SharedState

_DEFAULT_TTL = 30 * 86400  # containers expire upstream well before this
_KEY = "container:"


def requested_container(body: Mapping[str, Any]) -> str | None:
    container = body.get("container")
    if isinstance(container, str):
        return container
    if isinstance(container, dict) and isinstance(container.get("id"), str):
        return str(container["id"])
    return None


class ContainerOwners:
    """Who created each container, in the shared state (``ztgate.shared``), so that no replica
    or worker lets another identity name it."""

    def __init__(self, shared: SharedState, ttl: float = _DEFAULT_TTL) -> None:
        self._shared = shared
        self._ttl = ttl

    async def remember(self, container_id: str, principal: str) -> None:
        # The first creator keeps it; a later response can never hand it to someone else.
        await self._shared.claim(_KEY + container_id, principal, self._ttl)

    async def check(self, body: Mapping[str, Any], principal: str) -> None:
        container_id = requested_container(body)
        if container_id is None:
            return
        if await self._shared.holder(_KEY + container_id) != principal:
            raise PermissionDenied(
                f"container {container_id} was not created through this gateway by this identity"
            )
