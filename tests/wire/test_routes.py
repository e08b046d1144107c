from __future__ import annotations

import pytest

from ztgate.core.context import Body, Endpoint
from ztgate.wire.routes import match_route


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "action", "body"),
    [
        ("POST", "/v1/messages", Endpoint.MESSAGES, "create", Body.JSON),
        ("POST", "/v1/messages/count_tokens", Endpoint.COUNT_TOKENS, "count", Body.JSON),
        ("GET", "/v1/models", Endpoint.MODELS, "list", Body.NONE),
        ("GET", "/v1/models/claude-sonnet-5-5", Endpoint.MODELS, "get", Body.NONE),
        ("POST", "/v1/messages/batches", Endpoint.BATCHES, "create", Body.JSON),
        ("GET", "/v1/messages/batches/msgbatch_01", Endpoint.BATCHES, "get", Body.NONE),
        (
            "POST",
            "/v1/messages/batches/msgbatch_01/cancel",
            Endpoint.BATCHES,
            "cancel",
            Body.NONE,
        ),
        (
            "GET",
            "/v1/messages/batches/msgbatch_01/results",
            Endpoint.BATCHES,
            "results",
            Body.NONE,
        ),
        ("DELETE", "/v1/messages/batches/msgbatch_01", Endpoint.BATCHES, "delete", Body.NONE),
        ("POST", "/v1/files", Endpoint.FILES, "upload", Body.UPLOAD),
        ("GET", "/v1/files/file_01/content", Endpoint.FILES, "download", Body.NONE),
        ("POST", "/v1/skills", Endpoint.SKILLS, "create", Body.UPLOAD),
        ("GET", "/v1/skills/skill_01/versions/1759", Endpoint.SKILLS, "get_version", Body.NONE),
    ],
)
def test_known_routes(method: str, path: str, endpoint: Endpoint, action: str, body: Body) -> None:
    route = match_route(method, path)
    assert route is not None
    assert (route.endpoint, route.action, route.body) == (endpoint, action, body)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/messages"),
        ("POST", "/v1/agents"),
        ("POST", "/v1/oauth/token"),
        ("GET", "/v1/models/../skills"),
        ("GET", "/v1/models/.."),
        ("GET", "/v1/models/"),
        ("GET", "/v1/models//x"),
        ("GET", "/v1/files/a b"),
        ("POST", "/v1/messages/"),
        ("PUT", "/v1/messages"),
        ("GET", "/v2/models"),
    ],
)
def test_unknown_routes(method: str, path: str) -> None:
    assert match_route(method, path) is None
