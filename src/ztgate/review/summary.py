"""What an approver sees of a held request: enough to judge it, never a value inspection found.

The model, skills, tools, MCP servers, what inspection found (detector and place, not the
value), the rules that asked for the review with their messages, and short excerpts of the last
prompt and the last tool result, with every finding redacted whatever the policy's mask says
(approvers and webhooks are not the model: they see no value at all). Without inspection no
excerpt is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ztgate.core.context import RequestContext
from ztgate.core.decision import Decision
from ztgate.wire.fields import text_blocks

EXCERPT = 600  # characters of the end of the prompt and of the last tool result

Redact = Callable[[str], str | None]


def summarize(ctx: RequestContext, decision: Decision, redact: Redact) -> dict[str, Any]:
    requests = ctx.policy_input
    payload = ctx.payload or {}
    bodies = _bodies(payload)
    return {
        "method": ctx.method,
        "path": ctx.path,
        "endpoint": ctx.route.endpoint.value if ctx.route else None,
        "model": ctx.model,
        "stream": ctx.streaming,
        "skills": sorted({s for r in requests for s in r.skills}),
        "tools": sorted({t for r in requests for t in r.tools}),
        "mcp_servers": sorted({m for r in requests for m in r.mcp_servers}),
        "findings": sorted({f"{f.detector} in {f.path}" for f in ctx.findings}),
        "rules": [
            {"id": r.rule_id, "message": r.message, "approvers": sorted(r.approvers)}
            for r in decision.reviews
        ],
        "reason": decision.reason,
        "prompt_excerpt": _excerpt(_last_text(bodies, "user"), redact),
        "tool_result_excerpt": _excerpt(_last_tool_result(bodies), redact),
    }


def _bodies(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The messages requests a body holds: itself, or each request of a batch."""
    items = payload.get("requests")
    if isinstance(items, list):
        return [
            i["params"] for i in items if isinstance(i, dict) and isinstance(i.get("params"), dict)
        ]
    return [payload]


def _excerpt(text: str | None, redact: Redact) -> str | None:
    """The end of ``text``, redacted before it is cut: a value straddling the cut is still
    found whole."""
    if not text:
        return None
    shown = redact(text)
    if shown is None:
        return None
    return ("…" + shown[-EXCERPT:]) if len(shown) > EXCERPT else shown


def _last_text(bodies: Sequence[Mapping[str, Any]], role: str) -> str | None:
    for body in reversed(bodies):
        messages = body.get("messages")
        for message in reversed(messages if isinstance(messages, list) else []):
            if isinstance(message, dict) and message.get("role") == role:
                text = "\n".join(text_blocks(message.get("content")))
                if text:
                    return text
    return None


def _last_tool_result(bodies: Sequence[Mapping[str, Any]]) -> str | None:
    for body in reversed(bodies):
        messages = body.get("messages")
        for message in reversed(messages if isinstance(messages, list) else []):
            content = message.get("content") if isinstance(message, dict) else None
            for block in reversed(content if isinstance(content, list) else []):
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    text = "\n".join(text_blocks(block.get("content")))
                    if text:
                        return text
    return None
