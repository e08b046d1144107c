"""What both stores share: column lists, row conversion, and the checks on search filters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson

from ztgate.audit.events import AuditQuery, Checkpoint, StoredEvent
from ztgate.audit.store.base import SessionSummary, StoredRecording
from ztgate.core.reviews import Review, review_document, review_from_document

EVENT_COLUMNS = "seq, kind, at, request_id, principal, body, body_digest, prev_hash, hash"
CHECKPOINT_COLUMNS = "seq, hash, at, key_id, signature"
RECORDING_COLUMNS = "request_id, session_id, principal, started_at, size, truncated, sealed, blob"
PAGE = 1000  # events read per round trip when iterating the chain
PURGE_BATCH = 5000  # rows purged per transaction, so appends are never held up for long
_EXTRA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def event_from_row(row: Any) -> StoredEvent:
    seq, kind, at, request_id, principal, body, digest, prev, hash_ = row
    return StoredEvent(
        seq=seq,
        kind=kind,
        at=at,
        request_id=request_id,
        principal=principal,
        body=None if body is None else bytes(body),
        body_digest=bytes(digest),
        prev_hash=bytes(prev),
        hash=bytes(hash_),
    )


def event_row(event: StoredEvent) -> tuple[Any, ...]:
    return (
        event.seq,
        event.kind,
        event.at,
        event.request_id,
        event.principal,
        event.body,
        event.body_digest,
        event.prev_hash,
        event.hash,
    )


def checkpoint_from_row(row: Any) -> Checkpoint:
    seq, hash_, at, key_id, signature = row
    return Checkpoint(seq=seq, hash=bytes(hash_), at=at, key_id=key_id, signature=bytes(signature))


def recording_from_row(row: Any) -> StoredRecording:
    request_id, session_id, principal, started_at, size, truncated, sealed, blob = row
    return StoredRecording(
        request_id=request_id,
        session_id=session_id,
        principal=principal,
        started_at=started_at,
        size=size,
        truncated=bool(truncated),
        sealed=bool(sealed),
        blob=None if blob is None else bytes(blob),
    )


def session_from_row(row: Any) -> SessionSummary:
    session_id, principal, first_at, last_at, requests = row
    return SessionSummary(session_id, principal, first_at, last_at, requests)


def extra_filters(query: AuditQuery) -> list[tuple[str, str | int | float | bool | None]]:
    """``query.extra``: equality on top-level keys of an event's ``data``, scalars only.

    ValueError for a key that is not an identifier or a value that is not a scalar, so a
    filter can never be injected into the SQL or silently match nothing."""
    return [_extra(key, value) for key, value in query.extra.items()]


def _extra(key: str, value: Any) -> tuple[str, str | int | float | bool | None]:
    if not isinstance(key, str) or not _EXTRA_KEY.fullmatch(key):
        raise ValueError(f"search: {key!r} is not a data key")
    if value is not None and not isinstance(value, str | int | float | bool):
        raise ValueError(f"search: {key} can only be compared with a string, number or boolean")
    return key, value


def redact_url(url: str) -> str:
    """``url`` without its password (and without query options, which may carry one)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{parts.username}@" if parts.username else "") + host
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def scrub(text: str, secrets: Mapping[str, str]) -> str:
    """``text`` with every secret value replaced by its name."""
    for name, secret in secrets.items():
        if secret:
            text = text.replace(secret, name)
    return text


# Reviews: the columns looked up by, and the document that holds the rest.
REVIEW_COLUMNS = "id, requester, fingerprint, grant_key, state, created_at, expires_at, document"


def review_row(review: Review) -> tuple[Any, ...]:
    document = orjson.dumps(review_document(review)).decode()
    return (
        review.id,
        review.requester,
        review.fingerprint,
        review.grant_key,
        review.state.value,
        review.created_at,
        review.expires_at,
        document,
    )


def review_from_row(row: Any) -> Review:
    return review_from_document(orjson.loads(row[7]))
