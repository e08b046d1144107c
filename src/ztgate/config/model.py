"""The configuration's shape. Unknown keys are errors: a typo must never disable a check."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from ztgate.config.units import Duration, Size

# RFC 8725: symmetric and unsigned algorithms cannot prove who minted a token for a verifier
# that holds only public keys, so they are refused when the config loads.
SUPPORTED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _require_url(value: str, *, https_unless_loopback: bool) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if https_unless_loopback and parts.scheme != "https" and not is_loopback_host(parts.hostname):
        raise ValueError(f"{value!r} must use https (plain http is accepted only on loopback)")
    return value.rstrip("/")


def check_api_key(key: str) -> str:
    """An Anthropic key as a header can carry it, or ValueError."""
    if not key.strip():
        raise ValueError("the upstream API key is empty")
    if not all("\x21" <= char <= "\x7e" for char in key):
        # A newline here would otherwise break every upstream request (or split a header).
        raise ValueError("the upstream API key must be printable ASCII without spaces")
    return key


class TeamKeyConfig(_Strict):
    """A team's own Anthropic key (its own workspace): used for callers in any of ``groups``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    groups: list[str] = Field(min_length=1)
    api_key: SecretStr | None = None  # use ${VAR}
    key_file: str | None = None  # read again when it changes

    @model_validator(mode="after")
    def _one_source(self) -> TeamKeyConfig:
        if (self.api_key is None) == (self.key_file is None):
            raise ValueError("give the team either api_key or key_file")
        if self.api_key is not None:
            check_api_key(self.api_key.get_secret_value())
        if self.key_file is not None:
            try:
                check_api_key(Path(self.key_file).read_text().strip())
            except OSError as exc:
                raise ValueError(
                    f"key_file: {self.key_file!r} cannot be read ({exc.strerror})"
                ) from None
        return self


