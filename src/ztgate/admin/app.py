"""The admin API as an ASGI app, mounted by the gateway under ``/ztgate/api/``.

Every call is authenticated before routing, with the data path's tokens and verifier (so
unknown paths cannot be probed anonymously), then authorised by group: only members of a
group named under ``admin.groups`` get in, and with no group named nobody does. Answers are
JSON; errors are the Anthropic envelope with a ``request-id``, like the data path's.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson

from ztgate.admin.openapi import openapi_document
from ztgate.admin.routes import AdminRoute, match
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

log = logging.getLogger("ztgate.admin")

_Handler = Callable[[dict[str, str], dict[str, str]], Awaitable[Any]]
StatusReport = Callable[[], Awaitable[dict[str, Any]]]
_SESSION_FILTERS = ("principal", "since", "until", "limit")


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


class AdminApp:
    def __init__(
        self,
        reader: AuditReader,
        authenticator: Authenticator,
        config: AdminConfig,
        status: StatusReport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reader = reader
        self._authenticator = authenticator
        self._config = config
        self._status = status
        self._clock = clock
        self._handlers: dict[str, _Handler] = {
            "search_events": self._search_events,
            "get_event": self._get_event,
            "verify_chain": self._verify_chain,
            "list_checkpoints": self._list_checkpoints,
            "list_sessions": self._list_sessions,
            "get_session": self._get_session,
            "get_status": self._get_status,
            "openapi": self._openapi,
        }

    @classmethod
    def from_config(
        cls,
        config: GatewayConfig,
        store: AuditStore,
        authenticator: Authenticator,
        status: StatusReport | None = None,
    ) -> AdminApp:
        """The admin API over the gateway's store, with its recording and signing keys, its
        token verifier and the gateway's readiness in detail. ValueError when the configured
        signing key cannot be read."""
        return cls(AuditReader.from_config(config, store), authenticator, config.admin, status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = new_request_id()
        principal = route_name = None
        try:
            identity = await self._authenticator.verify(extract_credential(scope["headers"]))
            principal = identity.principal
            authorise(identity, self._config)
            found = _route(scope)
            if found is None:
                raise NotFound(f"{scope['method']} {scope['path']} is not an admin API endpoint")
            route, parameters = found
            route_name = route.name
            document = await self._handlers[route.name](parameters, _query(scope["query_string"]))
        except GatewayError as exc:
            body = error_body(exc.error_type, exc.message, request_id)
            await _answer(send, exc.status, body, request_id, exc.headers())
            status = exc.status
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

    async def _search_events(self, _: dict[str, str], query: dict[str, str]) -> Any:
        try:
            audit_query = build_query(query, self._clock())
        except QueryError as exc:
            raise InvalidRequest(str(exc)) from None
        events = await _reading(self.reader.search(audit_query))
        return {"events": events, "count": len(events)}

    async def _get_event(self, parameters: dict[str, str], query: dict[str, str]) -> Any:
        _no_query(query)
        seq = int(parameters["seq"])
        document = await _reading(self.reader.event(seq))
        if document is None:
            raise NotFound(f"the audit has no event {seq}")
        return document

    async def _get_status(self, _: dict[str, str], query: dict[str, str]) -> Any:
        _no_query(query)
        if self._status is None:
            raise NotFound("this admin API runs without a gateway: no status to report")
        return await self._status()

    async def _verify_chain(self, _: dict[str, str], query: dict[str, str]) -> Any:
        _no_query(query)
        return verify_document(await _reading(self.reader.verify()))

    async def _list_checkpoints(self, _: dict[str, str], query: dict[str, str]) -> Any:
        _no_query(query)
        return await _reading(self.reader.checkpoints_document())

    async def _list_sessions(self, _: dict[str, str], query: dict[str, str]) -> Any:
        session_query = self._session_query(query)
        sessions = await _reading(self.reader.sessions(session_query))
        return {"sessions": [session_document(s) for s in sessions]}

    async def _get_session(self, parameters: dict[str, str], query: dict[str, str]) -> Any:
        _no_query(query)
        session_id = parameters["session_id"]
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

    async def _openapi(self, _: dict[str, str], query: dict[str, str]) -> Any:
        _no_query(query)
        return openapi_document()

    def _session_query(self, query: dict[str, str]) -> SessionQuery:
        unknown = sorted(set(query) - set(_SESSION_FILTERS))
        if unknown:
            raise InvalidRequest(
                f"unknown filter {unknown[0]!r}; use {', '.join(_SESSION_FILTERS)}"
            )
        now = self._clock()
        try:
            limit = build_query({"limit": query.get("limit")}, now).limit
            since = parse_time(query["since"], now) if query.get("since") else None
            until = parse_time(query["until"], now) if query.get("until") else None
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


def _no_query(query: dict[str, str]) -> None:
    if query:
        raise InvalidRequest(f"unknown parameter {sorted(query)[0]!r}: this endpoint takes none")


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
