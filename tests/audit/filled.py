"""Audit stores filled as the gateway fills them, for the tests that read the audit back.

Two callers' sessions are sent to the upstream simulator and recorded; each request gets a
request event (facts from the gateway's own context-to-facts converter, the decision from the
real policy engine) and an outcome event, written through the real :class:`AuditWriter`
(which signs checkpoints), and each answered request a recording, capped and sealed by the
real ``store_recording``. One request has no outcome (the gateway stopped in between), one
was denied, and there are startup and policy-reload events. The stores are SQLite files and
databases of the machine's real PostgreSQL.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tests.audit.sessions import Exchange, conversation, record
from tests.audit.store.backends import postgres_database
from ztgate.audit.events import AuditEvent
from ztgate.audit.recording import Recording
from ztgate.audit.sealing import Sealer, store_recording
from ztgate.audit.signing import SigningKey
from ztgate.audit.store.factory import open_store
from ztgate.audit.writer import AuditWriter
from ztgate.core.decision import Decision, policy_input_json, skill_id
from ztgate.core.findings import FindingRecord
from ztgate.core.identity import Identity
from ztgate.devtools.simulator import UpstreamSimulator
from ztgate.offline.build import build_context
from ztgate.offline.cases import parse_request
from ztgate.policy.loader import build_policy
from ztgate.policy.request import ENDPOINT_NAMES, from_context, skills_of, tools_of

POLICY: dict[str, Any] = {
    "default": "deny",
    "rules": [
        {"id": "dev-any", "when": {"groups": ["dev"], "tools": ["*"]}, "effect": "allow"},
        {
            "id": "ci-haiku",
            "when": {
                "groups": ["ci"],
                "models": ["claude-haiku-*"],
                "skills": ["xlsx"],
                "tools": ["code_execution_*"],
            },
            "effect": "allow",
        },
        {"id": "no-computer", "when": {"tools": ["computer_*"]}, "effect": "deny"},
    ],
}

ALICE = Identity(
    "demo", "https://idp.example.com", "alice", {"sub": "alice"}, 0.0, frozenset({"dev"})
)
CI = Identity(
    "github", "https://gh.example.com", "repo:acme/app", {"sub": "repo:acme/app",
    "repository": "acme/app"}, 0.0, frozenset({"ci"}),
)  # fmt: skip
ALICE_SESSION = "ses_alice_geo"
CI_SESSION = "ses_ci_reports"
CI_AGE = 3 * 86400.0  # the CI session ran three days ago


def ci_exchanges() -> list[Exchange]:
    haiku = "claude-haiku-5-5"
    email = {"role": "user", "content": "Summarise the ticket from bob@example.com"}
    xlsx = {"type": "anthropic", "skill_id": "xlsx", "version": "latest"}
    return [
        Exchange("POST", "/v1/messages", {"model": haiku, "max_tokens": 100, "messages": [email]}),
        Exchange(
            "POST",
            "/v1/messages",
            {
                "model": haiku,
                "max_tokens": 100,
                "messages": [{"role": "user", "content": "Make a spreadsheet"}],
                "container": {"skills": [xlsx]},
                "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
            },
        ),
    ]


@dataclass
class Filled:
    """What was written, for tests to compare the audit with."""

    url: str
    signing_key: SigningKey
    recording_key: str  # base64
    recordings: dict[str, list[Recording]] = field(default_factory=dict)  # by session
    request_ids: dict[str, str] = field(default_factory=dict)  # name -> request id
    events: int = 0

    def config_yaml(self, directory: Path, **overrides: Any) -> Path:
        """A gateway config (as for `ztgate serve`) that reads this store."""
        key_file = directory / "signing-key.pem"
        if not key_file.exists():
            key_file.write_bytes(self.signing_key.private_pem())
        audit: dict[str, Any] = {
            "signing_key_file": str(key_file),
            "recordings": {"encryption_key": self.recording_key},
        }
        audit.update(overrides.pop("audit", {}))
        document = {
            "upstream": {"url": "http://127.0.0.1:9", "api_key": "sk-test"},
            "identity": {
                "issuers": [
                    {"name": "demo", "issuer": "https://idp.example.com", "audiences": ["ztgate"]}
                ]
            },
            "policy": POLICY,
            "store": {"url": self.url},
            "audit": audit,
            **overrides,
        }
        path = directory / f"ztgate-{secrets.token_hex(3)}.yaml"
        path.write_bytes(orjson.dumps(document))  # JSON is YAML
        return path


def _context(identity: Identity, exchange: Exchange, findings: list[FindingRecord]) -> Any:
    spec: dict[str, Any] = {"method": exchange.method, "path": exchange.path}
    if exchange.body is not None:
        spec["body"] = exchange.body
    ctx = build_context(identity, parse_request(spec))
    ctx.findings = findings
    return ctx


def _request_event(
    identity: Identity,
    recording: Recording,
    exchange: Exchange,
    decision: Decision,
    findings: list[FindingRecord],
) -> AuditEvent:
    ctx = _context(identity, exchange, findings)
    body = exchange.body or {}
    data = {
        "principal": identity.principal,
        "issuer": identity.issuer_name,
        "subject": identity.subject,
        "groups": sorted(identity.groups),
        "client_ip": "127.0.0.1",
        "user_agent": "anthropic-python/2.14.0",
        "method": exchange.method,
        "path": exchange.path,
        "endpoint": ENDPOINT_NAMES[ctx.route.endpoint],
        "model": body.get("model"),
        "skills": [skill_id(ref) for ref in skills_of(body)],
        "tools": list(tools_of(body)),
        "stream": body.get("stream") is True,
        "session_id": recording.session_id,
        "decision": {
            "effect": decision.effect.value,
            "reason": decision.reason,
            "rule_ids": list(decision.rule_ids),
        },
        "findings": ctx.finding_counts(),
        "bytes_in": len(recording.request_body),
        "policy_input": policy_input_json(from_context(ctx)),
    }
    return AuditEvent(
        "request", recording.started_at, data, recording.request_id, identity.principal
    )


def _outcome_event(recording: Recording, decision: Decision, masked: dict[str, int]) -> AuditEvent:
    allowed = decision.effect.value == "allow"
    body = recording.response_body or b""
    usage = {}
    if recording.events:
        for _, raw in recording.events:
            if b'"message_delta"' in raw:
                usage = orjson.loads(raw.split(b"data: ", 1)[1])["usage"]
    elif body.startswith(b"{"):
        usage = orjson.loads(body).get("usage") or {}
    latency = (recording.events[-1][0] if recording.events else 0.01) * 1000
    data = {
        "status": recording.status if allowed else 403,
        "error_type": None if allowed else "permission_error",
        "upstream_status": recording.status if allowed else None,
        "upstream_request_id": "req_sim_" + recording.request_id[-8:] if allowed else None,
        "usage": usage,
        "latency_ms": round(latency + 2.0, 3),
        "upstream_ms": round(latency, 3) if allowed else None,
        "stream_end": "complete" if recording.events else None,
        "bytes_out": len(body) + sum(len(raw) for _, raw in recording.events),
        "masked": masked,
    }
    at = recording.started_at + latency / 1000 + 0.002
    return AuditEvent("outcome", at, data, recording.request_id, recording.principal)


DENIED = Exchange(
    "POST",
    "/v1/messages",
    {
        "model": "claude-sonnet-5-5",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
    },
)
EMAIL_FINDING = FindingRecord("email", "pii", "messages.0.content")


async def _record_sessions() -> tuple[list[Recording], list[Recording]]:
    """Alice's session now; the CI job's (two answered requests, then one that policy denies:
    it never went upstream, so it is not recorded) three days ago."""
    simulator = UpstreamSimulator()
    await simulator.start()
    try:
        alice = await record(simulator, conversation(), session_id=ALICE_SESSION)
        ci = await record(
            simulator, [*ci_exchanges(), DENIED], session_id=CI_SESSION, principal=CI.principal
        )
    finally:
        await simulator.stop()
    for recording in ci:
        recording.started_at -= CI_AGE
    return alice, ci


async def fill(url: str, *, seal: bool = True) -> Filled:
    """Migrate the store at ``url`` and write both sessions and the other events into it."""
    policy = build_policy(POLICY)[0]
    filled = Filled(url, SigningKey.generate(), base64.b64encode(os.urandom(32)).decode())
    sealer = Sealer.from_base64(filled.recording_key) if seal else None
    alice, ci = await _record_sessions()
    plan: list[tuple[Identity, Recording, Exchange, list[FindingRecord], dict[str, int]]] = [
        (ALICE, r, e, [], {}) for r, e in zip(alice, conversation(), strict=True)
    ]
    plan.append((CI, ci[0], ci_exchanges()[0], [EMAIL_FINDING], {"email": 1}))
    plan.append((CI, ci[1], ci_exchanges()[1], [], {}))
    plan.append((CI, ci[2], DENIED, [], {}))
    filled.request_ids = {
        "alice_stream": alice[0].request_id,
        "alice_tool": alice[1].request_id,
        "ci_email": ci[0].request_id,
        "ci_xlsx": ci[1].request_id,
        "ci_denied": ci[2].request_id,
        "crashed": "req_ztg_crashed0000",
    }
    events = [AuditEvent("startup", ci[0].started_at - 1, {"listen": "127.0.0.1:8787"})]
    store = open_store(url)
    try:
        await store.migrate()
        writer = AuditWriter(store, filled.signing_key, checkpoint_every=4)
        await writer.start()
        for identity, recording, exchange, findings, masked in plan:
            decision = policy.decide(from_context(_context(identity, exchange, findings)))
            events.append(_request_event(identity, recording, exchange, decision, findings))
            events.append(_outcome_event(recording, decision, masked))
            if decision.effect.value == "allow":
                filled.recordings.setdefault(recording.session_id, []).append(recording)
                stored = store_recording(recording, sealer=sealer, max_bytes=1 << 20)
                await writer.put_recording(stored)
        # The gateway stopped between deciding a request and finishing it: no outcome.
        crashed = dataclasses.replace(
            alice[0], request_id=filled.request_ids["crashed"], started_at=alice[-1].started_at + 1
        )
        crash_decision = policy.decide(from_context(_context(ALICE, conversation()[0], [])))
        events.append(_request_event(ALICE, crashed, conversation()[0], crash_decision, []))
        events.append(AuditEvent("policy_reload", crashed.started_at + 1, {"applied": True}))
        events.sort(key=lambda e: e.at)
        for event in events:  # one at a time, as requests arrive
            await writer.write([event])
        await writer.close()
        filled.events = len(events)
    finally:
        await store.close()
    return filled


@contextlib.contextmanager
def store_url(backend: str, directory: Path) -> Iterator[str]:
    """An empty store's URL on ``backend`` (sqlite or postgres)."""
    if backend == "sqlite":
        yield f"sqlite:///{directory}/audit-{secrets.token_hex(3)}.db"
        return
    with postgres_database() as url:
        yield url
