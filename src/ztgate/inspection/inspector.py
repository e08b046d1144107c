"""The inspect stage: find PII and secrets in every text field of a request.

Findings (detector, category, where; never the value) feed policy conditions and the record.
Responses still pass unchanged until masking is wired in. Inspection fails closed: if the
scanner breaks, the request is refused and nothing goes upstream.
"""

from __future__ import annotations

import logging

from ztgate.context import Endpoint, FindingRecord, RequestContext
from ztgate.errors import GatewayError
from ztgate.inspection.fields import request_texts
from ztgate.inspection.passthrough import PassThroughInspector
from ztgate.inspection.scanner import Scanner

log = logging.getLogger("ztgate.inspection")

_INSPECTED = (Endpoint.MESSAGES, Endpoint.COUNT_TOKENS, Endpoint.BATCHES)


class InspectionFailed(GatewayError):
    status = 500
    error_type = "api_error"


class ScanningInspector(PassThroughInspector):
    def __init__(self, scanner: Scanner) -> None:
        self._scanner = scanner

    def inspect_request(self, ctx: RequestContext) -> None:
        if ctx.payload is None or ctx.route is None or ctx.route.endpoint not in _INSPECTED:
            return
        batch = ctx.route.endpoint is Endpoint.BATCHES
        try:
            ctx.findings = [
                FindingRecord(finding.detector, finding.category, path)
                for path, text in request_texts(ctx.payload, batch=batch)
                for finding in self._scanner.scan(text)
            ]
        except Exception as exc:  # fail closed: never forward what could not be inspected
            log.exception("inspection failed", extra={"request_id": ctx.request_id})
            raise InspectionFailed(
                "the request could not be inspected and was not forwarded"
            ) from exc
