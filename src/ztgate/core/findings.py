"""What inspection finds, in plain data: a match in one text, and a finding as recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

# What a detector or a guardrail check looks for. The first three are values (masking keeps
# them out); the rest are guardrail checks on the text's intent (docs/guardrails.md).
ValueCategory = Literal["pii", "secret", "custom"]
GuardrailCategory = Literal[
    "prompt_injection", "jailbreak", "prompt_extraction", "smuggling", "exfiltration"
]
Category = Literal[ValueCategory, GuardrailCategory]
VALUE_CATEGORIES: frozenset[str] = frozenset(get_args(ValueCategory))


@dataclass(frozen=True, slots=True)
class Finding:
    """One validated match: which detector, and where, in character offsets.

    ``via`` names the disguise a match was found under (``base64``, ``unicode`` for invisible
    or look-alike characters...): the span is then the whole disguised stretch of the text as
    written, which is what masking replaces."""

    detector: str
    category: Category
    label: str
    start: int
    end: int
    via: str = ""


@dataclass(frozen=True, slots=True)
class FindingRecord:
    """What inspection found, and where: never the value itself."""

    detector: str
    category: str
    path: str
