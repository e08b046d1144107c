"""The inspect stages: find PII and secrets in every text field, then act as policy says.

``inspect_request`` scans before policy decides (findings feed its conditions);
``protect_request`` applies the decision's ``mask`` to the request (``block`` refuses it);
``response_filter`` masks the response and restores this request's pseudonyms. Everything
fails closed: what could not be inspected is never forwarded or released.
"""

from __future__ import annotations

import logging
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path

from ztgate.config.model import InspectionConfig
from ztgate.core.context import Endpoint, RequestContext
from ztgate.core.errors import GatewayError, InvalidRequest, RequestTooLarge
from ztgate.core.findings import Finding, FindingRecord
from ztgate.core.guardrails import DEFAULT_THRESHOLD, Signal, combine
from ztgate.core.maskplan import Action, MaskPlan
from ztgate.core.stages import Inspector, ResponseFilter
from ztgate.core.texts import Kind, NameClash, TextField
from ztgate.detectors.catalogue import catalogue
from ztgate.detectors.custom import custom_detectors
from ztgate.detectors.guardrails import GuardrailChecks, builtin_checks
from ztgate.detectors.patterns import Detector
from ztgate.inspection.deep import DeepScanner, Scan
from ztgate.inspection.guardrails import GuardrailEngine, GuardrailSettings, messages_for
from ztgate.inspection.masking import MaskResult, count_masked, mask_text, plan_findings
from ztgate.inspection.passthrough import PassThroughInspector
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.response import ResponseProtector
from ztgate.inspection.scanner import Scanner
from ztgate.inspection.state import InspectionState
from ztgate.inspection.streaming import DEFAULT_HOLDBACK, stream_bounds
from ztgate.wire.fields import safe_path
from ztgate.wire.locations import location_of

log = logging.getLogger("ztgate.inspection")

_FIELD_NAME = "(a field name)"
_REDACT_ALL = MaskPlan({}, {}, default="redact")
# Short texts that recur across requests (models, roles, header values) and held nothing are
# remembered, per scanner, so the next request skips them; bounded, and a text that held
# something is never kept.
_CLEAN_LENGTH = 96
_CLEAN_ENTRIES = 4096
# A batch's results are fetched later, past any restore: its pseudonyms would stay pseudonyms.
_IN_BATCHES: Mapping[str, Action] = {"pseudonymize": "redact"}


class InspectionFailed(GatewayError):
    status = 500
    error_type = "api_error"


class RequestBlocked(InvalidRequest):
    """Policy says this kind of data may not be sent at all."""


def _header_fields(ctx: RequestContext) -> list[TextField]:
    """The headers that go upstream with the request, which the upstream reads as well."""
    headers = ctx.forwarded_headers
    values = [value.decode("latin-1") for _, value in headers]
    return [
        TextField(f"headers.{name.decode('latin-1')}", values, index, Kind.FIXED)
        for index, (name, _) in enumerate(headers)
    ]


def configured_detectors(config: InspectionConfig) -> list[Detector]:
    """The catalogue, the configuration's own detectors and the built-in guardrail checks
    (none when inspection is off)."""
    if not config.enabled:
        return []
    builtin = builtin_checks()[0] if config.guardrails.builtin else ()
    return [
        *catalogue(),
        *custom_detectors(config.custom.patterns, config.custom.words),
        *builtin,
    ]


def inspector_from_config(
    config: InspectionConfig, policy_checks: Callable[[], GuardrailChecks] | None = None
) -> Inspector:
    """``policy_checks`` gives the rule packs of the policy now deciding."""
    detectors = configured_detectors(config)
    if not detectors:
        return PassThroughInspector()
    if config.hash_key is None:
        log.warning(
            "inspection.hash_key is not set: hashed values correlate only until ztgate restarts",
            extra={"event": "hash_key_ephemeral"},
        )
    guardrails = config.guardrails
    classifier = None
    if guardrails.classifier.enabled:
        from ztgate.inspection.classifier import LinearClassifier

        model = guardrails.classifier.model
        classifier = LinearClassifier.load(Path(model) if model else None)
    scanner = Scanner(detectors)
    return ScanningInspector(
        scanner,
        holdback=config.stream_holdback,
        hash_key=config.hash_key.get_secret_value().encode() if config.hash_key else None,
        max_text=config.max_text,
        guardrails=GuardrailEngine(
            scanner,
            settings=GuardrailSettings(
                quoted_factor=guardrails.quoted_factor,
                max_depth=guardrails.max_decode_depth,
                max_decoded=guardrails.max_decoded,
                classified=frozenset(guardrails.classifier.locations),
            ),
            classifier=classifier,
            policy_checks=policy_checks,
        ),
    )


