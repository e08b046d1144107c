"""Protecting a messages response on its way back: mask what policy masks, restore pseudonyms.

Whole JSON responses are walked block by block as requests are (``wire/fields.py``): text,
citations, every string and key of a tool's input, what server tools bring back (web pages,
search results, code output, MCP results). Streams are handled per content block:
``text_delta`` and ``input_json_delta`` fragments go through a ``StreamMasker`` (and a
``StreamRestorer`` when the request was pseudonymized), which hold back a window and release
the rest at ``content_block_stop``; blocks that arrive whole in ``content_block_start`` (tool
results) and ``citations_delta`` are masked whole. Deltas that release nothing are dropped;
the held text comes out in later deltas.

Signed blocks (``thinking``, ``redacted_thinking``, ``compaction``) pass unchanged: the client
sends them back and the API checks their signature, so masking one would break the
conversation. The model only ever saw masked input, so what it thinks about is masked
already; what a request sends back of them is scanned again there.

A ``block`` finding withholds the response from there on (a JSON response becomes an error;
a stream ends with an error event), and so does any failure: nothing unmasked is released
because inspection broke.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from ztgate.core.context import RequestContext, StreamEnd
from ztgate.core.errors import GatewayError
from ztgate.core.findings import VALUE_CATEGORIES
from ztgate.core.maskplan import MaskPlan
from ztgate.core.sse import SSEEvent, frame
from ztgate.core.texts import Kind
from ztgate.inspection.masking import AppliedFinding, count_masked, mask_text, plan_findings
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import TextScanner
from ztgate.inspection.streaming import StreamMasker, StreamRestorer
from ztgate.wire.fields import SIGNED_BLOCKS, block_text

log = logging.getLogger("ztgate.inspection")

_TOOL_BLOCKS = ("tool_use", "server_tool_use", "mcp_tool_use")
_T = TypeVar("_T")
_R = TypeVar("_R")


class ResponseWithheld(GatewayError):
    status = 502
    error_type = "api_error"


def _json_string(value: str) -> str:
    """``value`` as it must appear inside a JSON string."""
    return orjson.dumps(value).decode()[1:-1]


def _event_bytes(name: str, data: Any) -> bytes:
    return frame(name, orjson.dumps(data))


def _delta_event(index: int, key: str, text: str) -> bytes:
    kind = "text_delta" if key == "text" else "input_json_delta"
    data = {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: text}}
    return _event_bytes("content_block_delta", data)


@dataclass(slots=True)
class _Block:
    """One streamed content block's masking (and restoring) state."""

    key: str  # "text" or "partial_json": the delta field it streams
    masker: StreamMasker
    restorer: StreamRestorer | None

    def feed(self, fragment: str) -> str:
        out = self.masker.feed(fragment)
        if self.restorer is not None and out:
            out = self.restorer.feed(out)
        return out

    def flush(self) -> str:
        out = self.masker.flush()
        if self.restorer is not None:
            out = self.restorer.feed(out) + self.restorer.flush()
        return out


