"""Masking a tool's streamed input (``input_json_delta``): JSON source, read as a client
parses it, each string masked whole as a whole response masks it.

A tool's input arrives as fragments of JSON source. Scanning that source as text would read
what the client never sees: a line break before a key is the two characters ``\\n`` there,
so the key stands glued to the letter ``n`` and no detector's word boundary holds, while the
client (and the whole-response path) reads a line break. So the source is lexed as it comes:
each string's escapes are decoded, the decoded text goes through a ``StreamMasker`` of its own
(and a ``StreamRestorer`` when the request issued pseudonyms) and comes out JSON-encoded again;
what lies between strings is passed on as it is. The rule it keeps: the concatenated output,
parsed, equals the input parsed and masked string by string (keys included), as
``ResponseProtector.body`` masks a whole tool input.

Numbers are read whole and scanned too (a card number written as a number is still one); one
that policy masks comes out as a JSON string of its masked text. Anything that is not JSON
(a bare word, an unknown escape, a control character or a lone surrogate in a string, a token
longer than ``MAX_TOKEN``) raises ``MalformedStream``: the response is withheld, since a client
would read it some other way, or fail and show it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import orjson

from ztgate.inspection.masking import AppliedFinding
from ztgate.inspection.streaming import StreamMasker, StreamRestorer

MAX_TOKEN = 1024  # characters of one number or literal, held until it is whole

_BETWEEN = re.compile(r"[ \t\n\r{}\[\]:,]+")  # JSON white space and punctuation
_TOKEN = re.compile(r"[0-9A-Za-z+.\-]+")  # what numbers and literals are made of
_WHOLE_TOKEN = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")
_CUT_TOKEN = re.compile(r"[0-9+.eE\-]*|t(?:r(?:ue?)?)?|f(?:a(?:l(?:se?)?)?)?|n(?:u(?:ll?)?)?")
# String text, and the escapes that stand for one character (``\\u`` ones are read apart).
_STRING_RUN = re.compile(r'(?:[^"\\\x00-\x1f]+|\\["\\/bfnrt])+')
_SHORT_ESCAPE = re.compile(r'\\(["\\/bfnrt])')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")


class MalformedStream(ValueError):
    """The upstream's stream is not what the API sends: it cannot be read as a client would."""


def _json_string(value: str) -> str:
    """``value`` as it must appear inside a JSON string."""
    return orjson.dumps(value).decode()[1:-1]


class _String:
    """One JSON string's decoded text on its way through a masker (and a restorer)."""

    def __init__(self, masker: StreamMasker, restorer: StreamRestorer | None) -> None:
        self.masker = masker
        self._restorer = restorer

    def feed(self, text: str) -> str:
        out = self.masker.feed(text)
        if self._restorer is not None and out:
            out = self._restorer.feed(out)
        return out

    def flush(self) -> str:
        out = self.masker.flush()
        if self._restorer is not None:
            out = self._restorer.feed(out) + self._restorer.flush()
        return out


