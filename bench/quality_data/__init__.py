"""Labelled text for ``bench/quality.py``, generated at run time from a fixed seed.

Nothing here is a real identity or a live credential: values are drawn from a seeded random
generator in the right format (valid checksums, prefixes and lengths where a format has them).
``pii_samples`` fills presidio-evaluator's sentence templates and fake identities (read from the
installed package's data files) plus templates of our own; ``secret_samples`` writes secrets and
near misses after the published rule sets of gitleaks (MIT) and detect-secrets (Apache-2.0).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A labelled value: character offsets into the sample's text and a canonical entity."""

    start: int
    end: int
    entity: str


@dataclass(frozen=True, slots=True)
class Sample:
    """One text with its labelled spans (none for a near miss) and the generator it came from."""

    text: str
    spans: tuple[Span, ...]
    kind: str


_FIELD = re.compile(r"\{\{([a-z_0-9]+)\}\}")


def fill(
    template: str,
    kind: str,
    value_of: Callable[[str], str],
    entity_of: Mapping[str, str],
    *,
    label_others: bool = True,
) -> Sample:
    """The template with each ``{{field}}`` replaced by ``value_of(field)``; a replaced value
    becomes a span labelled ``entity_of[field]``, or, with ``label_others``, one labelled with
    the field's name in capitals (an entity no engine is scored on: names, addresses...)."""
    parts: list[str] = []
    spans: list[Span] = []
    pos = 0
    last = 0
    for match in _FIELD.finditer(template):
        literal = template[last : match.start()]
        parts.append(literal)
        pos += len(literal)
        field = match[1]
        value = value_of(field)
        if field in entity_of or label_others:
            spans.append(Span(pos, pos + len(value), entity_of.get(field, field.upper())))
        parts.append(value)
        pos += len(value)
        last = match.end()
    parts.append(template[last:])
    return Sample("".join(parts), tuple(spans), kind)
