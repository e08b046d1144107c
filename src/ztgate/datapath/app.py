"""The ASGI application: lifespan, health endpoints, the pipeline for ``/v1``, and the admin
API under ``/ztgate/api/``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from ztgate.admin.app import AdminApp
from ztgate.audit.access_log import AccessLog
from ztgate.audit.store.base import AuditStore
from ztgate.audit.trail import AuditTrail
from ztgate.config import GatewayConfig, load_config
from ztgate.core.context import RequestContext, new_request_id
from ztgate.core.errors import NotFound
from ztgate.core.types import Message, Receive, Scope, Send
from ztgate.datapath.containers import ContainerOwners
from ztgate.datapath.logs import configure_logging
from ztgate.datapath.pipeline import Pipeline, Stages
from ztgate.datapath.responses import Responder
from ztgate.datapath.upstream import UpstreamClient
from ztgate.identity.verifier import TokenVerifier
from ztgate.inspection.inspector import configured_detectors, inspector_from_config
from ztgate.policy.decider import PolicyDecider
from ztgate.policy.quotas import Quotas, quotas_from_url
from ztgate.policy.source import PolicySource
from ztgate.review.unavailable import ReviewUnavailable

log = logging.getLogger("ztgate")

CONFIG_ENV = "ZTGATE_CONFIG"


@dataclass
class _Runtime:
    http: aiohttp.ClientSession
    verifier: TokenVerifier
    upstream: UpstreamClient
    quotas: Quotas
    pipeline: Pipeline
    tasks: list[asyncio.Task[None]]
    trail: AuditTrail
    admin: AdminApp


class Gateway:
    """ztgate as an ASGI app. Heavy state is built in lifespan start-up, inside the event loop."""

    def __init__(self, config: GatewayConfig) -> None:
        """Raises PolicyError when the policy is invalid: nothing starts without one."""
        self.config = config
        assert config.policy is not None, "validate_config requires a policy"
        detectors = frozenset(d.id for d in configured_detectors(config.inspection))
        self.policy = PolicySource.from_config(config.policy, detectors=detectors)
        # The audit store: opened from ``store.url`` at start-up unless one is given before.
        self.audit_store: AuditStore | None = None
        self._runtime: _Runtime | None = None

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
        ctx = RequestContext(
            request_id=new_request_id(),
            method=scope["method"],
            path=scope["path"],
            query_string=scope["query_string"],
            headers=scope["headers"],
            client=scope["client"][0] if scope.get("client") else None,
            scheme=scope["scheme"],
            public_url=self.config.server.public_url,
        )
        runtime = self._runtime
        if runtime is None:
            raise RuntimeError("lifespan start-up has not run")
        path = scope["path"]
        if (path.startswith("/v1/") or path == "/v1") and b"%" not in scope.get("raw_path", b""):
            await runtime.pipeline.handle(ctx, receive, send)
        elif path.startswith("/ztgate/api/"):
            await runtime.admin(scope, receive, send)
        elif path == "/healthz":
            await _json(send, ctx, 200, {"status": "alive"})
        elif path == "/readyz":
            reasons = await self._not_ready(runtime)
            report: dict[str, Any] = {"status": "not ready" if reasons else "ready"}
            if reasons:
                report["reasons"] = reasons
            await _json(send, ctx, 503 if reasons else 200, report)
        else:
            await Responder(send, ctx).error(NotFound(f"{path} is not served by this gateway"))

    async def _not_ready(self, runtime: _Runtime) -> list[str]:
        """Why the gateway cannot serve, for anyone who asks (a load balancer, a probe): what
        an operator can act on, never what the configuration holds. The details (issuers,
        keys, policy, store) are in the log and on the admin API's ``/status``."""
        reasons = []
        if not runtime.verifier.ready:
            reasons.append("no signing keys loaded yet from an identity provider (see the log)")
        if not (await runtime.trail.status())["ready"]:
            reasons.append("the audit store cannot be written (see the log)")
        return reasons

    async def status_report(self) -> dict[str, Any]:
        """Readiness in detail, for the admin API: each issuer, the policy, the store."""
        runtime = self._runtime
        if runtime is None:
            raise RuntimeError("the gateway is not started")
        reasons = await self._not_ready(runtime)
        return {
            "status": "not ready" if reasons else "ready",
            "reasons": reasons,
            "issuers": runtime.verifier.status(),
            "policy": self.policy.status(),
            "audit": await runtime.trail.status(),
        }

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
        # No audit, no start: the store must be reachable and migrated, the key loaded.
        trail = await AuditTrail.open(self.config, self.audit_store)
        self.audit_store = trail.store
        http = aiohttp.ClientSession()
        verifier = TokenVerifier.from_config(self.config.identity, http)
        verifier.on_key_refresh_failure(trail.key_refresh_failed)
        self.policy.on_reload = trail.policy_reloaded
        upstream = UpstreamClient(self.config.upstream)
        quotas = quotas_from_url(self.config.quotas.redis_url)
        await verifier.start()
        inspector = inspector_from_config(self.config.inspection)
        stages = Stages(
            authenticator=verifier,
            inspector=inspector,
            decider=PolicyDecider(self.policy),
            reviewer=ReviewUnavailable(),
            recorder=trail.recorder(AccessLog()),
            quotas=quotas,
            containers=ContainerOwners(),
        )
        pipeline = Pipeline(stages, upstream, self.config.server)
        self.policy.log_warnings()
        tasks = [asyncio.create_task(self.policy.watch())]
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # SIGHUP reloads the policy; only possible in the main thread (not in tests' threads)
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.policy.reload)
        admin = AdminApp.from_config(self.config, trail.store, verifier, self.status_report)
        self._runtime = _Runtime(http, verifier, upstream, quotas, pipeline, tasks, trail, admin)
        log.info(
            "ztgate started",
            extra={
                "event": "started",
                "listen": self.config.listen,
                "upstream": self.config.upstream.url,
                "issuers": verifier.status(),
            },
        )

    async def shutdown(self) -> None:
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            for task in runtime.tasks:
                task.cancel()
            await asyncio.gather(*runtime.tasks, return_exceptions=True)
            await runtime.quotas.close()
            await runtime.verifier.close()
            await runtime.upstream.close()
            await runtime.http.close()
            await runtime.trail.close()


async def _json(send: Send, ctx: RequestContext, status: int, document: object) -> None:
    await Responder(send, ctx).whole(
        status, [(b"content-type", b"application/json")], orjson.dumps(document)
    )


def create_app() -> Gateway:
    """Factory for ``uvicorn --factory`` and ``--workers``: the config path comes from the env."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set")
    config = load_config(path)
    configure_logging(config.logging.level)  # a spawned worker inherits no logging setup
    return Gateway(config)
