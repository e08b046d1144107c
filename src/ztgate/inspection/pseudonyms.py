"""Reversible pseudonyms: ``<EMAIL_1>`` goes to Claude, the caller gets the value back.

A vault is scoped to one identity and one conversation, so a pseudonym can only ever be
restored to a value that this caller's own request contained: restoring looks a surrogate up
in the vault and leaves anything it did not issue verbatim, however much it looks like one.

Models alter surrogates, so restoring is tolerant of what they do to them: case changes
(``<email_1>``), markdown emphasis or escapes inside the brackets (``<**EMAIL_1**>``,
``<EMAIL\\_1>``), and dropped brackets (``EMAIL_1``, only as a whole word). Candidates are
found with one fixed regex and then looked up by their normalised core; no issued text is
ever spliced into a regex, so there is nothing to forget to ``re.escape`` (LLM Guard's bug).

Only what the vault issued counts: a candidate it did not issue is plain text and hides
nothing inside it (``<EMAIL_1\\_X>`` is no surrogate, but its whole word ``EMAIL_1`` is one).
So whether a stretch is restored depends only on the vault and on at most one candidate's
length of text after it, which is what lets a stream hold back a bounded suffix and still
restore exactly as the whole text would (``pending_prefix``).

Thread-safety: a vault belongs to one request flow (the request that fills it and the
response that reads it, handled one after the other). It takes no locks; do not share one
between concurrent requests, and never between identities.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

_LABEL = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
# A bracketed surrogate, possibly emphasised or escaped inside; ``core`` is normalised later.
_BRACKETED = (
    r"<[ \t]{0,2}(?:\*{1,3}|_{1,3})?"
    r"(?P<core>[A-Za-z][A-Za-z0-9_\\]{0,80}?)"
    r"(?:\*{1,3}|_{1,3})?[ \t]{0,2}>"
)
# A surrogate whose brackets were dropped: a whole word only.
_BARE = r"\b(?P<bare>[A-Za-z][A-Za-z0-9_]{0,80}_[0-9]{1,9})\b"
_CANDIDATE = re.compile(_BRACKETED + "|" + _BARE)
# The longest text a bracketed candidate holds between its brackets, and a bare one at all.
_INSIDE_MAX = 2 + 3 + 81 + 3 + 2
_BARE_MAX = 81 + 1 + 9
_EMPHASIS = frozenset(" \t*_")


def _is_word(ch: str) -> bool:
    """A character ``\\b`` treats as part of a word in the (non-ASCII-flag) candidate regex."""
    return ch.isalnum() or ch == "_"


def _normalise(core: str) -> str:
    """The lookup key of what a model wrote: escapes dropped, upper case."""
    return core.replace("\\", "").upper()


@dataclass(slots=True)
class PseudonymVault:
    """Pseudonyms issued for one identity in one conversation, and the values behind them.

    Not thread-safe by design: one vault per request flow (see the module docstring).
    """

    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    _values: dict[str, str] = field(default_factory=dict)  # "EMAIL_1" -> value
    _counters: dict[str, int] = field(default_factory=dict)

    def pseudonym(self, label: str, value: str) -> str:
        """``<LABEL_n>`` for ``value``: the same value always gets the same one, and each
        label counts on its own (``<EMAIL_1>``, ``<PHONE_1>``, ``<EMAIL_2>``)."""
        if not _LABEL.fullmatch(label):
            raise ValueError(f"label {label!r}: use upper-case letters, digits and '_'")
        key = (label, value)
        core = self._by_value.get(key)
        if core is None:
            n = self._counters.get(label, 0) + 1
            self._counters[label] = n
            core = f"{label}_{n}"
            self._by_value[key] = core
            self._values[core] = value
        return f"<{core}>"

    @property
    def issued(self) -> frozenset[str]:
        """The cores (``EMAIL_1``) this vault issued; never the values."""
        return frozenset(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def restore(self, text: str) -> str:
        """``text`` with every surrogate this vault issued replaced by its value."""
        return self.restore_from(text, 0)

    def restore_from(
        self, text: str, start: int, encode: Callable[[str], str] | None = None
    ) -> str:
        """Restores ``text[start:]``; ``\\b`` at ``start`` still sees ``text[start - 1]``, so
        a stream restored piecewise reads word boundaries exactly as the whole text would.
        ``encode`` writes each value as the text around it needs (JSON string escapes)."""
        if not self._values:
            return text[start:]
        parts: list[str] = []
        pos = done = start
        search = _CANDIDATE.search
        while (match := search(text, pos)) is not None:
            core = match.group("core")
            if core is None:
                core = match.group("bare")
            value = self._values.get(_normalise(core))
            if value is None:
                # Not issued: plain text, so an issued surrogate may still start inside it
                # (a candidate is tried at every position; at most one alternative fits one).
                pos = match.start() + 1
                continue
            parts.append(text[done : match.start()])
            parts.append(value if encode is None else encode(value))
            pos = done = match.end()
        parts.append(text[done:])
        return "".join(parts)

    def pending_prefix(self, text: str) -> int:
        """Where the longest suffix of ``text`` that could still grow into a surrogate this
        vault issued starts (``len(text)`` when none can): what a stream must hold back.

        Only issued surrogates change text (``restore_from`` passes over the rest), so only
        two places can be undecided: the last '<' with no '>' after it (a bracketed one ends
        at the first '>', and cannot hold a '<'), and the trailing word (a bare one is a
        whole word). Either is held while it could still become an issued surrogate; any
        text before them restores the same whatever follows."""
        if not self._values:
            return len(text)
        cut = len(text)
        # A bracketed surrogate in progress: the '<' at most one candidate's inside back.
        lt = text.rfind("<", max(0, len(text) - _INSIDE_MAX - 1))
        if lt >= 0 and ">" not in text[lt:] and self._could_grow(text[lt + 1 :], bracketed=True):
            cut = lt
        # A bare surrogate in progress, or complete but not yet known to end a word.
        run = len(text)
        while run > 0 and _is_word(text[run - 1]):
            run -= 1
        if 0 < len(text) - run <= _BARE_MAX and self._could_grow(text[run:], bracketed=False):
            cut = min(cut, run)
        return cut

    def _could_grow(self, partial: str, *, bracketed: bool) -> bool:
        """Whether ``partial`` is the start of a surrogate this vault issued (or of a
        tolerated variant of one): a prefix of a core, or a whole core plus closing
        emphasis still waiting for its '>' or its word boundary."""
        if bracketed:
            partial = partial.lstrip(" \t")
            stripped = partial.lstrip("*_")
            if len(partial) - len(stripped) > 3:
                return False
            partial = stripped
        key = _normalise(partial)
        for core in self._values:
            if core.startswith(key):
                return True
            if bracketed and key.startswith(core) and set(key[len(core) :]) <= _EMPHASIS:
                return True
        return False
