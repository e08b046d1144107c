"""Pydantic's validation errors as people read them: one ``where: what`` per problem.

Shared by everything that reads a file people write (the config, the policy, policy cases), so
each names the key the same way; each says how to name a place (a rule by its id, a case by
its name) and where to look up a key it does not know.

A key is the file's author's text, and so may be anything: blank, a line break, a whole fake
problem (``"rules\\n  fake: problem"``). A key that is not plain is quoted as Python writes a
string (``' '``, ``'a\\nb'``), and every problem is made one printable line, so that no message
can show a blank place or forge a line of its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import ValidationError

Locate = Callable[[Sequence[Any]], str | None]

# A key written as is: printable ASCII without white space, quotes, backslashes or the dot
# that joins a place's parts (pydantic's own parts, such as ``list[str]``, are all plain).
_PLAIN = re.compile(r"[^\s.'\"\\]+")


def shown(part: Any) -> str:
    """One part of a place: an index or a plain key as it is, any other key quoted."""
    if isinstance(part, int) and not isinstance(part, bool):
        return str(part)
    if isinstance(part, str) and part.isascii() and part.isprintable() and _PLAIN.fullmatch(part):
        return part
    return repr(part) if isinstance(part, str) else one_line(repr(part))


def dotted(loc: Sequence[Any]) -> str:
    return ".".join(shown(part) for part in loc)


def one_line(text: str) -> str:
    """``text`` with every character that is not printable (line breaks, tabs, controls,
    U+2028 ...) written as its escape, as ``repr`` does."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def invalid(source: str, lines: Iterable[str], *, footer: str | None = None) -> str:
    """``source is invalid:`` then each problem on a line of its own, indented."""
    shown_lines = [f"  {one_line(line)}" for line in lines]
    if footer is not None:
        shown_lines.append(f"  {footer}")
    return "\n".join([f"{source} is invalid:", *shown_lines])


def problems(exc: ValidationError, *, unknown_key: str, locate: Locate | None = None) -> list[str]:
    """``where: what`` for each problem, one line each; ``locate`` names a place its own way
    (None skips the problem: another message already covers it)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(error["loc"])
        where = locate(loc) if locate is not None else dotted(loc) or "(top level)"
        if where is None:
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = unknown_key
        lines.append(one_line(f"{where}: {message}"))
    return lines
