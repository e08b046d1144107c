"""The admin API through a real gateway over HTTP, with real tokens from a real issuer, over
real stores (SQLite and PostgreSQL) filled through the audit writer. Every answer is checked
against the OpenAPI document the API serves about itself."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import re
import time
from collections.abc import Iterator, MutableMapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.admin.harness import ADMIN_PREFIX, AdminGateway
from tests.admin.schema import errors, resolve
from tests.audit.filled import ALICE_SESSION, CI, CI_SESSION, Filled, fill, store_url
from ztgate.admin.app import AdminApp
from ztgate.admin.openapi import openapi_document
from ztgate.admin.routes import ROUTES
from ztgate.audit.search import FILTERS
from ztgate.config import ConfigError, validate_config
from ztgate.config.model import AdminConfig
from ztgate.core.identity import Identity
from ztgate.core.sse import parse_event

ADMINS = "auditors"
DOCUMENT = openapi_document()


def _sections(filled: Filled, directory: Path, **recordings: Any) -> dict[str, Any]:
    key_file = directory / "signing-key.pem"
    key_file.write_bytes(filled.signing_key.private_pem())
    return {
        "audit": {
            "signing_key_file": str(key_file),
            "recordings": {"encryption_key": filled.recording_key, **recordings},
        },
        "admin": {"groups": [ADMINS, "security"]},
    }


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def admin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AdminGateway, Filled]]:
    directory = tmp_path_factory.mktemp(request.param)
    with ExitStack() as stack:
        url = stack.enter_context(store_url(request.param, directory))
        filled = asyncio.run(fill(url))
        gateway = AdminGateway(url, **_sections(filled, directory))
        stack.callback(gateway.close)
        yield gateway, filled


def _check(response: httpx.Response, operation: str) -> Any:
    """The answer's body, after checking it against the document's schema for it."""
    route = next(r for r in ROUTES if r.name == operation)
    responses = DOCUMENT["paths"][route.template][route.method.lower()]["responses"]
    spec = responses.get(str(response.status_code))
    assert spec is not None, f"{operation} answered {response.status_code}, not documented"
    if "$ref" in spec:
        spec = resolve(DOCUMENT, spec["$ref"])
    schema = spec["content"]["application/json"]["schema"]
    body = response.json()
    assert errors(schema, body, DOCUMENT) == []
    assert response.headers["content-type"] == "application/json"
    return body


def _error(response: httpx.Response, status: int, error_type: str, operation: str) -> str:
    assert response.status_code == status, response.text
    body = _check(response, operation)
    assert body["error"]["type"] == error_type
    assert body["request_id"] == response.headers["request-id"]
    message: str = body["error"]["message"]
    return message


# -- who may ask --------------------------------------------------------------------------------


def test_callers_must_be_authenticated_before_anything(admin: tuple[AdminGateway, Filled]) -> None:
    gateway, _ = admin
    assert "no credential" in _error(
        gateway.get("/audit/events"), 401, "authentication_error", "search_events"
    )
    assert gateway.get("/audit/events", token="not-a-token").status_code == 401
    # Unknown paths cannot be probed anonymously.
    assert gateway.get("/secrets").status_code == 401
    stranger = gateway.issuer.mint("demo/mallory", issuer="https://evil.example.com")
    assert gateway.get("/audit/verify", token=stranger).status_code == 401


def test_only_the_admin_groups_get_in(admin: tuple[AdminGateway, Filled]) -> None:
    gateway, _ = admin
    message = _error(
        gateway.get("/audit/events", token=gateway.token("developers")),
        403,
        "permission_error",
        "search_events",
    )
    assert message == "this identity is in none of the groups allowed to use the admin API"
    assert gateway.get("/audit/events", token=gateway.token()).status_code == 403
    assert gateway.get("/audit/events", token=gateway.token("security")).status_code == 200
    token = gateway.token(ADMINS)
    assert gateway.get("/nope", token=token).status_code == 404
    assert (
        gateway.client.post(
            "/audit/events", headers={"authorization": f"Bearer {token}"}
        ).status_code
        == 404
    )


def test_the_admin_api_is_closed_until_groups_are_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/audit.db"
    filled = asyncio.run(fill(url))
    sections = _sections(filled, tmp_path)
    del sections["admin"]  # the default: no groups
    gateway = AdminGateway(url, **sections)
    try:
        for route in ROUTES:
            if route.audience != "admins":
                continue  # reviews are for requesters and approvers, not only admins
            path = route.template.format(seq=1, session_id=ALICE_SESSION)
            response = gateway.get(path, token=gateway.token(ADMINS, "admins", "root"))
            message = _error(response, 403, "permission_error", route.name)
            assert message.startswith(
                "the admin API is closed: no group is named under admin.groups"
            )
        listed = gateway.get("/reviews", token=gateway.token("security"))
        assert _check(listed, "list_reviews") == {"reviews": [], "count": 0}
    finally:
        gateway.close()


# -- the audit ----------------------------------------------------------------------------------


def test_search_events(admin: tuple[AdminGateway, Filled]) -> None:
    gateway, filled = admin
    token = gateway.token(ADMINS)
    body = _check(gateway.get("/audit/events", token, principal=CI.principal), "search_events")
    ids = filled.request_ids
    assert [e["request_id"] for e in body["events"]] == [
        ids["ci_denied"],
        ids["ci_xlsx"],
        ids["ci_email"],
    ]
    assert body["count"] == 3
    denied = body["events"][0]
    assert denied["data"]["decision"]["effect"] == "deny"
    assert denied["outcome"]["status"] == 403
    crashed = _check(
        gateway.get("/audit/events", token, request_id=ids["crashed"]), "search_events"
    )
    assert crashed["events"][0]["outcome"] is None
    assert crashed["events"][0]["outcome_seq"] is None
    emails = _check(
        gateway.get("/audit/events", token, finding="email", since="7d"), "search_events"
    )
    assert [e["request_id"] for e in emails["events"]] == [ids["ci_email"]]
    everything = _check(
        gateway.get("/audit/events", token, kind="all", limit="500"), "search_events"
    )
    # What the test filled in, and the gateway's own start-up event.
    assert everything["count"] == filled.events + 1
    assert {e["kind"] for e in everything["events"]} >= {"startup", "request", "outcome"}
    assert {e["kind"] for e in everything["events"]} == {
        "startup",
        "request",
        "outcome",
        "policy_reload",
    }
    assert "outcome" not in next(e for e in everything["events"] if e["kind"] == "startup")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", "'yesterday' is neither a look-back"),
        ("decision=maybe", "decision: 'maybe' is not one of allow, deny, review"),
        ("limit=0", "limit: '0' is not a whole number"),
        ("princpal=x", "unknown filter 'princpal'"),
        ("model=a&model=b", "model: give each filter once"),
    ],
)
def test_search_refuses_what_it_cannot_read(
    admin: tuple[AdminGateway, Filled], query: str, message: str
) -> None:
    gateway, _ = admin
    response = gateway.client.get(
        f"/audit/events?{query}", headers={"authorization": f"Bearer {gateway.token(ADMINS)}"}
    )
    assert message in _error(response, 400, "invalid_request_error", "search_events")


@pytest.mark.parametrize(
    ("path", "operation", "params", "message"),
    [
        ("/audit/events", "search_events", {"limit": "²"}, "limit: '²' is not a whole number"),
        ("/audit/events", "search_events", {"since": "٣d"}, "'٣d' is neither a look-back"),
        ("/sessions", "list_sessions", {"limit": "٣"}, "limit: '٣' is not a whole number"),
        ("/sessions", "list_sessions", {"group": "x"}, "unknown filter 'group'"),
        ("/reviews", "list_reviews", {"limit": "𝟗"}, "limit: '𝟗' is not a whole number"),
        ("/reviews", "list_reviews", {"limit": "1001"}, "limit: '1001' is not a whole number"),
        ("/reviews", "list_reviews", {"state": ""}, "state: '' is not one of pending"),
        ("/reviews", "list_reviews", {"since": "1e999"}, "since: '1e999' is not a finite"),
        ("/reviews", "list_reviews", {"since": "soon"}, "since: 'soon' is neither a look-back"),
        ("/audit/verify", "verify_chain", {"limit": "1"}, "unknown parameter 'limit'"),
        ("/openapi.json", "openapi", {"x": ""}, "unknown parameter 'x'"),
    ],
)
def test_every_route_checks_its_query_as_its_document_says(
    admin: tuple[AdminGateway, Filled],
    path: str,
    operation: str,
    params: dict[str, str],
    message: str,
) -> None:
    """One table says what each route takes (admin/parameters.py): the routes check it and
    the document shows it. Numbers are ASCII digits: ``int('²')`` raised, a 500."""
    gateway, _ = admin
    response = gateway.get(path, gateway.token(ADMINS), **params)
    assert message in _error(response, 400, "invalid_request_error", operation)


@pytest.mark.parametrize(
    ("path", "operation", "params"),
    [
        ("/audit/events", "search_events", {"decision": "", "limit": "", "since": ""}),
        ("/sessions", "list_sessions", {"principal": "", "limit": "007"}),
        ("/reviews", "list_reviews", {"since": "1d", "limit": "1000"}),
        ("/reviews", "list_reviews", {"since": "1700000000.5", "state": "pending"}),
    ],
)
def test_filters_the_document_takes_are_taken(
    admin: tuple[AdminGateway, Filled], path: str, operation: str, params: dict[str, str]
) -> None:
    gateway, _ = admin
    response = gateway.get(path, gateway.token(ADMINS), **params)
    assert response.status_code == 200, response.text
    _check(response, operation)


def test_the_document_shows_each_routes_own_parameters() -> None:
    for route in ROUTES:
        operation = DOCUMENT["paths"][route.template][route.method.lower()]
        in_query = [p for p in operation["parameters"] if p["in"] == "query"]
        assert in_query == [parameter.document() for parameter in route.query]
        assert "400" in operation["responses"]  # an unknown parameter, on every route


def test_a_bug_is_answered_in_the_anthropic_shape() -> None:
    """The admin API has its own net: an unexpected exception is a 500 with the error
    envelope and the request id, never the server's plain-text page."""

    class Authenticator:
        async def verify(self, credential: str) -> Identity:
            return Identity(
                "demo", "https://demo", "ops/carol", {}, time.time() + 60, frozenset({ADMINS})
            )

    async def broken(call: Any) -> Any:
        raise RuntimeError("a bug")

    app = AdminApp(None, Authenticator(), AdminConfig(groups=[ADMINS]))  # type: ignore[arg-type]
    app._handlers["get_status"] = broken
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "method": "GET",
        "path": ADMIN_PREFIX + "/status",
        "raw_path": (ADMIN_PREFIX + "/status").encode(),
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer t")],
    }
    asyncio.run(app(scope, receive, send))
    start, body = sent
    assert start["status"] == 500
    document = json.loads(body["body"])
    assert document["error"] == {"type": "api_error", "message": "internal error in the gateway"}
    assert (b"request-id", document["request_id"].encode()) in start["headers"]


