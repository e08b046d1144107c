"""The verified identity that rides on every request's context, and reading its claims.

Claim paths are dotted (``kubernetes.io.namespace``); a key that itself contains dots, like
``kubernetes.io``, is found by trying the longest key first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


_MISSING = object()


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path, or None."""
    value = _lookup(claims, path.split("."))
    return None if value is _MISSING else value


def _lookup(node: Any, parts: Sequence[str]) -> Any:
    if not parts:
        return node
    if not isinstance(node, Mapping):
        return _MISSING
    for end in range(len(parts), 0, -1):
        key = ".".join(parts[:end])
        if key in node:
            found = _lookup(node[key], parts[end:])
            if found is not _MISSING:
                return found
    return _MISSING


def strings_of(value: Any) -> list[str]:
    """A claim value as the strings patterns are matched against."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, str | int | float):
        return [str(value)]
    if isinstance(value, list):
        return [s for item in value if not isinstance(item, list | dict) for s in strings_of(item)]
    return []


def claim_strings(claims: Mapping[str, Any], path: str) -> list[str]:
    """The claim at a dotted path as the strings patterns are matched against."""
    if "." not in path:  # the common case, on the policy hot path
        return strings_of(claims.get(path))
    return strings_of(claim_at(claims, path))
