"""Disguises a text can wear to get past the checks, and taking them off.

A caller who knows the detectors can hide a key or an order from them: zero-width characters
inside a word, look-alike letters from other scripts or full-width forms, Unicode tag
characters (invisible ASCII), bidirectional controls, or an encoding (base64, hex, URL or HTML
escapes, rot13). The model reads through all of these. So inspection scans a text twice over:
as written, and as each disguise decodes (``inspection/deep.py``); this module only finds the
disguises and decodes them, as pure functions.

Positions map back to the text as written: for folded Unicode character by character
(:func:`origins`), for a decoded stretch to the whole stretch (masking replaces all of it).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import quopri
import re
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote

from ztgate.core.findings import Finding
from ztgate.detectors.patterns import HYPERSCAN_AVAILABLE

if HYPERSCAN_AVAILABLE:
    import hyperscan

# Characters that render as nothing: a word with one inside reads the same to a person and the
# model, but not to a pattern.
_INVISIBLE = "\u00ad\u034f\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f"
_TAG_FIRST, _TAG_LAST = 0xE0000, 0xE007F

# Look-alike letters from Cyrillic and Greek (the common confusables of Unicode's list).
_CONFUSABLES = {
    "а": "a", "в": "B", "е": "e", "к": "k", "м": "M", "н": "H", "о": "o", "р": "p", "с": "c",
    "т": "T", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "ɡ": "g", "ո": "n", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O",
    "Р": "P", "С": "C", "Т": "T", "Х": "X", "У": "Y", "Ѕ": "S", "І": "I", "Ј": "J",
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "ι": "i", "κ": "k", "υ": "u",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
}  # fmt: skip
# Blocks whose compatibility forms are letters and digits in disguise.
_COMPATIBLE_BLOCKS = (
    (0xFF01, 0xFF5E),  # full-width ASCII
    (0x1D400, 0x1D7FF),  # mathematical alphanumerics (bold, italic, script, monospace...)
    (0x2460, 0x24FF),  # enclosed alphanumerics
    (0x1F130, 0x1F189),  # squared and negative letters
    (0x2070, 0x209F),  # super- and subscripts
    (0x2100, 0x214F),  # letter-like symbols
    (0xFB00, 0xFB06),  # Latin ligatures
)


@cache
def _fold_table() -> dict[int, str | None]:
    table: dict[int, str | None] = dict.fromkeys(map(ord, _INVISIBLE + _BIDI))
    for first, last in _COMPATIBLE_BLOCKS:
        for point in range(first, last + 1):
            plain = unicodedata.normalize("NFKC", chr(point))
            if plain != chr(point) and plain.isascii() and plain.strip():
                table[point] = plain
    for point in range(_TAG_FIRST, _TAG_LAST + 1):
        inner = point - _TAG_FIRST
        table[point] = chr(inner) if 0x20 <= inner <= 0x7E else None
    table.update({ord(k): v for k, v in _CONFUSABLES.items()})
    return table


def folded(text: str) -> str | None:
    """The text as a reader takes it in (invisible characters gone, tag characters as the
    ASCII they hide, look-alikes and compatibility forms as plain letters), or None when that
    is the text itself. ASCII text never changes, and costs one check."""
    if text.isascii():
        return None
    plain = text.translate(_fold_table())
    return None if plain == text else plain


def origins(text: str) -> list[int]:
    """For each character of ``folded(text)``, the position in ``text`` it came from."""
    table = _fold_table()
    out: list[int] = []
    for position, char in enumerate(text):
        replacement = table.get(ord(char), char)
        if replacement:
            out.extend([position] * len(replacement))
    return out


# --- marks that are suspicious in themselves ---------------------------------------------------

_MARKS = (
    # Unicode tag characters: invisible ASCII, with no use in prose.
    ("smuggling.tag_characters", 0.95, re.compile("[\U000e0000-\U000e007f]+")),
    # Invisible characters inside a Latin word or number: there to break a pattern.
    (
        "smuggling.invisible_characters",
        0.7,
        re.compile(f"[A-Za-z0-9](?:[{_INVISIBLE}]+[A-Za-z0-9])+"),
    ),
    # Direction overrides ("Trojan Source"): text that displays otherwise than it reads.
    ("smuggling.bidi_controls", 0.6, re.compile("[\u202a-\u202e\u2066-\u2069]+")),
    # A word mixing Latin letters with Cyrillic or Greek look-alikes.
    (
        "smuggling.homoglyphs",
        0.6,
        re.compile(
            "(?:[A-Za-z]+["
            + "".join(_CONFUSABLES)
            + "]+|["
            + "".join(_CONFUSABLES)
            + "]+[A-Za-z]+)"
            "[A-Za-z" + "".join(_CONFUSABLES) + "]*"
        ),
    ),
)
MARK_SCORES = {check: score for check, score, _ in _MARKS}


def marks(text: str) -> list[Finding]:
    """Stretches whose characters are a disguise in themselves (never in ASCII text)."""
    if text.isascii():
        return []
    found = []
    for check, _score, pattern in _MARKS:
        for match in pattern.finditer(text):
            if check == _TAGS and _is_flag(text, match.start(), match.end()):
                continue
            found.append(Finding(check, "smuggling", "SMUGGLING", match.start(), match.end()))
    return found


_TAGS = "smuggling.tag_characters"
_BLACK_FLAG = "\U0001f3f4"
_CANCEL_TAG = "\U000e007f"


def _is_flag(text: str, start: int, end: int) -> bool:
    """A subdivision flag (Scotland, Wales...): a black flag, a few tag letters, a cancel tag."""
    return (
        start > 0
        and text[start - 1] == _BLACK_FLAG
        and end - start <= 8
        and text[end - 1] == _CANCEL_TAG
    )


# --- encodings -----------------------------------------------------------------------------

MIN_ENCODED = 16  # shorter runs decode to too little to hold an order or a key


@dataclass(frozen=True, slots=True)
class Encoded:
    """A stretch of text and what it decodes to."""

    kind: str
    start: int
    end: int
    text: str


_RUN = "A-Za-z0-9+/=_-"  # what base64 (both alphabets), base32 and hex are written in
_RUNS = re.compile(rf"[{_RUN}]{{{MIN_ENCODED},}}")
_ESCAPED_HEX = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){4,}")
_PERCENT = re.compile(r"[^\s%]{0,64}(?:%[0-9A-Fa-f]{2}[^\s%]{0,64}){3,}")
_ENTITIES = re.compile(r"(?:&(?:#[0-9]{2,7}|#[xX][0-9A-Fa-f]{2,6}|[A-Za-z]{2,8});[^&\n]{0,16}){3,}")
_QUOTED_PRINTABLE = re.compile(r"[^\n]{0,64}(?:=[0-9A-F]{2}[^\n=]{0,64})+")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_BASE32_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567=")

# One Hyperscan pass finds where an encoding may be; Python's ``re`` then reads only there (it
# would take ~0.5 ms to search 4 KB of prose for each kind). Each probe: its id, its pattern,
# and whether one report is enough (the kind is present at all).
_PROBES = (
    (0, rf"[{_RUN}]{{{MIN_ENCODED},}}[^{_RUN}]", False),  # a long run, reported where it ends
    (1, r"\\x[0-9A-Fa-f]{2}", True),
    (2, r"%[0-9A-Fa-f]{2}", True),
    (3, r"&#?[0-9A-Za-z]{2,8};", True),
    (4, r"=[0-9A-F]{2}", True),
    (5, r"rot-?13|rot 13|caesar|rotate each letter", True),  # the text says it is in rot13
)
_CASELESS = frozenset({5})


def _probe_collect(probe: int, start: int, end: int, _flags: int, found: Any) -> None:
    """Hyperscan's match handler (module level, so it outlives every scan)."""
    found.append((probe, start, end))


