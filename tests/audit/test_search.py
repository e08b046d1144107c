"""The filters shared by `ztgate audit search` and the admin API, read into an AuditQuery."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ztgate.audit.events import AuditQuery
from ztgate.audit.search import QueryError, build_query, parse_time

NOW = datetime(2025, 6, 8, 12, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7d", NOW - 7 * 86400),
        ("1h30m", NOW - 5400),
        ("45s", NOW - 45),
        ("2025-06-01", datetime(2025, 6, 1, tzinfo=UTC).timestamp()),
        ("2025-06-01T12:00:00", datetime(2025, 6, 1, 12, tzinfo=UTC).timestamp()),
        ("2025-06-01T12:00:00Z", datetime(2025, 6, 1, 12, tzinfo=UTC).timestamp()),
        ("2025-06-01T14:00:00+02:00", datetime(2025, 6, 1, 12, tzinfo=UTC).timestamp()),
    ],
)
def test_times(text: str, expected: float) -> None:
    assert parse_time(text, NOW) == expected


def test_a_time_it_cannot_read() -> None:
    with pytest.raises(QueryError, match="'a week ago' is neither a look-back"):
        parse_time("a week ago", NOW)


def test_every_filter() -> None:
    query = build_query(
        {
            "principal": "github/repo:acme/app",
            "group": "ci",
            "since": "7d",
            "until": "2025-06-08",
            "decision": "deny",
            "model": "claude-haiku-5-5",
            "skill": "xlsx",
            "finding": "email",
            "request_id": "req_ztg_1",
            "kind": "request,outcome",
            "limit": "20",
        },
        NOW,
    )
    assert query == AuditQuery(
        principal="github/repo:acme/app",
        group="ci",
        since=NOW - 7 * 86400,
        until=datetime(2025, 6, 8, tzinfo=UTC).timestamp(),
        kinds=("request", "outcome"),
        decision="deny",
        model="claude-haiku-5-5",
        skill="xlsx",
        finding="email",
        request_id="req_ztg_1",
        limit=20,
    )


def test_defaults_and_blanks() -> None:
    assert build_query({}, NOW) == AuditQuery(kinds=("request",), limit=100)
    assert build_query({"model": "", "principal": None}, NOW) == build_query({}, NOW)
    assert build_query({"kind": "all"}, NOW).kinds == ()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"colour": "red"}, "unknown filter 'colour'"),
        ({"decision": "Allow"}, "decision: 'Allow' is not one of allow, deny, review"),
        ({"kind": "request,reqest"}, "kind: 'reqest' is not one of"),
        ({"limit": "-1"}, "limit: '-1' is not a whole number from 1 to 10000"),
        ({"limit": "10001"}, "limit: '10001'"),
        ({"limit": "\u0663"}, "limit: '\u0663'"),  # an Arabic-Indic 3: int() would take it
        ({"limit": "\u00b2"}, "limit: '\u00b2'"),  # a superscript 2: isdigit() would take it
        ({"limit": "1" * 5000}, "is not a whole number"),  # int() refuses 4,300+ digits
        ({"since": "1d", "until": "2d"}, "since is after until"),
    ],
)
def test_refused(params: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError) as caught:
        build_query(params, NOW)
    assert message in str(caught.value)