class UpstreamConfig(_Strict):
    url: str = "https://api.anthropic.com"
    api_key: SecretStr
    timeout: Duration = 600.0
    connect_timeout: Duration = 10.0
    max_connections: int = Field(default=256, ge=1)
    # Teams with their own keys, first match wins (docs/deployment.md); others use api_key.
    team_keys: list[TeamKeyConfig] = Field(default_factory=list)
    # An HTTPS egress proxy (http://HOST:PORT) reached with CONNECT, and the CA bundle that
    # verifies the upstream (a proxy that inspects TLS, a private endpoint).
    proxy: str | None = None
    ca_file: str | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _require_url(value, https_unless_loopback=True)

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        check_api_key(value.get_secret_value())
        return value

    @field_validator("proxy")
    @classmethod
    def _proxy(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError("use http://HOST:PORT (the proxy is asked to CONNECT)")
        return value

    @field_validator("ca_file")
    @classmethod
    def _ca(cls, value: str | None) -> str | None:
        if value is not None and not os.access(value, os.R_OK):
            raise ValueError(f"{value!r} cannot be read")
        return value

    @model_validator(mode="after")
    def _unique_teams(self) -> UpstreamConfig:
        names = [team.name for team in self.team_keys]
        if len(names) != len(set(names)):
            raise ValueError("team_keys: two teams share a name")
        return self


GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"
ClaimPattern = str | list[str]  # an exact value or glob, or a list of alternatives


class GroupRule(_Strict):
    """Add groups when every named claim matches (exact values or globs)."""

    when: dict[str, ClaimPattern] = Field(min_length=1)
    add: list[str] = Field(min_length=1)


class IssuerConfig(_Strict):
    name: str
    preset: Literal["oidc", "github-actions", "kubernetes"] = "oidc"
    issuer: str
    audiences: list[str] = Field(min_length=1)
    jwks_uri: str | None = None
    jwks_file: str | None = None
    algorithms: list[str] = Field(default_factory=lambda: list(DEFAULT_ALGORITHMS), min_length=1)
    clock_skew: Duration = 60.0
    max_token_lifetime: Duration = 3600.0
    key_refresh_interval: Duration = 600.0
    key_refetch_min_interval: Duration = 30.0
    key_max_staleness: Duration = 86400.0
    required_claims: list[str] = Field(default_factory=list)
    allow: list[dict[str, ClaimPattern]] = Field(default_factory=list)
    groups_claim: str | None = None
    group_rules: list[GroupRule] = Field(default_factory=list)
    one_time_tokens: bool = False
    require_pod_binding: bool = True

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        """Presets fill what every deployment of that IdP needs; explicit keys still win."""
        if not isinstance(data, dict):
            return data
        preset = data.get("preset", "oidc")
        defaults: dict[str, Any] = {}
        if preset == "github-actions":
            defaults = {"issuer": GITHUB_ACTIONS_ISSUER, "algorithms": ["RS256"]}
        elif preset == "oidc":
            defaults = {"groups_claim": "groups"}
        return {**defaults, **data}

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError("use lower-case letters, digits, '-' or '_' (at most 63)")
        return value

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        # The issuer is compared to `iss` exactly, so keep it as written (no slash stripping).
        _require_url(value, https_unless_loopback=True)
        return value

    @field_validator("jwks_uri")
    @classmethod
    def _jwks_uri(cls, value: str | None) -> str | None:
        return None if value is None else _require_url(value, https_unless_loopback=True)

    @field_validator("audiences")
    @classmethod
    def _audiences(cls, value: list[str]) -> list[str]:
        if any(not a.strip() for a in value):
            raise ValueError("an audience cannot be empty")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        for alg in value:
            if alg.lower() == "none" or alg.upper().startswith("HS"):
                raise ValueError(
                    f"{alg!r} is refused: unsigned and shared-secret tokens cannot prove identity"
                )
            if alg not in SUPPORTED_ALGORITHMS:
                raise ValueError(f"{alg!r} is not supported; use {sorted(SUPPORTED_ALGORITHMS)}")
        return value

    @field_validator("allow")
    @classmethod
    def _allow(cls, value: list[dict[str, ClaimPattern]]) -> list[dict[str, ClaimPattern]]:
        if any(not rule for rule in value):
            raise ValueError("an allow rule must name at least one claim")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerConfig:
        if self.jwks_uri and self.jwks_file:
            raise ValueError("set jwks_uri or jwks_file, not both")
        if self.preset != "kubernetes" and "require_pod_binding" in self.model_fields_set:
            raise ValueError("require_pod_binding applies to the kubernetes preset only")
        return self


class IdentityConfig(_Strict):
    issuers: list[IssuerConfig] = Field(default_factory=list)
    max_token_bytes: Size = 16384
    token_cache_size: int = Field(default=100_000, ge=0)

    @model_validator(mode="after")
    def _unique(self) -> IdentityConfig:
        for attr in ("name", "issuer"):
            seen: set[str] = set()
            for issuer in self.issuers:
                value = getattr(issuer, attr)
                if value in seen:
                    raise ValueError(f"two issuers share the {attr} {value!r}")
                seen.add(value)
        return self


Durability = Literal["fsync", "process"]


class StoreConfig(_Strict):
    url: str = "sqlite:///.ztgate/ztgate.db"
    # What a committed record survives before its request goes upstream (docs/audit.md):
    # "fsync" a power cut (SQLite synchronous=FULL; PostgreSQL synchronous_commit on);
    # "process" a crash or kill -9 of ztgate but not a power cut (SQLite WAL with
    # synchronous=NORMAL; PostgreSQL synchronous_commit off), for less per request.
    durability: Durability = "fsync"
    # How long a request waits for the store (its lock, its commit) before it is refused with
    # 503: a locked or stuck store answers callers in seconds, not at a load balancer's timeout.
    write_timeout: Duration = 5.0

    @field_validator("write_timeout")
    @classmethod
    def _write_timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("use sqlite:///PATH or postgresql://USER@HOST/DB")
        return value


class ServerTLSConfig(_Strict):
    """HTTPS on the listener (docs/deployment.md)."""

    cert_file: str  # PEM chain, reloaded when it changes
    key_file: str
    # Callers' certificates: verified against this CA bundle; "required" refuses a handshake
    # without one, "optional" lets policy decide (client_certificates conditions).
    client_ca_file: str | None = None
    client_certificates: Literal["optional", "required"] = "optional"
    reload_interval: Duration = 10.0

    @model_validator(mode="after")
    def _readable(self) -> ServerTLSConfig:
        names = [("cert_file", self.cert_file), ("key_file", self.key_file)]
        if self.client_ca_file is not None:
            names.append(("client_ca_file", self.client_ca_file))
        for name, value in names:
            if not os.access(value, os.R_OK):
                raise ValueError(f"{name}: {value!r} cannot be read")
        if self.reload_interval <= 0:
            raise ValueError("reload_interval must be positive")
        return self


class ServerConfig(_Strict):
    """The listener and its limits; docs/security.md says what each defends against."""

    workers: int = Field(default=1, ge=1, le=64)
    public_url: str | None = None
    graceful_shutdown: Duration = 30.0
    max_json_body: Size = 32 * 1024**2
    max_upload_body: Size = 500 * 1024**2
    max_response_body: Size = 64 * 1024**2
    # Levels a JSON body may nest (a tool input inside a message inside the body counts all
    # of them); the encoder that forwards it stops at 254.
    max_json_depth: int = Field(default=64, ge=16, le=200)
    # Open client connections per worker; more are answered 503 and closed. None: as many as
    # the process' open-file limit allows for a connection and its upstream connection each.
    max_connections: int | None = Field(default=None, ge=1)
    # A request head (request line and headers) larger than this, or with more headers, is
    # refused with 431 before authentication. A token can arrive in three headers at once
    # (Claude Code's apiKeyHelper), so this must hold three of identity.max_token_bytes.
    max_head_bytes: Size = 64 * 1024
    max_headers: int = Field(default=100, ge=16, le=1000)
    # No request under way (a new connection, or one kept alive between requests): closed.
    idle_timeout: Duration = 30.0
    # From the first byte of a request to the end of its head: else 408.
    header_timeout: Duration = 10.0
    # A body must keep arriving: at most this long without a byte, and on average at least
    # body_min_rate bytes a second once this long has passed: else 408.
    body_timeout: Duration = 15.0
    body_min_rate: Size = 1024
    # A caller that takes nothing of its response for this long is disconnected.
    send_timeout: Duration = 60.0
    tls: ServerTLSConfig | None = None
    # Addresses (CIDRs) of the proxies that terminate TLS in front of ztgate: only from them
    # are X-Forwarded-For and X-Forwarded-Proto believed (the client's address and scheme).
    trusted_proxies: list[str] = Field(default_factory=list)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an address or a network (CIDR)") from None
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        return None if value is None else _require_url(value, https_unless_loopback=False)

    @model_validator(mode="after")
    def _positive_timeouts(self) -> ServerConfig:
        for name in ("idle_timeout", "header_timeout", "body_timeout", "send_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"{name} must be positive: a limit of zero would refuse everything"
                )
        return self


class QuotasConfig(_Strict):
    redis_url: str | None = None

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("use redis://HOST:PORT/DB, rediss://... or unix://PATH")
        return value


class CustomDetectorsConfig(_Strict):
    # name -> regular expression (bounded, ASCII; see docs/data-protection.md)
    patterns: dict[str, str] = Field(default_factory=dict)
    # name -> exact words or phrases (any script, case-insensitive)
    words: dict[str, list[str]] = Field(default_factory=dict)


ClassifiedLocation = Literal[
    "system", "user", "assistant", "tool_result", "document", "tool_definition"
]
# Where the classifier reads unless told: what people and tools write. Not the system prompt:
# instructions are what a system prompt is made of (it scores Claude Code's own at 1.0).
CLASSIFIED_BY_DEFAULT: tuple[ClassifiedLocation, ...] = ("user", "tool_result", "document")


class ClassifierConfig(_Strict):
    # Score what people and tools wrote with the offline classifier (docs/guardrails.md for
    # what it adds and costs); off by default.
    enabled: bool = False
    model: str | None = None  # a model file; the one shipped with ztgate when omitted
    # Where in the conversation it reads (docs/guardrails.md: Claude Code's own reminders
    # score high as "user" text; agent traffic may want only tool results and documents).
    locations: list[ClassifiedLocation] = Field(
        default_factory=lambda: list(CLASSIFIED_BY_DEFAULT), min_length=1
    )


class JudgeConfig(_Strict):
    # Ask a small Claude model, through ztgate's own upstream, about borderline hits.
    enabled: bool = False
    model: str = "claude-haiku-4-5"
    # Hits scoring at least the first and below the second are borderline.
    borderline: tuple[float, float] = (0.3, 0.8)
    timeout: Duration = 3.0
    max_per_minute: int = Field(default=60, ge=1)  # judge calls, for the whole gateway
    max_chars: int = Field(default=8000, ge=256)  # of each text shown to the judge
    cache_size: int = Field(default=4096, ge=0)  # verdicts remembered, by text
    # When the judge cannot answer (timeout, error, budget spent): refuse, or ask a person.
    on_error: Literal["deny", "review"] = "deny"
    headers: dict[str, str] = Field(default_factory=dict)  # sent upstream with each question

    @model_validator(mode="after")
    def _band(self) -> JudgeConfig:
        low, high = self.borderline
        if not 0 < low < high <= 1:
            raise ValueError("borderline: two scores, 0 < low < high <= 1")
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        return self


class GuardrailsConfig(_Strict):
    # The built-in rule pack (docs/guardrails.md); a policy's packs come on top.
    builtin: bool = True
    # How much a phrase quoted by a person (in "quotes" or code) counts, 0-1.
    quoted_factor: float = Field(default=0.5, ge=0, le=1)
    # Encodings inside encodings decoded at most this deep, and this many characters in all.
    max_decode_depth: int = Field(default=3, ge=0, le=8)
    max_decoded: Size = 1024**2
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)


