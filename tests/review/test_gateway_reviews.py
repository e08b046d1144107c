"""Approvals through a real gateway: the real `anthropic` SDK as the requester, people approving
through `ztgate reviews` (the CLI, as a subprocess) and the admin API, a real webhook receiver,
Slack clicks signed as Slack signs them. The upstream simulator counts what really ran."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anthropic
import httpx2 as httpx
import orjson
import pytest

from tests.stackrunner import RunningStack
from ztgate.review import notify

WEBHOOK_SECRET = "whsec-test-0123456789abcdef"
SLACK_SECRET = "slack-signing-secret-for-tests"
AWS_KEY = "AKIAQYLPMN5HHHFPZAM2"
EMAIL = "jane.doe@example.com"
OPUS, SONNET, HAIKU = "claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5"
LEADS = ("leads",)
API = "/ztgate/api/v1/reviews"

POLICY = {
    "default": "deny",
    "rules": [
        {
            "id": "everyone",
            "effect": "allow",
            "when": {"tools": ["*"]},
            "mask": {"categories": ["secret"], "action": "redact", "detectors": {
                "email": "pseudonymize"}},
        },
        {
            "id": "opus-needs-a-lead",
            "effect": "review",
            "message": "Opus needs a lead's approval",
            "when": {"models": ["claude-opus-*"]},
            "review": {"approvers": ["leads"], "expires": "10m", "caller_chooses_wait": True},
        },
        {
            "id": "ci-sonnet",
            "effect": "review",
            "when": {"models": ["claude-sonnet-*"], "groups": ["ci"]},
            "review": {"approvers": ["leads"], "wait": "async"},
        },
        {
            "id": "agents-haiku",
            "effect": "review",
            "when": {"models": ["claude-haiku-*"], "groups": ["agents"]},
            "review": {"approvers": ["leads"], "wait": "async", "grant": "10m"},
        },
        {
            "id": "two-keys",
            "effect": "review",
            "when": {"models": ["claude-haiku-*"], "groups": ["vault"]},
            "review": {"approvers": ["leads", "security"], "require": "all", "wait": "async",
                       "expires": "3s"},
        },
    ],
}  # fmt: skip


class Receiver:
    """A webhook receiver on loopback: keeps every delivery's headers and body."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        deliveries = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                deliveries.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def for_review(self, review_id: str, timeout: float = 10) -> tuple[dict[str, str], bytes]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for headers, body in list(self.deliveries):
                if review_id.encode() in body:
                    return headers, body
            time.sleep(0.05)
        raise AssertionError(f"no delivery for {review_id}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Reviews:
    """The gateway under test, its webhook receiver, and ways to act as people."""

    def __init__(self) -> None:
        self.receiver = Receiver()
        self.stack = RunningStack(
            policy=POLICY,
            admin={"groups": ["auditors"]},
            reviews={
                "hold_timeout": "2s",
                "ping_interval": "0.3s",
                "poll_interval": "0.5s",
                "max_held": 3,
                "max_pending_per_requester": 4,
                "webhooks": [{"url": self.receiver.url, "secret": WEBHOOK_SECRET}],
                "slack": {
                    "signing_secret": SLACK_SECRET,
                    "users": {"U0LEAD": {"principal": "slack/lead", "groups": ["leads"]}},
                },
            },
        )
        self.http = httpx.Client(base_url=self.stack.url, timeout=30)
        # Every SDK client made here is closed with the rest: one left to the garbage
        # collector leaks its socket into whichever test runs then (ResourceWarning: error).
        self._clients: list[anthropic.Anthropic] = []

    def token(self, subject: str, *groups: str) -> str:
        return self.stack.token(subject, claims={"groups": list(groups)})

    def client(self, subject: str, *groups: str, **options: Any) -> anthropic.Anthropic:
        options.setdefault("max_retries", 0)
        options.setdefault("timeout", 30)  # a test that fails is not held for the review's life
        made = anthropic.Anthropic(
            base_url=self.stack.url, auth_token=self.token(subject, *groups), **options
        )
        self._clients.append(made)
        return made

    def api(self, method: str, path: str, token: str, body: Any = None) -> httpx.Response:
        return self.http.request(
            method, API + path, headers={"authorization": f"Bearer {token}"}, json=body
        )

    def pending_for(self, requester: str, timeout: float = 10) -> str:
        """The id of the requester's newest pending review, once it exists (the demo issuer's
        subject ``x`` is the principal ``demo/x``)."""
        token = self.token("lead", *LEADS)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.api("GET", f"?state=pending&requester=demo/{requester}", token).json()
            if found["reviews"]:
                return str(found["reviews"][0]["id"])
            time.sleep(0.05)
        raise AssertionError(f"no pending review for {requester}")

    def cli(self, *args: str, token: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ztgate", "reviews", *args],
            env={**os.environ, "ZTGATE_URL": self.stack.url, "ZTGATE_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def upstream_calls(self) -> int:
        return len(self.stack.received("/v1/messages"))

    def close(self) -> None:
        for made in self._clients:
            made.close()
        self.http.close()
        self.receiver.close()
        self.stack.close()


@pytest.fixture(scope="module")
def reviews() -> Iterator[Reviews]:
    running = Reviews()
    yield running
    running.close()


@pytest.fixture
def background() -> Iterator[Callable[..., Future[Any]]]:
    with ThreadPoolExecutor(4) as pool:
        yield pool.submit


def ask(client: anthropic.Anthropic, model: str = OPUS, text: str = "hello", **params: Any) -> Any:
    return client.messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": text}], **params
    )


def streamed(client: anthropic.Anthropic, text: str) -> list[str]:
    with client.messages.stream(
        model=OPUS, max_tokens=64, messages=[{"role": "user", "content": text}]
    ) as stream:
        return [event.type for event in stream]


def review_id_of(error: anthropic.APIStatusError) -> str:
    return error.response.headers["ztgate-review-id"]


# -- hold --------------------------------------------------------------------------------------


def test_a_held_stream_runs_once_approved_through_the_cli(
    reviews: Reviews, background: Callable[..., Future[Any]]
) -> None:
    client = reviews.client("alice")
    before = reviews.upstream_calls()
    running = background(streamed, client, "a held stream")
    review_id = reviews.pending_for("alice")
    time.sleep(1)  # the stream waits, with its headers sent and pings going
    assert not running.done()
    assert reviews.upstream_calls() == before
    own = reviews.cli("approve", review_id, "--reason", "mine", token=reviews.token("alice"))
    assert own.returncode == 1
    assert "a requester never decides their own request" in own.stderr
    done = reviews.cli(
        "approve", review_id, "--reason", "OPS-12", token=reviews.token("lead", *LEADS)
    )
    assert done.returncode == 0, done.stderr
    assert ["state", "approved"] in [line.split() for line in done.stdout.splitlines()]
    events = running.result(timeout=20)
    assert events[0] == "message_start"
    assert events[-1] == "message_stop"
    assert reviews.upstream_calls() == before + 1
    shown = reviews.cli("show", review_id, "--json", token=reviews.token("lead", *LEADS))
    document = orjson.loads(shown.stdout)
    assert document["state"] == "executed"
    assert [(d["by"], d["verdict"], d["reason"]) for d in document["decisions"]] == [
        ("demo/lead", "approve", "OPS-12")
    ]


def test_a_denied_held_stream_ends_with_an_error_event(
    reviews: Reviews, background: Callable[..., Future[Any]]
) -> None:
    client = reviews.client("bob")
    before = reviews.upstream_calls()
    running = background(streamed, client, "a stream to deny")
    review_id = reviews.pending_for("bob")
    answer = reviews.api(
        "POST", f"/{review_id}/deny", reviews.token("lead", *LEADS), {"reason": "not now"}
    )
    assert answer.status_code == 200, answer.text
    with pytest.raises(anthropic.APIStatusError) as info:
        running.result(timeout=20)
    body = info.value.body
    assert isinstance(body, dict)
    assert body["error"]["type"] == "permission_error"
    assert body["error"]["message"] == f"review {review_id} was denied by demo/lead: not now"
    assert reviews.upstream_calls() == before


def test_a_held_request_that_is_not_streamed_times_out_with_its_review_id(
    reviews: Reviews,
) -> None:
    client = reviews.client("carol")
    started = time.monotonic()
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        ask(client, text="not streamed")
    assert 1.5 < time.monotonic() - started < 10  # reviews.hold_timeout: 2s
    review_id = review_id_of(info.value)
    assert info.value.response.headers["ztgate-review-url"].endswith(f"{API}/{review_id}")
    message = info.value.message
    assert f"waited for approval and is still pending: review {review_id}" in message
    assert "rule opus-needs-a-lead: Opus needs a lead's approval" in message
    # Still pending: the same request again waits on the same review, and runs once approved.
    token = reviews.token("lead", *LEADS)
    assert reviews.api("GET", f"/{review_id}", token).json()["state"] == "pending"
    reviews.api("POST", f"/{review_id}/approve", token, {"reason": "ok"})
    assert ask(client, text="not streamed").type == "message"
    assert reviews.api("GET", f"/{review_id}", token).json()["state"] == "executed"


def test_a_caller_that_leaves_and_comes_back_runs_once(
    reviews: Reviews, background: Callable[..., Future[Any]]
) -> None:
    """The client disconnects while held, then retries: one review, one upstream call."""
    impatient = reviews.client("dave", timeout=0.5)
    with pytest.raises(anthropic.APITimeoutError):
        ask(impatient, text="leave and return")
    review_id = reviews.pending_for("dave")
    before = reviews.upstream_calls()
    patient = background(ask, reviews.client("dave"), OPUS, "leave and return")
    time.sleep(0.3)
    reviews.api("POST", f"/{review_id}/approve", reviews.token("lead", *LEADS), {"reason": "k"})
    assert patient.result(timeout=20).type == "message"
    assert reviews.upstream_calls() == before + 1


def test_the_caller_may_choose_not_to_wait_where_the_rule_allows(reviews: Reviews) -> None:
    client = reviews.client("erin", default_headers={"ztgate-review-wait": "async"})
    started = time.monotonic()
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        ask(client, text="do not hold me")
    assert time.monotonic() - started < 1.5
    assert "needs approval: review rev_" in info.value.message
    # A rule that does not allow the choice holds whatever the header says (ci-sonnet is
    # async by rule: the header cannot make it hold either).
    ci = reviews.client("ci-job", "ci", default_headers={"ztgate-review-wait": "hold"})
    started = time.monotonic()
    with pytest.raises(anthropic.PermissionDeniedError):
        ask(ci, SONNET, "the rule decides")
    assert time.monotonic() - started < 1.5


def test_past_max_held_a_request_is_answered_as_async(
    reviews: Reviews, background: Callable[..., Future[Any]]
) -> None:
    """reviews.max_held (3 here): held requests keep connections and memory; past the limit
    the caller gets its review id at once instead, and nothing is lost."""
    client = reviews.client("frank")
    held = [background(streamed, client, f"held {n}") for n in range(3)]
    lead = reviews.token("lead", *LEADS)
    deadline = time.monotonic() + 10
    while (
        len(reviews.api("GET", "?state=pending&requester=demo/frank", lead).json()["reviews"]) < 3
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        streamed(client, "one too many")
    # Answered without waiting: a held request that timed out says it "waited for approval".
    assert "needs approval: review rev_" in info.value.message
    for review in reviews.api("GET", "?state=pending&requester=demo/frank", lead).json()["reviews"]:
        reviews.api("POST", f"/{review['id']}/deny", lead, {"reason": "clean up"})
    for future in held:
        with pytest.raises(anthropic.APIStatusError):
            future.result(timeout=20)


def test_a_requester_cannot_flood_approvers(reviews: Reviews) -> None:
    """reviews.max_pending_per_requester (4 here): the fifth pending review is refused, 429."""
    client = reviews.client("ci-flood", "ci")
    for n in range(4):
        with pytest.raises(anthropic.PermissionDeniedError):
            ask(client, SONNET, f"flood {n}")
    with pytest.raises(anthropic.RateLimitError) as info:
        ask(client, SONNET, "flood 4")
    assert "demo/ci-flood has 4 reviews waiting already" in info.value.message
    # The same request again is no new review: it still answers with its own.
    with pytest.raises(anthropic.PermissionDeniedError):
        ask(client, SONNET, "flood 0")


# -- async -------------------------------------------------------------------------------------


def test_the_async_flow_runs_an_approved_request_once_then_asks_again(reviews: Reviews) -> None:
    client = reviews.client("ci-build-7", "ci")
    before = reviews.upstream_calls()
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        ask(client, SONNET, "summarize the build log")
    review_id = review_id_of(info.value)
    assert f"this request needs approval: review {review_id} (rule ci-sonnet: " in (
        info.value.message
    )
    assert f"`ztgate reviews approve {review_id}`" in info.value.message
    # The CI job blocks on the review while a lead approves it.
    job = reviews.token("ci-build-7", "ci")
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(reviews.cli, "wait", review_id, "--interval", "0.2", token=job)
        time.sleep(1)
        lead = reviews.token("lead", *LEADS)
        reviews.api("POST", f"/{review_id}/approve", lead, {"reason": "build logs are fine"})
        waited = waiting.result(timeout=30)
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.startswith(f"review {review_id} is approved (approve by demo/lead")
    assert ask(client, SONNET, "summarize the build log").type == "message"
    assert reviews.upstream_calls() == before + 1
    with pytest.raises(anthropic.PermissionDeniedError) as again:
        ask(client, SONNET, "summarize the build log")
    assert review_id_of(again.value) != review_id
    assert reviews.upstream_calls() == before + 1
    # `wait` on a review that has run says so, and exits 1.
    ran = reviews.cli("wait", review_id, token=job)
    assert (ran.returncode, ran.stdout.split(" (")[0]) == (1, f"review {review_id} is executed")


def test_wait_gives_up_after_its_timeout(reviews: Reviews) -> None:
    client = reviews.client("ci-build-8", "ci")
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        ask(client, SONNET, "never approved")
    review_id = review_id_of(info.value)
    token = reviews.token("ci-build-8", "ci")
    waited = reviews.cli("wait", review_id, "--timeout", "1", "--interval", "0.2", token=token)
    assert waited.returncode == 2
    assert f"review {review_id} is still pending after 1 s" in waited.stderr


def test_a_grant_window_lets_the_same_kind_of_request_through(reviews: Reviews) -> None:
    client = reviews.client("agents-triage", "agents")
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        ask(client, HAIKU, "triage ticket 1")
    lead = reviews.token("lead", *LEADS)
    reviews.api("POST", f"/{review_id_of(info.value)}/approve", lead, {"reason": "for today"})
    before = reviews.upstream_calls()
    for n in range(2, 5):  # other prompts, the same rule, model and tools
        assert ask(client, HAIKU, f"triage ticket {n}").type == "message"
    assert reviews.upstream_calls() == before + 3
    # Another identity is not covered.
    with pytest.raises(anthropic.PermissionDeniedError):
        ask(reviews.client("agents-other", "agents"), HAIKU, "triage ticket 5")


# -- who decides -------------------------------------------------------------------------------


def _opened(reviews: Reviews, subject: str, *groups: str, text: str) -> str:
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        ask(reviews.client(subject, *groups), HAIKU, text)
    return review_id_of(info.value)


def _refused(answer: httpx.Response, status: int, message: str) -> None:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["type"] == "error"
    assert message in body["error"]["message"]


def test_refusals_each_say_why(reviews: Reviews) -> None:
    review_id = _opened(reviews, "vault-reader", "vault", text="open the vault")
    own = reviews.token("vault-reader", "vault", "leads")
    stranger = reviews.token("stranger", "developers")
    lead = reviews.token("lead", *LEADS)
    _refused(
        reviews.api("POST", f"/{review_id}/approve", own, {"reason": "me"}),
        403,
        "a requester never decides their own request",
    )
    _refused(
        reviews.api("POST", f"/{review_id}/approve", stranger, {"reason": "me"}),
        403,
        "only members of leads, security decide",
    )
    # Neither may a stranger see it, nor the requester approve it by way of another group.
    _refused(reviews.api("GET", f"/{review_id}", stranger), 404, f"there is no review {review_id}")
    _refused(reviews.api("POST", f"/{review_id}/approve", lead, {}), 400, "say why")
    half = reviews.api("POST", f"/{review_id}/approve", lead, {"reason": "one of two"})
    assert half.json()["state"] == "pending"  # require: all (leads and security)
    _refused(
        reviews.api("POST", f"/{review_id}/approve", lead, {"reason": "again"}),
        400,
        "has decided on it already",
    )
    time.sleep(3.2)  # expires: 3s
    security = reviews.token("sec", "security")
    _refused(
        reviews.api("POST", f"/{review_id}/approve", security, {"reason": "late"}),
        400,
        "has expired and can no longer be decided",
    )


def test_an_approval_does_not_cover_a_changed_body(reviews: Reviews) -> None:
    client = reviews.client("ci-build-9", "ci")
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        ask(client, SONNET, "deploy to staging")
    review_id = review_id_of(info.value)
    lead = reviews.token("lead", *LEADS)
    reviews.api("POST", f"/{review_id}/approve", lead, {"reason": "staging is fine"})
    before = reviews.upstream_calls()
    for changed in (
        {"text": "deploy to production"},
        {"text": "deploy to staging", "max_tokens": 65},
        {"text": "deploy to staging", "system": "ignore the reviewer"},
    ):
        text = changed.pop("text")
        params = {"max_tokens": 64, **changed}
        with pytest.raises(anthropic.PermissionDeniedError) as other:
            client.messages.create(
                model=SONNET, messages=[{"role": "user", "content": text}], **params
            )
        assert review_id_of(other.value) != review_id
    assert reviews.upstream_calls() == before
    assert reviews.api("GET", f"/{review_id}", lead).json()["state"] == "approved"
    assert ask(client, SONNET, "deploy to staging").type == "message"  # the approved one
    assert reviews.upstream_calls() == before + 1


def test_a_cancelled_review_cannot_be_approved(reviews: Reviews) -> None:
    review_id = _opened(reviews, "vault-writer", "vault", text="cancel me")
    mine = reviews.token("vault-writer", "vault")
    cancelled = reviews.api("POST", f"/{review_id}/cancel", mine, {"reason": "not needed"})
    assert cancelled.json()["state"] == "cancelled"
    _refused(
        reviews.api(
            "POST", f"/{review_id}/approve", reviews.token("lead", *LEADS), {"reason": "x"}
        ),
        400,
        "is cancelled: it takes no decision",
    )


# -- notifications -----------------------------------------------------------------------------


def test_the_webhook_is_signed_and_carries_no_value_inspection_found(reviews: Reviews) -> None:
    secret_prompt = f"deploy with key {AWS_KEY} and mail {EMAIL} the result"
    review_id = _opened(reviews, "agents-mailer", "agents", text=secret_prompt)
    headers, body = reviews.receiver.for_review(review_id)
    signature = headers["ztgate-signature"]
    assert notify.verify(WEBHOOK_SECRET.encode(), signature, body, now=time.time())
    assert not notify.verify(WEBHOOK_SECRET.encode(), signature, body + b" ", now=time.time())
    assert not notify.verify(WEBHOOK_SECRET.encode(), signature, body, now=time.time() + 301)
    assert AWS_KEY.encode() not in body
    assert EMAIL.encode() not in body
    assert b"jane" not in body.lower()
    payload = orjson.loads(body)
    assert payload["type"] == "review.pending"
    summary = payload["review"]["summary"]
    assert "[REDACTED:" in summary["prompt_excerpt"]
    assert summary["model"] == HAIKU
    assert payload["review"]["url"].endswith(f"{API}/{review_id}")


def _slack_click(verdict: str, review_id: str, user: str = "U0LEAD") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user},
        "actions": [{"action_id": f"ztgate_{verdict}", "value": review_id}],
    }
    return urlencode({"payload": orjson.dumps(payload).decode()}).encode()


def _slack_post(
    reviews: Reviews, body: bytes, *, at: int | None = None, secret: str = SLACK_SECRET
) -> httpx.Response:
    stamp = str(at if at is not None else int(time.time()))
    signature = (
        "v0="
        + hmac.new(
            secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256
        ).hexdigest()
    )
    return reviews.http.post(
        f"{API}/slack",
        content=body,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": stamp,
            "x-slack-signature": signature,
        },
    )


