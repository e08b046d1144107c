"""Pydantic's validation errors as people read them: one ``where: what`` per problem.

Shared by everything that reads a file people write (the config, the policy, policy cases), so
each names the key the same way; each says how to name a place (a rule by its id, a case by
its name) and where to look up a key it does not know.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

Locate = Callable[[Sequence[Any]], str | None]


def dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


def problems(exc: ValidationError, *, unknown_key: str, locate: Locate | None = None) -> list[str]:
    """``where: what`` for each problem; ``locate`` names a place its own way (None skips
    the problem: another message already covers it)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        where = locate(loc) if locate is not None else dotted(loc) or "(top level)"
        if where is None:
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = unknown_key
        lines.append(f"{where}: {message}")
    return lines
