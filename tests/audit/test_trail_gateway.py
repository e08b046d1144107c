"""The audit trail through the real gateway and the real SDK, on SQLite and on PostgreSQL.

Every request leaves its events (the request committed before it goes upstream, its outcome
when it ends), nothing secret is in them, the recording holds what the caller received, and
without a store there is no access.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.audit.store import backends
from tests.audit.store.backends import pg_database, store_url
from tests.inspection.test_masking import ANTHROPIC, EMAIL
from tests.stackrunner import RunningStack
from ztgate.audit.chain import verify_chain_async
from ztgate.audit.events import StoredEvent
from ztgate.audit.sealing import SealError, load_recording, sealer_from_config
from ztgate.audit.signing import SigningKey, public_keys
from ztgate.audit.store.base import AuditStore, StoreUnavailable
from ztgate.audit.store.factory import open_store
from ztgate.datapath.app import Gateway
from ztgate.devtools.simulator import REPLY_HEADER
from ztgate.devtools.stack import DEMO_POLICY, demo_config

__all__ = ["pg_database", "store_url"]

MODEL = "claude-haiku-5-5"
SIGNING_KEY = SigningKey.generate()
RECORDING_KEY = base64.b64encode(b"k" * 32).decode()
SESSION = "5f0c8a1e-claude-code-session"


def sections(store_url: str) -> dict[str, Any]:
    return {
        "store": {"url": store_url},
        "audit": {
            "signing_key": SIGNING_KEY.private_pem().decode(),
            "checkpoint_every": 5,
            "recordings": {"encryption_key": RECORDING_KEY},
        },
    }


@pytest.fixture
def stack(store_url: str) -> Iterator[RunningStack]:
    running = RunningStack(**sections(store_url))
    yield running
    running.close()


def read(store_url: str, work: Callable[[AuditStore], Any]) -> Any:
    async def run() -> Any:
        store = open_store(store_url)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def all_events(store_url: str) -> list[StoredEvent]:
    """The chain, once every request in it has its outcome (written as its response ends,
    which the caller may see a moment before)."""

    async def collect(store: AuditStore) -> list[StoredEvent]:
        for _ in range(100):
            events = [event async for event in store.events()]
            requests = {e.request_id for e in events if e.kind == "request"}
            if requests <= {e.request_id for e in events if e.kind == "outcome"}:
                break
            await asyncio.sleep(0.05)
        return events

    result: list[StoredEvent] = read(store_url, collect)
    return result


def by_request(events: list[StoredEvent], request_id: str) -> dict[str, dict[str, Any]]:
    return {e.kind: e.data() for e in events if e.request_id == request_id}


def test_every_request_leaves_its_events_and_never_a_secret(
    stack: RunningStack, store_url: str, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    token = stack.token("demo/alice")
    client = sdk(base_url=stack.url, auth_token=token)
    allowed = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": f"mail {EMAIL} the key {ANTHROPIC}"}],
        extra_headers={"x-claude-code-session-id": SESSION, "user-agent": "claude-cli/2.1"},
    )
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        client.beta.messages.create(
            model=MODEL,
            max_tokens=8,
            betas=["computer-use-2025-01-24"],
            tools=[
                {
                    "type": "computer_20250124",
                    "name": "computer",
                    "display_width_px": 800,
                    "display_height_px": 600,
                }
            ],
            messages=[{"role": "user", "content": "click"}],
        )
    anonymous = httpx.post(f"{stack.url}/v1/messages", json={})
    assert anonymous.status_code == 401

    events = all_events(store_url)
    assert events[0].kind == "startup"
    allowed_id = allowed.headers["ztgate-request-id"]
    request = by_request(events, allowed_id)
    assert request["request"]["principal"] == "demo/demo/alice"
    assert request["request"]["decision"]["effect"] == "allow"
    assert request["request"]["decision"]["rule_ids"] == ["verified-callers"]
    assert request["request"]["findings"] == {"anthropic_api_key": 1, "email": 1}
    assert request["request"]["session_id"] == SESSION
    assert request["request"]["user_agent"] == "claude-cli/2.1"
    assert request["request"]["policy_input"][0]["model"] == MODEL
    assert request["outcome"]["status"] == 200
    assert request["outcome"]["masked"] == {"anthropic_api_key": 1, "email": 1}
    assert request["outcome"]["usage"]["output_tokens"] > 0
    denied_id = denied.value.response.headers["ztgate-request-id"]
    refusal = by_request(events, denied_id)
    assert refusal["request"]["decision"]["effect"] == "deny"
    assert refusal["outcome"]["status"] == 403
    anonymous_events = by_request(events, anonymous.headers["ztgate-request-id"])
    assert anonymous_events["request"]["principal"] is None
    assert anonymous_events["outcome"]["error_type"] == "authentication_error"
    # Never a token, a key or an unmasked value in any event.
    everything = b"".join(e.body or b"" for e in events)
    for secret in (token, ANTHROPIC, EMAIL, "sk-ant-sim-upstream-key"):
        assert secret.encode() not in everything

    async def verify(store: AuditStore) -> Any:
        return await verify_chain_async(
            store.events(), await store.checkpoints(), public_keys([SIGNING_KEY.public_pem()])
        )

    report = read(store_url, verify)
    assert report.ok, report.problem
    assert report.checkpoints >= 1


def test_a_streamed_answer_is_recorded_as_the_caller_received_it_and_sealed(
    stack: RunningStack, store_url: str
) -> None:
    reply = base64.b64encode(b"First part of the answer. " * 12).decode()
    with httpx.stream(
        "POST",
        f"{stack.url}/v1/messages",
        headers={
            "authorization": f"Bearer {stack.token()}",
            "anthropic-version": "2023-06-01",
            "x-claude-code-session-id": SESSION,
            REPLY_HEADER: reply,
        },
        json={
            "model": MODEL,
            "max_tokens": 300,
            "stream": True,
            "messages": [{"role": "user", "content": f"hello from {EMAIL}"}],
        },
    ) as response:
        received = b"".join(response.iter_bytes())
        request_id = response.headers["ztgate-request-id"]

    async def fetch(store: AuditStore) -> Any:
        # Stored once the response has ended: the caller may read it a moment before.
        for _ in range(100):
            found = await store.recordings(SESSION)
            if found:
                return found
            await asyncio.sleep(0.05)
        return []

    [stored] = read(store_url, fetch)
    assert stored.request_id == request_id
    assert stored.sealed
    assert stored.blob is not None
    assert b"First part" not in stored.blob  # sealed at rest
    with pytest.raises(SealError):
        load_recording(stored, sealer=None)
    config = demo_config("http://127.0.0.1:9", "http://127.0.0.1:9", **sections(store_url))
    recording = load_recording(stored, sealer=sealer_from_config(config.audit.recordings))
    assert recording is not None
    # What went upstream was masked; what the caller got is every event, in order, timed.
    assert EMAIL.encode() not in recording.request_body
    assert b"<EMAIL_1>" in recording.request_body
    assert b"".join(raw for _, raw in recording.events) == received
    offsets = [offset for offset, _ in recording.events]
    assert offsets == sorted(offsets)
    assert recording.status == 200
    assert not recording.truncated


def test_policy_reloads_are_recorded(
    store_url: str, tmp_path: Path, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    import yaml

    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"policy": DEMO_POLICY}))
    running = RunningStack(policy=str(policy), **sections(store_url))
    try:
        policy.write_text("policy: {rules: [{id: broken, effect: maybe}]}\n")
        assert not running.stack.gateway.policy.reload()
        policy.write_text(yaml.safe_dump({"policy": DEMO_POLICY}))
        assert running.stack.gateway.policy.reload()
        running.run(asyncio.sleep(0.2))  # the events are written in the background
    finally:
        running.close()
    reloads = [e.data() for e in all_events(store_url) if e.kind == "policy_reload"]
    assert [r["applied"] for r in reloads] == [False, True]
    assert "broken" in reloads[0]["error"]


def test_a_failed_key_refresh_is_recorded(stack: RunningStack, store_url: str) -> None:
    gateway = stack.stack.gateway
    stack.run(stack.stack.issuer.stop())  # the IdP goes away

    async def refresh() -> None:
        for keys in gateway.verifier.issuer_keys.values():
            await keys.refresh()

    stack.run(refresh())
    failures: list[dict[str, Any]] = []
    for _ in range(100):  # recorded in the background, a moment later
        failures = [e.data() for e in all_events(store_url) if e.kind == "key_refresh_failure"]
        if failures:
            break
        time.sleep(0.05)
    [failure] = failures
    assert failure["issuer"] == "demo"
    assert failure["error"]


def test_a_gateway_whose_store_is_unreachable_does_not_start() -> None:
    config = demo_config(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        **sections("postgresql://postgres@127.0.0.1:1/audit"),
    )
    with pytest.raises(StoreUnavailable):
        asyncio.run(Gateway(config).startup())


@pytest.mark.disrupts_postgres
def test_store_down_refuses_with_503_and_nothing_goes_upstream(
    pg_database: str, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    running = RunningStack(**sections(pg_database))
    try:
        client = sdk(base_url=running.url, auth_token=running.token())
        hello = [{"role": "user", "content": "hello"}]
        client.messages.create(model=MODEL, max_tokens=8, messages=hello)
        before = len(running.received())
        backends.pg_cluster("stop")
        try:
            with pytest.raises(anthropic.APIStatusError) as refused:
                client.messages.create(model=MODEL, max_tokens=8, messages=hello)
            assert refused.value.status_code == 503
            assert "audit store cannot record" in str(refused.value)
            assert "postgres@" not in str(refused.value)  # no store address to callers
            assert len(running.received()) == before
            ready = httpx.get(f"{running.url}/readyz")
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "not ready",
                "reasons": ["the audit store cannot be written (see the log)"],
            }
        finally:
            backends.ensure_postgres()
        client.messages.create(model=MODEL, max_tokens=8, messages=hello)  # service resumes
        assert len(running.received()) == before + 1
    finally:
        running.close()
