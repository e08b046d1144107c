"""What the simulator knows and keeps: the models and Anthropic skills it lists, and the records
of the files, skills and batches created on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from ztgate.devtools.simulator.api import JSONObject

# (id, display name, model line, release date, max output tokens), newest first as listed.
MODELS: Final = (
    ("claude-opus-4-5-20251101", "Claude Opus 4.5", "opus", "2025-11-24", 64000),
    ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "haiku", "2025-10-15", 64000),
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "sonnet", "2025-09-29", 64000),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "opus", "2025-08-05", 32000),
)

# (id, which is also the slug, display name, description)
ANTHROPIC_SKILLS: Final = (
    ("pptx", "PowerPoint", "Create and edit presentations."),
    ("xlsx", "Excel", "Create and analyse spreadsheets."),
    ("docx", "Word", "Create and edit documents."),
    ("pdf", "PDF", "Read, fill and create PDF files."),
)
ANTHROPIC_SKILL_DATE: Final = datetime(2025, 10, 2, tzinfo=UTC)


@dataclass
class Skill:
    name: str  # the immutable slug every version must keep
    info: JSONObject
    versions: list[JSONObject] = field(default_factory=list)  # newest first


@dataclass(frozen=True)
class StoredFile:
    metadata: JSONObject
    data: bytes


@dataclass(frozen=True)
class Batch:
    info: JSONObject
    results: bytes
