"""A case's identity and request built into the context the gateway has when it decides: the
same claims rules, the same routing, the same checks of the body. Nothing re-implements the
gateway; a case goes through :func:`from_context` and :meth:`Policy.decide` as a request does.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from ztgate.config.model import IssuerConfig
from ztgate.core.context import Body, RequestContext
from ztgate.core.errors import AuthenticationFailed, InvalidRequest
from ztgate.core.identity import Identity
from ztgate.identity.claims import IssuerRules, scopes
from ztgate.offline.cases import CaseError, IdentitySpec, RequestSpec
from ztgate.wire.params import check_request
from ztgate.wire.routes import match_route


def build_identity(spec: IdentitySpec, issuers: Sequence[IssuerConfig] | None) -> Identity:
    """The identity the gateway would put on the context after verifying such a token.

    With claims alone, the issuer is the configured one whose ``issuer`` equals ``iss``, its
    claim rules are applied (a token they refuse is an error) and groups and scopes come from
    them, as in :class:`~ztgate.identity.verifier.TokenVerifier`. Signature, ``aud`` and ``exp``
    are not checked: a case describes a token that verified.
    """
    claims = dict(spec.claims)
    exp = claims.get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else 0.0
    if not spec.derived:
        assert spec.issuer is not None
        assert spec.subject is not None
        issuer_url = claims.get("iss") if isinstance(claims.get("iss"), str) else ""
        if issuers is not None:
            config = next((i for i in issuers if i.name == spec.issuer), None)
            if config is None:
                raise CaseError(f"identity.issuer: the config has no issuer named {spec.issuer!r}")
            issuer_url = config.issuer
        return Identity(
            issuer_name=spec.issuer,
            issuer=str(issuer_url),
            subject=spec.subject,
            claims=claims,
            expires_at=expires_at,
            groups=frozenset(spec.groups or ()),
            scopes=frozenset(spec.scopes or ()),
        )
    if issuers is None:
        raise CaseError("identity: claims alone need --config, to find the issuer of their iss")
    iss = claims.get("iss")
    config = next((i for i in issuers if i.issuer == iss), None)
    if config is None:
        raise CaseError(f"identity.claims.iss: no issuer in the config has issuer {iss!r}")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise CaseError("identity.claims.sub: a token needs a subject")
    rules = IssuerRules(config)
    try:
        rules.check(claims)
    except AuthenticationFailed as exc:
        raise CaseError(f"the gateway would refuse this token (401): {exc.message}") from None
    return Identity(
        issuer_name=config.name,
        issuer=config.issuer,
        subject=subject,
        claims=claims,
        expires_at=expires_at,
        groups=rules.groups(claims),
        scopes=scopes(claims),
    )


def build_context(identity: Identity, spec: RequestSpec) -> RequestContext:
    """The context as the gateway has it when it decides: routed, parsed, identified."""
    path, _, query = spec.path.partition("?")
    route = match_route(spec.method, path)
    if route is None:
        raise CaseError(
            f"{spec.method} {path} is not an endpoint this gateway serves (it answers 404)"
        )
    headers = [
        (name.lower().encode(), value.encode())
        for name, values in spec.headers.items()
        for value in ([values] if isinstance(values, str) else values)
    ]
    ctx = RequestContext(
        request_id="policy-case",
        method=spec.method,
        path=path,
        query_string=query.encode(),
        headers=headers,
        client=None,
        scheme="http",
        route=route,
        identity=identity,
    )
    if route.body is Body.JSON:
        if spec.body is None:
            raise CaseError(f"request.body: {spec.method} {path} needs a JSON body")
        try:
            ctx.body = orjson.dumps(spec.body)
        except TypeError as exc:
            raise CaseError(f"request.body: cannot be written as JSON: {exc}") from None
        ctx.payload = orjson.loads(ctx.body)  # what the gateway parses: YAML dates become strings
        ctx.bytes_in = len(ctx.body)
        try:
            check_request(route.endpoint.value, ctx.payload)
        except InvalidRequest as exc:
            raise CaseError(f"request.body: the gateway refuses it before policy: {exc}") from None
    elif spec.body is not None:
        raise CaseError(f"request.body: {spec.method} {path} takes no JSON body")
    return ctx
