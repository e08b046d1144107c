"""Reading the YAML file: ``${VAR}`` interpolation, then validation; errors name the key."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ztgate.config.model import GatewayConfig
from ztgate.config.problems import invalid, problems, shown
from ztgate.config.yamlfile import parse_yaml, read_yaml

_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

NO_ISSUER_HELP = (
    "no trusted issuer is configured, and ztgate has no anonymous mode. Add one under "
    "identity.issuers, for example:\n"
    "  identity:\n"
    "    issuers:\n"
    "      - name: github\n"
    '        issuer: "https://token.actions.githubusercontent.com"\n'
    '        audiences: ["ztgate"]\n'
    "See docs/configuration.md."
)

NO_POLICY_HELP = (
    "no policy is configured, and ztgate denies what policy does not name. Point 'policy' at a "
    "policy file (reloaded when it changes), for example:\n"
    '  policy: "/etc/ztgate/policy.yaml"\n'
    "See docs/policy.md."
)


class ConfigError(Exception):
    """The configuration cannot be used; the message says where and why, for a person."""


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    raw = read_yaml(path, "config file", ConfigError)
    config = _config_from(raw, environ, str(path))
    if isinstance(config.policy, str) and not Path(config.policy).is_absolute():
        # A relative policy path is relative to the config file, not to the working directory.
        config = config.model_copy(update={"policy": str(Path(path).parent / config.policy)})
    return config


def parse_config(
    text: str, *, environ: Mapping[str, str] | None = None, source: str = "<config>"
) -> GatewayConfig:
    return _config_from(parse_yaml(text, source, ConfigError), environ, source)


def _config_from(raw: Any, environ: Mapping[str, str] | None, source: str) -> GatewayConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        data = _interpolate(raw, os.environ if environ is None else environ, path="")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return validate_config(data, source=source)


def validate_config(data: Mapping[str, Any], *, source: str = "<config>") -> GatewayConfig:
    """Validate already-interpolated data, including the rule that some issuer is trusted."""
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    if not config.identity.issuers:
        raise ConfigError(f"{source}: identity.issuers: {NO_ISSUER_HELP}")
    if config.policy is None:
        raise ConfigError(f"{source}: policy: {NO_POLICY_HELP}")
    return config


def _interpolate(node: Any, environ: Mapping[str, str], path: str) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, environ, _join(path, shown(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, environ, _join(path, str(i))) for i, v in enumerate(node)]
    if isinstance(node, str):
        return _VARIABLE.sub(lambda m: _substitute(m, environ, path), node)
    return node


def _substitute(match: re.Match[str], environ: Mapping[str, str], path: str) -> str:
    if match.group(0) == "$$":
        return "$"
    name, default = match.group(1), match.group(2)
    value = environ.get(name)
    if value is None or (value == "" and default is not None):
        if default is None:
            raise ConfigError(f"{path}: environment variable {name} is not set")
        return default
    return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(exc: ValidationError, source: str) -> str:
    unknown = "unknown key (check its spelling and docs/configuration.md)"
    return invalid(source, problems(exc, unknown_key=unknown))