def test_one_event(admin: tuple[AdminGateway, Filled]) -> None:
    gateway, filled = admin
    token = gateway.token(ADMINS)
    [found] = _check(
        gateway.get("/audit/events", token, request_id=filled.request_ids["ci_email"]),
        "search_events",
    )["events"]
    event = _check(gateway.get(f"/audit/events/{found['seq']}", token), "get_event")
    assert event == found
    assert event["outcome"]["masked"] == {"email": 1}
    assert event["data"]["findings"] == {"email": 1}
    first = _check(gateway.get("/audit/events/1", token), "get_event")
    assert (first["kind"], first["prev_hash"]) == ("startup", "00" * 32)
    beyond = filled.events + 2  # past what was filled and the gateway's start-up event
    missing = gateway.get(f"/audit/events/{beyond}", token)
    assert (
        _error(missing, 404, "not_found_error", "get_event") == f"the audit has no event {beyond}"
    )
    assert gateway.get("/audit/events/first", token).status_code == 404
    assert gateway.get("/audit/events/0", token).status_code == 404


def test_verify_and_checkpoints(admin: tuple[AdminGateway, Filled]) -> None:
    gateway, filled = admin
    token = gateway.token(ADMINS)
    answer = gateway.get("/audit/verify", token)
    report = _check(answer, "verify_chain")
    assert report.get("ok") is True, (answer.status_code, report)
    # The gateway's own start-up event follows what was filled, not yet under a checkpoint.
    assert report["events"] == report["head_seq"] == filled.events + 1
    assert report["signed_seq"] == filled.events
    assert report["checkpoints"] == 5
    listed = _check(gateway.get("/audit/checkpoints", token), "list_checkpoints")
    assert listed["format"] == "ztgate-audit-checkpoints/1"
    assert [c["seq"] for c in listed["checkpoints"]] == [4, 8, 12, 16, filled.events]
    assert listed["checkpoints"][-1]["seq"] == report["signed_seq"]
    assert listed["public_keys"] == [
        {
            "key_id": filled.signing_key.key_id,
            "algorithm": "Ed25519",
            "public_key": filled.signing_key.public_pem(),
        }
    ]
    assert gateway.get("/audit/verify", token, deep="1").status_code == 400


