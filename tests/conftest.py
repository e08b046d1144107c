from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest

from tests.redis_server import redis_server  # noqa: F401 (a fixture for every test)
from tests.stackrunner import RunningStack

pytest_plugins = ["tests.logscan"]


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    """Issuer, upstream simulator and gateway with the embedded demo defaults."""
    running = RunningStack()
    yield running
    running.close()


@pytest.fixture
def sdk() -> Iterator[Callable[..., anthropic.Anthropic]]:
    """Builds synchronous SDK clients (no retries) and closes them after the test."""
    clients: list[anthropic.Anthropic] = []

    def make(**options: Any) -> anthropic.Anthropic:
        client = anthropic.Anthropic(max_retries=0, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
