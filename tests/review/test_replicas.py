"""Reviews across real gateway processes: two replicas on one real PostgreSQL, and one gateway
restarted on its store. The upstream simulator counts what really ran."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.audit.store.backends import postgres_database
from tests.processes import GatewayProcesses
from tests.stackrunner import RunningStack
from ztgate.audit.signing import SigningKey

API = "/ztgate/api/v1/reviews"
BODY = {
    "model": "claude-opus-4-5",
    "max_tokens": 32,
    "messages": [{"role": "user", "content": "x"}],
}


def _extra(key_file: Path) -> str:
    # Polling once a minute: a decision that reaches another replica sooner came by NOTIFY.
    return (
        "audit:\n"
        f'  signing_key_file: "{key_file}"\n'
        "reviews:\n"
        "  poll_interval: 60s\n"
        "  ping_interval: 1s\n"
        "  hold_timeout: 30s\n"
        "policy:\n"
        "  rules:\n"
        "    - {id: everyone, effect: allow}\n"
        "    - id: opus\n"
        "      effect: review\n"
        '      when: {models: ["claude-opus-*"]}\n'
        "      review: {approvers: [leads], caller_chooses_wait: true}\n"
    )


@pytest.fixture
def gateways(stack: RunningStack, tmp_path: Path) -> Iterator[GatewayProcesses]:
    running = GatewayProcesses(stack, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "signing.pem"
    path.write_bytes(SigningKey.generate().private_pem())
    return path


def _headers(token: str, **more: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01", **more}


def _body(text: str, **params: Any) -> dict[str, Any]:
    return {**BODY, "messages": [{"role": "user", "content": text}], **params}


def _approve(url: str, review_id: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{url}{API}/{review_id}/approve",
        headers={"authorization": f"Bearer {token}"},
        json={"reason": "approved in a test"},
        timeout=30,
    )


def _pending(url: str, requester: str, token: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = httpx.get(
            f"{url}{API}",
            params={"state": "pending", "requester": requester},
            headers={"authorization": f"Bearer {token}"},
        ).json()
        if found["reviews"]:
            return str(found["reviews"][0]["id"])
        time.sleep(0.05)
    raise AssertionError(f"no pending review for {requester}")


class HeldStream:
    """A streamed request read in a thread: every SSE line it gets, and when it ended."""

    def __init__(self, url: str, token: str, text: str) -> None:
        self.lines: list[str] = []
        self.ended_at: float | None = None
        self.status: int | None = None
        self._thread = threading.Thread(target=self._run, args=(url, token, text), daemon=True)
        self._thread.start()

    def _run(self, url: str, token: str, text: str) -> None:
        with (
            httpx.Client(timeout=60) as client,
            client.stream(
                "POST", url + "/v1/messages", headers=_headers(token), json=_body(text, stream=True)
            ) as response,
        ):
            self.status = response.status_code
            for line in response.iter_lines():
                self.lines.append(line)
        self.ended_at = time.monotonic()

    def join(self, timeout: float = 30) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the stream did not end"

    def events(self) -> list[str]:
        return [line.removeprefix("event: ") for line in self.lines if line.startswith("event: ")]


def test_a_decision_on_one_replica_releases_a_stream_held_on_the_other(
    stack: RunningStack, gateways: GatewayProcesses, key_file: Path
) -> None:
    with postgres_database() as store:
        _, first = gateways.start(extra=_extra(key_file), store=store)
        _, second = gateways.start(extra=_extra(key_file), store=store)
        before = len(stack.received("/v1/messages"))
        held = HeldStream(first, stack.token("replica-user"), "held on the first replica")
        lead = stack.token("lead", claims={"groups": ["leads"]})
        review_id = _pending(second, "demo/replica-user", lead)
        time.sleep(1.5)
        assert held.ended_at is None
        assert "ping" in held.events()  # the caller is kept listening
        approved_at = time.monotonic()
        assert _approve(second, review_id, lead).status_code == 200
        held.join()
        assert held.ended_at is not None
        assert held.ended_at - approved_at < 10  # NOTIFY, not the minute-long poll
        assert held.events()[-1] == "message_stop"
        assert len(stack.received("/v1/messages")) == before + 1


def test_fifty_retries_across_two_replicas_run_an_approved_request_once(
    stack: RunningStack, gateways: GatewayProcesses, key_file: Path
) -> None:
    with postgres_database() as store:
        _, first = gateways.start(extra=_extra(key_file), store=store)
        _, second = gateways.start(extra=_extra(key_file), store=store)
        token = stack.token("retrying-job")
        headers = _headers(token, **{"ztgate-review-wait": "async"})
        body = _body("run me exactly once")
        refused = httpx.post(first + "/v1/messages", headers=headers, json=body, timeout=30)
        assert refused.status_code == 403
        review_id = refused.headers["ztgate-review-id"]
        lead = stack.token("lead", claims={"groups": ["leads"]})
        assert _approve(second, review_id, lead).json()["state"] == "approved"
        before = len(stack.received("/v1/messages"))

        async def retries() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                return await asyncio.gather(
                    *(
                        client.post(url + "/v1/messages", headers=headers, json=body)
                        for url in [first, second] * 25
                    )
                )

        answers = asyncio.run(retries())
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200] + [403] * 49
        assert len(stack.received("/v1/messages")) == before + 1
        ran = httpx.get(f"{first}{API}/{review_id}", headers={"authorization": f"Bearer {lead}"})
        assert ran.json()["state"] == "executed"
        # The others were told why: the approval was used, or a new review opened for them.
        messages = {
            a.json()["error"]["message"].split(":")[0] for a in answers if a.status_code != 200
        }
        assert messages <= {
            f"review {review_id} has already run this request once; it needs a new review",
            "this request needs approval",
        }


def test_after_a_restart_reviews_are_still_there_and_held_requests_were_told(
    stack: RunningStack, gateways: GatewayProcesses, key_file: Path, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path}/kept.db"
    process, url = gateways.start(extra=_extra(key_file), store=store)
    token = stack.token("restarted-user")
    lead = stack.token("lead", claims={"groups": ["leads"]})
    held = HeldStream(url, token, "held across a restart")
    held_id = _pending(url, "demo/restarted-user", lead)
    later = httpx.post(
        url + "/v1/messages",
        headers=_headers(token, **{"ztgate-review-wait": "async"}),
        json=_body("for later"),
        timeout=30,
    )
    later_id = later.headers["ztgate-review-id"]
    time.sleep(0.5)
    process.terminate()
    held.join()
    assert held.status == 200  # the stream had begun: the end is an error event
    assert held.events()[-1] == "error"
    error = held.lines[held.lines.index("event: error") + 1]
    assert f"the gateway is restarting; review {held_id} stays pending" in error
    assert process.wait(15) in (0, -signal.SIGTERM)  # uvicorn re-raises it once done

    _, url = gateways.start(extra=_extra(key_file), store=store)
    auth = {"authorization": f"Bearer {lead}"}
    for review_id in (held_id, later_id):
        assert httpx.get(f"{url}{API}/{review_id}", headers=auth).json()["state"] == "pending"
        assert _approve(url, review_id, lead).json()["state"] == "approved"
    before = len(stack.received("/v1/messages"))
    again = HeldStream(url, token, "held across a restart")
    again.join()
    assert again.events()[-1] == "message_stop"
    ran = httpx.post(url + "/v1/messages", headers=_headers(token), json=_body("for later"))
    assert ran.status_code == 200, ran.text
    assert len(stack.received("/v1/messages")) == before + 2
