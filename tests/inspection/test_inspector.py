"""The inspect and protect stages on a request context, without a server."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.inspection.test_masking import ANTHROPIC, EMAIL, full_scanner
from ztgate.core.context import Body, Endpoint, RequestContext, Route
from ztgate.core.decision import Decision, Effect
from ztgate.core.findings import Finding
from ztgate.core.maskplan import MaskPlan
from ztgate.detectors.catalogue import catalogue
from ztgate.inspection.inspector import InspectionFailed, RequestBlocked, ScanningInspector
from ztgate.inspection.scanner import Scanner
from ztgate.wire.fields import body_text


class _BrokenScanner(Scanner):
    """A scanner that fails mid-request, as a bug or a resource limit would."""

    def scan_parts(self, text: str) -> tuple[list[Finding], list[Finding]]:
        raise MemoryError("scratch space exhausted")


def context(payload: dict[str, Any], endpoint: Endpoint = Endpoint.MESSAGES) -> RequestContext:
    ctx = RequestContext("req_1", "POST", "/v1/messages", b"", [], None, "http")
    ctx.route = Route(endpoint, "create", Body.JSON)
    ctx.payload = payload
    ctx.texts = body_text(payload)
    return ctx


def message(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


def decide(ctx: RequestContext, plan: MaskPlan) -> None:
    ctx.decision = Decision(Effect.ALLOW, "ok", ("r",), mask=plan)


def test_a_scanner_failure_refuses_the_request() -> None:
    inspector = ScanningInspector(_BrokenScanner(catalogue()))
    ctx = context(message(f"key {ANTHROPIC}"))
    with pytest.raises(InspectionFailed, match="could not be inspected"):
        inspector.inspect_request(ctx)
    assert ctx.inspection is None


def test_masking_rewrites_fields_in_place_and_counts() -> None:
    inspector = ScanningInspector(full_scanner(), hash_key=b"k" * 16)
    ctx = context(message(f"mail {EMAIL}, key {ANTHROPIC}"))
    inspector.inspect_request(ctx)
    decide(ctx, MaskPlan({"email": "pseudonymize"}, {"secret": "redact"}))
    inspector.protect_request(ctx)
    assert ctx.payload is not None
    assert ctx.payload["messages"][0]["content"] == (
        "mail <EMAIL_1>, key [REDACTED:ANTHROPIC_API_KEY]"
    )
    assert ctx.masked == {"email": 1, "anthropic_api_key": 1}
    assert ctx.inspection is not None
    assert ctx.inspection.vault is not None


def test_block_names_detectors_and_paths_never_values() -> None:
    inspector = ScanningInspector(full_scanner())
    ctx = context(message(f"key {ANTHROPIC}"))
    inspector.inspect_request(ctx)
    decide(ctx, MaskPlan({}, {"secret": "block"}))
    with pytest.raises(RequestBlocked) as refused:
        inspector.protect_request(ctx)
    assert str(refused.value) == (
        "policy does not allow sending anthropic_api_key (1 found) in messages.0.content"
    )


def test_no_mask_leaves_the_request_as_sent() -> None:
    inspector = ScanningInspector(full_scanner())
    ctx = context(message(f"key {ANTHROPIC}"))
    inspector.inspect_request(ctx)
    ctx.decision = Decision(Effect.ALLOW, "ok")
    inspector.protect_request(ctx)
    assert ctx.payload == message(f"key {ANTHROPIC}")
    assert [f.detector for f in ctx.findings] == ["anthropic_api_key"]


def test_a_holdback_too_short_for_the_catalogue_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="holdback"):
        ScanningInspector(full_scanner(), holdback=32)


def test_a_value_that_cannot_be_rewritten_refuses_the_request() -> None:
    inspector = ScanningInspector(full_scanner())
    body = message("hi")
    body["messages"].append(
        {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": ANTHROPIC, "signature": "s"}],
        }
    )
    ctx = context(body)
    inspector.inspect_request(ctx)
    assert [f.path for f in ctx.findings] == ["messages.1.content.0.thinking"]
    decide(ctx, MaskPlan({}, {"secret": "redact"}))
    with pytest.raises(
        RequestBlocked, match=r"anthropic_api_key in messages\.1\.content\.0\.thinking"
    ):
        inspector.protect_request(ctx)


def test_only_reporting_lets_a_fixed_value_through() -> None:
    inspector = ScanningInspector(full_scanner())
    ctx = context({**message("hi"), "model": f"m-{EMAIL}"})
    inspector.inspect_request(ctx)
    decide(ctx, MaskPlan({"email": "report"}, {}))
    inspector.protect_request(ctx)  # nothing to rewrite: it passes, and policy saw the finding
    assert [f.detector for f in ctx.findings] == ["email"]


def test_a_key_carrying_a_value_is_renamed_and_never_spelled_in_a_path() -> None:
    inspector = ScanningInspector(full_scanner(), hash_key=b"k" * 16)
    tool_use = {"type": "tool_use", "id": "t", "name": "n", "input": {EMAIL: {"note": ANTHROPIC}}}
    ctx = context({"model": "m", "messages": [{"role": "assistant", "content": [tool_use]}]})
    inspector.inspect_request(ctx)
    paths = sorted(f.path for f in ctx.findings)
    assert paths == ["messages.0.content.0.input.<key>", "messages.0.content.0.input.<key>.note"]
    decide(ctx, MaskPlan({"email": "pseudonymize"}, {"secret": "redact"}))
    inspector.protect_request(ctx)
    assert tool_use["input"] == {"<EMAIL_1>": {"note": "[REDACTED:ANTHROPIC_API_KEY]"}}


def test_a_field_name_is_scanned_and_never_spelled() -> None:
    inspector = ScanningInspector(full_scanner())
    ctx = context({**message("hi"), ANTHROPIC: True})
    inspector.inspect_request(ctx)
    assert [(f.detector, f.path) for f in ctx.findings] == [("anthropic_api_key", "(a field name)")]
    decide(ctx, MaskPlan({}, {"secret": "redact"}))
    with pytest.raises(RequestBlocked, match=r"\(a field name\)"):
        inspector.protect_request(ctx)


def test_forwarded_headers_are_scanned_on_every_endpoint() -> None:
    inspector = ScanningInspector(full_scanner())
    ctx = RequestContext("req_1", "GET", "/v1/models", b"", [], None, "http")
    ctx.route = Route(Endpoint.MODELS, "list", Body.NONE)
    ctx.forwarded_headers = [(b"x-note", f"key {ANTHROPIC}".encode()), (b"x-note", b"plain")]
    inspector.inspect_request(ctx)
    assert [(f.detector, f.path) for f in ctx.findings] == [("anthropic_api_key", "headers.x-note")]


class _CountingScanner(Scanner):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scanned: list[str] = []

    def scan_parts(self, text: str) -> tuple[list[Finding], list[Finding]]:
        self.scanned.append(text)
        return super().scan_parts(text)


def test_short_clean_texts_are_scanned_once_across_requests_and_values_every_time() -> None:
    scanner = _CountingScanner(catalogue())
    inspector = ScanningInspector(scanner)
    for _ in range(3):
        ctx = context(message(f"key {ANTHROPIC}"))
        ctx.forwarded_headers = [(b"anthropic-version", b"2023-06-01")]
        inspector.inspect_request(ctx)
        assert [f.detector for f in ctx.findings] == ["anthropic_api_key"]
    assert scanner.scanned.count("2023-06-01") == 1
    assert scanner.scanned.count(f"key {ANTHROPIC}") == 3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from(["hello there", EMAIL, f"key {ANTHROPIC}", "2023-06-01", "x" * 200])
        | st.text(max_size=40),
        min_size=1,
        max_size=12,
    )
)
def test_remembering_clean_texts_never_changes_what_a_request_finds(texts: list[str]) -> None:
    """One inspector across many requests finds exactly what a fresh one finds in each."""
    shared = ScanningInspector(full_scanner())
    for text in texts:
        ctx, fresh_ctx = context(message(text)), context(message(text))
        for c in (ctx, fresh_ctx):
            c.forwarded_headers = [(b"x-note", text.encode("utf-8", "surrogatepass"))]
        shared.inspect_request(ctx)
        ScanningInspector(full_scanner()).inspect_request(fresh_ctx)
        assert ctx.findings == fresh_ctx.findings