class JsonStreamMasker:
    """Masks one tool block's streamed JSON input. Not thread-safe: one per block."""

    def __init__(
        self,
        new_masker: Callable[[], StreamMasker],
        new_restorer: Callable[[], StreamRestorer] | None = None,
    ) -> None:
        self._new_masker = new_masker
        self._new_restorer = new_restorer
        self._string: _String | None = None  # the string being read, if inside one
        self._escape = ""  # an escape begun and not finished (``\\``, ``\\u12``)
        self._high: int | None = None  # a high surrogate escape awaiting its low half
        self._token = ""  # a number or literal begun and not finished
        self._decoded: list[str] = []  # the current string's text read from this fragment
        self._applied: list[AppliedFinding] = []
        self._blocked: list[str] = []

    def take_applied(self) -> list[AppliedFinding]:
        """The actions taken since the last call (offsets are into each string)."""
        applied, self._applied = self._applied, []
        return applied

    @property
    def blocked(self) -> list[str]:
        """Detectors whose ``block`` fired: the caller withholds the rest of the response."""
        return list(self._blocked)

    def feed(self, fragment: str) -> str:
        """JSON source safe to release now (possibly empty)."""
        out: list[str] = []
        at, end = 0, len(fragment)
        while at < end:
            if self._string is None:
                at = self._between(fragment, at, out)
            elif self._escape:
                at = self._escaped(fragment, at, out)
            else:
                at = self._in_string(fragment, at, out)
        self._drain(out)
        return "".join(out)

    def flush(self) -> str:
        """The rest, at ``content_block_stop``. A stream cut short (``max_tokens``) may stop
        inside a string or a number: what was read of it comes out masked, unfinished as it
        came; half an escape is dropped."""
        out: list[str] = []
        if self._string is not None:
            self._escape, self._high = "", None
            self._drain(out)
            self._emit(self._string.flush(), out)
            self._settle(self._string)
            self._string = None
        elif self._token:
            self._end_token(out, cut=True)
        return "".join(out)

    # --- between strings ---------------------------------------------------------------------

    def _between(self, fragment: str, at: int, out: list[str]) -> int:
        match = _BETWEEN.match(fragment, at)
        if match is not None:
            self._end_token(out)
            out.append(match.group())
            return match.end()
        match = _TOKEN.match(fragment, at)
        if match is not None:
            self._token += match.group()
            if len(self._token) > MAX_TOKEN:
                raise MalformedStream(f"a tool's input holds a number over {MAX_TOKEN} characters")
            return match.end()
        if fragment[at] != '"':
            raise MalformedStream("a tool's input holds something that is not JSON")
        self._end_token(out)
        out.append('"')
        masker = self._new_masker()
        self._string = _String(masker, self._new_restorer() if self._new_restorer else None)
        return at + 1

    def _end_token(self, out: list[str], *, cut: bool = False) -> None:
        """A number or literal is whole (or ``cut`` short by the block's end): scanned as a
        string is, and quoted if masking changed it."""
        token, self._token = self._token, ""
        if not token:
            return
        if not _WHOLE_TOKEN.fullmatch(token) and not (cut and _CUT_TOKEN.fullmatch(token)):
            raise MalformedStream("a tool's input holds something that is not JSON")
        string = _String(self._new_masker(), None)
        masked = string.feed(token) + string.flush()
        self._settle(string)
        out.append(token if masked == token else '"' + _json_string(masked) + '"')

    # --- inside a string ---------------------------------------------------------------------

    def _in_string(self, fragment: str, at: int, out: list[str]) -> int:
        match = _STRING_RUN.match(fragment, at)
        if match is not None:
            run = match.group()
            if "\\" in run:
                run = _SHORT_ESCAPE.sub(lambda m: _ESCAPES[m.group(1)], run)
            self._text(run, out)
            return match.end()
        char = fragment[at]
        if char == "\\":
            self._escape = char
        elif char == '"':
            self._close(out)
        else:
            raise MalformedStream("a string in a tool's input holds a control character")
        return at + 1

    def _escaped(self, fragment: str, at: int, out: list[str]) -> int:
        """One more character of an escape; decoded once it is whole."""
        self._escape += fragment[at]
        escape = self._escape
        if len(escape) == 2 and escape[1] != "u":
            decoded = _ESCAPES.get(escape[1])
            if decoded is None:
                raise MalformedStream("a string in a tool's input holds an unknown escape")
            self._escape = ""
            self._text(decoded, out)
        elif len(escape) > 2:
            if escape[-1] not in _HEX:
                raise MalformedStream("a string in a tool's input holds a bad \\u escape")
            if len(escape) == 6:
                self._escape = ""
                self._unit(int(escape[2:], 16), out)
        return at + 1

    def _unit(self, code: int, out: list[str]) -> None:
        """A ``\\u`` escape's UTF-16 code unit: surrogates must come in pairs."""
        if 0xD800 <= code < 0xDC00:
            if self._high is not None:
                raise MalformedStream("a string in a tool's input holds a lone surrogate")
            self._high = code
            return
        if 0xDC00 <= code < 0xE000:
            if self._high is None:
                raise MalformedStream("a string in a tool's input holds a lone surrogate")
            code = 0x10000 + ((self._high - 0xD800) << 10) + (code - 0xDC00)
            self._high = None
        self._text(chr(code), out)

    def _text(self, text: str, out: list[str]) -> None:
        if self._high is not None:
            raise MalformedStream("a string in a tool's input holds a lone surrogate")
        self._decoded.append(text)

    def _drain(self, out: list[str]) -> None:
        """The text decoded so far goes to the string's masker, in one piece per fragment."""
        if self._decoded and self._string is not None:
            text = "".join(self._decoded)
            self._decoded.clear()
            self._emit(self._string.feed(text), out)
            self._settle(self._string)

    def _close(self, out: list[str]) -> None:
        if self._high is not None:
            raise MalformedStream("a string in a tool's input holds a lone surrogate")
        assert self._string is not None
        self._drain(out)
        self._emit(self._string.flush(), out)
        self._settle(self._string)
        self._string = None
        out.append('"')

    # --- shared ------------------------------------------------------------------------------

    @staticmethod
    def _emit(text: str, out: list[str]) -> None:
        if text:
            out.append(_json_string(text))

    def _settle(self, string: _String) -> None:
        self._applied.extend(string.masker.take_applied())
        self._blocked.extend(d for d in string.masker.blocked if d not in self._blocked)
