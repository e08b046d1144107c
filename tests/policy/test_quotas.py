"""Quotas with a real Redis shared by two gateway processes; Redis down means refused."""

from __future__ import annotations

import time
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.processes import GatewayProcesses
from tests.redis_server import PrivateRedis
from tests.stackrunner import RunningStack
from ztgate.core.decision import LimitCheck
from ztgate.core.errors import RateLimited
from ztgate.policy.quotas import Quotas
from ztgate.shared.memory import MemoryState


def quota_policy(redis_url: str) -> str:
    return (
        f"quotas: {{redis_url: '{redis_url}'}}\n"
        "policy:\n"
        "  rules:\n"
        "    - id: five-a-minute\n"
        "      effect: allow\n"
        "      limits: {requests_per_minute: 5}\n"
    )


def ask(url: str, token: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/messages",
        headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
        json={
            "model": "claude-haiku-5-5",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "count me"}],
        },
        timeout=10,
    )


def test_two_gateways_share_one_budget_and_fail_closed_without_redis(
    stack: RunningStack, redis_server: PrivateRedis, tmp_path: Path
) -> None:
    gateways = GatewayProcesses(stack, tmp_path)
    try:
        _, first = gateways.start(extra=quota_policy(redis_server.url))
        _, second = gateways.start(extra=quota_policy(redis_server.url))
        token = stack.token(f"demo/quota-{time.time_ns()}")
        statuses = [ask(url, token).status_code for url in (first, second) * 3]
        assert statuses == [200] * 5 + [429]
        refused = ask(first, token)
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "five-a-minute" in refused.json()["error"]["message"]
        assert ask(second, stack.token(f"demo/other-{time.time_ns()}")).status_code == 200

        before = len(stack.received())
        redis_server.stop()
        down = ask(first, stack.token(f"demo/third-{time.time_ns()}"))
        assert down.status_code == 503
        assert down.headers["retry-after"]
        assert len(stack.received()) == before  # nothing went upstream uncounted
        redis_server.start()
        assert ask(second, stack.token(f"demo/fourth-{time.time_ns()}")).status_code == 200
    finally:
        gateways.stop_all()


async def test_tokens_are_charged_an_estimate_then_the_reported_usage() -> None:
    now = [1_000_000.0]
    quotas = Quotas(MemoryState(lambda: now[0]), clock=lambda: now[0])
    checks = [LimitCheck("principal:p", "tokens", "minute", 1000, "r")]
    admission = await quotas.admit(checks, estimated_tokens=100)
    await quotas.settle(admission, actual_tokens=990)  # the response reported 990 tokens
    await quotas.admit(checks, estimated_tokens=10)  # 990 used: under 1000, admitted
    with pytest.raises(RateLimited) as info:
        await quotas.admit(checks, estimated_tokens=10)  # 1000 used: the budget is spent
    assert info.value.retry_after is not None
    now[0] += 60  # the next minute starts empty
    await quotas.admit(checks, estimated_tokens=10)


async def test_a_refused_request_is_not_counted() -> None:
    quotas = Quotas(MemoryState())
    checks = [
        LimitCheck("principal:p", "requests", "minute", 2, "r"),
        LimitCheck("group:ci", "requests", "day", 100, "r"),
    ]
    for _ in range(2):
        await quotas.admit(checks, estimated_tokens=1)
    for _ in range(3):
        with pytest.raises(RateLimited):
            await quotas.admit(checks, estimated_tokens=1)
    counters = quotas._counters
    assert isinstance(counters, MemoryState)
    day = [v for k, (v, _) in counters._counters.items() if k.startswith("ztgate:quota:group:ci")]
    assert day == [2]
