"""What ``ztgate audit search`` and the admin API ask the store for: one parser for both.

Times are either a look-back (``7d``, ``12h``, ``1h30m``: that long before now) or an ISO 8601
date or date-time (UTC when it names no offset), so that a person types what they mean and a
script can pass exact instants.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from ztgate.audit.events import AuditQuery
from ztgate.config.units import parse_duration

DECISIONS = ("allow", "deny", "review")
KINDS = ("request", "outcome", "startup", "policy_reload", "key_refresh_failure", "review")
MAX_LIMIT = 10_000
FILTERS = (
    "principal",
    "group",
    "since",
    "until",
    "decision",
    "model",
    "skill",
    "finding",
    "request_id",
    "kind",
    "limit",
)


class QueryError(ValueError):
    """A filter cannot be understood; the message names it, for a person."""


def parse_time(text: str, now: float) -> float:
    """Seconds since the epoch from ``7d`` (before ``now``) or an ISO 8601 date/date-time."""
    value = text.strip()
    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise QueryError(
            f"{text!r} is neither a look-back such as 7d, 12h or 30m nor an ISO 8601 time "
            "such as 2025-06-01 or 2025-06-01T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def build_query(params: Mapping[str, str | None], now: float) -> AuditQuery:
    """An :class:`AuditQuery` from textual filters (CLI options or URL query parameters).

    Unknown names are refused rather than ignored: a mistyped filter must not widen a search.
    """
    unknown = sorted(set(params) - set(FILTERS))
    if unknown:
        raise QueryError(f"unknown filter {unknown[0]!r}; use {', '.join(FILTERS)}")
    given = {k: v for k, v in params.items() if v is not None and v != ""}
    decision = given.get("decision")
    if decision is not None and decision not in DECISIONS:
        raise QueryError(f"decision: {decision!r} is not one of {', '.join(DECISIONS)}")
    since = parse_time(given["since"], now) if "since" in given else None
    until = parse_time(given["until"], now) if "until" in given else None
    if since is not None and until is not None and since > until:
        raise QueryError("since is after until: nothing could match")
    return AuditQuery(
        principal=given.get("principal"),
        group=given.get("group"),
        since=since,
        until=until,
        kinds=_kinds(given.get("kind", "request")),
        decision=decision,
        model=given.get("model"),
        skill=given.get("skill"),
        finding=given.get("finding"),
        request_id=given.get("request_id"),
        limit=_limit(given.get("limit")),
    )


def _kinds(text: str) -> tuple[str, ...]:
    """``request`` (the default), a comma-separated list, or ``all`` for every kind."""
    if text == "all":
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    for kind in kinds:
        if kind not in KINDS:
            raise QueryError(f"kind: {kind!r} is not one of all, {', '.join(KINDS)}")
    return kinds


def _limit(text: str | None) -> int:
    if text is None:
        return 100
    plain = text.isascii() and text.isdigit() and len(text) <= 6  # int() takes "٣" too
    if not plain or not 1 <= int(text) <= MAX_LIMIT:
        raise QueryError(f"limit: {text!r} is not a whole number from 1 to {MAX_LIMIT}")
    return int(text)
