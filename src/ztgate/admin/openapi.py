"""The admin API described as an OpenAPI 3.1 document, written as data beside the route table
(``routes.py``) it describes; the tests check one against the other and the answers against
the schemas."""

from __future__ import annotations

from typing import Any

from ztgate import __version__
from ztgate.admin.routes import PATH_PARAMETERS, PREFIX, ROUTES, AdminRoute


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
    }


_STRING = {"type": "string"}
_HEX = {"type": "string", "pattern": "^[0-9a-f]*$"}
_TIME = {"type": "string", "format": "date-time"}
_NUMBER = {"type": "number"}
_INTEGER = {"type": "integer"}
_BOOLEAN = {"type": "boolean"}
_DATA = {"type": "object"}

SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "type": {"const": "error"},
            "error": _object({"type": _STRING, "message": _STRING}),
            "request_id": _STRING,
        }
    ),
    "Event": _object(
        {
            "seq": _INTEGER,
            "kind": _STRING,
            "time": _TIME,
            "at": _NUMBER,
            "request_id": _nullable(_STRING),
            "principal": _nullable(_STRING),
            "data": _nullable(_DATA),
            "purged": _BOOLEAN,
            "body_digest": _HEX,
            "prev_hash": _HEX,
            "hash": _HEX,
            "outcome": _nullable(_DATA),
            "outcome_seq": _nullable(_INTEGER),
        },
        optional=("outcome", "outcome_seq"),
    ),
    "EventList": _object({"events": {"type": "array", "items": _ref("Event")}, "count": _INTEGER}),
    "Problem": _object(
        {
            "kind": {
                "enum": [
                    "modified",
                    "deleted",
                    "inserted",
                    "reordered",
                    "truncated",
                    "bad_checkpoint",
                ]
            },
            "seq": _INTEGER,
            "detail": _STRING,
        }
    ),
    "VerifyReport": _object(
        {
            "ok": _BOOLEAN,
            "events": _INTEGER,
            "head_seq": _INTEGER,
            "head_hash": _HEX,
            "checkpoints": _INTEGER,
            "signed_seq": _INTEGER,
            "unsigned": _INTEGER,
            "problem": _nullable(_ref("Problem")),
        }
    ),
    "Checkpoint": _object(
        {
            "seq": _INTEGER,
            "hash": _HEX,
            "time": _TIME,
            "at": _NUMBER,
            "key_id": _STRING,
            "signature": _HEX,
        }
    ),
    "PublicKey": _object(
        {"key_id": _STRING, "algorithm": {"const": "Ed25519"}, "public_key": _STRING}
    ),
    "CheckpointList": _object(
        {
            "format": _STRING,
            "checkpoints": {"type": "array", "items": _ref("Checkpoint")},
            "public_keys": {"type": "array", "items": _ref("PublicKey")},
        }
    ),
    "SessionSummary": _object(
        {
            "session_id": _STRING,
            "principal": _STRING,
            "first_time": _TIME,
            "last_time": _TIME,
            "first_at": _NUMBER,
            "last_at": _NUMBER,
            "requests": _INTEGER,
        }
    ),
    "SessionList": _object({"sessions": {"type": "array", "items": _ref("SessionSummary")}}),
    "Content": {
        "description": "Bytes: parsed JSON, else UTF-8 text, else base64.",
        "oneOf": [
            _object({"json": {}}),
            _object({"text": _STRING}),
            _object({"base64": _STRING}),
        ],
    },
    "StreamEvent": {
        "description": "One server-sent event as the caller received it, `offset` seconds "
        "after the request started.",
        "oneOf": [
            _object({"offset": _NUMBER, "text": _STRING}),
            _object({"offset": _NUMBER, "base64": _STRING}),
        ],
    },
    "Recording": _object(
        {
            "request_id": _STRING,
            "session_id": _STRING,
            "principal": _STRING,
            "time": _TIME,
            "started_at": _NUMBER,
            "purged": _BOOLEAN,
            "truncated": _BOOLEAN,
            "request": _object({"method": _STRING, "path": _STRING, "body": _ref("Content")}),
            "response": _object(
                {
                    "status": _nullable(_INTEGER),
                    "content_type": _nullable(_STRING),
                    "body": _nullable(_ref("Content")),
                    "events": {"type": "array", "items": _ref("StreamEvent")},
                }
            ),
        },
        optional=("request", "response"),
    ),
    "Session": _object(
        {"session_id": _STRING, "recordings": {"type": "array", "items": _ref("Recording")}}
    ),
    "Review": _object(
        {
            "id": _STRING,
            "state": {
                "type": "string",
                "enum": ["pending", "approved", "denied", "expired", "executed", "cancelled"],
            },
            "requester": _STRING,
            "fingerprint": _HEX,
            "grant_key": _HEX,
            "request_id": _STRING,
            "requirements": {"type": "array", "items": {"type": "object"}},
            "summary": {"type": "object"},
            "created_at": _NUMBER,
            "expires_at": _NUMBER,
            "decided_at": _nullable(_NUMBER),
            "executed_at": _nullable(_NUMBER),
            "grant_until": _nullable(_NUMBER),
            "approvers": {"type": "array", "items": _STRING},
            "decisions": {
                "type": "array",
                "items": _object(
                    {
                        "by": _STRING,
                        "verdict": {"type": "string", "enum": ["approve", "deny", "cancel"]},
                        "reason": _STRING,
                        "at": _NUMBER,
                        "groups": {"type": "array", "items": _STRING},
                    }
                ),
            },
        }
    ),
    "ReviewList": _object(
        {"reviews": {"type": "array", "items": _ref("Review")}, "count": _INTEGER}
    ),
    "Status": _object(
        {
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "reasons": {"type": "array", "items": _STRING},
            "warnings": {"type": "array", "items": _STRING},
            "issuers": {"type": "object"},
            "policy": {"type": "object"},
            "audit": {"type": "object"},
        }
    ),
}