class ScanningInspector(PassThroughInspector):
    def __init__(
        self,
        scanner: Scanner,
        *,
        holdback: int = DEFAULT_HOLDBACK,
        hash_key: bytes | None = None,
        max_text: int = 16 * 1024**2,
        guardrails: GuardrailEngine | None = None,
    ) -> None:
        stream_bounds(scanner, holdback)  # a holdback that cannot cover a detector fails here
        self._scanner = scanner
        self._holdback = holdback
        self._hash_key = hash_key if hash_key is not None else secrets.token_bytes(32)
        self._max_text = max_text
        self._guardrails = guardrails if guardrails is not None else GuardrailEngine(scanner)
        self._clean: tuple[DeepScanner | None, _CleanTexts, _CleanTexts] = (
            None,
            _CleanTexts(),
            _CleanTexts(),
        )

    @property
    def guardrails(self) -> GuardrailEngine:
        return self._guardrails

    def inspect_request(self, ctx: RequestContext) -> None:
        """Scan every string the request carries upstream: its body (``wire/fields.py`` says
        what each string is) and the headers forwarded with it, as written and under every
        disguise; the guardrail checks' findings become signals for policy."""
        texts = ctx.texts
        body = texts.fields if texts is not None else []
        headers = _header_fields(ctx)
        fields = [*body, *headers]
        keys = texts.keys if texts is not None else set()
        size = sum(len(field.text) for field in fields) + sum(len(key) for key in keys)
        if size > self._max_text:
            raise RequestTooLarge(
                f"the request carries {size} characters of text; at most {self._max_text} "
                "can be inspected"
            )
        deep = self._guardrails.deep()
        scan = self._cached_scan(deep)
        header_parts = self._clean_texts(deep)[1].wrap(deep.scanner.scan_parts)
        try:
            scanned = [(field, found) for field in body if (found := scan(field.text))]
            # Headers are read as written: the model never reads them, and encoded values
            # (trace contexts, test fixtures' scripts) are their ordinary business.
            scanned += [
                (field, Scan(*parts)) for field in headers if any(parts := header_parts(field.text))
            ]
            in_keys = [(key, found) for key in keys if (found := scan(key))]
            ctx.signals = self._signals(ctx, fields, scanned)
        except Exception as exc:  # fail closed: never forward what could not be inspected
            log.exception("inspection failed", extra={"request_id": ctx.request_id})
            raise InspectionFailed(
                "the request could not be inspected and was not forwarded"
            ) from exc
        tainted = {f.text for f, _ in scanned if f.kind is Kind.NAME} | {k for k, _ in in_keys}
        ctx.findings = [
            FindingRecord(finding.detector, finding.category, safe_path(field.path, tainted))
            for field, found in scanned
            for finding in (*found.values, *found.checks)
        ] + [
            FindingRecord(finding.detector, finding.category, _FIELD_NAME)
            for _, found in in_keys
            for finding in (*found.values, *found.checks)
        ]
        ctx.inspection = InspectionState(scanned, in_keys, tainted)

    def _signals(
        self, ctx: RequestContext, fields: list[TextField], scanned: list[tuple[TextField, Scan]]
    ) -> list[tuple[str, Signal]]:
        """What the guardrails say of each text, by where it sits in the conversation. With a
        classifier, every text it reads is scored, findings or not."""
        payload = ctx.payload or {}
        engine = self._guardrails
        signals: list[tuple[str, Signal]] = []
        found = {id(field): scan for field, scan in scanned}
        for field in fields:
            scan = found.get(id(field))
            if scan is None and (engine.classifier is None or field.kind is not Kind.TEXT):
                continue
            where = location_of(field.path, payload) if field.path[:8] != "headers." else "other"
            path = field.path
            for signal in engine.signals(field.text, scan or Scan(), where):
                signals.append((path, signal))
        return signals

    def _clean_texts(self, deep: DeepScanner) -> tuple[_CleanTexts, _CleanTexts]:
        """The short texts known clean for this scanner (deeply; as written): a policy
        reload that changes the checks starts both afresh."""
        scanner, body, headers = self._clean
        if scanner is not deep:
            body, headers = _CleanTexts(), _CleanTexts()
            self._clean = (deep, body, headers)
        return body, headers

    def _cached_scan(self, deep: DeepScanner) -> Callable[[str], Scan]:
        """One request repeats strings (block types, keys, a resent history): each distinct
        one is scanned once; short ones clean in an earlier request are not scanned again."""
        shortest = deep.scanner.min_match_length
        clean = self._clean_texts(deep)[0]
        seen: dict[str, Scan] = {}
        empty = Scan()

        def scan(text: str) -> Scan:
            if (len(text) < shortest and text.isascii()) or text in clean.texts:
                return empty
            found = seen.get(text)
            if found is None:
                found = seen[text] = deep.scan(text)
                if not found:
                    clean.add(text)
            return found

        return scan

    def protect_request(self, ctx: RequestContext) -> None:
        plan = ctx.decision.mask if ctx.decision is not None else None
        state = ctx.inspection
        if plan is None or not isinstance(state, InspectionState) or not ctx.findings:
            return
        if ctx.route is not None and ctx.route.endpoint is Endpoint.BATCHES:
            plan = plan.substituting(_IN_BATCHES)
        vault = PseudonymVault()
        blocked: Counter[str] = Counter()
        fixed: dict[str, set[str]] = {}  # path -> detectors policy would mask there
        try:
            for field, found in state.scanned:
                findings = plan_findings(found.masked_values, found.checks, plan)
                result = self._mask(field.text, findings, plan, vault)
                blocked.update(result.blocked)
                if result.text == field.text:
                    continue
                if field.kind is Kind.FIXED:
                    fixed.setdefault(safe_path(field.path, state.tainted), set()).update(
                        a.detector for a in result.applied if a.action != "report"
                    )
                    continue
                count_masked(ctx.masked, result.applied)
                field.replace(result.text)
            for key, found in state.in_keys:
                findings = plan_findings(found.masked_values, found.checks, plan)
                result = self._mask(key, findings, plan, vault)
                blocked.update(result.blocked)
                if result.text != key:
                    fixed.setdefault(_FIELD_NAME, set()).update(a.detector for a in result.applied)
        except NameClash as exc:
            raise InvalidRequest(f"the request cannot be masked: {exc}") from None
        except Exception as exc:  # fail closed: a request half masked is never forwarded
            log.exception("masking failed", extra={"request_id": ctx.request_id})
            raise InspectionFailed("the request could not be masked and was not forwarded") from exc
        if blocked:
            where = sorted({f.path for f in ctx.findings if f.detector in blocked})
            raise RequestBlocked(
                "policy does not allow sending "
                + ", ".join(f"{d} ({n} found)" for d, n in sorted(blocked.items()))
                + " in "
                + ", ".join(where)
            )
        if fixed:
            raise RequestBlocked(
                "policy masks what fields that cannot be rewritten carry (identifiers, names, "
                "signed thinking, headers): "
                + "; ".join(
                    f"{', '.join(sorted(d))} in {path}" for path, d in sorted(fixed.items())
                )
            )
        state.vault = vault if len(vault) else None

    def _mask(
        self, text: str, findings: list[Finding], plan: MaskPlan, vault: PseudonymVault
    ) -> MaskResult:
        return mask_text(
            text,
            findings,
            plan,
            pseudonyms=vault,
            hash_key=self._hash_key,
            detectors=self._guardrails.deep().scanner.detectors,
        )

    def guardrail_summary(self, ctx: RequestContext) -> str:
        hits = combine(signal for _, signal in ctx.signals)
        lines = messages_for(hits, self._guardrails.infos(), DEFAULT_THRESHOLD)
        return f" (guardrails found {'; '.join(lines)})" if lines else ""

    def redacted(self, text: str) -> str | None:
        found = self._guardrails.deep().scan(text)
        return mask_text(
            text,
            found.masked_values,
            _REDACT_ALL,
            hash_key=self._hash_key,
            detectors=self._scanner.detectors,
        ).text

    def response_filter(self, ctx: RequestContext) -> ResponseFilter:
        plan = ctx.decision.mask if ctx.decision is not None else None
        state = ctx.inspection if isinstance(ctx.inspection, InspectionState) else None
        if plan is None or ctx.route is None or ctx.route.endpoint is not Endpoint.MESSAGES:
            return super().response_filter(ctx)
        return ResponseProtector(
            ctx,
            self._guardrails.deep().scanner,
            plan,
            vault=state.vault if state is not None else None,
            holdback=self._holdback,
            hash_key=self._hash_key,
        )


class _CleanTexts:
    """A bounded set of short texts a scanner found nothing in (oldest forgotten first)."""

    __slots__ = ("texts",)

    def __init__(self) -> None:
        self.texts: dict[str, None] = {}

    def add(self, text: str) -> None:
        if len(text) > _CLEAN_LENGTH:
            return
        texts = self.texts
        if len(texts) >= _CLEAN_ENTRIES:
            del texts[next(iter(texts))]
        texts[text] = None

    def wrap(
        self, scan_parts: Callable[[str], tuple[list[Finding], list[Finding]]]
    ) -> Callable[[str], tuple[list[Finding], list[Finding]]]:
        """``scan_parts`` that skips, and learns, clean short texts."""
        texts = self.texts
        nothing: tuple[list[Finding], list[Finding]] = ([], [])

        def scan(text: str) -> tuple[list[Finding], list[Finding]]:
            if text in texts:
                return nothing
            parts = scan_parts(text)
            if not any(parts):
                self.add(text)
            return parts

        return scan