@cache
def _probe_database() -> Any:
    if not HYPERSCAN_AVAILABLE:
        return None
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[pattern.encode() for _, pattern, _ in _PROBES],
        ids=[probe for probe, _, _ in _PROBES],
        flags=[
            (hyperscan.HS_FLAG_SINGLEMATCH if single else hyperscan.HS_FLAG_SOM_LEFTMOST)
            | (hyperscan.HS_FLAG_CASELESS if probe in _CASELESS else 0)
            for probe, _, single in _PROBES
        ],
    )
    return database


_scratch = threading.local()


@dataclass(frozen=True, slots=True)
class Probed:
    """Where a text's long runs of an encoding's alphabet are, and which other escapes (and a
    rot13 hint) it holds at all: found in one pass, read by :func:`encodings` and :func:`rot13`."""

    runs: list[tuple[int, int]]
    present: set[int]


def probe(text: str) -> Probed:
    return Probed(*_probe(text))


def _probe(text: str) -> tuple[list[tuple[int, int]], set[int]]:
    """Where long runs are, and which other escapes the text holds at all."""
    database = _probe_database()
    if database is None:  # pragma: no cover - without Hyperscan: the same answers from re
        runs = [m.span() for m in _RUNS.finditer(text)]
        present = {
            probe
            for probe, pattern in (
                (1, _ESCAPED_HEX),
                (2, _PERCENT),
                (3, _ENTITIES),
                (4, _QUOTED_PRINTABLE),
            )
            if pattern.search(text)
        }
        lowered = text.lower()
        if any(hint in lowered for hint in _ROT13_HINTS):
            present.add(5)
        return runs, present
    scratch = getattr(_scratch, "space", None)
    if scratch is None:
        scratch = _scratch.space = hyperscan.Scratch(database)
    found: list[tuple[int, int, int]] = []
    # One byte per character (non-ASCII as "?", never part of a run), and a last character
    # that ends a run at the end of the text.
    database.scan(
        (text + "\n").encode("ascii", "replace"),
        match_event_handler=_probe_collect,
        context=found,
        scratch=scratch,
    )
    runs = [(start, end - 1) for probe, start, end in found if probe == 0]
    return runs, {probe for probe, _, _ in found if probe}