# -- sessions -----------------------------------------------------------------------------------


def test_sessions(admin: tuple[AdminGateway, Filled]) -> None:
    gateway, _ = admin
    token = gateway.token(ADMINS)
    listed = _check(gateway.get("/sessions", token), "list_sessions")
    assert [(s["session_id"], s["requests"]) for s in listed["sessions"]] == [
        (ALICE_SESSION, 5),
        (CI_SESSION, 2),
    ]
    mine = _check(gateway.get("/sessions", token, principal=CI.principal), "list_sessions")
    assert [s["session_id"] for s in mine["sessions"]] == [CI_SESSION]
    recent = _check(gateway.get("/sessions", token, since="1d", limit="5"), "list_sessions")
    assert [s["session_id"] for s in recent["sessions"]] == [ALICE_SESSION]
    assert gateway.get("/sessions", token, kind="all").status_code == 400


def test_a_session_decoded(admin: tuple[AdminGateway, Filled]) -> None:
    gateway, filled = admin
    body = _check(gateway.get(f"/sessions/{ALICE_SESSION}", gateway.token(ADMINS)), "get_session")
    originals = filled.recordings[ALICE_SESSION]
    assert [r["request_id"] for r in body["recordings"]] == [r.request_id for r in originals]
    streamed, answered = body["recordings"][0], body["recordings"][1]
    assert (
        streamed["request"]["body"]["json"]["messages"][0]["content"]
        == "What is the capital of France?"
    )
    events = streamed["response"]["events"]
    assert "".join(e["text"] for e in events).encode() == b"".join(
        raw for _, raw in originals[0].events
    )
    assert [e["offset"] for e in events] == [round(o, 6) for o, _ in originals[0].events]
    assert parse_event(events[-1]["text"].encode()).event == "message_stop"
    assert answered["response"]["status"] == 200
    assert answered["response"]["body"]["json"]["stop_reason"] == "tool_use"
    assert answered["response"]["events"] == []
    missing = gateway.get("/sessions/ses_unknown", gateway.token(ADMINS))
    assert (
        _error(missing, 404, "not_found_error", "get_session") == "no recorded session ses_unknown"
    )