_ERRORS = {
    "400": "A query parameter is unknown, repeated or has a value it does not take; or the "
    "body is not understood.",
    "401": "No valid token from a trusted issuer.",
    "403": "The caller is in none of the groups under `admin.groups`.",
    "404": "No such event or session.",
    "503": "The audit store cannot be reached, or recordings are sealed and the key is missing.",
}

# operationId -> (summary, description, answer schema, error statuses); the parameters are
# the route's own (routes.py, parameters.py), so that what is described is what is checked.
_OPERATIONS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "search_events": (
        "Search the audit",
        "Events newest first; each request event carries its outcome (null: the gateway "
        "stopped before the request ended, so how it ended is unknown).",
        "EventList",
        (),
    ),
    "get_event": (
        "One event by its sequence number",
        "A request event carries its outcome, as in a search.",
        "Event",
        ("404",),
    ),
    "verify_chain": (
        "Verify the hash chain and its signed checkpoints",
        "Recomputes every event's hash and checks every checkpoint's signature; `problem` "
        "names the first bad event and what is wrong with it.",
        "VerifyReport",
        (),
    ),
    "list_checkpoints": (
        "Signed checkpoints and the keys that verify them",
        "The same document `ztgate audit checkpoint --export` writes; keep a copy elsewhere "
        "and `ztgate audit verify --checkpoints FILE` also detects truncation.",
        "CheckpointList",
        (),
    ),
    "list_sessions": (
        "Recorded sessions",
        "Newest first.",
        "SessionList",
        (),
    ),
    "get_session": (
        "A session's recordings, decoded",
        "Oldest first, unsealed with the configured key; purged recordings keep their metadata.",
        "Session",
        ("404",),
    ),
    "get_status": (
        "The gateway's readiness in detail",
        "What `/readyz` does not tell anyone who asks: each issuer's keys and last error, the "
        "policy's file, rule count and last reload error, and the audit store.",
        "Status",
        ("404",),
    ),
    "list_reviews": (
        "Reviews",
        "Newest first: the caller's own, those the caller may decide, or (admins) all. Open "
        "to every verified identity, not only to `admin.groups`.",
        "ReviewList",
        (),
    ),
    "get_review": (
        "One review",
        "What an approver needs to judge it, and every decision taken on it.",
        "Review",
        ("404",),
    ),
    "approve_review": (
        "Approve a review",
        'Body `{"reason": "..."}`. Only members of its approver groups, never its requester; '
        "when every rule that asked is satisfied the held request runs, once.",
        "Review",
        ("404",),
    ),
    "deny_review": (
        "Deny a review",
        'Body `{"reason": "..."}`. One denial ends the review.',
        "Review",
        ("404",),
    ),
    "cancel_review": (
        "Cancel a review",
        'Body `{"reason": "..."}`. Only its requester.',
        "Review",
        ("404",),
    ),
    "slack_action": (
        "Slack's Approve and Deny buttons",
        "The Slack app's interactivity URL. No token: Slack signs each click "
        "(`X-Slack-Signature`), and the click counts as the identity `reviews.slack.users` "
        "names for the Slack user.",
        "",
        (),
    ),
    "openapi": ("This document", "The admin API as OpenAPI 3.1.", "", ()),
}


def _path_parameter(name: str) -> dict[str, Any]:
    """A path parameter's schema, from the very pattern the route matches."""
    if name == "seq":  # [1-9][0-9]{0,17}
        return {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}
    return {"type": "string", "pattern": f"^{PATH_PARAMETERS[name]}$"}


def _operation(route: AdminRoute) -> dict[str, Any]:
    name = route.name
    summary, description, answer, errors = _OPERATIONS[name]
    schema = {"type": "object"} if not answer else _ref(answer)
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": schema}}}
    }
    # Every operation refuses a query parameter it does not take (or one given twice).
    for status in sorted({"400", "401", "403", *errors, "503"}):
        responses[status] = {"$ref": f"#/components/responses/E{status}"}
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": summary,
        "description": description,
        "parameters": [
            {"name": p, "in": "path", "required": True, "schema": _path_parameter(p)}
            for p in route.parameters
        ]
        + [parameter.document() for parameter in route.query],
        "responses": responses,
    }
    if name.endswith("_review") and name != "get_review":
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _object({"reason": {"type": "string", "minLength": 1}})
                }
            },
        }
    if name == "slack_action":
        operation["security"] = []
        operation["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
        }
    return operation


def openapi_document() -> dict[str, Any]:
    """The document served at ``/ztgate/api/v1/openapi.json``."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.template, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ztgate admin API",
            "version": __version__,
            "description": "The tamper-evident audit and recorded sessions of a ztgate "
            "gateway. Every call needs a token from a trusted issuer whose groups include one "
            "of the config's `admin.groups` (docs/admin-api.md).",
        },
        "servers": [{"url": PREFIX}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An OIDC token, as on the data path (`Authorization: "
                    "Bearer`, or `x-api-key`).",
                }
            },
            "schemas": SCHEMAS,
            "responses": {
                f"E{status}": {
                    "description": description,
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
                for status, description in _ERRORS.items()
            },
        },
    }
