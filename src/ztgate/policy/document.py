"""The policy file's shape, validated in full at load: unknown keys and bad patterns are errors
that name the rule."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from ztgate.config.units import Duration
from ztgate.core.findings import Category, GuardrailCategory
from ztgate.core.guardrails import DEFAULT_THRESHOLD, HIT_CATEGORIES

# The places a guardrail condition can name (core/guardrails.py says what each is).
LOCATIONS_ORDER = (
    "system",
    "user",
    "assistant",
    "tool_result",
    "document",
    "tool_input",
    "tool_definition",
    "other",
)

ENDPOINTS = ("messages", "count_tokens", "models", "batches", "files", "skills-admin")
_RULE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
_GLOB_FIELDS = (
    "principals",
    "models",
    "skills",
    "tools",
    "mcp_servers",
    "betas",
    "client_certificates",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GuardrailCondition(_Strict):
    """Guardrail hits a rule looks for: any of these categories or check ids, optionally only
    in some places of the conversation, at a score at least this high."""

    any: list[str]
    in_: list[Literal[LOCATIONS_ORDER]] | None = Field(default=None, alias="in")  # type: ignore[valid-type]
    score_at_least: float = Field(default=DEFAULT_THRESHOLD, gt=0, le=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("any")
    @classmethod
    def _named(cls, value: list[str]) -> list[str]:
        if not value or any(not name.strip() for name in value):
            raise ValueError("name at least one category or check, and no empty name")
        return value

    @field_validator("in_")
    @classmethod
    def _places(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an empty list is ambiguous; omit 'in' to mean anywhere")
        return value


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
    # a verified TLS client certificate's names (CN=..., DNS:..., URI:..., email:...)
    client_certificates: list[str] | None = None
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
    # A list is short for {any: [...]} at the default threshold, anywhere.
    guardrails: GuardrailCondition | None = None

    @field_validator("guardrails", mode="before")
    @classmethod
    def _guardrail_shorthand(cls, value: object) -> object:
        return {"any": value} if isinstance(value, list) else value

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
MaskCategory = Category


class Mask(_Strict):
    """What to do with findings: ``action`` for whole ``categories`` (pii, secret and custom
    when omitted: guardrail categories are masked only when named), ``detectors`` for single
    detectors or guardrail checks (which beat their category)."""

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
        if self.when.guardrails is not None:
            names.update(n for n in self.when.guardrails.any if n not in HIT_CATEGORIES)
        if self.mask is not None and self.mask.detectors:
            names.update(self.mask.detectors)
        return names


# A check's or a pack's id: the custom detectors' alphabet, so a check can be named anywhere a
# detector can.
CheckId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class Check(_Strict):
    """One check of a rule pack: phrases or patterns that are evidence of one category."""

    id: CheckId
    category: GuardrailCategory
    score: float = Field(default=0.8, gt=0, le=1)
    message: str
    patterns: list[str] = Field(default_factory=list)
    words: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> Check:
        if not self.patterns and not self.words:
            raise ValueError("give the check patterns or words")
        return self


class RulePack(_Strict):
    id: CheckId
    description: str | None = None
    checks: list[Check]


class Guardrails(_Strict):
    """What the policy adds to the guardrails: rule packs, and built-in checks to switch off."""

    packs: list[RulePack] = Field(default_factory=list)
    disable: list[str] = Field(default_factory=list)


class PolicyDocument(_Strict):
    default: Literal["deny", "allow"] = "deny"
    skill_scope_prefix: str = "skill:"
    rules: list[Rule] = Field(default_factory=list)
    guardrails: Guardrails = Field(default_factory=Guardrails)

    @model_validator(mode="after")
    def _unique_ids(self) -> PolicyDocument:
        seen: set[str] = set()
        for rule in self.rules:
            if rule.id in seen:
                raise ValueError(f"two rules share the id {rule.id!r}")
            seen.add(rule.id)
        checks: set[str] = set()
        for pack in self.guardrails.packs:
            for check in pack.checks:
                if check.id in checks:
                    raise ValueError(f"two guardrail checks share the id {check.id!r}")
                checks.add(check.id)
        return self