class ResponseProtector:
    """The response filter of one request."""

    def __init__(
        self,
        ctx: RequestContext,
        scanner: TextScanner,
        plan: MaskPlan,
        *,
        vault: PseudonymVault | None,
        holdback: int,
        hash_key: bytes,
    ) -> None:
        self._ctx = ctx
        self._scanner = scanner
        # The caller may see its own values: on the way back, pseudonymize only reports.
        self._plan = plan.substituting({"pseudonymize": "report"})
        self._vault = vault
        self._holdback = holdback
        self._hash_key = hash_key
        self._blocks: dict[int, _Block] = {}

    # --- whole responses ---------------------------------------------------------------------

    def body(self, body: bytes) -> bytes:
        if self._ctx.upstream_status != 200:
            return body  # an error names no model output
        return self._guarded(self._body, body)

    def _body(self, body: bytes) -> bytes:
        message = orjson.loads(body)
        content = message.get("content") if isinstance(message, dict) else None
        changed = False
        for index, block in enumerate(content if isinstance(content, list) else []):
            changed = self._whole(block, f"content.{index}") or changed
        return orjson.dumps(message) if changed else body

    def _whole(self, block: Any, path: str) -> bool:
        """Mask one whole block (or delta) in place; True when anything in it changed."""
        if not isinstance(block, dict) or block.get("type") in SIGNED_BLOCKS:
            return False
        changed = False
        for field in block_text(block, path).fields:
            fixed = field.kind is Kind.FIXED
            text = self._mask(field.text, path, restore=not fixed)
            if text != field.text:
                if fixed:
                    self._ctx.stream_end = StreamEnd.WITHHELD
                    raise ResponseWithheld(
                        f"the response was withheld: a field of {path} that cannot be "
                        "rewritten carries what policy masks"
                    )
                field.replace(text)
                changed = True
        return changed

    def _mask(self, text: str, path: str, *, restore: bool = True) -> str:
        result = mask_text(
            text,
            plan_findings(*self._scanner.scan_parts(text), self._plan),
            self._plan,
            hash_key=self._hash_key,
            detectors=self._scanner.detectors,
        )
        self._tally(result.applied, result.blocked, path)
        out = result.text
        return self._vault.restore(out) if self._vault is not None and restore else out

    # --- streams -----------------------------------------------------------------------------

    def event(self, event: SSEEvent) -> list[bytes]:
        if event.event not in ("content_block_start", "content_block_delta", "content_block_stop"):
            return [event.raw]
        return self._guarded(self._event, event)

    def _event(self, event: SSEEvent) -> list[bytes]:
        data = orjson.loads(event.data)
        index = data.get("index")
        if event.event == "content_block_delta":
            block = self._blocks.get(index)
            delta = data.get("delta") or {}
            if isinstance(delta, dict) and delta.get("type") == "citations_delta":
                changed = self._whole(delta, f"content.{index}")
                return [_event_bytes(event.event, data) if changed else event.raw]
            if block is None or not isinstance(delta.get(block.key), str):
                return [event.raw]
            out = block.feed(delta[block.key])
            self._check(block, index)
            return [_delta_event(index, block.key, out)] if out else []
        if event.event == "content_block_start":
            return self._start(event, data, index)
        block = self._blocks.pop(index, None)
        if block is None:
            return [event.raw]
        rest = block.flush()
        self._check(block, index)
        return [_delta_event(index, block.key, rest), event.raw] if rest else [event.raw]

    def _start(self, event: SSEEvent, data: dict[str, Any], index: int) -> list[bytes]:
        content = data.get("content_block") or {}
        kind = content.get("type")
        if kind == "text":
            key, encode = "text", None
        elif kind in _TOOL_BLOCKS:
            key, encode = "partial_json", _json_string
        elif self._whole(content, f"content.{index}"):
            return [_event_bytes(event.event, data)]  # a tool's result arrives whole
        else:
            return [event.raw]  # signed blocks, and whole blocks with nothing to mask
        block = _Block(
            key,
            StreamMasker(
                self._scanner, self._plan, holdback=self._holdback, hash_key=self._hash_key
            ),
            StreamRestorer(self._vault, encode) if self._vault is not None else None,
        )
        self._blocks[index] = block
        if kind == "text" and content.get("text"):
            # A start that already carries text: it too goes through the block's window.
            first = block.feed(content["text"])
            content["text"] = ""
            start = _event_bytes(event.event, data)
            return [start, _delta_event(index, key, first)] if first else [start]
        return [event.raw]

    def _check(self, block: _Block, index: int) -> None:
        self._tally(block.masker.take_applied(), block.masker.blocked, f"content.{index}")

    # --- shared ------------------------------------------------------------------------------

    def _tally(self, applied: list[AppliedFinding], blocked: list[str], path: str) -> None:
        ctx = self._ctx
        count_masked(ctx.masked, applied)
        for finding in applied:
            if finding.category not in VALUE_CATEGORIES:
                checks = ctx.response_checks
                checks[finding.detector] = checks.get(finding.detector, 0) + 1
        if blocked:
            ctx.stream_end = StreamEnd.WITHHELD
            raise ResponseWithheld(
                "the response was withheld: policy does not allow "
                + ", ".join(sorted(set(blocked)))
                + f" (found in {path})"
            )

    def _guarded(self, work: Callable[[_T], _R], item: _T) -> _R:
        try:
            return work(item)
        except GatewayError:
            raise
        except Exception as exc:  # fail closed: nothing unmasked leaves because inspection broke
            log.exception("response inspection failed", extra={"request_id": self._ctx.request_id})
            self._ctx.stream_end = StreamEnd.WITHHELD
            raise ResponseWithheld("the response could not be inspected and was withheld") from exc
