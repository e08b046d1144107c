"""Policy test cases: the case table (identities, requests, what each should get) and reading it.

The format is documented in ``docs/policy.md``; ``examples/policy/cases.yaml`` is a worked
example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ztgate.config.problems import dotted, problems
from ztgate.config.yamlfile import read_yaml

_IDENTITY_KEYS = frozenset({"issuer", "subject", "groups", "scopes", "claims"})
_Model = TypeVar("_Model", bound=BaseModel)


class CaseError(Exception):
    """A case (or an identity or request file) cannot be built; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IdentitySpec(_Strict):
    """Who asks: given outright (``issuer`` is the issuer's short name, as policy sees it), or
    as ``claims`` alone, from which the issuer in the config derives groups and scopes."""

    issuer: str | None = None
    subject: str | None = None
    groups: list[str] | None = None
    scopes: list[str] | None = None
    claims: dict[str, Any] = Field(default_factory=dict)

    @field_validator("issuer", "subject")
    @classmethod
    def _present(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("must not be empty")
        return value

    @property
    def derived(self) -> bool:
        """Claims only: the config's issuer decides principal, groups and scopes."""
        return self.issuer is None

    @model_validator(mode="after")
    def _one_form(self) -> IdentitySpec:
        if self.issuer is None:
            given = [k for k in ("subject", "groups", "scopes") if getattr(self, k) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} need issuer; give issuer and subject, or claims alone "
                    "(with iss, and --config)"
                )
            if "iss" not in self.claims:
                raise ValueError("give issuer and subject, or claims with iss (and --config)")
        elif self.subject is None:
            raise ValueError("an identity with issuer needs subject")
        return self


class RequestSpec(_Strict):
    """What is asked: method and path (routed as the gateway routes them), headers, JSON body."""

    method: str
    path: str
    headers: dict[str, str | list[str]] = Field(default_factory=dict)
    body: dict[str, Any] | None = None

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        return value.upper()

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("a path starts with '/', for example /v1/messages")
        return value


class Expectation(_Strict):
    effect: Literal["allow", "deny", "review"]
    rule: str | None = None  # must be among the decision's rule ids
    reason: str | None = None  # must appear in the decision's reason
    max_tokens: int | None = Field(default=None, ge=1)  # the max_tokens cap the decision sets


class Case(_Strict):
    name: str = Field(min_length=1)
    identity: IdentitySpec
    request: RequestSpec
    expect: Expectation


class CaseTable(_Strict):
    identities: dict[str, IdentitySpec] = Field(default_factory=dict)
    cases: list[Case] = Field(min_length=1)


def load_case_table(path: str | Path) -> CaseTable:
    """Read and validate a case table; raises :class:`CaseError` naming the case and key."""
    return parse_case_table(read_yaml(path, "case table", CaseError), source=str(path))


def parse_case_table(data: Any, *, source: str = "<cases>") -> CaseTable:
    """A table with ``cases`` (and optional named ``identities`` the cases refer to by name)."""
    if not isinstance(data, Mapping):
        raise CaseError(f"{source}: expected a mapping with 'cases'")
    problems: list[str] = []
    data, unresolved = _resolve_identity_names(data, problems)
    try:
        table = CaseTable.model_validate(data)
    except ValidationError as exc:
        problems += _errors(exc, data, skip={("cases", i, "identity") for i in unresolved})
        table = None
    if table is not None:
        seen: dict[str, int] = {}
        for index, case in enumerate(table.cases):
            if case.name in seen:
                problems.append(
                    f"cases[{index}] {case.name!r}: name: cases[{seen[case.name]}] has this name"
                )
            seen.setdefault(case.name, index)
    if problems or table is None:
        raise CaseError("\n".join([f"{source} is invalid:", *(f"  {p}" for p in problems)]))
    return table


def _resolve_identity_names(
    data: Mapping[str, Any], problems: list[str]
) -> tuple[Mapping[str, Any], list[int]]:
    """Cases may name an identity from ``identities`` instead of spelling it out."""
    named = data.get("identities")
    cases = data.get("cases")
    if not isinstance(cases, list):
        return data, []
    resolved = []
    unresolved = []
    for index, case in enumerate(cases):
        if isinstance(case, Mapping) and isinstance(case.get("identity"), str):
            name = case["identity"]
            if isinstance(named, Mapping) and name in named:
                case = {**case, "identity": named[name]}
            else:
                unresolved.append(index)
                problems.append(
                    f"{_case_label(cases, index)}: identity: no identity named {name!r} "
                    "under identities"
                )
        resolved.append(case)
    return {**data, "cases": resolved}, unresolved


def _case_label(cases: Sequence[Any], index: int) -> str:
    case = cases[index] if index < len(cases) else None
    name = case.get("name") if isinstance(case, Mapping) else None
    return f"cases[{index}] {name!r}" if isinstance(name, str) else f"cases[{index}]"


_UNKNOWN_KEY = "unknown key (see docs/policy.md)"


def _errors(exc: ValidationError, data: Mapping[str, Any], skip: set[tuple[Any, ...]]) -> list[str]:
    found = data.get("cases")
    cases = found if isinstance(found, list) else []

    def locate(loc: Sequence[Any]) -> str | None:
        """A case by its name; an unknown identity name is already reported."""
        if tuple(loc[:3]) in skip:
            return None
        if len(loc) >= 2 and loc[0] == "cases" and isinstance(loc[1], int):
            return _case_label(cases, loc[1]) + ": " + (dotted(loc[2:]) or "(the case)")
        return dotted(loc) or "(top level)"

    return problems(exc, unknown_key=_UNKNOWN_KEY, locate=locate)


def parse_identity(data: Any, *, source: str = "<identity>") -> IdentitySpec:
    """An identity file: the identity form, or a token's raw claims (with ``iss``)."""
    if isinstance(data, Mapping) and "iss" in data and not set(data) <= _IDENTITY_KEYS:
        data = {"claims": dict(data)}
    return _validate(IdentitySpec, data, source)


def parse_request(data: Any, *, source: str = "<request>") -> RequestSpec:
    return _validate(RequestSpec, data, source)


def _validate(model: type[_Model], data: Any, source: str) -> _Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = problems(exc, unknown_key=_UNKNOWN_KEY)
        message = "\n".join([f"{source} is invalid:", *(f"  {line}" for line in lines)])
        raise CaseError(message) from None