class InspectionConfig(_Strict):
    # Scan every request's text fields for PII and secrets (findings feed policy and the log);
    # policy ``mask`` obligations act on them in requests and responses, streams included.
    enabled: bool = True
    custom: CustomDetectorsConfig = Field(default_factory=CustomDetectorsConfig)
    # Characters a stream holds back per content block before releasing masked text.
    stream_holdback: int = Field(default=128, ge=16, le=1_048_576)
    # Key for the ``hash`` action (use ${VAR}); without one, each start picks a random key.
    hash_key: SecretStr | None = None
    # The most text (characters, all fields together) one request may carry to be inspected.
    max_text: Size = 16 * 1024**2
    guardrails: GuardrailsConfig = Field(default_factory=GuardrailsConfig)

    @model_validator(mode="after")
    def _detectors_fit(self) -> InspectionConfig:
        """Custom detectors compile in both engines, and the holdback covers every detector,
        so a bad pattern stops the start rather than a request."""
        from ztgate.detectors.catalogue import catalogue
        from ztgate.detectors.custom import custom_detectors
        from ztgate.detectors.guardrails import builtin_checks
        from ztgate.detectors.holdback import check_holdback

        try:
            custom = custom_detectors(self.custom.patterns, self.custom.words)
        except OverflowError as exc:  # ``re``'s word for a repeat count too large to compile
            raise ValueError(f"custom.patterns: a pattern cannot be compiled: {exc}") from None
        except RecursionError:
            raise ValueError("custom.patterns: a pattern is nested too deeply to compile") from None
        clash = {d.id for d in custom} & {d.id for d in catalogue()}
        if clash:
            raise ValueError(f"custom detector {sorted(clash)[0]!r} shadows a built-in detector")
        builtin = list(builtin_checks()[0]) if self.guardrails.builtin else []
        clash = {d.id for d in custom} & {d.id for d in builtin}
        if clash:
            raise ValueError(f"custom detector {sorted(clash)[0]!r} shadows a guardrail check")
        check_holdback([*catalogue(), *custom, *builtin], self.stream_holdback)
        return self

    @field_validator("hash_key")
    @classmethod
    def _hash_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("use at least 16 characters for the hash key")
        return value


