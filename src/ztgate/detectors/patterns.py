"""What a detector is, and the rules every detector's pattern is held to.

Every pattern is written in the common subset of Python ``re`` and Hyperscan (no lookarounds,
backreferences, anchors or possessive forms; ASCII classes) so that Hyperscan can prefilter and
``re`` confirm, with identical meaning. Every quantifier is capped: ``max_length`` is computed
from the pattern itself, never declared by hand, so a streaming holdback of that many characters
can never cut a match in two. Non-ASCII text counts as one opaque non-word character per code
point in both engines (patterns are compiled with ``re.ASCII``).
"""

from __future__ import annotations

import importlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ztgate.core.findings import Category

MAX_LENGTH_LIMIT = 1024
"""The longest match any detector but the private-key block may have (custom ones included)."""

_SUPPORTED_FLAGS = re.IGNORECASE | re.DOTALL | re.ASCII
_FORBIDDEN_OPS = {
    "ASSERT": "lookarounds",
    "ASSERT_NOT": "lookarounds",
    "GROUPREF": "backreferences",
    "GROUPREF_EXISTS": "conditional groups",
    "ATOMIC_GROUP": "atomic groups",
    "POSSESSIVE_REPEAT": "possessive quantifiers",
}
_ALLOWED_ASSERTIONS = {"AT_BOUNDARY", "AT_NON_BOUNDARY"}
_LEFT_OPEN_BRACE = re.compile(r"(?<!\\)\{,")

try:
    import hyperscan as _hs

    HYPERSCAN_AVAILABLE = True
except ImportError:  # pragma: no cover - depends on the platform's wheels
    HYPERSCAN_AVAILABLE = False

