"""The verified identity that rides on every request's context."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller proven by a token from a trusted issuer. There is no anonymous identity."""

    issuer_name: str
    issuer: str
    subject: str
    claims: Mapping[str, Any]
    expires_at: float
    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()

    @property
    def principal(self) -> str:
        """The subject namespaced by issuer, so two IdPs' subjects can never collide."""
        return f"{self.issuer_name}/{self.subject}"