class AdminConfig(_Strict):
    # Groups (from tokens, after group_rules) whose members may use the admin API under
    # /ztgate/api/v1/. None by default: every admin call is refused (403) until some are named.
    groups: list[str] = Field(default_factory=list)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        if any(not group.strip() for group in value):
            raise ValueError("a group name cannot be empty")
        return value


class RecordingsConfig(_Strict):
    # Keep what went upstream and what came back, per request, beside the audit chain.
    enabled: bool = True
    # base64 of 32 bytes: recordings are sealed with AES-256-GCM (clear text without one).
    encryption_key: SecretStr | None = None
    max_bytes: Size = 4 * 1024**2  # larger recordings are cut from the end and marked truncated
    retention_days: int | None = Field(default=30, ge=1)  # None: keep them forever

    @field_validator("encryption_key")
    @classmethod
    def _encryption_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                key = base64.b64decode(value.get_secret_value().strip(), validate=True)
            except binascii.Error:
                key = b""
            if len(key) != 32:
                raise ValueError("use the base64 of 32 random bytes (openssl rand -base64 32)")
        return value


class AuditConfig(_Strict):
    # The Ed25519 key that signs checkpoints: PEM (PKCS#8) text, or a file holding it. With
    # neither, an embedded SQLite store gets one created beside its database; PostgreSQL
    # refuses to start without one.
    signing_key: SecretStr | None = None
    signing_key_file: str | None = None
    checkpoint_every: int = Field(default=1000, ge=1)  # events between signed checkpoints
    checkpoint_interval: Duration = 60.0  # or this long, whichever comes first
    recordings: RecordingsConfig = Field(default_factory=RecordingsConfig)

    @field_validator("signing_key")
    @classmethod
    def _signing_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                key = serialization.load_pem_private_key(
                    value.get_secret_value().strip().encode(), password=None
                )
            except (ValueError, TypeError):
                raise ValueError("not an unencrypted PEM (PKCS#8) private key") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError("the audit signing key must be an Ed25519 key")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> AuditConfig:
        if self.signing_key is not None and self.signing_key_file is not None:
            raise ValueError("set signing_key or signing_key_file, not both")
        if self.checkpoint_interval <= 0:
            raise ValueError("checkpoint_interval must be positive")
        return self


