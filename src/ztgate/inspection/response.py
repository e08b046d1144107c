"""Protecting a messages response on its way back: mask what policy masks, restore pseudonyms.

Whole JSON responses are walked block by block as requests are (``wire/fields.py``): text,
citations, every string and key of a tool's input, what server tools bring back (web pages,
search results, code output, MCP results). Streams are handled per content block:
``text_delta`` fragments go through a ``StreamMasker`` (and a ``StreamRestorer`` when the
request was pseudonymized), which hold back a window and release the rest at
``content_block_stop``; ``input_json_delta`` fragments go through a ``JsonStreamMasker``,
which reads the JSON as a client parses it and masks each string's decoded text the same way;
blocks that arrive whole in ``content_block_start`` (tool results), what else a start carries,
and ``citations_delta`` are masked whole. Deltas that release nothing are dropped; the held
text comes out in later deltas.

A stream is read as a client reads it, and a client reads exactly what the filter read:

- every event with data is parsed and written again from what was parsed (one value per key,
  one line end), and its name must be its data's ``type``: the SDKs parse any named event's
  data and go by that ``type``, the filter by the name;
- blocks start in order (index 0, 1, ...): clients append each started block to the message
  and apply a delta by its index there, so the filter's blocks are the client's;
- a delta goes through the masking of its open block's kind; one for no open block (never
  started, already stopped), or of another kind (text into a tool's input, JSON into a text
  block, either into a signed block or a block that arrived whole) withholds the response.

The API never sends any of these; a broken or hostile upstream could, and then failing closed
costs nothing (``MalformedStream``).

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
from typing import Any, Protocol, TypeVar

import orjson

from ztgate.core.context import RequestContext, StreamEnd
from ztgate.core.errors import GatewayError
from ztgate.core.findings import VALUE_CATEGORIES
from ztgate.core.maskplan import MaskPlan
from ztgate.core.sse import SSEEvent, frame
from ztgate.core.texts import Kind
from ztgate.inspection.jsonstream import JsonStreamMasker, MalformedStream
from ztgate.inspection.masking import AppliedFinding, count_masked, mask_text, plan_findings
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import TextScanner
from ztgate.inspection.streaming import StreamMasker, StreamRestorer
from ztgate.wire.fields import SIGNED_BLOCKS, block_text

log = logging.getLogger("ztgate.inspection")

_TOOL_BLOCKS = ("tool_use", "server_tool_use", "mcp_tool_use")
# Deltas whose text a client adds to a text block or a tool's input: only a block the filter
# streams of that kind may take one.
_MASKED_DELTAS = frozenset({"text_delta", "input_json_delta", "citations_delta"})
_T = TypeVar("_T")
_R = TypeVar("_R")


class ResponseWithheld(GatewayError):
    status = 502
    error_type = "api_error"


def _event_bytes(name: str, data: Any) -> bytes:
    return frame(name, orjson.dumps(data))


def _delta_event(index: int, key: str, text: str) -> bytes:
    kind = "text_delta" if key == "text" else "input_json_delta"
    data = {"type": "content_block_delta", "index": index, "delta": {"type": kind, key: text}}
    return _event_bytes("content_block_delta", data)


def _index(data: dict[str, Any]) -> int | None:
    """An event's block index, or None when it is not an integer."""
    value = data.get("index")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Masking(Protocol):
    """What a streamed block's text goes through: ``_Text`` or a ``JsonStreamMasker``."""

    def feed(self, fragment: str) -> str: ...

    def flush(self) -> str: ...

    def take_applied(self) -> list[AppliedFinding]: ...

    @property
    def blocked(self) -> list[str]: ...


@dataclass(slots=True)
class _Text:
    """A text block's masking (and restoring)."""

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

    def take_applied(self) -> list[AppliedFinding]:
        return self.masker.take_applied()

    @property
    def blocked(self) -> list[str]:
        return self.masker.blocked


