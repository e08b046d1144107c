"""The metrics and tracing sections refuse what would expose the gateway or a secret."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ztgate.config.model import GatewayConfig, TracingConfig

BASE: dict[str, Any] = {"upstream": {"api_key": "k"}, "policy": {"rules": []}}


def test_the_collector_is_reached_over_https_unless_on_this_host() -> None:
    assert TracingConfig(endpoint="https://otel.example/v1/traces").endpoint
    assert TracingConfig(endpoint="http://127.0.0.1:4318/v1/traces").endpoint
    with pytest.raises(ValidationError, match="must use https"):
        TracingConfig(endpoint="http://otel.example/v1/traces")


@pytest.mark.parametrize(
    ("listen", "metrics"),
    [("127.0.0.1:8787", "127.0.0.1:8787"), ("0.0.0.0:8787", "127.0.0.1:8787"),
     ("127.0.0.1:8787", "0.0.0.0:8787")],
)  # fmt: skip
def test_metrics_are_never_served_on_the_data_paths_listener(listen: str, metrics: str) -> None:
    with pytest.raises(ValidationError, match=r"metrics\.listen"):
        GatewayConfig.model_validate(
            {**BASE, "listen": listen, "metrics": {"enabled": True, "listen": metrics}}
        )


def test_metrics_on_a_port_of_their_own() -> None:
    config = GatewayConfig.model_validate(
        {**BASE, "metrics": {"enabled": True, "listen": "0.0.0.0:9464"}}
    )
    assert config.metrics.listen == "0.0.0.0:9464"
    with pytest.raises(ValidationError, match="HOST:PORT"):
        GatewayConfig.model_validate({**BASE, "metrics": {"listen": "9464"}})
