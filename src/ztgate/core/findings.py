"""What inspection finds, in plain data: a match in one text, and a finding as recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Category = Literal["pii", "secret", "custom"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One validated match: which detector, and where, in character offsets."""

    detector: str
    category: Category
    label: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class FindingRecord:
    """What inspection found, and where: never the value itself."""

    detector: str
    category: str
    path: str
