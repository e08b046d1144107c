"""The composition root: every stage built from the config, wired into one pipeline, started
and stopped together; and whether all of it is ready to serve."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any

import aiohttp

from ztgate.admin.app import AdminApp
from ztgate.audit.access_log import AccessLog
from ztgate.audit.store.base import AuditStore
from ztgate.audit.trail import AuditTrail
from ztgate.config import GatewayConfig
from ztgate.core.reviews import ReviewQuery, ReviewState
from ztgate.core.stages import Inspector, Judge, Observer
from ztgate.core.types import Headers
from ztgate.datapath.containers import ContainerOwners
from ztgate.datapath.pipeline import Pipeline, Stages
from ztgate.datapath.tls import ServerTLS, server_tls
from ztgate.datapath.upstream import UpstreamClient
from ztgate.identity.verifier import TokenVerifier
from ztgate.inspection.guardrails import derived_check_ids
from ztgate.inspection.inspector import configured_detectors, inspector_from_config
from ztgate.inspection.judge import GuardrailJudge
from ztgate.observe.endpoint import serve_metrics
from ztgate.observe.metrics import Metrics, RuntimeSizes
from ztgate.observe.tracing import Tracer, tracer_from_config
from ztgate.policy.decider import PolicyDecider
from ztgate.policy.loader import Serving
from ztgate.policy.quotas import Quotas
from ztgate.policy.source import PolicySource
from ztgate.review.notify import Notifier
from ztgate.review.service import ReviewService
from ztgate.review.stage import HoldingReviewer
from ztgate.shared.base import SharedState
from ztgate.shared.factory import shared_state

log = logging.getLogger("ztgate")

_REVIEWS_COUNTED = 100_000  # at most, per count of pending reviews for the metrics


def serving(config: GatewayConfig) -> Serving:
    """What this configuration's gateway offers its policy: the checks every load must pass."""
    detectors = frozenset(d.id for d in configured_detectors(config.inspection))
    return Serving(
        detectors=detectors | derived_check_ids() if detectors else detectors,
        default_approvers=frozenset(config.reviews.approvers),
        holdback=config.inspection.stream_holdback,
    )


def _judge(config: GatewayConfig, upstream: UpstreamClient, inspector: Inspector) -> Judge | None:
    """The guardrails' judge, asking through the gateway's own upstream, when configured."""
    settings = config.inspection.guardrails.judge
    if not settings.enabled or not config.inspection.enabled:
        return None

    async def ask(body: bytes, headers: Headers) -> tuple[int, bytes | None]:
        sent = [
            *headers,
            (b"content-type", b"application/json"),
            (b"anthropic-version", b"2023-06-01"),
        ]
        return await upstream.exchange("POST", "/v1/messages", sent, body, limit=1 << 20)

    return GuardrailJudge(settings, ask, inspector.redacted)


@dataclass(frozen=True)
class Readiness:
    """Whether the parts a request needs are up: the issuers' keys and the audit store."""

    verifier: TokenVerifier
    trail: AuditTrail
    policy: PolicySource
    tls: ServerTLS | None = None

    async def not_ready(self) -> list[str]:
        """Why the gateway cannot serve, for anyone who asks (a load balancer, a probe): what
        an operator can act on, never what the configuration holds. The details (issuers,
        keys, policy, store) are in the log and on the admin API's ``/status``."""
        reasons = []
        if not self.verifier.ready:
            reasons.append("no signing keys loaded yet from an identity provider (see the log)")
        if not (await self.trail.status())["ready"]:
            reasons.append("the audit store cannot be written (see the log)")
        return reasons

    def warnings(self) -> list[str]:
        """What is wrong but does not stop serving (the last good certificate still is)."""
        if self.tls is not None and self.tls.last_error is not None:
            return [self.tls.last_error]
        return []

    async def status_report(self) -> dict[str, Any]:
        """Readiness in detail, for the admin API: each issuer, the policy, the store."""
        reasons = await self.not_ready()
        return {
            "status": "not ready" if reasons else "ready",
            "reasons": reasons,
            "warnings": self.warnings(),
            "issuers": self.verifier.status(),
            "policy": self.policy.status(),
            "audit": await self.trail.status(),
        }


