"""Numbered SQL files per backend (``sqlite/``, ``postgres/``), applied in name order once
each; the ``schema_migrations`` table records which were. Files are never edited once
released: a change is a new file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_NAME = re.compile(r"\d{4}_[a-z0-9_]+\.sql")
_STATEMENT_END = re.compile(r";[ \t]*(?:--[^\n]*)?$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Migration:
    name: str  # the file name without ".sql"
    statements: tuple[str, ...]


def migrations(backend: str) -> list[Migration]:
    """The backend's migrations in the order they apply."""
    folder = resources.files(__name__).joinpath(backend)
    found = []
    for entry in folder.iterdir():
        if _NAME.fullmatch(entry.name):
            found.append(Migration(entry.name[:-4], _statements(entry.read_text("utf-8"))))
    return sorted(found, key=lambda migration: migration.name)


def _statements(text: str) -> tuple[str, ...]:
    """Split at a ``;`` that ends a line (the files keep to that, and use no semicolons
    inside a statement), dropping comment-only lines."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    parts = _STATEMENT_END.split("\n".join(lines))
    return tuple(part.strip() for part in parts if part.strip())
