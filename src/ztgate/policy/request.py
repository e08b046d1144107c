"""The plain facts policy decides on, converted once from the wire request.

Nothing here does I/O; the converter reads the parsed body and headers already on the context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ztgate.core.context import Endpoint, RequestContext
from ztgate.core.decision import PolicyRequest
from ztgate.core.guardrails import combine

# The class of each endpoint as policy names it.
ENDPOINT_NAMES = {
    Endpoint.MESSAGES: "messages",
    Endpoint.COUNT_TOKENS: "count_tokens",
    Endpoint.MODELS: "models",
    Endpoint.BATCHES: "batches",
    Endpoint.FILES: "files",
    Endpoint.SKILLS: "skills-admin",
}


def from_context(ctx: RequestContext) -> list[PolicyRequest]:
    """The request, or for a batch the batch itself followed by every request inside it."""
    assert ctx.identity is not None
    assert ctx.route is not None
    identity = ctx.identity
    betas = _betas([value for name, value in ctx.headers if name == b"anthropic-beta"])
    base = PolicyRequest(
        principal=identity.principal,
        issuer=identity.issuer_name,
        groups=identity.groups,
        scopes=identity.scopes,
        claims=identity.claims,
        endpoint=ENDPOINT_NAMES[ctx.route.endpoint],
        method=ctx.method,
        betas=betas,
        request_bytes=ctx.bytes_in,
        findings=frozenset(f.detector for f in ctx.findings),
        guardrails=combine(signal for _, signal in ctx.signals),
        client_certificate=ctx.client_certificate,
    )
    payload = ctx.payload or {}
    if ctx.route.endpoint is Endpoint.BATCHES and ctx.route.action == "create":
        inner = [
            _with_params(base, params, label)._replace(
                findings=_findings_under(ctx, prefix),
                guardrails=combine(s for path, s in ctx.signals if path.startswith(prefix)),
            )
            for label, params, prefix in _batch(payload)
        ]
        # The batch itself carries no text: its findings belong to the requests inside it.
        return [base._replace(findings=frozenset(), guardrails=()), *inner]
    if ctx.route.endpoint in (Endpoint.MESSAGES, Endpoint.COUNT_TOKENS):
        return [_with_params(base, payload, label=None)]
    return [base]


def _findings_under(ctx: RequestContext, prefix: str) -> frozenset[str]:
    return frozenset(f.detector for f in ctx.findings if f.path.startswith(prefix))


def _batch(payload: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], str]]:
    """Every request of a batch (checked whole at parse, ``wire/params.py``)."""
    return [
        (item["custom_id"], item["params"], f"requests.{index}.params.")
        for index, item in enumerate(payload["requests"])
    ]


def _with_params(base: PolicyRequest, params: object, label: str | None) -> PolicyRequest:
    body: Mapping[str, Any] = params if isinstance(params, dict) else {}
    model = body.get("model")
    max_tokens = body.get("max_tokens")
    return base._replace(
        model=model if isinstance(model, str) else None,
        skills=skills_of(body),
        tools=tools_of(body),
        mcp_servers=tuple(
            s["url"] for s in _dicts(body.get("mcp_servers")) if isinstance(s.get("url"), str)
        ),
        stream=body.get("stream") is True,
        max_tokens=max_tokens if _is_int(max_tokens) else None,
        thinking_budget=_thinking_budget(body.get("thinking")),
        label=label,
    )


def skills_of(body: Mapping[str, Any]) -> tuple[str, ...]:
    """Requested skills as ``type:id@version`` (``anthropic:xlsx@latest``), so that policy can
    name a skill by id alone, by type and id, or down to the version."""
    container = body.get("container")
    if not isinstance(container, dict):
        return ()
    refs = []
    for skill in _dicts(container.get("skills")):
        skill_id = skill.get("skill_id")
        if not isinstance(skill_id, str):
            refs.append("<unnamed skill>")  # never matches a grant: fails closed
            continue
        kind = skill.get("type") if isinstance(skill.get("type"), str) else "custom"
        version = skill.get("version")
        refs.append(
            f"{kind}:{skill_id}@{version}" if isinstance(version, str) else f"{kind}:{skill_id}"
        )
    return tuple(refs)


def tools_of(body: Mapping[str, Any]) -> tuple[str, ...]:
    """Server tools by ``type`` (``bash_20250124``), custom tools by ``name`` (``Bash``)."""
    names = []
    for tool in _dicts(body.get("tools")):
        kind = tool.get("type")
        if isinstance(kind, str) and kind != "custom":
            names.append(kind)
        elif isinstance(tool.get("name"), str):
            names.append(tool["name"])
        else:
            names.append("<unnamed tool>")  # never matches an allow grant: fails closed
    return tuple(names)


def _dicts(value: object) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _thinking_budget(thinking: object) -> int | None:
    if isinstance(thinking, dict) and _is_int(thinking.get("budget_tokens")):
        return int(thinking["budget_tokens"])
    return None


def _betas(headers: list[bytes]) -> tuple[str, ...]:
    """Every value of every ``anthropic-beta`` line: all of them are forwarded upstream."""
    return tuple(
        b.strip() for header in headers for b in header.decode("latin-1").split(",") if b.strip()
    )
