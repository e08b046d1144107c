"""The policy file's shape, validated in full at load: unknown keys and bad patterns are errors
that name the rule."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ztgate.config.units import Duration

ENDPOINTS = ("messages", "count_tokens", "models", "batches", "files", "skills-admin")
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_GLOB_FIELDS = ("principals", "models", "skills", "tools", "mcp_servers", "betas")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Conditions(_Strict):
    """What a rule looks at. Omitted conditions do not restrict, with one exception: in an
    ``allow`` rule, ``skills``, ``tools`` and ``mcp_servers`` are grants, and what a rule does not
    name it does not grant."""

    # who asks
    groups: list[str] | None = None
    principals: list[str] | None = None
    issuers: list[str] | None = None
    claims: dict[str, str | list[str]] | None = None
    scopes: list[str] | None = None
    # what for
    endpoints: list[Literal[ENDPOINTS]] | None = None  # type: ignore[valid-type]
    methods: list[Literal["GET", "POST", "DELETE"]] | None = None
    models: list[str] | None = None
    skills: list[str] | None = None
    tools: list[str] | None = None
    mcp_servers: list[str] | None = None
    betas: list[str] | None = None
    stream: bool | None = None
    max_tokens_above: int | None = Field(default=None, ge=0)
    thinking_budget_above: int | None = Field(default=None, ge=0)
    request_bytes_above: int | None = Field(default=None, ge=0)
    skills_outside_token_scope: bool | None = None
    findings: list[str] | None = None

    @field_validator(*_GLOB_FIELDS)
    @classmethod
    def _globs(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for pattern in value:
                if not pattern or pattern.count("[") != pattern.count("]"):
                    raise ValueError(f"{pattern!r} is not a valid pattern")
        return value

    @field_validator(
        "groups", "issuers", "scopes", "findings", "endpoints", "methods", *_GLOB_FIELDS
    )
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError(
                "an empty list is ambiguous; omit the condition (an allow rule that names no "
                "tools, skills or MCP servers grants none)"
            )
        return value


class Limits(_Strict):
    max_tokens: int | None = Field(default=None, ge=1)
    requests_per_minute: int | None = Field(default=None, ge=0)
    requests_per_day: int | None = Field(default=None, ge=0)
    tokens_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    per: Literal["principal", "group"] = "principal"


MaskAction = Literal["redact", "pseudonymize", "hash", "block", "report"]
MaskCategory = Literal["pii", "secret", "custom"]


class Mask(_Strict):
    """What to do with findings: ``action`` for whole ``categories`` (all three when omitted),
    ``detectors`` for single detectors (which beat their category)."""

    action: MaskAction | None = None
    categories: list[MaskCategory] | None = None
    detectors: dict[str, MaskAction] | None = None

    @model_validator(mode="after")
    def _complete(self) -> Mask:
        if self.categories is not None and self.action is None:
            raise ValueError("categories need an action")
        if self.action is None and not self.detectors:
            raise ValueError("name an action (for categories) or detectors with their actions")
        if self.categories is not None and not self.categories:
            raise ValueError("an empty list is ambiguous; omit categories to mean all of them")
        return self


class Review(_Strict):
    """Who must agree before a ``review`` rule's request runs (docs/approvals.md)."""

    # Groups whose members may approve; omitted: the config's reviews.approvers.
    approvers: list[str] | None = None
    # "any" (one approval from any of the groups), "all" (one from each), or a number of
    # different approvers.
    require: Literal["any", "all"] | int = "any"
    expires: Duration = 3600.0  # how long the review waits for a decision
    grant: Duration | None = None  # once approved, the same kind of request runs without review
    wait: Literal["hold", "async"] = "hold"  # how the caller waits (docs/approvals.md)
    caller_chooses_wait: bool = False  # may the caller pick with a ztgate-review-wait header

    @field_validator("approvers")
    @classmethod
    def _approvers(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not g.strip() for g in value)):
            raise ValueError("name at least one group, and no empty group")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Review:
        if isinstance(self.require, int) and self.require < 1:
            raise ValueError("require: at least 1 approver")
        if self.require == "all" and self.approvers is None:
            raise ValueError("require: all needs the approvers named here")
        if self.expires <= 0:
            raise ValueError("expires must be positive")
        if self.grant is not None and self.grant <= 0:
            raise ValueError("grant must be positive")
        return self


class Rule(_Strict):
    id: str
    description: str | None = None
    when: Conditions = Field(default_factory=Conditions)
    effect: Literal["allow", "deny", "review"]
    message: str | None = None
    limits: Limits | None = None
    mask: Mask | None = None
    review: Review | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _RULE_ID.fullmatch(value):
            raise ValueError("use letters, digits, '_', '.', ':' or '-' (at most 128)")
        return value

    @model_validator(mode="after")
    def _obligations(self) -> Rule:
        if self.limits is not None and self.effect == "deny":
            raise ValueError("limits apply to allow and review rules, not deny")
        if self.limits is not None and self.limits.per == "group" and not self.when.groups:
            raise ValueError("limits per group need a groups condition")
        if self.mask is not None and self.effect == "deny":
            raise ValueError("mask applies to allow and review rules, not deny")
        if self.review is not None and self.effect != "review":
            raise ValueError("review applies to review rules only")
        return self

    def detector_names(self) -> set[str]:
        """The detectors this rule names, in conditions or obligations."""
        names = set(self.when.findings or ())
        if self.mask is not None and self.mask.detectors:
            names.update(self.mask.detectors)
        return names


class PolicyDocument(_Strict):
    default: Literal["deny", "allow"] = "deny"
    skill_scope_prefix: str = "skill:"
    rules: list[Rule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicyDocument:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"two rules share the id {rule.id!r}")
            seen.add(rule.id)
        return self
