"""How much text a stream must hold back so that no detector's match is ever cut in two.

Derived from the detectors' patterns alone (``inspection/streaming.py`` says why it holds), so
the configuration can refuse a holdback too short for its detectors before anything starts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ztgate.detectors.patterns import Detector, literal_prefix, python_flags, spaced_prefix

_MIN_ANCHOR = 4


@dataclass(frozen=True, slots=True)
class Anchor:
    text: str
    reach: int  # the longest match that starts with it
    fold: bool  # compare case-insensitively


@dataclass(frozen=True, slots=True)
class StreamBounds:
    """What a stream must hold back for a catalogue: derived once per (detectors, holdback)."""

    holdback: int
    run_reach: int  # the longest match of a run-ending detector (0: none is longer than H)
    anchors: tuple[Anchor, ...]
    context: int  # released characters the scan still sees


def check_holdback(detectors: Sequence[Detector], holdback: int) -> None:
    """ValueError naming the first detector a stream with this holdback cannot cover."""
    bounds(tuple(detectors), holdback)


def bounds(detectors: tuple[Detector, ...], holdback: int) -> StreamBounds:
    if holdback < 1:
        raise ValueError("the stream holdback must be at least 1 character")
    run_reach = 0
    anchors: list[Anchor] = []
    context = 1
    for d in detectors:
        if d.max_length <= holdback:
            context = max(context, d.max_length)
            continue
        spaced = spaced_prefix(d.pattern, d.flags)
        if spaced <= holdback:
            run_reach = max(run_reach, d.max_length)
            context = max(context, d.max_length)
            continue
        anchor = literal_prefix(d.pattern, d.flags)
        if not _MIN_ANCHOR <= len(anchor) <= holdback:
            raise ValueError(
                f"detector {d.id!r}: its matches can be {d.max_length} characters long with "
                f"spaces throughout and have no fixed start, so a stream cannot release text "
                f"before it safely; raise the holdback to at least {spaced} or shorten the pattern"
            )
        fold = bool(python_flags(d.flags) & re.IGNORECASE)
        anchors.append(Anchor(anchor.lower() if fold else anchor, d.max_length, fold))
    return StreamBounds(holdback, run_reach, tuple(anchors), context)
