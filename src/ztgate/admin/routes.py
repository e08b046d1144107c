"""The admin API's routes: one table, read by the app to dispatch and by the OpenAPI document
to describe, so that the two cannot drift apart: paths, path parameters and each route's
query parameters (``parameters.py``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ztgate.admin.parameters import REVIEWS, SEARCH, SESSIONS, QueryParameter

PREFIX = "/ztgate/api/v1"

# What a path parameter may hold: a sequence number, or an id as the gateway writes them.
PATH_PARAMETERS = {
    "seq": r"[1-9][0-9]{0,17}",
    "session_id": r"[A-Za-z0-9_:.@-]{1,200}",
    "review_id": r"rev_[0-9a-f]{24}",
}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True, slots=True)
class AdminRoute:
    name: str  # the handler, and the OpenAPI operationId
    method: str
    template: str  # under PREFIX, with {parameters}
    pattern: re.Pattern[str]
    # Who gets in: "admins" (a member of admin.groups), "anyone" (any verified identity: the
    # handler decides what it may see or do), "slack" (a click Slack signed; no token).
    audience: str = "admins"
    query: tuple[QueryParameter, ...] = ()  # what it takes after ``?``; nothing else

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.template))


def _route(
    name: str,
    template: str,
    method: str = "GET",
    audience: str = "admins",
    query: tuple[QueryParameter, ...] = (),
) -> AdminRoute:
    regex = _PLACEHOLDER.sub(lambda m: f"(?P<{m.group(1)}>{PATH_PARAMETERS[m.group(1)]})", template)
    pattern = re.compile(re.escape(PREFIX) + regex)
    return AdminRoute(name, method, template, pattern, audience, query)


ROUTES = (
    _route("search_events", "/audit/events", query=SEARCH),
    _route("get_event", "/audit/events/{seq}"),
    _route("verify_chain", "/audit/verify"),
    _route("list_checkpoints", "/audit/checkpoints"),
    _route("list_sessions", "/sessions", query=SESSIONS),
    _route("get_session", "/sessions/{session_id}"),
    _route("get_status", "/status"),
    _route("list_reviews", "/reviews", audience="anyone", query=REVIEWS),
    _route("get_review", "/reviews/{review_id}", audience="anyone"),
    _route("approve_review", "/reviews/{review_id}/approve", "POST", "anyone"),
    _route("deny_review", "/reviews/{review_id}/deny", "POST", "anyone"),
    _route("cancel_review", "/reviews/{review_id}/cancel", "POST", "anyone"),
    _route("slack_action", "/reviews/slack", "POST", "slack"),
    _route("openapi", "/openapi.json"),
)


def match(method: str, path: str) -> tuple[AdminRoute, dict[str, str]] | None:
    """The route for a request and its path parameters, or None."""
    for route in ROUTES:
        found = route.pattern.fullmatch(path)
        if found is not None and route.method == method:
            return route, found.groupdict()
    return None
