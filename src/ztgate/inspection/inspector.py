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

from ztgate.config.model import InspectionConfig
from ztgate.core.context import Endpoint, RequestContext
from ztgate.core.errors import GatewayError, InvalidRequest, RequestTooLarge
from ztgate.core.findings import Finding, FindingRecord
from ztgate.core.maskplan import Action, MaskPlan
from ztgate.core.stages import Inspector, ResponseFilter
from ztgate.core.texts import Kind, NameClash, TextField
from ztgate.detectors.catalogue import catalogue
from ztgate.detectors.custom import custom_detectors
from ztgate.detectors.patterns import Detector
from ztgate.inspection.masking import MaskResult, count_masked, mask_text
from ztgate.inspection.passthrough import PassThroughInspector
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.response import ResponseProtector
from ztgate.inspection.scanner import Scanner
from ztgate.inspection.state import InspectionState
from ztgate.inspection.streaming import DEFAULT_HOLDBACK, stream_bounds
from ztgate.wire.fields import safe_path

log = logging.getLogger("ztgate.inspection")

_FIELD_NAME = "(a field name)"
_REDACT_ALL = MaskPlan({}, {}, default="redact")
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
    """The catalogue and the configuration's own detectors (none when inspection is off)."""
    if not config.enabled:
        return []
    return [*catalogue(), *custom_detectors(config.custom.patterns, config.custom.words)]


def inspector_from_config(config: InspectionConfig) -> Inspector:
    detectors = configured_detectors(config)
    if not detectors:
        return PassThroughInspector()
    if config.hash_key is None:
        log.warning(
            "inspection.hash_key is not set: hashed values correlate only until ztgate restarts",
            extra={"event": "hash_key_ephemeral"},
        )
    return ScanningInspector(
        Scanner(detectors),
        holdback=config.stream_holdback,
        hash_key=config.hash_key.get_secret_value().encode() if config.hash_key else None,
        max_text=config.max_text,
    )


class ScanningInspector(PassThroughInspector):
    def __init__(
        self,
        scanner: Scanner,
        *,
        holdback: int = DEFAULT_HOLDBACK,
        hash_key: bytes | None = None,
        max_text: int = 16 * 1024**2,
    ) -> None:
        stream_bounds(scanner, holdback)  # a holdback that cannot cover a detector fails here
        self._scanner = scanner
        self._holdback = holdback
        self._hash_key = hash_key if hash_key is not None else secrets.token_bytes(32)
        self._max_text = max_text

    def inspect_request(self, ctx: RequestContext) -> None:
        """Scan every string the request carries upstream: its body (``wire/fields.py`` says
        what each string is) and the headers forwarded with it."""
        texts = ctx.texts
        fields = [*(texts.fields if texts is not None else ()), *_header_fields(ctx)]
        keys = texts.keys if texts is not None else set()
        size = sum(len(field.text) for field in fields) + sum(len(key) for key in keys)
        if size > self._max_text:
            raise RequestTooLarge(
                f"the request carries {size} characters of text; at most {self._max_text} "
                "can be inspected"
            )
        scan = self._cached_scan()
        try:
            scanned = [(field, found) for field in fields if (found := scan(field.text))]
            in_keys = [(key, found) for key in keys if (found := scan(key))]
        except Exception as exc:  # fail closed: never forward what could not be inspected
            log.exception("inspection failed", extra={"request_id": ctx.request_id})
            raise InspectionFailed(
                "the request could not be inspected and was not forwarded"
            ) from exc
        tainted = {f.text for f, _ in scanned if f.kind is Kind.NAME} | {k for k, _ in in_keys}
        ctx.findings = [
            FindingRecord(finding.detector, finding.category, safe_path(field.path, tainted))
            for field, findings in scanned
            for finding in findings
        ] + [
            FindingRecord(finding.detector, finding.category, _FIELD_NAME)
            for _, findings in in_keys
            for finding in findings
        ]
        ctx.inspection = InspectionState(scanned, in_keys, tainted)

    def _cached_scan(self) -> Callable[[str], list[Finding]]:
        """One request repeats strings (block types, keys, a resent history): each distinct
        one is scanned once."""
        scanner, shortest = self._scanner, self._scanner.min_match_length
        seen: dict[str, list[Finding]] = {}

        def scan(text: str) -> list[Finding]:
            if len(text) < shortest:
                return []
            found = seen.get(text)
            if found is None:
                found = seen[text] = scanner.scan(text)
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
            for field, findings in state.scanned:
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
            for key, findings in state.in_keys:
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
            detectors=self._scanner.detectors,
        )

    def redacted(self, text: str) -> str | None:
        return mask_text(
            text,
            self._scanner.scan(text),
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
            self._scanner,
            plan,
            vault=state.vault if state is not None else None,
            holdback=self._holdback,
            hash_key=self._hash_key,
        )