def _readable(data: bytes) -> str | None:
    """Decoded bytes as text, when they are text a model could read as an order or a key."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 8:
        return None
    printable = sum(1 for c in text if c.isprintable() or c in "\n\r\t")
    return text if printable >= 0.95 * len(text) else None


def _from_base64(run: str) -> str | None:
    if run.isdigit() or (run.isalpha() and (run.islower() or run.isupper())):
        return None  # a number or a plain word is not worth decoding
    padded = run.rstrip("=")
    padded += "=" * (-len(padded) % 4)
    try:
        data = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return _readable(data)


def _from_base32(run: str) -> str | None:
    padded = run.rstrip("=")
    padded += "=" * (-len(padded) % 8)
    try:
        return _readable(base64.b32decode(padded))
    except (binascii.Error, ValueError):
        return None


def _from_hex(run: str) -> str | None:
    try:
        return _readable(bytes.fromhex(run.replace("\\x", "")))
    except ValueError:
        return None


def encodings(text: str, probed: Probed | None = None) -> Iterator[Encoded]:
    """Stretches of ``text`` that decode to readable text."""
    runs, present = (probed.runs, probed.present) if probed is not None else _probe(text)
    for start, end in runs:
        found = _decoded_run(text[start:end])
        if found is not None:
            yield Encoded(found[0], start, end, found[1])
    if 1 in present:
        for match in _ESCAPED_HEX.finditer(text):
            decoded = _from_hex(match.group())
            if decoded is not None:
                yield Encoded("hex", match.start(), match.end(), decoded)
    if 2 in present:
        for match in _PERCENT.finditer(text):
            decoded = unquote(match.group(), errors="strict") if _valid_percent(match) else None
            if decoded is not None and decoded != match.group():
                yield Encoded("url", match.start(), match.end(), decoded)
    if 3 in present:
        for match in _ENTITIES.finditer(text):
            decoded = html.unescape(match.group())
            if decoded != match.group():
                yield Encoded("html", match.start(), match.end(), decoded)
    if 4 in present:
        for match in _QUOTED_PRINTABLE.finditer(text):
            decoded = _from_quoted_printable(match.group())
            if decoded is not None and decoded != match.group():
                yield Encoded("quoted-printable", match.start(), match.end(), decoded)


def _decoded_run(run: str) -> tuple[str, str] | None:
    """A run read as hex, base64 or base32, whichever gives readable text."""
    body = run.rstrip("=")
    if len(body) >= MIN_ENCODED and _HEX_DIGITS.issuperset(body):
        decoded = _from_hex(body[: len(body) // 2 * 2])
        if decoded is not None:
            return "hex", decoded
    decoded = _from_base64(run)
    if decoded is not None:
        return "base64", decoded
    if _BASE32_ALPHABET.issuperset(run):
        decoded = _from_base32(run)
        if decoded is not None:
            return "base32", decoded
    return None


def _from_quoted_printable(run: str) -> str | None:
    try:
        return quopri.decodestring(run.encode("latin-1")).decode("utf-8")
    except (UnicodeError, ValueError):
        return None


def _valid_percent(match: re.Match[str]) -> bool:
    try:
        unquote(match.group(), errors="strict")
    except UnicodeDecodeError:
        return False
    return True


_ROT13_HINTS = ("rot13", "rot-13", "rot 13", "caesar", "rotate each letter")


def rot13(text: str, probed: Probed | None = None) -> str | None:
    """The text under rot13 when it says it is written in it (rot13 keeps every position)."""
    present = (probed if probed is not None else probe(text)).present
    return codecs.encode(text, "rot13") if 5 in present else None
