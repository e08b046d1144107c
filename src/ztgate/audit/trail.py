"""The audit trail of one running gateway: its store, writer and keys.

Opened at start-up (migrations, the signing key, a ``startup`` event: a gateway that cannot
record does not start), closed at shutdown (queued events committed, a last checkpoint
signed). In between it records requests (through :class:`AuditRecorder`), policy reloads and
key refresh failures; the writer purges recordings past their retention.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ztgate import __version__
from ztgate.audit.access_log import AccessLog
from ztgate.audit.chain import VerifyReport, verify_chain_async
from ztgate.audit.events import AuditEvent, EventKind
from ztgate.audit.recorder import AuditRecorder
from ztgate.audit.sealing import sealer_from_config
from ztgate.audit.store.base import AuditStore, StoreUnavailable
from ztgate.audit.store.common import redact_url
from ztgate.audit.store.factory import open_store
from ztgate.audit.writer import AuditWriter
from ztgate.config.model import GatewayConfig
from ztgate.core.reviews import Review

log = logging.getLogger("ztgate.audit")


class AuditTrail:
    def __init__(self, config: GatewayConfig, store: AuditStore, writer: AuditWriter) -> None:
        self.config = config
        self.store = store
        self.writer = writer
        self.sealer = sealer_from_config(config.audit.recordings)
        self._background: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.get_running_loop()
        self._recorder: AuditRecorder | None = None

    @classmethod
    async def open(cls, config: GatewayConfig, store: AuditStore | None = None) -> AuditTrail:
        """Open the store (migrating it), load or create the signing key, start the writer
        and record the start-up. Raises StoreUnavailable or ConfigError: no audit, no start."""
        store = (
            store
            if store is not None
            else open_store(
                config.store.url,
                durability=config.store.durability,
                write_timeout=config.store.write_timeout,
            )
        )
        applied = await store.migrate()
        writer = AuditWriter.from_config(config, store)
        await writer.start()
        trail = cls(config, store, writer)
        await writer.write([trail._startup_event(applied)])
        return trail

    def recorder(self, access_log: AccessLog) -> AuditRecorder:
        self._recorder = AuditRecorder(
            self.writer, self.config.audit.recordings, sealer=self.sealer, access_log=access_log
        )
        return self._recorder

    # --- events beyond requests --------------------------------------------------------------

    def notice(self, kind: EventKind, data: dict[str, Any]) -> None:
        """Record an event from synchronous code (a reload, a key refresh), from any thread,
        without waiting; a failure to record it is logged."""
        self._loop.call_soon_threadsafe(self._spawn, kind, data)

    def _spawn(self, kind: EventKind, data: dict[str, Any]) -> None:
        task = self._loop.create_task(self._write(kind, data))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def policy_reloaded(self, data: dict[str, Any]) -> None:
        self.notice("policy_reload", data)

    def key_refresh_failed(self, issuer: str, error: str) -> None:
        self.notice("key_refresh_failure", {"issuer": issuer, "error": error})

    async def review_event(
        self, review: Review, action: str, *, by: str | None, reason: str | None, request_id: str
    ) -> None:
        """A review opened, decided, expired, used or run: committed before anyone hears of
        it (a StoreUnavailable reaches the caller, who is refused)."""
        data = {
            "review_id": review.id,
            "action": action,
            "state": review.state.value,
            "requester": review.requester,
            "by": by,
            "reason": reason,
            "rules": [r.rule_id for r in review.requirements],
            "approvers": sorted(review.approvers),
        }
        event = AuditEvent("review", time.time(), data, request_id=request_id, principal=by)
        await self.writer.write([event])

    async def _write(self, kind: EventKind, data: dict[str, Any]) -> None:
        try:
            await self.writer.write([AuditEvent(kind, time.time(), data)])
        except StoreUnavailable:
            log.error("the audit store could not record an event", extra={"event": kind})

    def _startup_event(self, migrations: list[str]) -> AuditEvent:
        config = self.config
        policy = config.policy if isinstance(config.policy, str) else "inline"
        recordings = config.audit.recordings
        return AuditEvent(
            "startup",
            time.time(),
            {
                "version": __version__,
                "listen": config.listen,
                "upstream": config.upstream.url,
                "issuers": [issuer.name for issuer in config.identity.issuers],
                "policy": policy,
                "store": redact_url(config.store.url),
                "migrations": migrations,
                "checkpoint_key_id": self.writer.signing_key_id,
                "inspection": config.inspection.enabled,
                "recordings": {
                    "enabled": recordings.enabled,
                    "sealed": self.sealer is not None,
                    "max_bytes": recordings.max_bytes,
                    "retention_days": recordings.retention_days,
                },
            },
        )

    async def verify(self) -> VerifyReport:
        """The chain as it stands, recomputed and checked against its checkpoints."""
        await self.writer.checkpoint()
        keys = {self.writer.signing_key_id: self.writer.public_key}
        return await verify_chain_async(self.store.events(), await self.store.checkpoints(), keys)

    async def status(self) -> dict[str, Any]:
        """For ``/readyz`` (which anyone may call): whether the store can be written now, never
        where it is or what the database said (that goes to the log)."""
        try:
            await self.store.ping()
        except StoreUnavailable as exc:
            log.error(
                "audit store not ready", extra={"event": "audit_not_ready", "error": str(exc)}
            )
            return {"ready": False, "error": "the audit store cannot be written"}
        return {"ready": True}

    async def close(self) -> None:
        if self._recorder is not None:
            await self._recorder.drain()
        await asyncio.gather(*self._background, return_exceptions=True)
        try:
            await self.writer.close()
        except StoreUnavailable:
            log.error("the audit store was unavailable at shutdown: the last checkpoint is missing")
        await self.store.close()
