"""Configuration: one YAML file, validated in full before anything starts."""

from ztgate.config.loader import ConfigError, load_config, parse_config, validate_config
from ztgate.config.model import GatewayConfig, IssuerConfig

__all__ = [
    "ConfigError",
    "GatewayConfig",
    "IssuerConfig",
    "load_config",
    "parse_config",
    "validate_config",
]
