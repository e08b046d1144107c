"""The admin API as an ASGI app, mounted by the gateway under ``/ztgate/api/``.

Every call is authenticated before routing, with the data path's tokens and verifier (so
unknown paths cannot be probed anonymously), then authorised by group: only members of a
group named under ``admin.groups`` get in, and with no group named nobody does. Its query is
checked against the route's parameters (``parameters.py``) before any handler reads it.
Answers are JSON; errors are the Anthropic envelope with a ``request-id``, like the data
path's, a bug's included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ztgate.admin.openapi import openapi_document
from ztgate.admin.parameters import read_query
from ztgate.admin.reviews import Caller, ReviewsAPI
from ztgate.admin.routes import PREFIX, AdminRoute, match
from ztgate.audit.reader import AuditReader
from ztgate.audit.sealing import SealError
from ztgate.audit.search import QueryError, build_query, parse_time
from ztgate.audit.store.base import AuditStore, SessionQuery, StoredRecording
from ztgate.audit.views import (
    purged_recording_document,
    recording_document,
    session_document,
    verify_document,
)
from ztgate.config.model import AdminConfig, GatewayConfig
from ztgate.core.context import new_request_id
from ztgate.core.errors import (
    GatewayError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    answer_headers,
    error_body,
)
from ztgate.core.identity import Identity
from ztgate.core.stages import Authenticator
from ztgate.core.types import Receive, Scope, Send
from ztgate.identity.credentials import extract_credential
from ztgate.review.rules import Verdict
from ztgate.review.service import ReviewService

log = logging.getLogger("ztgate.admin")

SLACK_PATH = PREFIX + "/reviews/slack"

_Handler = Callable[["Call"], Awaitable[Any]]
_MAX_BODY = 64 * 1024
StatusReport = Callable[[], Awaitable[dict[str, Any]]]


def _is_admin(identity: Identity, config: AdminConfig) -> bool:
    return not identity.groups.isdisjoint(config.groups)


async def _body(receive: Receive) -> bytes:
    """A POST's body: small JSON (a reason) or Slack's form; larger is refused."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("the caller left before sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_BODY:
            raise InvalidRequest(f"the body is larger than {_MAX_BODY} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def authorise(identity: Identity, config: AdminConfig) -> None:
    """Raise PermissionDenied unless the caller is in one of the admin groups (fail closed:
    no groups configured, no admin)."""
    if not config.groups:
        raise PermissionDenied(
            "the admin API is closed: no group is named under admin.groups in the config"
        )
    if identity.groups.isdisjoint(config.groups):
        raise PermissionDenied(
            "this identity is in none of the groups allowed to use the admin API"
        )


@dataclass(frozen=True, slots=True)
class Call:
    """One admin call, authenticated and routed."""

    caller: Caller
    parameters: dict[str, str]
    query: dict[str, str]  # checked against the route's parameters; empty filters left out
    body: bytes


class AdminApp:
    def __init__(
        self,
        reader: AuditReader,
        authenticator: Authenticator,
        config: AdminConfig,
        status: StatusReport | None = None,
        reviews: ReviewsAPI | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = reader
        self._authenticator = authenticator
        self._config = config
        self._status = status
        self._reviews = reviews
        self._clock = clock
        self._handlers: dict[str, _Handler] = {
            "search_events": self._search_events,
            "get_event": self._get_event,
            "verify_chain": self._verify_chain,
            "list_checkpoints": self._list_checkpoints,
            "list_sessions": self._list_sessions,
            "get_session": self._get_session,
            "get_status": self._get_status,
            "list_reviews": self._list_reviews,
            "get_review": self._get_review,
            "approve_review": self._approve_review,
            "deny_review": self._deny_review,
            "cancel_review": self._cancel_review,
            "openapi": self._openapi,
        }

    @classmethod
    def from_config(
        cls,
        config: GatewayConfig,
        store: AuditStore,
        authenticator: Authenticator,
        status: StatusReport | None = None,
        reviews: ReviewService | None = None,
    ) -> AdminApp:
        """The admin API over the gateway's store, with its recording and signing keys, its
        token verifier, the gateway's readiness in detail and its reviews. ValueError when the
        configured signing key cannot be read."""
        api = ReviewsAPI(reviews, config.reviews.slack) if reviews is not None else None
        reader = AuditReader.from_config(config, store)
        return cls(reader, authenticator, config.admin, status, api)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = new_request_id()
        principal = route_name = None
        try:
            body = await _body(receive) if scope["method"] == "POST" else b""
            if scope["method"] == "POST" and scope["path"] == SLACK_PATH:
                route_name = "slack_action"
                document = await self._require_reviews().slack_action(dict(scope["headers"]), body)
            else:
                identity = await self._authenticator.verify(extract_credential(scope["headers"]))
                principal = identity.principal
                found = _route(scope)
                if found is None or found[0].audience == "admins":
                    authorise(identity, self._config)  # unknown paths only for admins: 404
                if found is None:
                    raise NotFound(
                        f"{scope['method']} {scope['path']} is not an admin API endpoint"
                    )
                route, parameters = found
                route_name = route.name
                admin = _is_admin(identity, self._config)
                query = read_query(route.query, _query(scope["query_string"]))
                call = Call(Caller(identity, admin), parameters, query, body)
                document = await self._handlers[route.name](call)
        except GatewayError as exc:
            body = error_body(exc.error_type, exc.message, request_id)
            await _answer(send, exc.status, body, request_id, exc.headers())
            status = exc.status
        except Exception:
            # A bug is still answered in the Anthropic shape, with the request id to quote.
            log.exception("internal error in the admin API", extra={"request_id": request_id})
            body = error_body("api_error", "internal error in the gateway", request_id)
            await _answer(send, 500, body, request_id)
            status = 500
        else:
            await _answer(send, 200, orjson.dumps(document), request_id)
            status = 200
        # Every admin call, refused ones too: who read the audit is itself worth knowing.
        log.info(
            "admin call",
            extra={
                "event": "admin",
                "request_id": request_id,
                "principal": principal,
                "path": scope["path"],
                "route": route_name,
                "status": status,
            },
        )

    async def _search_events(self, call: Call) -> Any:
        try:
            audit_query = build_query(call.query, self._clock())
        except QueryError as exc:
            raise InvalidRequest(str(exc)) from None
        events = await _reading(self.reader.search(audit_query))
        return {"events": events, "count": len(events)}

    async def _get_event(self, call: Call) -> Any:
        seq = int(call.parameters["seq"])  # [1-9][0-9]{0,17}: the route matched ASCII digits
        document = await _reading(self.reader.event(seq))
        if document is None:
            raise NotFound(f"the audit has no event {seq}")
        return document

    async def _get_status(self, call: Call) -> Any:
        if self._status is None:
            raise NotFound("this admin API runs without a gateway: no status to report")
        return await self._status()

    async def _verify_chain(self, call: Call) -> Any:
        return verify_document(await _reading(self.reader.verify()))

    async def _list_checkpoints(self, call: Call) -> Any:
        return await _reading(self.reader.checkpoints_document())

    async def _list_sessions(self, call: Call) -> Any:
        session_query = self._session_query(call.query)
        sessions = await _reading(self.reader.sessions(session_query))
        return {"sessions": [session_document(s) for s in sessions]}

    async def _get_session(self, call: Call) -> Any:
        session_id = call.parameters["session_id"]
        recordings = await _reading(self.reader.session(session_id))
        if not recordings:
            raise NotFound(f"no recorded session {session_id}")
        documents = [
            purged_recording_document(r)
            if isinstance(r, StoredRecording)
            else recording_document(r)
            for r in recordings
        ]
        return {"session_id": session_id, "recordings": documents}

    async def _list_reviews(self, call: Call) -> Any:
        return await self._require_reviews().list(call.caller, call.query)

    async def _get_review(self, call: Call) -> Any:
        return await self._require_reviews().get(call.caller, call.parameters["review_id"])

    async def _approve_review(self, call: Call) -> Any:
        return await self._decide(call, "approve")

    async def _deny_review(self, call: Call) -> Any:
        return await self._decide(call, "deny")

    async def _cancel_review(self, call: Call) -> Any:
        return await self._decide(call, "cancel")

    async def _decide(self, call: Call, verdict: Verdict) -> Any:
        reviews = self._require_reviews()
        return await reviews.decide(call.caller, call.parameters["review_id"], verdict, call.body)

    def _require_reviews(self) -> ReviewsAPI:
        if self._reviews is None:
            raise NotFound("this admin API runs without a gateway: no reviews")
        return self._reviews

    async def _openapi(self, call: Call) -> Any:
        return openapi_document()

    def _session_query(self, query: dict[str, str]) -> SessionQuery:
        """The session filters (checked, empty ones left out) as the store takes them."""
        now = self._clock()
        try:
            limit = build_query({"limit": query.get("limit")}, now).limit
            since = parse_time(query["since"], now) if "since" in query else None
            until = parse_time(query["until"], now) if "until" in query else None
        except QueryError as exc:
            raise InvalidRequest(str(exc)) from None
        return SessionQuery(principal=query.get("principal"), since=since, until=until, limit=limit)


async def _reading(pending: Awaitable[Any]) -> Any:
    """Await a read; a sealed recording that cannot be opened is the gateway's problem (its
    key), said plainly, not a 500."""
    try:
        return await pending
    except SealError as exc:
        raise ServiceUnavailable(f"a recording cannot be opened: {exc}") from None
    except ValueError as exc:  # a stored recording that does not decode
        raise ServiceUnavailable(f"a stored record cannot be read: {exc}") from None


def _route(scope: Scope) -> tuple[AdminRoute, dict[str, str]] | None:
    if b"%" in scope.get("raw_path", b""):
        return None  # as on the data path: what is routed is what was sent
    return match(scope["method"], scope["path"])


def _query(query_string: bytes) -> dict[str, str]:
    """Query parameters, each at most once: a repeated filter is refused, not guessed at."""
    try:
        pairs = parse_qsl(
            query_string.decode("ascii"), keep_blank_values=True, strict_parsing=False
        )
    except UnicodeDecodeError:
        raise InvalidRequest("the query string must be ASCII (percent-encoded)") from None
    query: dict[str, str] = {}
    for name, value in pairs:
        if name in query:
            raise InvalidRequest(f"{name}: give each filter once")
        query[name] = value
    return query


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    request_id: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [*answer_headers(body, request_id), (b"cache-control", b"no-store"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
