"""Detectors from the configuration: regexes and exact word lists, category ``custom``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ztgate.detectors.patterns import Detector, make_detector

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _check_id(name: str) -> None:
    if not isinstance(name, str) or not _ID.fullmatch(name):
        raise ValueError(
            f"custom detector name {name!r}: use 1-64 letters, digits, '_', '.' or '-'"
        )


def _label(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _word_pattern(word: str) -> str:
    """An exact, case-insensitive phrase; spaces match 1-4 whitespace characters.

    ``re.IGNORECASE`` under ``re.ASCII`` folds only ASCII letters, so non-ASCII letters get
    explicit case classes. A ``\\b`` is placed only next to an ASCII word character, where
    both engines agree on what a word boundary is.
    """
    parts = []
    for token in word.split():
        chars = []
        for ch in token:
            variants = {ch, ch.lower(), ch.upper()} if not ch.isascii() else {ch}
            variants = {c for c in variants if len(c) == 1}
            chars.append(
                "[" + "".join(sorted(variants)) + "]" if len(variants) > 1 else re.escape(ch)
            )
        parts.append("".join(chars))
    body = r"\s{1,4}".join(parts)
    first, last = word.strip()[0], word.strip()[-1]
    start = r"\b" if first.isascii() and (first.isalnum() or first == "_") else ""
    end = r"\b" if last.isascii() and (last.isalnum() or last == "_") else ""
    return start + body + end


def word_list_pattern(name: str, entries: Sequence[str]) -> str:
    """One pattern for a list of exact phrases; ValueError naming ``name`` for an empty list
    or entry."""
    if isinstance(entries, str) or not entries:
        raise ValueError(f"detector {name!r}: a word list must be a non-empty list of words")
    cleaned = []
    for word in entries:
        if not isinstance(word, str) or not word.strip():
            raise ValueError(f"detector {name!r}: word lists may not hold empty entries")
        cleaned.append(word.strip())
    # Longest first, so that at one start the longer phrase wins ("New York City").
    ordered = sorted(set(cleaned), key=lambda w: (-len(w), w))
    return "(?:" + "|".join(_word_pattern(w) for w in ordered) + ")"


def custom_detectors(
    patterns: Mapping[str, str], words: Mapping[str, Sequence[str]]
) -> list[Detector]:
    """Detectors from configuration: regexes and exact word lists, category ``custom``.

    Held to the catalogue's guarantees: each compiles in both engines and has a bounded
    match length (at most 1024); an unbounded or otherwise unfit one is refused with a
    ValueError naming it.
    """
    detectors: list[Detector] = []
    for name, pattern in patterns.items():
        _check_id(name)
        if not isinstance(pattern, str) or not pattern.isascii():
            raise ValueError(
                f"detector {name!r}: patterns must be ASCII text (use a word list for other text)"
            )
        detectors.append(make_detector(name, "custom", _label(name), pattern, 0.9, hyperscan=True))
    for name, entries in words.items():
        _check_id(name)
        if name in patterns:
            raise ValueError(f"detector {name!r}: defined both as a pattern and as a word list")
        pattern = word_list_pattern(name, entries)
        detectors.append(
            make_detector(
                name,
                "custom",
                _label(name),
                pattern,
                0.9,
                None,
                re.IGNORECASE,
                word_list=True,
                hyperscan=True,
            )
        )
    return detectors
