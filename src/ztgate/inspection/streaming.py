"""Masking and restoring streamed text (``text_delta`` / ``input_json_delta`` fragments).

One ``StreamMasker`` per content block: it releases masked text once no match can still cross
what it releases (after the first release, in steps of ``RELEASE_STEP``), and everything at
``flush()`` (``content_block_stop``). The rule it
keeps: whatever the chunking, the concatenated output equals ``mask_text`` of the whole text.

Why it holds. Text is released only up to a cut before which every match is settled:

- Detectors whose matches are at most H (the holdback, 128 by default) long: a match starting
  before ``len - H`` ends, word boundary after it included, inside the text already seen.
- Longer detectors whose matches can hold a space or line break only in their first W <= H
  characters (a JWT, an email, ``Bearer <token>``): a match still growing at the end covers
  the trailing unbroken run from at most W after its start, so it starts after
  ``run_start - H``; and no match starts more than its bound before the end.
- Longer detectors with spaces throughout (a PEM block) must start with a literal anchor
  (``-----BEGIN``): text is held from the first anchor that no settled finding covers yet.

A finding that straddles the cut moves the cut back to its start, so none is cut in two;
findings that overlap are masked as their union, so a union that straddles it moves the cut
back to the union's start (a contained finding lies inside its container's union, so it
is released with it, masked where the container is not). The
scan also sees released text as context (findings there are ignored), so ``\\b`` at the cut
reads the text as the whole-text scan does. In prose the first token waits at most H
characters; only an unfinished long token or key block holds more.

``StreamRestorer`` does the reverse for the model's output: it restores this vault's
pseudonyms, holding back only a suffix that could still grow into one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import lru_cache

from ztgate.core.findings import Finding
from ztgate.core.maskplan import MaskPlan
from ztgate.detectors.holdback import StreamBounds, bounds
from ztgate.detectors.patterns import (
    STREAM_BREAKS,
)
from ztgate.inspection.masking import AppliedFinding, mask_range, overlap_groups, plan_findings
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import Contained, TextScanner

DEFAULT_HOLDBACK = 128
RELEASE_STEP = 64  # characters released at a time once a block's first text is out


@lru_cache(maxsize=32)
def stream_bounds(scanner: TextScanner, holdback: int) -> StreamBounds:
    """The bounds for a scanner's detectors and a holdback (computed once per pair), or
    ValueError naming a detector the holdback cannot cover safely."""
    return bounds(tuple(scanner.detectors.values()), holdback)


class StreamMasker:
    """Masks one content block's streamed text. Not thread-safe: one per block."""

    def __init__(
        self,
        scanner: TextScanner,
        plan: MaskPlan,
        *,
        holdback: int = DEFAULT_HOLDBACK,
        pseudonyms: PseudonymVault | None = None,
        hash_key: bytes,
    ) -> None:
        self._bounds = stream_bounds(scanner, holdback)
        self._scanner = scanner
        self._plan = plan
        self._pseudonyms = pseudonyms
        self._hash_key = hash_key
        self._buffer = ""  # released context, then pending text
        self._released = 0  # where pending text starts in the buffer
        self._offset = 0  # the buffer's position in the whole stream
        self._applied: list[AppliedFinding] = []
        self._blocked: list[str] = []

    @property
    def applied(self) -> list[AppliedFinding]:
        """Actions taken so far (since the last ``take_applied``), offsets into the whole
        (unmasked) stream."""
        return list(self._applied)

    def take_applied(self) -> list[AppliedFinding]:
        """The actions taken since the last call, handed over once each."""
        applied, self._applied = self._applied, []
        return applied

    @property
    def blocked(self) -> list[str]:
        """Detectors whose ``block`` fired: the caller withholds the rest of the response."""
        return list(self._blocked)

    def feed(self, fragment: str) -> str:
        """Masked text that is safe to release now (possibly empty).

        After the first release, text goes out in steps of at least ``RELEASE_STEP``
        characters: each release rescans the window, and a scan per three-word delta would
        cost more than the step's few tokens of latency are worth."""
        self._buffer += fragment
        limit = len(self._buffer) - self._bounds.holdback
        step = RELEASE_STEP if self._offset or self._released else 1
        if limit - self._released < step:
            return ""
        limit = self._run_limit(limit)
        if limit <= self._released:
            return ""
        findings = self._findings()
        limit = self._anchor_limit(limit, findings)
        if limit <= self._released:
            return ""
        return self._release(findings, limit, final=False)

    def flush(self) -> str:
        """Everything still held back, masked: call at ``content_block_stop``."""
        return self._release(self._findings(), len(self._buffer), final=True)

    def _findings(self) -> list[Finding]:
        return plan_findings(*self._scanner.scan_parts(self._buffer), self._plan)

    def _run_limit(self, limit: int) -> int:
        """No release into a long unbroken run that a long match may still be growing in."""
        reach = self._bounds.run_reach
        if not reach:
            return limit
        end = len(self._buffer)
        run_start = 1 + max(self._buffer.rfind(ch, end - reach) for ch in STREAM_BREAKS)
        return min(limit, max(run_start, end - reach) - self._bounds.holdback)

    def _anchor_limit(self, limit: int, findings: list[Finding]) -> int:
        """No release past an anchor (``-----BEGIN``) whose match is not settled yet."""
        end = len(self._buffer)
        settled_by = end - self._bounds.holdback
        for anchor in self._bounds.anchors:
            text = self._buffer.lower() if anchor.fold else self._buffer
            at = text.find(anchor.text, max(self._released, end - anchor.reach))
            while 0 <= at < limit:
                if not any(
                    f.start <= at < f.end <= settled_by and not isinstance(f, Contained)
                    for f in findings
                ):
                    limit = at
                    break
                at = text.find(anchor.text, at + 1)
        return limit

    def _release(self, findings: list[Finding], limit: int, *, final: bool) -> str:
        cut, ready = _final_findings(findings, self._released, limit, final=final)
        result = mask_range(
            self._buffer,
            self._released,
            cut,
            ready,
            self._plan,
            pseudonyms=self._pseudonyms,
            hash_key=self._hash_key,
            detectors=self._scanner.detectors,
            offset=self._offset,
        )
        self._applied.extend(result.applied)
        self._blocked.extend(d for d in result.blocked if d not in self._blocked)
        keep = max(0, cut - self._bounds.context)
        self._buffer = self._buffer[keep:]
        self._offset += keep
        self._released = cut - keep
        return result.text