def test_slack_clicks_count_only_when_slack_signed_them_just_now(reviews: Reviews) -> None:
    review_id = _opened(reviews, "agents-slacker", "agents", text="approve me from slack")
    click = _slack_click("approve", review_id)
    _refused(_slack_post(reviews, click, secret="forged-secret"), 401, "Slack signature")
    _refused(_slack_post(reviews, click, at=int(time.time()) - 600), 401, "too old")
    _refused(
        _slack_post(reviews, _slack_click("approve", review_id, user="U0NOBODY")),
        401,
        "not named under reviews.slack.users",
    )
    lead = reviews.token("lead", *LEADS)
    assert reviews.api("GET", f"/{review_id}", lead).json()["state"] == "pending"
    answer = _slack_post(reviews, click)
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == f"Review {review_id} is approved."
    decided = reviews.api("GET", f"/{review_id}", lead).json()
    assert [(d["by"], d["reason"]) for d in decided["decisions"]] == [
        ("slack/lead", "via Slack (U0LEAD)")
    ]
    # The same click again (a replay within the window) decides nothing more.
    _refused(_slack_post(reviews, click), 400, "it takes no decision")


# -- the audit ---------------------------------------------------------------------------------


def test_the_audit_shows_who_approved_what(reviews: Reviews, tmp_path: Path) -> None:
    client = reviews.client("ci-audited", "ci")
    with pytest.raises(anthropic.PermissionDeniedError) as info:
        ask(client, SONNET, "audit me")
    review_id = review_id_of(info.value)
    lead = reviews.token("lead", *LEADS)
    reviews.api("POST", f"/{review_id}/approve", lead, {"reason": "audited"})
    ask(client, SONNET, "audit me")
    # The admin API ...
    answer = reviews.http.get(
        "/ztgate/api/v1/audit/events",
        params={"kind": "review", "limit": "1000"},
        headers={"authorization": f"Bearer {reviews.token('demo/auditor', 'auditors')}"},
    )
    assert answer.status_code == 200, answer.text
    mine = [e for e in answer.json()["events"] if e["data"]["review_id"] == review_id]
    assert [(e["data"]["action"], e["principal"]) for e in reversed(mine)] == [
        ("created", "demo/ci-audited"),
        ("approve", "demo/lead"),
        ("executed", "demo/ci-audited"),
    ]
    assert mine[1]["data"]["reason"] == "audited"
    assert mine[-1]["request_id"] == info.value.response.headers["request-id"]
    # ... and `ztgate audit search`.
    config = tmp_path / "ztgate.yaml"
    reviews.stack.stack.write_config(config)
    command = ["audit", "search", "--config", str(config), "--kind", "review"]
    search = subprocess.run(
        [sys.executable, "-m", "ztgate", *command, "--principal", "demo/lead"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert search.returncode == 0, search.stderr
    line = next(line for line in search.stdout.splitlines() if review_id in line)
    assert line.split()[3:7] == ["demo/lead", "review", "approve", review_id]