class WebhookConfig(_Strict):
    """Where ztgate tells people a review is waiting (docs/approvals.md)."""

    url: str
    # "json": the review as JSON, signed with ``secret`` (HMAC-SHA256 over the timestamp and
    # the body); "slack": a Slack-compatible message with Approve and Deny buttons.
    kind: Literal["json", "slack"] = "json"
    secret: SecretStr | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _require_url(value, https_unless_loopback=True)

    @model_validator(mode="after")
    def _signed(self) -> WebhookConfig:
        secret = self.secret.get_secret_value() if self.secret is not None else ""
        if self.kind == "json" and len(secret) < 16:
            raise ValueError("a json webhook needs a secret of at least 16 characters to sign with")
        return self


class SlackApprover(_Strict):
    principal: str  # the identity the Slack user decides as, as issuer/subject
    groups: list[str] = Field(min_length=1)


class SlackConfig(_Strict):
    """Slack's Approve and Deny buttons: Slack signs each click with the app's signing secret,
    and only the Slack users named here decide, as the identity and groups named."""

    signing_secret: SecretStr
    users: dict[str, SlackApprover] = Field(min_length=1)


class ReviewsConfig(_Strict):
    # Groups whose members approve for review rules that name no approvers of their own.
    approvers: list[str] = Field(default_factory=list)
    # A held request that is not streamed waits this long, then gets 403 with the review's id.
    hold_timeout: Duration = 60.0
    # A held stream sends a ping event this often while it waits (clients give up on silence).
    ping_interval: Duration = 10.0
    # How often a waiting request looks at the store for a decision taken elsewhere (another
    # worker on SQLite; PostgreSQL also notifies at once).
    poll_interval: Duration = 1.0
    # At most this many requests held at once by one process (each keeps a connection and
    # ~30 KB); beyond it a request is answered as if its rule said `async`: 403 with its review.
    max_held: int = Field(default=1000, ge=1)
    # At most this many pending reviews per requester: a caller cannot flood approvers (or the
    # store) with requests to approve. Beyond it, 429 until some are decided or cancelled.
    max_pending_per_requester: int = Field(default=20, ge=1)
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    slack: SlackConfig | None = None

    @model_validator(mode="after")
    def _positive(self) -> ReviewsConfig:
        for name in ("hold_timeout", "ping_interval", "poll_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        return self


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    # ASCII digits only: "٣" is a digit to str.isdigit and to int, and "²" to isdigit alone
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > 65535:
        raise ValueError("use HOST:PORT, for example 127.0.0.1:8787")
    return value


class MetricsConfig(_Strict):
    """Prometheus metrics on a listener of their own, never the ``/v1`` one (docs/operations.md)."""

    enabled: bool = False
    listen: str = "127.0.0.1:9464"  # every worker serves it (SO_REUSEPORT), all workers' figures
    # Where workers share their figures (prometheus-client's multiprocess mode); a fresh
    # private directory per start when omitted.
    multiprocess_dir: str | None = None
    reviews_interval: Duration = 30.0  # how often the pending reviews are counted

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _host_port(value)


class TracingConfig(_Strict):
    """OpenTelemetry traces: one span per pipeline stage and the upstream call (off by default;
    spans carry names, counts and decisions, never a prompt, a value or a token)."""

    enabled: bool = False
    endpoint: str = "http://127.0.0.1:4318/v1/traces"  # OTLP over HTTP (protobuf)
    headers: dict[str, str] = Field(default_factory=dict)  # sent to the collector (use ${VAR})
    service_name: str = "ztgate"
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)  # of traces ztgate starts
    # A caller's W3C ``traceparent`` makes ztgate's spans part of its trace (its sampling
    # decision is followed); off: every request starts a trace of its own.
    accept_context: bool = True
    # Send ztgate's trace context upstream (``traceparent``); callers' never goes there.
    propagate_upstream: bool = False

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        # ``headers`` may carry the tracing backend's API key: never in clear off this host.
        return _require_url(value, https_unless_loopback=True)