def _final_findings(
    findings: list[Finding], released: int, limit: int, *, final: bool
) -> tuple[int, list[Finding]]:
    """Where to cut and which findings are settled before it.

    Findings may overlap, and masking replaces the union of overlapping ones at once: the cut
    never falls inside such a union (it moves back to the union's start), so no merged span
    is released in two parts, each masked on its own or not at all. Every finding starting
    before ``limit`` is settled, so a union ending by the cut can grow no further.

    Findings wholly in the released context are skipped. One reaching back over the released
    boundary (never seen before, so only possible if the context changed the scan) is clipped
    to the pending text: masking it partly beats letting its tail through.
    """
    cut = limit
    ready: list[Finding] = []
    pending = sorted((f for f in findings if f.end > released), key=lambda f: (f.start, -f.end))
    for union in overlap_groups(pending, lambda f: (f.start, f.end)):
        start, end = union[0].start, max(f.end for f in union)
        if start >= cut:
            break
        if end > cut and not final:
            cut = max(released, start)
            break
        ready.extend(_clipped(f, released) for f in union)
    return cut, ready


def _clipped(f: Finding, released: int) -> Finding:
    """``f`` cut to the pending text (a contained one stays contained)."""
    return replace(f, start=released) if f.start < released else f


class StreamRestorer:
    """Restores a vault's pseudonyms in one content block's streamed model output.

    Holds back only the suffix that could still grow into a pseudonym the vault issued (or a
    tolerated variant of one); the output under any chunking equals ``vault.restore`` of the
    whole text. Not thread-safe: one per block.
    """

    def __init__(self, vault: PseudonymVault, encode: Callable[[str], str] | None = None) -> None:
        self._vault = vault
        self._encode = encode
        self._buffer = ""  # one released character of context, then pending text
        self._released = 0

    def feed(self, fragment: str) -> str:
        """Restored text that is safe to release now (possibly empty)."""
        self._buffer += fragment
        pending = self._buffer[self._released :]
        cut = self._released + self._vault.pending_prefix(pending)
        return self._release(cut)

    def flush(self) -> str:
        """The rest, at ``content_block_stop``: an unfinished pseudonym stays as written."""
        return self._release(len(self._buffer))

    def _release(self, cut: int) -> str:
        if cut <= self._released:
            return ""
        out = self._vault.restore_from(self._buffer[:cut], self._released, self._encode)
        keep = cut - 1
        self._buffer = self._buffer[keep:]
        self._released = 1
        return out
