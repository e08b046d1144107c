"""The record stage's first sink: one JSON line per request, never a secret or body.

Written straight to stderr in the same shape as ztgate's other log lines: the stdlib logging
machinery cost about a third of the gateway's throughput for this one line per request.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import BinaryIO

import orjson

from ztgate.core.context import RequestContext

_LOGGER = "ztgate.access"


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round((end - start) * 1000, 3)


class AccessLog:
    def __init__(self, stream: BinaryIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr.buffer
        self._enabled = logging.getLogger(_LOGGER).isEnabledFor(logging.INFO)

    async def request_started(self, ctx: RequestContext) -> None:
        return None

    async def request_finished(self, ctx: RequestContext) -> None:
        if not self._enabled:
            return
        identity = ctx.identity
        now = time.perf_counter()
        entry = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "level": "info",
            "logger": _LOGGER,
            "msg": "request",
            "event": "request",
            "request_id": ctx.request_id,
            "issuer": identity.issuer_name if identity else None,
            "subject": identity.subject if identity else None,
            "method": ctx.method,
            "path": ctx.path,
            "endpoint": ctx.route.endpoint.value if ctx.route else None,
            "model": ctx.model,
            "stream": ctx.streaming,
            "status": ctx.status,
            "error_type": ctx.error_type,
            "decision": ctx.decision.effect.value if ctx.decision else None,
            "rule_ids": ctx.decision.rule_ids if ctx.decision else None,
            "findings": ctx.finding_counts() or None,
            "masked": ctx.masked or None,
            "upstream_status": ctx.upstream_status,
            "upstream_request_id": ctx.upstream_request_id,
            "upstream_ms": _ms(ctx.upstream_started, ctx.upstream_first_byte),
            "total_ms": _ms(ctx.started, now),
            "bytes_in": ctx.bytes_in,
            "bytes_out": ctx.bytes_out,
            "stream_end": ctx.stream_end.value if ctx.stream_end else None,
        }
        self._stream.write(orjson.dumps(entry, option=orjson.OPT_APPEND_NEWLINE))
        self._stream.flush()
