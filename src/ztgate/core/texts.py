"""The strings of a body that inspection reads, as plain data: where each one is and what kind
it is, and how masking writes one back. ``wire/fields.py`` finds them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

DEFAULT_MAX_DEPTH = 64


class Kind(Enum):
    TEXT = "text"
    NAME = "name"
    FIXED = "fixed"


class NotRewritable(ValueError):
    """A fixed string (an identifier, signed text) cannot be masked without breaking it."""


class NameClash(ValueError):
    """Masking two keys of one object would give them the same name."""


class TextField(NamedTuple):
    """One string: ``holder[key]`` for text and fixed values, the key itself for a name."""

    path: str
    holder: Any  # the dict or list that holds it
    key: Any  # its key or index there
    kind: Kind = Kind.TEXT

    @property
    def text(self) -> str:
        if self.kind is Kind.NAME:
            name: str = self.key
            return name
        text: str = self.holder[self.key]
        return text

    def replace(self, text: str) -> None:
        if self.kind is Kind.TEXT:
            self.holder[self.key] = text
        elif self.kind is Kind.NAME:
            _rename(self.holder, self.key, text, self.path)
        else:
            raise NotRewritable(self.path)


def _rename(holder: dict[str, Any], old: str, new: str, path: str) -> None:
    """Rename a key where it stands: the object keeps its order (a schema's, an input's)."""
    if new in holder:
        raise NameClash(f"{path}: masking would merge two keys")
    items = [(new if key == old else key, value) for key, value in holder.items()]
    holder.clear()
    holder.update(items)


@dataclass(slots=True)
class BodyText:
    """Every string of one body that inspection reads, in the order the walk met them."""

    fields: list[TextField] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # the keys of the API's own objects
    max_depth: int = DEFAULT_MAX_DEPTH

    @property
    def size(self) -> int:
        """Characters to scan, all fields and keys together."""
        return sum(len(f.text) for f in self.fields) + sum(len(k) for k in self.keys)