@dataclass
class Runtime:
    """What a running gateway holds; built inside the event loop at start-up."""

    http: aiohttp.ClientSession
    verifier: TokenVerifier
    upstream: UpstreamClient
    quotas: Quotas
    shared: SharedState
    pipeline: Pipeline
    tasks: list[asyncio.Task[None]]
    trail: AuditTrail
    reviews: ReviewService
    admin: AdminApp
    readiness: Readiness
    metrics: Metrics | None = None
    metrics_server: asyncio.Server | None = None
    tracer: Tracer | None = None

    @classmethod
    async def start(
        cls, config: GatewayConfig, policy: PolicySource, store: AuditStore | None
    ) -> Runtime:
        """No audit, no start: the store must be reachable and migrated, the key loaded."""
        trail = await AuditTrail.open(config, store)
        http = aiohttp.ClientSession()
        shared = shared_state(config)
        verifier = TokenVerifier.from_config(config.identity, http, shared)
        metrics = Metrics() if config.metrics.enabled else None
        observers: list[Observer] = []
        if metrics is not None:
            observers.append(metrics)
            trail.writer.observe(metrics.audit_committed, metrics.audit_failed)
            metrics.audit_opened()

            def key_refresh_failed(issuer: str, error: str) -> None:
                trail.key_refresh_failed(issuer, error)
                metrics.key_refresh_failed(issuer)

            verifier.on_key_refresh_failure(key_refresh_failed)
        else:
            verifier.on_key_refresh_failure(trail.key_refresh_failed)
        tracer = tracer_from_config(config.tracing)
        if tracer is not None:
            observers.append(tracer)
        policy.on_reload = trail.policy_reloaded
        upstream = UpstreamClient(config.upstream)
        quotas = Quotas(shared)
        await verifier.start()
        inspector = inspector_from_config(config.inspection, lambda: policy.current.checks)
        reviews = ReviewService(
            trail.store,
            trail,
            Notifier(config.reviews.webhooks, http),
            default_approvers=config.reviews.approvers,
            poll_interval=config.reviews.poll_interval,
            max_pending_per_requester=config.reviews.max_pending_per_requester,
        )
        await reviews.start()
        stages = Stages(
            authenticator=verifier,
            inspector=inspector,
            decider=PolicyDecider(policy),
            reviewer=HoldingReviewer(
                reviews,
                inspector.redacted,
                hold_timeout=config.reviews.hold_timeout,
                ping_interval=config.reviews.ping_interval,
                max_held=config.reviews.max_held,
            ),
            recorder=trail.recorder(AccessLog()),
            quotas=quotas,
            containers=ContainerOwners(shared),
            judge=_judge(config, upstream, inspector),
            observers=tuple(observers),
        )
        pipeline = Pipeline(stages, upstream, config.server)
        policy.log_warnings()
        tasks = [asyncio.create_task(policy.watch())]
        tls = server_tls(config.server.tls) if config.server.tls is not None else None
        if tls is not None:
            tasks.append(asyncio.create_task(tls.watch()))
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            # SIGHUP reloads the policy; only possible in the main thread (not in tests' threads)
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, policy.reload)
        readiness = Readiness(verifier, trail, policy, tls)
        metrics_server = None
        if metrics is not None:
            metrics.count_reviews(
                lambda: _pending_reviews(trail.store), config.metrics.reviews_interval
            )
            metrics.watch_runtime(
                lambda: RuntimeSizes(
                    tasks=len(asyncio.all_tasks()),
                    upstream_idle=upstream.idle_connections,
                    cached_tokens=verifier.cached_tokens,
                    recordings_waiting=trail.writer.recordings_waiting,
                )
            )
            host, _, port = config.metrics.listen.rpartition(":")
            metrics_server = await serve_metrics(metrics, host.strip("[]"), int(port))
        admin = AdminApp.from_config(
            config, trail.store, verifier, readiness.status_report, reviews
        )
        log.info(
            "ztgate started",
            extra={
                "event": "started",
                "listen": config.listen,
                "upstream": config.upstream.url,
                "issuers": verifier.status(),
            },
        )
        return cls(
            http,
            verifier,
            upstream,
            quotas,
            shared,
            pipeline,
            tasks,
            trail,
            reviews,
            admin,
            readiness,
            metrics,
            metrics_server,
            tracer,
        )

    async def close(self) -> None:
        if self.metrics_server is not None:
            self.metrics_server.close()
        if self.metrics is not None:
            await self.metrics.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.reviews.close()
        await self.shared.close()
        await self.verifier.close()
        await self.upstream.close()
        await self.http.close()
        await self.trail.close()
        if self.tracer is not None:  # last: a collector that is down holds no one up
            await self.tracer.close()


async def _pending_reviews(store: AuditStore) -> int:
    return len(await store.reviews(ReviewQuery(ReviewState.PENDING, limit=_REVIEWS_COUNTED)))