def test_purged_recordings_keep_their_metadata(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/audit.db"
    filled = asyncio.run(fill(url))
    gateway = AdminGateway(url, **_sections(filled, tmp_path))
    try:
        gateway.run(gateway.store.purge(time.time() - 86400))  # retention: the CI job's are gone
        token = gateway.token(ADMINS)
        body = _check(gateway.get(f"/sessions/{CI_SESSION}", token), "get_session")
        assert [r["purged"] for r in body["recordings"]] == [True, True]
        assert "request" not in body["recordings"][0]
        events = _check(
            gateway.get("/audit/events", token, principal=CI.principal), "search_events"
        )
        assert all(e["purged"] and e["data"] is None for e in events["events"])
        assert _check(gateway.get("/audit/verify", token), "verify_chain")["ok"] is True
    finally:
        gateway.close()


# -- failures -----------------------------------------------------------------------------------


def test_a_recording_sealed_with_another_key(
    admin: tuple[AdminGateway, Filled], tmp_path: Path
) -> None:
    _, filled = admin
    other = base64.b64encode(os.urandom(32)).decode()
    gateway = AdminGateway(filled.url, **_sections(filled, tmp_path, encryption_key=other))
    try:
        response = gateway.get(f"/sessions/{ALICE_SESSION}", gateway.token(ADMINS))
        message = _error(response, 503, "api_error", "get_session")
        assert re.fullmatch(
            r"a recording cannot be opened: sealed with key [0-9a-f]{16}, "
            r"but the configured key is [0-9a-f]{16}",
            message,
        )
        # The audit itself needs no recording key.
        assert gateway.get("/audit/verify", gateway.token(ADMINS)).status_code == 200
    finally:
        gateway.close()


# -- the document -------------------------------------------------------------------------------


def test_the_gateways_status_in_detail(admin: tuple[AdminGateway, Filled]) -> None:
    """What ``/readyz`` keeps from anyone who asks, an admin reads here."""
    gateway, _ = admin
    status = _check(gateway.get("/status", gateway.token(ADMINS)), "get_status")
    assert status["status"] == "ready"
    assert status["issuers"]["demo"]["keys"] >= 1
    assert status["policy"]["rules"] >= 1
    assert status["audit"] == {"ready": True}
    assert gateway.get("/status", gateway.token("devs")).status_code == 403
    assert gateway.get("/status").status_code == 401


def test_the_served_document_is_the_one_in_code(admin: tuple[AdminGateway, Filled]) -> None:
    gateway, _ = admin
    response = gateway.get("/openapi.json", gateway.token(ADMINS))
    assert response.status_code == 200
    assert response.json() == DOCUMENT


def test_the_document_describes_exactly_the_routes() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    assert DOCUMENT["servers"] == [{"url": ADMIN_PREFIX}]
    described = {(m.upper(), p) for p, ops in DOCUMENT["paths"].items() for m in ops}
    assert described == {(r.method, r.template) for r in ROUTES}
    operation_ids = [op["operationId"] for ops in DOCUMENT["paths"].values() for op in ops.values()]
    assert sorted(operation_ids) == sorted(r.name for r in ROUTES)
    for route in ROUTES:
        operation = DOCUMENT["paths"][route.template][route.method.lower()]
        in_path = [p["name"] for p in operation["parameters"] if p["in"] == "path"]
        assert in_path == list(route.parameters)
        for status in ("200", "401", "403", "503"):
            assert status in operation["responses"]
        assert (operation.get("security") == []) == (route.audience == "slack")
    search = DOCUMENT["paths"]["/audit/events"]["get"]
    assert [p["name"] for p in search["parameters"]] == list(FILTERS)
    _all_refs_resolve(DOCUMENT)


def _all_refs_resolve(node: Any) -> None:
    if isinstance(node, dict):
        if "$ref" in node:
            resolve(DOCUMENT, node["$ref"])
        for value in node.values():
            _all_refs_resolve(value)
    elif isinstance(node, list):
        for value in node:
            _all_refs_resolve(value)


# -- the config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("admin_section", "message"),
    [
        ({"groups": [""]}, "admin.groups: a group name cannot be empty"),
        ({"group": ["security"]}, "admin.group: unknown key"),
    ],
)
def test_admin_config_errors_name_the_key(admin_section: dict[str, Any], message: str) -> None:
    data = {
        "upstream": {"api_key": "sk-test"},
        "identity": {
            "issuers": [
                {"name": "idp", "issuer": "https://idp.example.com", "audiences": ["ztgate"]}
            ]
        },
        "policy": {"rules": []},
        "admin": admin_section,
    }
    with pytest.raises(ConfigError) as caught:
        validate_config(data)
    assert message in str(caught.value)
    assert validate_config({**data, "admin": {}}).admin.groups == []


def test_every_admin_call_is_logged(
    admin: tuple[AdminGateway, Filled], caplog: pytest.LogCaptureFixture
) -> None:
    gateway, _ = admin
    caplog.set_level(logging.INFO, logger="ztgate.admin")
    gateway.get("/audit/verify", gateway.token(ADMINS, subject="ops/dana"))
    gateway.get("/sessions", gateway.token("developers", subject="dev/erin"))
    calls = [
        (r.__dict__["principal"], r.__dict__["route"], r.__dict__["status"])
        for r in caplog.records
        # (an earlier test's last call may log after its answer: count only this test's callers)
        if r.__dict__.get("event") == "admin"
        and r.__dict__["principal"] in ("demo/ops/dana", "demo/dev/erin")
    ]
    assert calls == [("demo/ops/dana", "verify_chain", 200), ("demo/dev/erin", None, 403)]
