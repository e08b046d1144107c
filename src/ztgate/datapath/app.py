"""The ASGI application: which path goes where (the pipeline for ``/v1``, the admin API under
``/ztgate/api/``, health and readiness), and the lifespan that starts and stops the runtime."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import orjson

from ztgate.audit.store.base import AuditStore
from ztgate.audit.trail import AuditTrail
from ztgate.config import GatewayConfig
from ztgate.core.context import RequestContext, StreamEnd, new_request_id
from ztgate.core.errors import NotFound
from ztgate.core.types import Message, Receive, Scope, Send
from ztgate.datapath.headers import forwarded_origin, trusted_networks
from ztgate.datapath.responses import Responder
from ztgate.datapath.runtime import Runtime, serving
from ztgate.datapath.tls import client_identities
from ztgate.identity.verifier import TokenVerifier
from ztgate.policy.source import PolicySource

log = logging.getLogger("ztgate")


class Gateway:
    """ztgate as an ASGI app. Heavy state is built in lifespan start-up, inside the event loop."""

    def __init__(self, config: GatewayConfig, *, shutdown_report: Path | None = None) -> None:
        """Raises PolicyError when the policy is invalid: nothing starts without one.
        ``shutdown_report``: a folder where this worker says so if its shutdown cut answers
        short (the supervisor's exit status)."""
        self.config = config
        self.cut_short = 0  # answers the shutdown ended before they were done
        self._shutdown_report = shutdown_report
        assert config.policy is not None, "validate_config requires a policy"
        self.policy = PolicySource.from_config(config.policy, serving=serving(config))
        # The audit store: opened from ``store.url`` at start-up unless one is given before.
        self.audit_store: AuditStore | None = None
        self._runtime: Runtime | None = None
        self._proxies = trusted_networks(config.server.trusted_proxies)

    @property
    def verifier(self) -> TokenVerifier:
        """The running token verifier (for ``/readyz``-like checks in tools and tests)."""
        if self._runtime is None:
            raise RuntimeError("the gateway is not started")
        return self._runtime.verifier

    @property
    def audit(self) -> AuditTrail:
        """The running audit trail (for the demo and tests)."""
        if self._runtime is None:
            raise RuntimeError("the gateway is not started")
        return self._runtime.trail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        client, scheme = forwarded_origin(
            scope["headers"],
            scope["client"][0] if scope.get("client") else None,
            scope["scheme"],
            self._proxies,
        )
        ctx = RequestContext(
            request_id=new_request_id(),
            method=scope["method"],
            path=scope["path"],
            query_string=scope["query_string"],
            headers=scope["headers"],
            client=client,
            scheme=scheme,
            public_url=self.config.server.public_url,
            client_certificate=client_identities(scope.get("extensions", {}).get("tls")),
        )
        runtime = self._runtime
        if runtime is None:
            raise RuntimeError("lifespan start-up has not run")
        path = scope["path"]
        if (path.startswith("/v1/") or path == "/v1") and b"%" not in scope.get("raw_path", b""):
            try:
                await runtime.pipeline.handle(ctx, receive, send)
            except asyncio.CancelledError:  # the server gave up waiting for it
                self.cut_short += 1
                raise
            if ctx.stream_end is StreamEnd.GATEWAY_SHUTDOWN:
                self.cut_short += 1
        elif path.startswith("/ztgate/api/"):
            await runtime.admin(scope, receive, send)
        elif path == "/healthz":
            await _json(send, ctx, 200, {"status": "alive"})
        elif path == "/readyz":
            reasons = await runtime.readiness.not_ready()
            report: dict[str, Any] = {"status": "not ready" if reasons else "ready"}
            if reasons:
                report["reasons"] = reasons
            warnings = runtime.readiness.warnings()
            if warnings:
                report["warnings"] = warnings
            await _json(send, ctx, 503 if reasons else 200, report)
        else:
            await Responder(send, ctx).error(NotFound(f"{path} is not served by this gateway"))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message: Message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        runtime = await Runtime.start(self.config, self.policy, self.audit_store)
        self.audit_store = runtime.trail.store
        self._runtime = runtime

    async def shutdown(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            await runtime.close()
        if self.cut_short:
            log.warning(
                "the graceful window ended before every answer did",
                extra={"event": "shutdown_forced", "answers_cut": self.cut_short},
            )
            if self._shutdown_report is not None:
                (self._shutdown_report / f"cut-{os.getpid()}").write_text(str(self.cut_short))


async def _json(send: Send, ctx: RequestContext, status: int, document: object) -> None:
    await Responder(send, ctx).whole(
        status, [(b"content-type", b"application/json")], orjson.dumps(document)
    )
