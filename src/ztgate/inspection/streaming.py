"""Masking and restoring streamed text (``text_delta`` / ``input_json_delta`` fragments).

One ``StreamMasker`` per content block: it releases masked text as soon as no match can still
cross what it releases, and everything at ``flush()`` (``content_block_stop``). The rule it
keeps: whatever the chunking, the concatenated output equals ``mask_text`` of the whole text.

Why it holds. Every detector's match is at most ``scanner.max_match_length`` (M) characters
long, and the holdback H >= M. A match starting before ``len(pending) - H`` therefore ends,
word boundary after it included, inside the text already seen, so further text cannot change
it; findings ending by that point are final, and the cut moves back to the start of a finding
that straddles it, so no finding is ever cut in two. The scan also sees the last M released
characters as context (findings there are ignored), so ``\\b`` at the cut and matches that
reach back over it read the text as the whole-text scan does.

``StreamRestorer`` does the reverse for the model's output: it restores this vault's
pseudonyms, holding back only a suffix that could still grow into one.
"""

from __future__ import annotations

from ztgate.inspection.masking import AppliedFinding, MaskPlan, mask_range
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import Finding, Scanner


class StreamMasker:
    """Masks one content block's streamed text. Not thread-safe: one per block."""

    def __init__(
        self,
        scanner: Scanner,
        plan: MaskPlan,
        *,
        holdback: int,
        pseudonyms: PseudonymVault | None = None,
        hash_key: bytes,
    ) -> None:
        if holdback < scanner.max_match_length:
            raise ValueError(
                f"holdback {holdback} is shorter than the longest possible match "
                f"({scanner.max_match_length}): a secret could slip out split across deltas"
            )
        self._scanner = scanner
        self._plan = plan
        self._holdback = holdback
        self._context = max(1, scanner.max_match_length)
        self._pseudonyms = pseudonyms
        self._hash_key = hash_key
        self._buffer = ""  # released context, then pending text
        self._released = 0  # where pending text starts in the buffer
        self._offset = 0  # the buffer's position in the whole stream
        self._applied: list[AppliedFinding] = []
        self._blocked: list[str] = []

    @property
    def applied(self) -> list[AppliedFinding]:
        """Actions taken so far, offsets into the whole (unmasked) stream."""
        return list(self._applied)

    @property
    def blocked(self) -> list[str]:
        """Detectors whose ``block`` fired: the caller ends the stream with an error event."""
        return list(self._blocked)

    def feed(self, fragment: str) -> str:
        """Masked text that is safe to release now (possibly empty)."""
        self._buffer += fragment
        limit = len(self._buffer) - self._holdback
        if limit <= self._released:
            return ""
        return self._release(limit, final=False)

    def flush(self) -> str:
        """Everything still held back, masked: call at ``content_block_stop``."""
        return self._release(len(self._buffer), final=True)

    def _release(self, limit: int, *, final: bool) -> str:
        findings = self._scanner.scan(self._buffer)
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
        keep = max(0, cut - self._context)
        self._buffer = self._buffer[keep:]
        self._offset += keep
        self._released = cut - keep
        return result.text


def _final_findings(
    findings: list[Finding], released: int, limit: int, *, final: bool
) -> tuple[int, list[Finding]]:
    """Where to cut and which findings are settled before it.

    Findings wholly in the released context are skipped. One reaching back over the released
    boundary (never seen before, so only possible if the context changed the scan) is clipped
    to the pending text: masking it partly beats letting its tail through.
    """
    cut = limit
    ready: list[Finding] = []
    for f in findings:
        if f.end <= released:
            continue
        if f.start >= cut:
            break
        if f.end > cut and not final:
            cut = max(released, f.start)
            break
        if f.start < released:
            f = Finding(f.detector, f.category, f.label, released, f.end)
        ready.append(f)
    return cut, ready


class StreamRestorer:
    """Restores a vault's pseudonyms in one content block's streamed model output.

    Holds back only the suffix that could still grow into a pseudonym the vault issued (or a
    tolerated variant of one); the output under any chunking equals ``vault.restore`` of the
    whole text. Not thread-safe: one per block.
    """

    def __init__(self, vault: PseudonymVault) -> None:
        self._vault = vault
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
        out = self._vault.restore_from(self._buffer[:cut], self._released)
        keep = cut - 1
        self._buffer = self._buffer[keep:]
        self._released = 1
        return out