# ``re._parser`` is private and untyped; importing it by name avoids the deprecated
# ``sre_parse`` alias (a DeprecationWarning) and keeps mypy from inventing its type.
_parser: Any = importlib.import_module("re._parser")


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of sensitive value: a bounded pattern, an optional validator, a confidence."""

    id: str
    category: Category
    label: str
    pattern: str
    max_length: int
    confidence: float
    validator: Callable[[str], bool] | None = None
    flags: int = 0
    # The validator judges only the ``value`` group: once it rejects a value, no match that
    # starts before that value (and so has the same one) needs trying.
    value_checked: bool = False


# --- pattern checks shared by the catalogue, custom detectors and the scanner ----------------


def python_flags(flags: int) -> int:
    """Flags for ``re``: always ASCII, so both engines agree on ``\\w``, ``\\b`` and case."""
    return flags | re.ASCII


def hyperscan_flags(flags: int) -> int:
    if not HYPERSCAN_AVAILABLE:  # pragma: no cover
        return 0
    result = 0
    if flags & re.IGNORECASE:
        result |= _hs.HS_FLAG_CASELESS
    if flags & re.DOTALL:
        result |= _hs.HS_FLAG_DOTALL
    return result


def hyperscan_expression(pattern: str) -> bytes:
    """The pattern as Hyperscan sees the scanner's one-byte-per-character text.

    The scanner maps code points up to U+00FF to their Latin-1 byte and the rest to ``\\x80``;
    a non-ASCII character in a pattern (only generated word lists have them, as literals or
    in positive classes) is mapped the same way.
    """
    if pattern.isascii():
        return pattern.encode("ascii")
    return "".join(
        ch if ch.isascii() else f"\\x{0x80 if ord(ch) > 0xFF else ord(ch):02x}" for ch in pattern
    ).encode("ascii")


def parse_pattern(pattern: str, flags: int = 0) -> Any:
    """The ``re`` parse tree of a pattern, as the scanner compiles it."""
    return _parser.parse(pattern, python_flags(flags))


def _walk(items: Any, problems: list[str]) -> None:
    """Collects constructs one of the two engines would read differently or cannot bound."""
    for op, av in items:
        name = str(op)
        if name in _FORBIDDEN_OPS:
            problems.append(_FORBIDDEN_OPS[name])
        elif name == "AT" and str(av) not in _ALLOWED_ASSERTIONS:
            problems.append("anchors (^, $, \\A, \\Z)")
        elif (name in ("LITERAL", "NOT_LITERAL") and av >= 0x80) or (
            name == "RANGE" and av[1] >= 0x80
        ):
            problems.append("non-ASCII characters (use a word list)")
        elif name in ("MAX_REPEAT", "MIN_REPEAT"):
            if av[1] == _parser.MAXREPEAT:
                problems.append("unbounded quantifiers (*, +, {n,}): cap them, e.g. {1,64}")
            _walk(av[2], problems)
        elif name == "SUBPATTERN":
            _walk(av[3], problems)
        elif name == "BRANCH":
            for branch in av[1]:
                _walk(branch, problems)
        elif name == "IN":
            _walk(av, problems)


STREAM_BREAKS = " \t\r\n"
"""The characters that end a run in streamed text (see ``spaced_prefix``)."""

_BREAK_CATEGORIES = {
    "CATEGORY_SPACE": True,
    "CATEGORY_NOT_SPACE": False,
    "CATEGORY_DIGIT": False,
    "CATEGORY_NOT_DIGIT": True,
    "CATEGORY_WORD": False,
    "CATEGORY_NOT_WORD": True,
}


def _class_has(items: Any, ch: str) -> bool:
    """Whether the character class ``items`` (an ``IN`` node) matches ``ch``."""
    negate = False
    hit = False
    for op, av in items:
        name = str(op)
        if name == "NEGATE":
            negate = True
        elif name == "LITERAL":
            hit = hit or av == ord(ch)
        elif name == "RANGE":
            hit = hit or av[0] <= ord(ch) <= av[1]
        elif name == "CATEGORY":
            hit = hit or _BREAK_CATEGORIES.get(str(av), True)
        else:  # anything unforeseen: assume it can
            hit = True
    return hit != negate


def _can_break(op: Any, av: Any) -> bool:
    """Whether the node can match a space or a line break anywhere in it."""
    name = str(op)
    if name == "LITERAL":
        return chr(av) in STREAM_BREAKS
    if name in ("NOT_LITERAL", "ANY"):
        return True
    if name == "IN":
        return any(_class_has(av, ch) for ch in STREAM_BREAKS)
    if name in ("MAX_REPEAT", "MIN_REPEAT"):
        return any(_can_break(o, a) for o, a in av[2])
    if name == "SUBPATTERN":
        return any(_can_break(o, a) for o, a in av[3])
    if name == "BRANCH":
        return any(_can_break(o, a) for branch in av[1] for o, a in branch)
    return False


def _spaced(items: Any) -> int:
    offset = 0  # the longest the nodes before this one can match
    furthest = 0
    for op, av in items:
        name = str(op)
        width = int(_parser.SubPattern(items.state, [(op, av)]).getwidth()[1])
        if name == "SUBPATTERN":
            furthest = max(furthest, offset + _spaced(av[3]) if _can_break(op, av) else 0)
        elif name == "BRANCH":
            inner = max(_spaced(branch) for branch in av[1])
            furthest = max(furthest, offset + inner if inner else 0)
        elif _can_break(op, av):
            furthest = offset + width
        offset += width
    return furthest


def spaced_prefix(pattern: str, flags: int = 0) -> int:
    """How far into a match a space or line break can be: past it, every match is one
    unbroken run. A stream can release text before a run once that run is long enough, so a
    detector with long matches (a JWT, an email) need not hold back its whole bound."""
    return _spaced(parse_pattern(pattern, flags))


def literal_prefix(pattern: str, flags: int = 0) -> str:
    """The text every match starts with (``-----BEGIN`` for a PEM block), or ``""``."""
    prefix = []
    for op, av in parse_pattern(pattern, flags):
        if str(op) != "LITERAL":
            break
        prefix.append(chr(av))
    return "".join(prefix)


def check_pattern(
    name: str,
    pattern: str,
    flags: int = 0,
    *,
    limit: int = MAX_LENGTH_LIMIT,
    word_list: bool = False,
    hyperscan: bool = True,
) -> int:
    """Validates a pattern for both engines and returns its maximum match length.

    Raises ValueError naming the detector when the pattern is unbounded, longer than
    ``limit``, can match the empty string, uses a construct outside the common subset of
    ``re`` and Hyperscan, or fails to compile in either. ``word_list`` admits the non-ASCII
    literals that generated word-list patterns carry; ``hyperscan=False`` skips the (slow)
    single-pattern Hyperscan compile for callers that compile a whole database anyway.
    """

    def fail(reason: str) -> ValueError:
        return ValueError(f"detector {name!r}: {reason}")

    if flags & ~_SUPPORTED_FLAGS:
        raise fail("only the IGNORECASE and DOTALL flags are supported")
    if not pattern:
        raise fail("the pattern is empty")
    if _LEFT_OPEN_BRACE.search(pattern):
        raise fail("write {0,n} instead of {,n} (Hyperscan reads {,n} literally)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            re.compile(pattern, python_flags(flags))
            parsed = _parser.parse(pattern, python_flags(flags))
    except (re.error, FutureWarning, DeprecationWarning) as exc:
        raise fail(f"not a valid regular expression: {exc}") from None
    problems: list[str] = []
    _walk(parsed, problems)
    if word_list:
        problems = [p for p in problems if not p.startswith("non-ASCII")]
    if problems:
        raise fail("patterns may not use " + ", ".join(sorted(set(problems))))
    low, high = parsed.getwidth()
    if low == 0:
        raise fail("the pattern can match the empty string")
    if high > limit:
        raise fail(f"matches can be {high} characters long; the limit is {limit}")
    if hyperscan and HYPERSCAN_AVAILABLE:
        db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
        try:
            db.compile(
                expressions=[hyperscan_expression(pattern)], ids=[0], flags=[hyperscan_flags(flags)]
            )
        except _hs.error as exc:
            raise fail(f"Hyperscan cannot compile it: {exc}") from None
    return int(high)


def make_detector(
    id: str,
    category: Category,
    label: str,
    pattern: str,
    confidence: float,
    validator: Callable[[str], bool] | None = None,
    flags: int = 0,
    *,
    limit: int = MAX_LENGTH_LIMIT,
    word_list: bool = False,
    hyperscan: bool = False,
    value_checked: bool = False,
) -> Detector:
    """A detector whose ``max_length`` is computed from its pattern, never declared by hand.
    The catalogue's patterns meet Hyperscan when a scanner compiles them (and in the tests),
    custom ones right here."""
    max_length = check_pattern(
        id, pattern, flags, limit=limit, word_list=word_list, hyperscan=hyperscan
    )
    return Detector(
        id, category, label, pattern, max_length, confidence, validator, flags, value_checked
    )