class GatewayConfig(_Strict):
    listen: str = "127.0.0.1:8787"
    upstream: UpstreamConfig
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    # A path to a policy file (reloaded on change and SIGHUP) or the policy inline.
    policy: str | dict[str, Any] | None = None
    quotas: QuotasConfig = Field(default_factory=QuotasConfig)
    inspection: InspectionConfig = Field(default_factory=InspectionConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    reviews: ReviewsConfig = Field(default_factory=ReviewsConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _host_port(value)

    @model_validator(mode="after")
    def _metrics_apart(self) -> GatewayConfig:
        host, _, port = self.metrics.listen.rpartition(":")
        data_host, _, data_port = self.listen.rpartition(":")
        wildcard = {"0.0.0.0", "[::]", "::"}  # noqa: S104 (compared, not bound)
        shared = host == data_host or host in wildcard or data_host in wildcard
        if self.metrics.enabled and port == data_port and shared:
            raise ValueError("metrics.listen must not be the data path's listener (listen)")
        return self

    @model_validator(mode="after")
    def _judge_can_fail_to_people(self) -> GatewayConfig:
        judge = self.inspection.guardrails.judge
        if judge.enabled and judge.on_error == "review" and not self.reviews.approvers:
            raise ValueError(
                "inspection.guardrails.judge.on_error: review needs reviews.approvers (the "
                "people who decide when the judge cannot)"
            )
        return self

    @model_validator(mode="after")
    def _head_holds_tokens(self) -> GatewayConfig:
        needed = 3 * self.identity.max_token_bytes + 8 * 1024
        if self.server.max_head_bytes < needed:
            raise ValueError(
                f"server.max_head_bytes must be at least {needed} (three tokens of "
                "identity.max_token_bytes, as Claude Code's apiKeyHelper sends, plus 8KiB)"
            )
        return self

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])
