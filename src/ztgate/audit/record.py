"""What a request's audit events say: pure functions from the request context to event data.

Only names, counts and decisions are copied: never a token, a key, a header value other than
the user agent, or any text of the request or the response (those live in the recording).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from ztgate.audit.events import AuditEvent
from ztgate.core.context import RequestContext
from ztgate.core.decision import policy_input_json, skill_id
from ztgate.core.guardrails import combine, hits_json

_SESSION_HEADERS = (b"x-claude-code-session-id", b"ztgate-session-id")
_MAX_SESSION_ID = 128


def _ms(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else round((end - start) * 1000, 3)


def session_id(ctx: RequestContext) -> str:
    """The conversation a request belongs to: Claude Code's session header, else ztgate's own,
    else the session in ``metadata.user_id``, else the request alone."""
    for name in _SESSION_HEADERS:
        value = ctx.header(name)
        if value:
            return value.decode("latin-1")[:_MAX_SESSION_ID]
    metadata = ctx.payload.get("metadata") if ctx.payload else None
    user_id = metadata.get("user_id") if isinstance(metadata, Mapping) else None
    if isinstance(user_id, str):
        found = _session_in_user_id(user_id)
        if found:
            return found[:_MAX_SESSION_ID]
    return ctx.request_id


def _session_in_user_id(user_id: str) -> str | None:
    """``user_<hash>_account_<uuid>_session_<uuid>`` (Claude Code) or a JSON object with a
    ``session_id`` (newer clients)."""
    if user_id.startswith("{"):
        try:
            document = orjson.loads(user_id)
        except orjson.JSONDecodeError:
            return None
        found = document.get("session_id") if isinstance(document, dict) else None
        return found if isinstance(found, str) and found else None
    _, marker, rest = user_id.rpartition("_session_")
    return rest or None if marker else None


def request_event(ctx: RequestContext) -> AuditEvent:
    """The request as decided, written (and committed) before it goes upstream."""
    identity = ctx.identity
    decision = ctx.decision
    requests = ctx.policy_input
    data: dict[str, Any] = {
        "principal": identity.principal if identity else None,
        "issuer": identity.issuer_name if identity else None,
        "subject": identity.subject if identity else None,
        "groups": sorted(identity.groups) if identity else [],
        "client_ip": ctx.client,
        "user_agent": (ctx.header(b"user-agent") or b"").decode("latin-1")[:256] or None,
        "method": ctx.method,
        "path": ctx.path,
        "endpoint": ctx.route.endpoint.value if ctx.route else None,
        "model": ctx.model,
        "skills": sorted({skill_id(ref) for req in requests for ref in req.skills}),
        "tools": sorted({tool for req in requests for tool in req.tools}),
        "stream": ctx.streaming,
        "session_id": session_id(ctx),
        "decision": (
            {
                "effect": decision.effect.value,
                "reason": decision.reason,
                "rule_ids": list(decision.rule_ids),
            }
            if decision
            else None
        ),
        "findings": ctx.finding_counts(),
        "guardrails": hits_json(combine(signal for _, signal in ctx.signals)),
        "bytes_in": ctx.bytes_in,
        "policy_input": policy_input_json(requests),
    }
    return AuditEvent(
        "request",
        ctx.received_at,
        data,
        request_id=ctx.request_id,
        principal=identity.principal if identity else None,
    )


def outcome_event(ctx: RequestContext) -> AuditEvent:
    """How the request ended, written when its response is over."""
    facts = ctx.facts
    usage = (
        {"input_tokens": facts.input_tokens, "output_tokens": facts.output_tokens}
        if facts.input_tokens is not None or facts.output_tokens is not None
        else None
    )
    now = time.perf_counter()
    data = {
        "status": ctx.status,
        "error_type": ctx.error_type,
        "upstream_status": ctx.upstream_status,
        "upstream_request_id": ctx.upstream_request_id,
        "upstream_key": ctx.upstream_key,
        "usage": usage,
        "latency_ms": _ms(ctx.started, now),
        "upstream_ms": _ms(ctx.upstream_started, ctx.upstream_first_byte),
        "stream_end": ctx.stream_end.value if ctx.stream_end else None,
        "bytes_out": ctx.bytes_out,
        "masked": dict(ctx.masked),
        # guardrail checks policy acted on (or reported) in the response
        "response_checks": dict(ctx.response_checks),
    }
    return AuditEvent(
        "outcome",
        time.time(),
        data,
        request_id=ctx.request_id,
        principal=ctx.identity.principal if ctx.identity else None,
    )
