"""The admin API's query parameters: one table, read by the app to check every call and by
the OpenAPI document to describe it, so that the two cannot drift apart (``routes.py`` does
the same for paths).

A value is checked against the very schema the document shows, as text, before any handler
reads it: an integer is ASCII digits only (``str.isdigit`` and ``int`` also take ``²``, ``٣``
or ``𝟗``, and ``int('²')`` raises), a number is written as JSON writes one, an enum is
spelled exactly. What a schema cannot say (a time, a list of kinds) its handler reads, and
refuses with the same 400. An empty value is a filter left out only where the parameter says
so (the audit and session filters, as the CLI passes them), which the document says with
``allowEmptyValue``; anywhere else it is checked like any value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ztgate.audit.search import DECISIONS, KINDS, MAX_LIMIT
from ztgate.core.errors import InvalidRequest
from ztgate.core.reviews import ReviewState

# Leading zeros aside, at most 18 digits: every such number fits a 64-bit integer, and no
# ``int`` of a few thousand digits is ever asked for.
_INTEGER = re.compile(r"0*([0-9]{1,18})")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")  # JSON's grammar
_TIME = (
    "A look-back such as `7d`, `12h` or `30m`, or an ISO 8601 date or date-time "
    "(UTC when it has no offset)."
)
REVIEWS_MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class QueryParameter:
    name: str
    description: str
    schema: Mapping[str, Any]
    empty_is_absent: bool = False  # ``?limit=`` is no limit given (``allowEmptyValue``)

    def problem(self, value: str) -> str | None:
        """What is wrong with ``value`` by the schema, or None when it fits."""
        schema = self.schema
        kind = schema.get("type")
        if kind == "integer":
            digits = _INTEGER.fullmatch(value)
            if digits is None or not _within(int(digits.group(1)), schema):
                return f"{value!r} is not a whole number{_range(schema)}"
        elif kind == "number":
            if _NUMBER.fullmatch(value) is None or not math.isfinite(float(value)):
                return f"{value!r} is not a number"
            if not _within(float(value), schema):
                return f"{value!r} is not a number{_range(schema)}"
        elif "enum" in schema and value not in schema["enum"]:
            return f"{value!r} is not one of {', '.join(schema['enum'])}"
        elif len(value) < schema.get("minLength", 0):
            return "give a value, or leave the parameter out"
        return None

    def document(self) -> dict[str, Any]:
        """The parameter as the OpenAPI document describes it."""
        described: dict[str, Any] = {
            "name": self.name,
            "in": "query",
            "required": False,
            "description": self.description,
            "schema": dict(self.schema),
        }
        if self.empty_is_absent:
            described["allowEmptyValue"] = True
        return described


def _within(number: float, schema: Mapping[str, Any]) -> bool:
    low, high = schema.get("minimum"), schema.get("maximum")
    return (low is None or number >= low) and (high is None or number <= high)


def _range(schema: Mapping[str, Any]) -> str:
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" of at least {low}"
    return f" of at most {high}" if high is not None else ""


def read_query(parameters: Sequence[QueryParameter], query: Mapping[str, str]) -> dict[str, str]:
    """The call's query checked against its route's parameters: an unknown name or a value
    its schema does not take is refused (InvalidRequest, naming it); an empty value where
    it means a filter left out is dropped."""
    by_name = {p.name: p for p in parameters}
    unknown = sorted(set(query) - set(by_name))
    if unknown:
        if not parameters:
            raise InvalidRequest(f"unknown parameter {unknown[0]!r}: this endpoint takes none")
        names = ", ".join(p.name for p in parameters)
        raise InvalidRequest(f"unknown filter {unknown[0]!r}; use {names}")
    checked: dict[str, str] = {}
    for name, value in query.items():
        parameter = by_name[name]
        if value == "" and parameter.empty_is_absent:
            continue
        problem = parameter.problem(value)
        if problem is not None:
            raise InvalidRequest(f"{name}: {problem}")
        checked[name] = value
    return checked


def _filter(name: str, description: str, schema: Mapping[str, Any] | None = None) -> QueryParameter:
    """An audit or session filter: empty is left out, as ``ztgate audit search`` reads it."""
    return QueryParameter(name, description, schema or {"type": "string"}, empty_is_absent=True)


_LIMIT = _filter(
    "limit",
    f"At most this many results (default 100, at most {MAX_LIMIT}).",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
)
_SINCE = _filter("since", "Only from this time on. " + _TIME)
_UNTIL = _filter("until", "Only up to this time. " + _TIME)
_PRINCIPAL = _filter("principal", "The caller, as `issuer/subject`.")

SEARCH = (
    _PRINCIPAL,
    _filter("group", "Callers in this group."),
    _SINCE,
    _UNTIL,
    _filter("decision", "The policy decision.", {"type": "string", "enum": list(DECISIONS)}),
    _filter("model", "The requested model."),
    _filter("skill", "Requests for this skill."),
    _filter("finding", "Requests in which inspection found this detector (`email`, ...)."),
    _filter("request_id", "One request (`req_ztg_...`)."),
    _filter(
        "kind",
        "Event kinds, comma-separated, or `all` (default `request`): "
        + ", ".join(f"`{k}`" for k in KINDS)
        + ".",
    ),
    _LIMIT,
)
SESSIONS = (_PRINCIPAL, _SINCE, _UNTIL, _LIMIT)
# The reviews' filters take no empty value: a filter given is a filter meant.
REVIEWS = (
    QueryParameter(
        "state",
        "Reviews in this state.",
        {"type": "string", "enum": [s.value for s in ReviewState]},
    ),
    QueryParameter("requester", "Requested by this principal.", {"type": "string", "minLength": 1}),
    QueryParameter(
        "since",
        "Created at or after this time: seconds since the epoch, a look-back such as `1d` or "
        "`12h`, or an ISO 8601 date or date-time (UTC when it has no offset).",
        {"type": "string", "minLength": 1},
    ),
    QueryParameter(
        "limit",
        f"At most this many reviews (default 100, at most {REVIEWS_MAX_LIMIT}).",
        {"type": "integer", "minimum": 1, "maximum": REVIEWS_MAX_LIMIT},
    ),
)


def is_number(text: str) -> bool:
    """``text`` is a number as JSON writes one (and as the schema's ``number`` is checked)."""
    return _NUMBER.fullmatch(text) is not None
