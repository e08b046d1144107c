"""The record stage: no audit, no access.

``request_started`` commits the request's event before anything goes upstream (the pipeline
calls it after every check); if the store cannot record, the request is refused with 503.
``request_finished`` commits the outcome (with the request event too when the request was
refused before it got that far) and stores the recording. A crash in between leaves a request
event without an outcome: the audit shows its outcome as unknown.
"""

from __future__ import annotations

import asyncio
import logging

from ztgate.audit.access_log import AccessLog
from ztgate.audit.capture import ResponseCapture
from ztgate.audit.record import outcome_event, request_event, session_id
from ztgate.audit.recording import Recording
from ztgate.audit.sealing import Sealer, store_recording
from ztgate.audit.store.base import StoreFull, StoreUnavailable
from ztgate.audit.writer import AuditWriter
from ztgate.config.model import RecordingsConfig
from ztgate.core.context import RequestContext

log = logging.getLogger("ztgate.audit")

OUTCOME_DELAY = 0.05  # seconds an outcome (or a recording) may wait to share a commit


class AuditRecorder:
    def __init__(
        self,
        writer: AuditWriter,
        recordings: RecordingsConfig,
        *,
        sealer: Sealer | None,
        access_log: AccessLog,
    ) -> None:
        self._writer = writer
        self._recordings = recordings
        self._sealer = sealer
        self._access_log = access_log
        self._pending: set[asyncio.Task[None]] = set()

    async def request_started(self, ctx: RequestContext) -> None:
        try:
            await self._writer.write([request_event(ctx)])
        except StoreUnavailable as exc:
            log.error(
                "request refused: the audit store cannot record it",
                extra={"event": "audit_unavailable", "request_id": ctx.request_id},
            )
            raise StoreUnavailable(
                "the audit store cannot record this request, so it was not forwarded",
                retry_after=exc.retry_after or 5,
            ) from exc
        ctx.audited = True
        if self._recordings.enabled:
            ctx.capture = ResponseCapture(ctx.started, self._recordings.max_bytes)

    async def request_finished(self, ctx: RequestContext) -> None:
        """A refusal's events are committed before it is answered (the pipeline waits here);
        the outcome of a forwarded request is committed in the background, so the next
        request on the same connection does not wait for it (``drain`` waits at shutdown).
        While the store is failing, a refusal is not held for a second wait on it either:
        nothing went upstream, and the caller learns at once (503, or its own refusal)."""
        if ctx.audited or self._writer.failing:
            task = asyncio.get_running_loop().create_task(self._finish(ctx))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        else:
            await self._finish(ctx)
        await self._access_log.request_finished(ctx)

    async def drain(self) -> None:
        """Wait for every outcome still being written."""
        while self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def _finish(self, ctx: RequestContext) -> None:
        events = [outcome_event(ctx)] if ctx.audited else [request_event(ctx), outcome_event(ctx)]
        recorded = isinstance(ctx.capture, ResponseCapture)
        try:
            # An outcome nobody waits on joins the next transaction (at most 50 ms later).
            await self._writer.write(events, within=OUTCOME_DELAY if ctx.audited else 0.0)
        except StoreUnavailable as exc:
            # The answer has gone (or is a refusal): all that is left is to say so loudly. The
            # recording is not tried on a store that just failed; it is lost too, and said so.
            log.error(
                "the audit store could not record a request's outcome",
                extra={
                    "event": "audit_outcome_lost",
                    "request_id": ctx.request_id,
                    "recording_lost": recorded,
                    "error": exc.message,
                },
            )
            return
        if isinstance(ctx.capture, ResponseCapture):
            try:
                await self._writer.put_recording(
                    store_recording(
                        self._recording(ctx, ctx.capture),
                        sealer=self._sealer,
                        max_bytes=self._recordings.max_bytes,
                    ),
                    within=OUTCOME_DELAY,
                )
            except StoreUnavailable as exc:
                # Its events are committed (the audit's promise holds); what the caller sent
                # and got is not kept. A full disk (StoreFull) loses recordings first.
                log.error(
                    "the audit store could not keep a request's recording",
                    extra={
                        "event": "audit_recording_lost",
                        "request_id": ctx.request_id,
                        "no_room": isinstance(exc, StoreFull),
                        "error": exc.message,
                    },
                )

    @staticmethod
    def _recording(ctx: RequestContext, capture: ResponseCapture) -> Recording:
        return Recording(
            request_id=ctx.request_id,
            session_id=session_id(ctx),
            principal=ctx.identity.principal if ctx.identity else "",
            started_at=ctx.received_at,
            method=ctx.method,
            path=ctx.path,
            request_body=ctx.body,
            status=capture.status,
            content_type=capture.content_type,
            response_body=bytes(capture.body) if capture.body is not None else None,
            events=capture.events,
            truncated=capture.truncated,
        )
