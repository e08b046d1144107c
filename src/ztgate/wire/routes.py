"""The Anthropic API surface ztgate serves: a pure table from (method, path) to a route."""

from __future__ import annotations

import re

from ztgate.core.context import Body, Endpoint, Route

_ID = "{id}"
_ID_SEGMENT = re.compile(r"[A-Za-z0-9_:.-]{1,256}")

_TABLE: tuple[tuple[str, str, Endpoint, str, Body], ...] = (
    ("POST", "/v1/messages", Endpoint.MESSAGES, "create", Body.JSON),
    ("POST", "/v1/messages/count_tokens", Endpoint.COUNT_TOKENS, "count", Body.JSON),
    ("GET", "/v1/models", Endpoint.MODELS, "list", Body.NONE),
    ("GET", "/v1/models/{id}", Endpoint.MODELS, "get", Body.NONE),
    ("POST", "/v1/messages/batches", Endpoint.BATCHES, "create", Body.JSON),
    ("GET", "/v1/messages/batches", Endpoint.BATCHES, "list", Body.NONE),
    ("GET", "/v1/messages/batches/{id}", Endpoint.BATCHES, "get", Body.NONE),
    ("DELETE", "/v1/messages/batches/{id}", Endpoint.BATCHES, "delete", Body.NONE),
    ("POST", "/v1/messages/batches/{id}/cancel", Endpoint.BATCHES, "cancel", Body.NONE),
    ("GET", "/v1/messages/batches/{id}/results", Endpoint.BATCHES, "results", Body.NONE),
    ("POST", "/v1/files", Endpoint.FILES, "upload", Body.UPLOAD),
    ("GET", "/v1/files", Endpoint.FILES, "list", Body.NONE),
    ("GET", "/v1/files/{id}", Endpoint.FILES, "get", Body.NONE),
    ("DELETE", "/v1/files/{id}", Endpoint.FILES, "delete", Body.NONE),
    ("GET", "/v1/files/{id}/content", Endpoint.FILES, "download", Body.NONE),
    ("POST", "/v1/skills", Endpoint.SKILLS, "create", Body.UPLOAD),
    ("GET", "/v1/skills", Endpoint.SKILLS, "list", Body.NONE),
    ("GET", "/v1/skills/{id}", Endpoint.SKILLS, "get", Body.NONE),
    ("DELETE", "/v1/skills/{id}", Endpoint.SKILLS, "delete", Body.NONE),
    ("POST", "/v1/skills/{id}/versions", Endpoint.SKILLS, "create_version", Body.UPLOAD),
    ("GET", "/v1/skills/{id}/versions", Endpoint.SKILLS, "list_versions", Body.NONE),
    ("GET", "/v1/skills/{id}/versions/{id}", Endpoint.SKILLS, "get_version", Body.NONE),
    ("DELETE", "/v1/skills/{id}/versions/{id}", Endpoint.SKILLS, "delete_version", Body.NONE),
)

_Pattern = tuple[str, ...]
_BY_METHOD_AND_LENGTH: dict[tuple[str, int], list[tuple[_Pattern, Route]]] = {}
for _method, _path, _endpoint, _action, _body in _TABLE:
    _pattern = tuple(_path.split("/"))
    _BY_METHOD_AND_LENGTH.setdefault((_method, len(_pattern)), []).append(
        (_pattern, Route(_endpoint, _action, _body))
    )


def match_route(method: str, path: str) -> Route | None:
    """The route for a request, or None. The query string is not part of ``path``.

    Identifier segments are restricted to the characters real ids use, so ``..``, encoded
    slashes or empty segments can never make ztgate and the upstream disagree on the path.
    """
    segments = path.split("/")
    for pattern, route in _BY_METHOD_AND_LENGTH.get((method, len(segments)), ()):
        if all(_segment_matches(p, s) for p, s in zip(pattern, segments, strict=True)):
            return route
    return None


def _segment_matches(pattern: str, segment: str) -> bool:
    if pattern != _ID:
        return pattern == segment
    return segment not in (".", "..") and _ID_SEGMENT.fullmatch(segment) is not None