@dataclass(slots=True)
class _Block:
    """One open content block: what its deltas may be, and how their text is masked.

    ``kind`` is "text" (``text_delta`` and ``citations_delta``), "tool" (``input_json_delta``),
    "signed" (its own deltas, passed as they are) or "whole" (arrived whole: no delta)."""

    kind: str
    masking: _Masking | None = None

    @property
    def key(self) -> str:
        return "text" if self.kind == "text" else "partial_json"


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
        self._blocks: dict[int, _Block] = {}  # the open content blocks
        self._started: int | None = None  # blocks started; None before message_start

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
        if not event.data:
            return [event.raw]  # comments and keep-alives: no client reads anything in them
        return self._guarded(self._event, event)

    def _event(self, event: SSEEvent) -> list[bytes]:
        """Every event with data is read, and written again from what was read, so a client
        reads exactly what the filter read. Clients take an event's kind from its data's
        ``type`` (the SDKs parse any named event that way) and the filter from its name: the
        two must agree, as they always do in what the API sends."""
        data = orjson.loads(event.data)
        name = event.event
        if not isinstance(data, dict) or data.get("type") != name:
            raise MalformedStream("an event's data is not an object of the type it is named")
        if name == "message_start":
            return self._message_start(data)
        if name == "content_block_start":
            return self._start(data)
        if name == "content_block_delta":
            return self._delta(data)
        if name == "content_block_stop":
            return self._stop(data)
        return [_event_bytes(name, data)]

    def _message_start(self, data: dict[str, Any]) -> list[bytes]:
        """The message as it starts: the API sends it once, with no content yet. Content here
        would sit before the blocks in what a client accumulates, so their indexes would no
        longer be its positions."""
        message = data.get("message")
        if self._started is not None or not isinstance(message, dict):
            raise MalformedStream("a stream's message_start is repeated or malformed")
        if message.get("content") not in (None, []):
            raise MalformedStream("a stream's message_start carries content")
        self._started = 0
        return [_event_bytes("message_start", data)]

    def _start(self, data: dict[str, Any]) -> list[bytes]:
        """A block starts. Its index must be the next position: clients append each started
        block to the message's content and apply a delta by its index there, so a block
        started out of order would have deltas the filter reads apart joined by the client."""
        index = _index(data)
        content = data.get("content_block")
        if index is None or index != (self._started or 0) or not isinstance(content, dict):
            raise MalformedStream("a content block starts out of order or malformed")
        self._started = index + 1
        path = f"content.{index}"
        kind = content.get("type")
        if kind in SIGNED_BLOCKS:
            self._blocks[index] = _Block("signed")
            return [_event_bytes("content_block_start", data)]
        if kind == "text":
            text = content.get("text", "")
            if not isinstance(text, str):
                raise MalformedStream("a text block starts with text that is not a string")
            content["text"] = ""
            self._whole(content, path)  # what else the start carries (citations)
            block = _Block("text", self._text_masking())
            self._blocks[index] = block
            start = _event_bytes("content_block_start", data)
            first = self._feed(block, index, text) if text else ""
            # A start that already carries text: it too goes through the block's window.
            return [start, _delta_event(index, block.key, first)] if first else [start]
        # A tool's id, name and any input the start carries; a tool's result, arrived whole.
        self._whole(content, path)
        if kind in _TOOL_BLOCKS:
            self._blocks[index] = _Block("tool", self._json_masking())
        else:
            self._blocks[index] = _Block("whole")
        return [_event_bytes("content_block_start", data)]

    def _delta(self, data: dict[str, Any]) -> list[bytes]:
        """A delta goes through the masking of its block's kind, or is passed as it is into a
        signed block; any other (no open block, or text for a block of another kind) is
        withheld: the API never sends one, and a client might still add it to some text."""
        index = _index(data)
        delta = data.get("delta")
        block = self._blocks.get(index) if index is not None else None
        if index is None or block is None or not isinstance(delta, dict):
            raise MalformedStream("a delta comes for no open content block")
        kind = delta.get("type")
        if block.kind == "signed" and isinstance(kind, str) and kind not in _MASKED_DELTAS:
            return [_event_bytes("content_block_delta", data)]
        if block.kind == "text" and kind == "citations_delta":
            self._whole(delta, f"content.{index}")
            return [_event_bytes("content_block_delta", data)]
        wanted = {"text": "text_delta", "tool": "input_json_delta"}.get(block.kind)
        fragment = delta.get(block.key)
        if wanted is None or kind != wanted or not isinstance(fragment, str):
            raise MalformedStream("a delta is not of its content block's kind")
        out = self._feed(block, index, fragment)
        return [_delta_event(index, block.key, out)] if out else []

    def _stop(self, data: dict[str, Any]) -> list[bytes]:
        index = _index(data)
        block = self._blocks.pop(index, None) if index is not None else None
        if index is None or block is None:
            raise MalformedStream("a content block stops that is not open")
        stop = _event_bytes("content_block_stop", data)
        if block.masking is None:
            return [stop]
        rest = block.masking.flush()
        self._check(block.masking, index)
        return [_delta_event(index, block.key, rest), stop] if rest else [stop]

    def _feed(self, block: _Block, index: int, fragment: str) -> str:
        assert block.masking is not None
        out = block.masking.feed(fragment)
        self._check(block.masking, index)
        return out

    def _text_masking(self) -> _Text:
        restorer = StreamRestorer(self._vault) if self._vault is not None else None
        return _Text(self._stream_masker(), restorer)

    def _json_masking(self) -> JsonStreamMasker:
        vault = self._vault
        return JsonStreamMasker(
            self._stream_masker, (lambda: StreamRestorer(vault)) if vault is not None else None
        )

    def _stream_masker(self) -> StreamMasker:
        return StreamMasker(
            self._scanner, self._plan, holdback=self._holdback, hash_key=self._hash_key
        )

    def _check(self, masking: _Masking, index: int) -> None:
        self._tally(masking.take_applied(), masking.blocked, f"content.{index}")

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
        except MalformedStream as exc:  # fail closed: what cannot be read as a client reads it
            log.warning("response withheld: %s", exc, extra={"request_id": self._ctx.request_id})
            self._ctx.stream_end = StreamEnd.WITHHELD
            raise ResponseWithheld(f"the response was withheld: {exc}") from exc
        except Exception as exc:  # fail closed: nothing unmasked leaves because inspection broke
            log.exception("response inspection failed", extra={"request_id": self._ctx.request_id})
            self._ctx.stream_end = StreamEnd.WITHHELD
            raise ResponseWithheld("the response could not be inspected and was withheld") from exc
