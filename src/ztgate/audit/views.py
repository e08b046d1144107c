"""Audit records as JSON documents: one shape for the CLI's ``--format json``, the SIEM export
and the admin API, so that a script written against one reads the others.

Hashes and signatures are hex, times both ISO 8601 (``time``, for people) and seconds since
the epoch (``at``, for arithmetic). A request without an outcome is shown as such: the gateway
stopped between deciding and finishing it, so how it ended is unknown.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson

from ztgate.audit.chain import VerifyReport, checkpoint_to_json
from ztgate.audit.events import Checkpoint, StoredEvent
from ztgate.audit.recording import Recording
from ztgate.audit.store.base import SessionSummary, StoredRecording


def iso_time(at: float) -> str:
    """``2025-06-01T12:00:03.250Z``."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_document(event: StoredEvent) -> dict[str, Any]:
    """An event as stored: its place in the chain and its data (null once purged)."""
    return {
        "seq": event.seq,
        "kind": event.kind,
        "time": iso_time(event.at),
        "at": event.at,
        "request_id": event.request_id,
        "principal": event.principal,
        "data": None if event.body is None else event.data(),
        "purged": event.body is None,
        "body_digest": event.body_digest.hex(),
        "prev_hash": event.prev_hash.hex(),
        "hash": event.hash.hex(),
    }


def request_document(request: StoredEvent, outcome: StoredEvent | None) -> dict[str, Any]:
    """A request event with how it ended: ``outcome`` is null when no outcome was recorded."""
    document = event_document(request)
    document["outcome"] = None if outcome is None else outcome.data()
    document["outcome_seq"] = None if outcome is None else outcome.seq
    return document


def checkpoint_document(checkpoint: Checkpoint) -> dict[str, Any]:
    """A checkpoint as exported (``audit/chain.py``), with its time for people."""
    return {**checkpoint_to_json(checkpoint), "time": iso_time(checkpoint.at)}


def verify_document(report: VerifyReport) -> dict[str, Any]:
    """A verification's result: ``problem`` names the first event that cannot be trusted."""
    problem = report.problem
    return {
        "ok": report.ok,
        "events": report.events,
        "head_seq": report.head_seq,
        "head_hash": report.head_hash.hex(),
        "checkpoints": report.checkpoints,
        "signed_seq": report.signed_seq,
        "unsigned": report.unsigned,
        "problem": None
        if problem is None
        else {"kind": problem.kind, "seq": problem.seq, "detail": problem.detail},
    }


def session_document(session: SessionSummary) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "principal": session.principal,
        "first_time": iso_time(session.first_at),
        "last_time": iso_time(session.last_at),
        "first_at": session.first_at,
        "last_at": session.last_at,
        "requests": session.requests,
    }


def purged_recording_document(stored: StoredRecording) -> dict[str, Any]:
    """A recording whose blob retention dropped: its metadata is all that is left."""
    return {
        "request_id": stored.request_id,
        "session_id": stored.session_id,
        "principal": stored.principal,
        "time": iso_time(stored.started_at),
        "started_at": stored.started_at,
        "purged": True,
        "truncated": stored.truncated,
    }


def recording_document(recording: Recording) -> dict[str, Any]:
    """A decoded recording. Bodies are ``{"json": ...}`` when they parse, else ``{"text": ...}``
    or ``{"base64": ...}``; stream events keep their exact text and their time offset."""
    return {
        "request_id": recording.request_id,
        "session_id": recording.session_id,
        "principal": recording.principal,
        "time": iso_time(recording.started_at),
        "started_at": recording.started_at,
        "purged": False,
        "truncated": recording.truncated,
        "request": {
            "method": recording.method,
            "path": recording.path,
            "body": content(recording.request_body),
        },
        "response": {
            "status": recording.status,
            "content_type": recording.content_type,
            "body": None if recording.response_body is None else content(recording.response_body),
            "events": [
                {"offset": round(offset, 6), **content(raw, parse=False)}
                for offset, raw in recording.events
            ],
        },
    }


def content(data: bytes, *, parse: bool = True) -> dict[str, Any]:
    """Bytes for a JSON document: parsed JSON, else text, else base64 (nothing is lost)."""
    if parse and data:
        try:
            return {"json": orjson.loads(data)}
        except orjson.JSONDecodeError:
            pass
    try:
        return {"text": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}
