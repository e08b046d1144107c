"""Faults, each with what the caller sees and what the audit records (docs/reliability.md,
"Faults"): the gateway's clock off the IdP's, a JWKS endpoint serving garbage, Redis slow rather
than down, PostgreSQL failing over mid-transaction, a full disk (recordings first), and an
upstream that resets, truncates, stalls or speaks garbage, seen from the audit.

Every dependency a test breaks is its own: a private redis-server behind a proxy of the test's,
a fresh PostgreSQL database reached through a proxy of the test's (the machine's PostgreSQL and
Redis are never stopped), a tmpfs mounted for the test.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.audit.store.backends import postgres_database
from tests.processes import free_port
from tests.redis_server import PrivateRedis
from tests.reliability.faults import (
    BackgroundLoop,
    JwksServer,
    MisbehavingUpstream,
    TcpProxy,
    fill,
    tmpfs,
    wait_for,
)
from tests.stackrunner import RunningStack
from ztgate.audit.chain import verify_chain_async
from ztgate.audit.events import AuditQuery, StoredEvent
from ztgate.audit.signing import SigningKey, public_keys
from ztgate.audit.store.factory import open_store
from ztgate.devtools.issuer import DevIssuer

MODEL = "claude-haiku-4-5"
AUDIT_REFUSAL = "the audit store cannot record this request, so it was not forwarded"
NOT_READY_KEYS = "no signing keys loaded yet from an identity provider (see the log)"


# -- talking to a gateway and reading its audit


def ask(
    url: str,
    token: str,
    content: str = "hi",
    *,
    model: str = MODEL,
    stream: bool = False,
    client: httpx.Client | None = None,
) -> httpx.Response:
    body = {
        "model": model,
        "max_tokens": 8,
        "stream": stream,
        "messages": [{"role": "user", "content": content}],
    }
    headers = {"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    if client is not None:
        return client.post(url + "/v1/messages", json=body, headers=headers)
    return httpx.post(url + "/v1/messages", json=body, headers=headers, timeout=30)


def timed(url: str, token: str, content: str = "hi") -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = ask(url, token, content)
    return response, time.monotonic() - started


def error_of(response: httpx.Response) -> tuple[str, str]:
    error = response.json()["error"]
    return error["type"], error["message"]


def audit_of(running: RunningStack, request_id: str, *, outcome: bool = True) -> dict[str, Any]:
    """A request's events, by kind (``request``, ``outcome``), from the running gateway's own
    store; with ``outcome``, waits for the outcome (written a moment after the answer)."""
    store = running.stack.gateway.audit.store

    def read() -> dict[str, Any]:
        found = running.run(store.search(AuditQuery(request_id=request_id, limit=20)))
        return {event.kind: event.data() for event in reversed(found)}

    def finished() -> dict[str, Any] | None:
        events = read()
        return events if "outcome" in events else None

    return wait_for(finished) if outcome else read()


def audit_events(running: RunningStack, kind: str) -> list[dict[str, Any]]:
    store = running.stack.gateway.audit.store
    found = running.run(store.search(AuditQuery(kinds=(kind,), limit=10_000)))
    return [event.data() for event in found]


def ready(url: str) -> httpx.Response:
    return httpx.get(url + "/readyz", timeout=10)


def metric(port: int, name: str, **labels: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def metrics_section(port: int) -> dict[str, Any]:
    return {"enabled": True, "listen": f"127.0.0.1:{port}"}


@pytest.fixture
def idp() -> Iterator[DevIssuer]:
    """An IdP of the test's own (its URL is in the gateway's config before the gateway starts)."""
    background = BackgroundLoop()
    issuer = DevIssuer()
    background.run(issuer.start())
    yield issuer
    background.run(issuer.stop())
    background.close()


def trusting(idp: DevIssuer, **settings: Any) -> dict[str, Any]:
    """An identity section trusting ``idp`` only, as issuer "demo"."""
    return {
        "issuers": [{"name": "demo", "issuer": idp.base_url, "audiences": ["ztgate"], **settings}]
    }


# -- clock skew on the gateway


def test_clock_skew_within_clock_skew_passes_beyond_it_is_401_and_audited(idp: DevIssuer) -> None:
    """The gateway's clock against the IdP's: what matters is how the token's iat, nbf and exp
    read on the gateway's clock, so tokens minted as by an IdP whose clock is ``shift`` seconds
    off are the same fault as a gateway running that far off (no fake clock needed)."""
    running = RunningStack(identity=trusting(idp, clock_skew="30s"))
    try:

        def minted(shift: float, ttl: int = 300, not_before: float = 0) -> str:
            at = int(time.time() + shift)  # the IdP's clock reads `shift` s ahead of ours
            claims = {"iat": at, "nbf": at + int(not_before), "exp": at + ttl}
            return idp.mint("svc/skewed", claims=claims)

        cases = [
            (minted(20), 200, None),  # the gateway 20 s behind the IdP: within clock_skew
            (minted(45), 401, "token issued in the future"),  # 45 s behind: beyond it
            (minted(-320), 200, None),  # 320 s ahead, a 300 s token: expired 20 s ago
            (minted(-345), 401, "token expired"),  # expired 45 s ago by the gateway's clock
            (minted(0, not_before=45), 401, "token not yet valid"),  # nbf beyond the skew
        ]
        for token, status, message in cases:
            response = ask(running.url, token)
            assert response.status_code == status, (message, response.text)
            events = audit_of(running, response.headers["ztgate-request-id"])
            assert events["outcome"]["status"] == status
            if message is None:
                assert events["request"]["principal"] == "demo/svc/skewed"
                continue
            assert error_of(response) == ("authentication_error", message)
            # Refused before anything else: recorded, with no principal and no token.
            assert events["request"]["principal"] is None
            assert events["request"]["decision"] is None
            assert events["outcome"]["error_type"] == "authentication_error"
            assert events["outcome"]["upstream_status"] is None
            assert token not in str(events)
        assert len(running.received()) == 2  # only the two accepted went upstream
    finally:
        running.close()


# -- a JWKS endpoint serving garbage

HUGE = b'{"keys": [' + b" " * (2 << 20) + b"]}"  # 2 MiB: over the 1 MiB a JWKS may have


def a_refresh_of_what_is_served(jwks: JwksServer) -> Callable[[], bool]:
    """True once a refresh has fetched, and finished with, what is served from now on: the
    fetch after the next began once that one was done (refreshes run one after another)."""
    since = jwks.fetched()
    return lambda: jwks.fetched() >= since + 2


def test_jwks_garbage_keeps_the_last_good_keys_until_stale_and_is_recorded(idp: DevIssuer) -> None:
    jwks = JwksServer()
    jwks.serve(b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
    metrics_port = free_port()
    running = RunningStack(
        identity=trusting(
            idp,
            jwks_uri=jwks.url,
            key_refresh_interval="200ms",
            key_refetch_min_interval="1s",
            key_max_staleness="5s",
        ),
        metrics=metrics_section(metrics_port),
    )
    try:
        verifier = running.stack.gateway.verifier

        def last_error() -> str:
            return str(verifier.status()["demo"]["last_error"] or "")

        # A gateway that never got keys: not ready, and callers are told to come back.
        not_ready = ready(running.url)
        assert not_ready.status_code == 503
        assert not_ready.json()["reasons"] == [NOT_READY_KEYS]
        refused = ask(running.url, idp.mint("svc/early"))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"  # key_refetch_min_interval
        assert error_of(refused) == (
            "api_error",
            "signing keys for issuer 'demo' are not available yet",
        )
        assert audit_of(running, refused.headers["ztgate-request-id"])["outcome"]["status"] == 503

        jwks.serve_json(idp.jwks())  # the IdP's keys arrive: ready at the next refresh
        wait_for(lambda: ready(running.url).status_code == 200)
        assert ask(running.url, idp.mint("svc/first")).status_code == 200

        # Garbage while it runs: each refresh fails, the last good keys keep serving tokens
        # never seen before, and the gateway stays ready.
        public = idp.jwks()["keys"][0]
        wrong_keys = {
            "keys": [
                {"kty": "oct", "k": "c2hhcmVkLXNlY3JldA", "kid": public["kid"]},  # HS confusion
                {**public, "use": "enc"},
                {**public, "d": "bGVha2VkIHByaXZhdGUga2V5"},  # a private key, published
                {**public, "x": "bm90IGEgcG9pbnQ"},  # not a point on the curve
            ]
        }
        garbage: list[tuple[bytes, str, int, str]] = [
            (b"<html>maintenance</html>", "text/html", 200, "did not return JSON"),
            (orjson.dumps(idp.jwks())[:40], "application/json", 200, "did not return JSON"),
            (b'{"issuer": "not a key set"}', "application/json", 200, "has no 'keys' list"),
            (orjson.dumps(wrong_keys), "application/json", 200, "holds no usable public"),
            (HUGE, "application/json", 200, ""),  # the message: see the size test below
            (b"oops", "text/plain", 500, "answered 500"),
        ]
        for body, content_type, status, expected in garbage:
            refreshed = a_refresh_of_what_is_served(jwks)
            jwks.serve(body, content_type, status)
            wait_for(refreshed)
            assert last_error(), expected
            assert expected in last_error(), (expected, last_error())
            fresh = ask(running.url, idp.mint(f"svc/{len(body)}"))
            assert fresh.status_code == 200, (expected, fresh.text)
            assert ready(running.url).status_code == 200

        # Past key_max_staleness without a good refresh: no keys, 503 and not ready.
        wait_for(lambda: ready(running.url).status_code == 503, timeout=15)
        assert ready(running.url).json()["reasons"] == [NOT_READY_KEYS]
        stale = ask(running.url, idp.mint("svc/stale"))
        assert stale.status_code == 503
        assert stale.headers["retry-after"] == "1"
        assert "signing keys for issuer 'demo' are not available yet" in error_of(stale)[1]
        stale_events = audit_of(running, stale.headers["ztgate-request-id"])
        assert stale_events["outcome"]["status"] == 503
        assert stale_events["request"]["principal"] is None

        jwks.serve_json(idp.jwks())  # good keys again: back at the next refresh
        wait_for(lambda: ready(running.url).status_code == 200)
        assert ask(running.url, idp.mint("svc/after")).status_code == 200

        failures = audit_events(running, "key_refresh_failure")
        assert {f["issuer"] for f in failures} == {"demo"}
        for *_, expected in garbage:
            assert any(expected in f["error"] for f in failures), expected
        assert len(failures) >= 2 * len(garbage)
        assert metric(metrics_port, "ztgate_key_refresh_failures_total", issuer="demo") >= len(
            failures
        )
    finally:
        running.close()
        jwks.close()


def test_a_jwks_is_read_whole_up_to_its_size_limit(idp: DevIssuer) -> None:
    """The JWKS document is read to its end (src/ztgate/identity/keys.py): one
    ``read(limit + 1)``, as it once was, returns what has arrived so far, so a valid key set
    that comes in more than one piece (300 KB here; over TLS or from a proxy that flushes
    early, much less) was refused as "not JSON", and the size limit was never what refused a
    huge one."""
    jwks = JwksServer()
    padded = {**idp.jwks(), "padding": "x" * 300_000}  # unknown members are ignored
    jwks.serve_json(padded)
    running = RunningStack(identity=trusting(idp, jwks_uri=jwks.url, key_refresh_interval="200ms"))
    try:
        verifier = running.stack.gateway.verifier
        wait_for(a_refresh_of_what_is_served(jwks))
        refreshed = a_refresh_of_what_is_served(jwks)
        jwks.serve(HUGE)
        wait_for(refreshed)
        huge_error = verifier.status()["demo"]["last_error"]
        failures = [f["error"] for f in audit_events(running, "key_refresh_failure")]
        keys_loaded = verifier.status()["demo"]["keys"]
    finally:
        running.close()
        jwks.close()
    assert not any("/jwks did not return JSON" in error for error in failures), failures
    assert keys_loaded == 1
    assert huge_error is not None
    assert huge_error.endswith("returned more than 1048576 bytes"), huge_error


# -- Redis slow rather than down

COUNTED = {
    "default": "deny",
    "rules": [{"id": "counted", "effect": "allow", "limits": {"requests_per_minute": 1000}}],
}


@pytest.fixture
def slow_redis(redis_server: PrivateRedis) -> Iterator[tuple[RunningStack, TcpProxy, PrivateRedis]]:
    """A gateway counting quotas in a private Redis, through a proxy that can make it slow."""
    proxy = TcpProxy(redis_server.port)
    running = RunningStack(
        quotas={"redis_url": f"redis://127.0.0.1:{proxy.port}/0"}, policy=COUNTED
    )
    try:
        yield running, proxy, redis_server
    finally:
        running.close()
        proxy.close()


def counted(server: PrivateRedis) -> int:
    """Every quota counter in Redis, added up."""
    client = redis.Redis(port=server.port)
    try:
        return sum(int(client.get(key) or 0) for key in client.scan_iter("ztgate:quota:*"))
    finally:
        client.close()


def test_a_slow_redis_answers_slower_then_refuses_with_503_and_recovers(
    slow_redis: tuple[RunningStack, TcpProxy, PrivateRedis],
) -> None:
    running, proxy, server = slow_redis
    token = running.token("demo/counted")
    response, _ = timed(running.url, token)
    assert response.status_code == 200

    proxy.delay = 0.5  # slow, within redis-py's 2 s socket timeout: slower answers
    response, took = timed(running.url, token)
    assert response.status_code == 200
    assert took >= 0.5

    proxy.delay = 3.0  # slower than the socket timeout: refused, nothing upstream
    before = len(running.received())
    refused, took = timed(running.url, token)
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"
    assert error_of(refused) == (
        "api_error",
        "the shared state (Redis) is unavailable; requests are refused until it is back",
    )
    assert len(running.received()) == before
    events = audit_of(running, refused.headers["ztgate-request-id"])
    assert events["request"]["decision"]["rule_ids"] == ["counted"]
    assert events["outcome"]["status"] == 503
    assert events["outcome"]["upstream_status"] is None
    # The increment reached Redis, only its reply came late: the refused request is counted
    # (fail closed: a budget may be over-counted, never under-counted).
    assert counted(server) >= 3

    proxy.delay = 0.0  # the delay goes: service is back with the next request
    response, took = timed(running.url, token)
    assert response.status_code == 200
    assert took < 1.0
    assert len(running.received()) == before + 1


def test_a_slow_redis_costs_a_caller_one_socket_timeout_not_two(
    slow_redis: tuple[RunningStack, TcpProxy, PrivateRedis],
) -> None:
    """src/ztgate/shared/redis.py retries broken connections only: redis-py's Retry also
    retries timeouts by default, which held each caller of a slow Redis for 2 x 2 s."""
    running, proxy, _ = slow_redis
    token = running.token("demo/waiting")
    assert ask(running.url, token).status_code == 200
    proxy.delay = 3.0
    refused, took = timed(running.url, token)
    assert refused.status_code == 503
    assert took < 3.0, f"the caller waited {took:.1f} s for a 2 s socket timeout"


# -- PostgreSQL failover: connections reset mid-transaction

# asyncpg commits with a simple query: 'Q', its length (4 + 7), "COMMIT\0".
COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"


def test_postgres_failover_mid_transaction_refuses_then_resumes_with_a_whole_chain() -> None:
    key = SigningKey.generate()
    with postgres_database() as url:
        proxy = TcpProxy(5432)
        through = f"postgresql://postgres@127.0.0.1:{proxy.port}/{url.rsplit('/', 1)[1]}"
        running = RunningStack(
            store={"url": through + "?sslmode=disable"},  # plain, so the proxy sees COMMIT
            audit={"signing_key": key.private_pem().decode(), "checkpoint_every": 50},
        )
        try:
            token = running.token("demo/loaded")
            results: list[tuple[str, int, str, httpx.Headers, str]] = []
            stop = threading.Event()

            def load(worker: int) -> None:
                with httpx.Client(timeout=30) as client:
                    for number in range(100_000):
                        if stop.is_set():
                            return
                        marker = f"load-{worker}-{number}"
                        response = ask(running.url, token, marker, client=client)
                        request_id = response.headers["ztgate-request-id"]
                        results.append(
                            (marker, response.status_code, request_id, response.headers,
                             response.text)
                        )  # fmt: skip

            workers = [threading.Thread(target=load, args=(n,)) for n in range(6)]
            for worker in workers:
                worker.start()
            wait_for(lambda: len(results) >= 100)
            # The failover: transactions cut before their COMMIT reached the server (rolled
            # back) and after it did (committed, but the answer lost), then every connection
            # reset at once, twice.
            proxy.cut(COMMIT, "before", 2)
            wait_for(lambda: proxy.pending_cuts() == 0)
            proxy.cut(COMMIT, "after", 2)
            wait_for(lambda: proxy.pending_cuts() == 0)
            for _ in range(2):
                time.sleep(0.3)
                assert proxy.reset_all() > 0
            time.sleep(0.5)
            stop.set()
            for worker in workers:
                worker.join(30)
            statuses = collections.Counter(status for _, status, *_ in results)
            assert set(statuses) == {200, 503}, statuses
            for _, status, _, headers, text in results:
                if status == 503:
                    assert orjson.loads(text)["error"]["message"] == AUDIT_REFUSAL
                    assert headers["retry-after"]
            # Service resumes at once.
            assert [ask(running.url, token).status_code for _ in range(5)] == [200] * 5
            upstream = {r.json()["messages"][0]["content"] for r in running.received()}
        finally:
            running.close()
            proxy.close()

        async def read() -> tuple[list[StoredEvent], Any]:
            store = open_store(url)
            try:
                events = [event async for event in store.events()]
                report = await verify_chain_async(
                    store.events(), await store.checkpoints(), public_keys([key.public_pem()])
                )
                return events, report
            finally:
                await store.close()

        events, report = asyncio.run(read())
    assert report.ok, report.problem
    assert report.checkpoints >= 1
    kinds: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    requests: dict[str, int] = collections.Counter()
    for event in events:
        if event.request_id is not None:
            kinds[event.request_id].append({"kind": event.kind, **event.data()})
            requests[event.request_id] += event.kind == "request"
    answered = {marker: rid for marker, status, rid, *_ in results if status == 200}
    refused = {marker: rid for marker, status, rid, *_ in results if status == 503}
    # Every answered request was recorded before it went upstream, once.
    twice_or_never = {rid: requests[rid] for rid in answered.values() if requests[rid] != 1}
    assert not twice_or_never, (twice_or_never, {rid: kinds.get(rid) for rid in twice_or_never})
    # Nothing went upstream but answered requests: no refused one, none unrecorded.
    assert upstream - {"hi"} == set(answered)
    assert not upstream & set(refused)
    # A refusal, when recorded, says 503; a cut COMMIT that did commit leaves the request
    # event twice (the one committed unseen, then the refusal's own).
    for rid in refused.values():
        outcomes = [e["status"] for e in kinds.get(rid, []) if e["kind"] == "outcome"]
        assert outcomes in ([], [503]), (rid, kinds.get(rid))
        assert requests[rid] <= 2


# -- a full disk: recordings first


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[RunningStack, Path, int]]:
    """A gateway whose SQLite store (events, recordings, key) is on a 16 MiB tmpfs."""
    metrics_port = free_port()
    with tmpfs(tmp_path / "disk", "16m") as disk:
        running = RunningStack(
            store={"url": f"sqlite:///{disk}/audit.db"}, metrics=metrics_section(metrics_port)
        )
        try:
            token = running.token()
            for _ in range(3):
                assert ask(running.url, token).status_code == 200
            yield running, disk, metrics_port
        finally:
            running.close()


def recordings_of(running: RunningStack, request_id: str) -> int:
    """How many recordings a request has (its session is itself: no session header)."""
    store = running.stack.gateway.audit.store
    return len(running.run(store.recordings(request_id)))


BIG = "lorem ipsum " * (2 * 1024 * 1024 // 12)  # a request (so its recording) of 2 MiB


def logged(caplog: pytest.LogCaptureFixture, event: str) -> dict[str, dict[str, Any]]:
    """The log records of ``event``, by request id (their extra fields)."""
    return {
        str(getattr(record, "request_id", None)): record.__dict__
        for record in caplog.records
        if getattr(record, "event", None) == event
    }


def test_a_full_disk_drops_recordings_first_then_refuses_and_recovers(
    small_disk: tuple[RunningStack, Path, int], caplog: pytest.LogCaptureFixture
) -> None:
    running, disk, metrics_port = small_disk
    token = running.token()
    filler = fill(disk, leave=1024 * 1024)

    # Recordings only: a 2 MiB recording does not fit in 1 MiB; small events still do.
    big = ask(running.url, token, BIG)
    assert big.status_code == 200  # answered: its events were committed before and after
    big_id = big.headers["ztgate-request-id"]
    events = audit_of(running, big_id)
    assert events["request"]["bytes_in"] > 2 * 1024 * 1024
    assert events["outcome"]["status"] == 200
    time.sleep(0.3)  # its recording is stored (or not) alone, 50 ms after its outcome
    assert recordings_of(running, big_id) == 0  # dropped, with an error in the log
    lost = logged(caplog, "audit_recording_lost")
    assert lost[big_id]["no_room"] is True, lost
    assert big_id not in logged(caplog, "audit_outcome_lost")  # its outcome is kept
    small = ask(running.url, token)
    assert small.status_code == 200
    small_id = small.headers["ztgate-request-id"]
    assert audit_of(running, small_id)["outcome"]["status"] == 200
    wait_for(lambda: recordings_of(running, small_id) == 1)

    # The space the failed recording took stays in SQLite's WAL file; events use it up, and
    # then nothing fits: every request is refused, none goes upstream.
    statuses: list[int] = []
    with httpx.Client(timeout=30) as client:
        while statuses[-3:] != [503] * 3 and len(statuses) < 300:
            before = len(running.received())
            response = ask(running.url, token, client=client)
            statuses.append(response.status_code)
            if response.status_code == 503:
                assert error_of(response) == ("api_error", AUDIT_REFUSAL)
                assert response.headers["retry-after"] == "5"
                assert len(running.received()) == before
    assert statuses[-3:] == [503] * 3, statuses
    assert statuses[0] == 200
    assert set(statuses) == {200, 503}
    assert metric(metrics_port, "ztgate_audit_store_up") == 0
    assert metric(metrics_port, "ztgate_audit_store_failures_total") >= 3
    refused_id = response.headers["ztgate-request-id"]

    # Space comes back: so does service, at once, and the chain is whole.
    filler.unlink()
    assert ask(running.url, token).status_code == 200
    assert metric(metrics_port, "ztgate_audit_store_up") == 1
    assert audit_of(running, refused_id, outcome=False) == {}  # the refusal could not be kept
    report = running.run(running.stack.gateway.audit.verify())
    assert report.ok, report.problem


def test_a_recording_that_does_not_fit_fails_no_other_request(
    small_disk: tuple[RunningStack, Path, int], caplog: pytest.LogCaptureFixture
) -> None:
    """A recording waiting for its commit joins the next transaction of events; when the disk
    has no room for it, src/ztgate/audit/writer.py commits the events again without it.
    (Before, that whole transaction failed: a caller whose request event would have fit was
    refused with 503, and answered requests lost their outcome.) The lost recording is logged
    as such, not as a lost outcome."""
    running, disk, _ = small_disk
    token = running.token()
    fill(disk, leave=2 * 1024 * 1024)
    with httpx.Client(timeout=30) as client:
        big = ask(running.url, token, "lorem ipsum " * (3 * 1024 * 1024 // 12), client=client)
        # At once, as a busy gateway would: the big recording waits (50 ms) for a commit.
        after = [ask(running.url, token, client=client) for _ in range(8)]
    assert big.status_code == 200
    time.sleep(0.3)
    assert recordings_of(running, big.headers["ztgate-request-id"]) == 0  # it alone is dropped
    assert [r.status_code for r in after] == [200] * len(after)
    for response in [big, *after]:
        assert audit_of(running, response.headers["ztgate-request-id"])["outcome"]["status"] == 200
    # The recordings that rode with it are kept; the big one alone is lost, and logged so.
    for response in after:
        wait_for(lambda r=response: recordings_of(running, r.headers["ztgate-request-id"]) == 1)
    assert set(logged(caplog, "audit_recording_lost")) == {big.headers["ztgate-request-id"]}
    assert logged(caplog, "audit_outcome_lost") == {}


def test_a_full_disk_that_refuses_every_request_makes_the_gateway_not_ready(
    small_disk: tuple[RunningStack, Path, int],
) -> None:
    """The audit store's readiness check writes (a row of the ``health`` table, padded to
    what an append writes): a write transaction that wrote nothing, as /readyz once pinged
    with, is let through by a full disk."""
    running, disk, _ = small_disk
    token = running.token()
    filler = fill(disk, leave=0)
    # Requests, until one is refused (counted, not timed: a loaded machine is slower, not
    # different; SQLite may still find room in its WAL for a few requests' events).
    statuses: list[int] = []
    with httpx.Client(timeout=30) as client:
        while statuses[-1:] != [503] and len(statuses) < 300:
            statuses.append(ask(running.url, token, client=client).status_code)
    assert statuses[-1] == 503, statuses
    not_ready = ready(running.url)
    filler.unlink()
    assert ask(running.url, token).status_code == 200
    assert ready(running.url).status_code == 200
    assert not_ready.status_code == 503, (statuses, not_ready.text)
    assert not_ready.json()["reasons"] == ["the audit store cannot be written (see the log)"]


# -- an upstream that resets, truncates, stalls or speaks garbage, as the audit sees it


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[RunningStack]:
    upstream = MisbehavingUpstream()
    running = RunningStack(upstream={"url": upstream.url, "timeout": "1s"})
    yield running
    running.close()
    upstream.close()


@pytest.mark.parametrize(
    ("fault", "status", "error_type", "message", "upstream_status"),
    [
        ("reset", 502, "api_error", "upstream failed", None),
        ("truncate", 502, "api_error", "the upstream response broke off", 200),
        ("stall", 504, "timeout_error", "upstream sent nothing for 1 s", None),
        ("garbage", 502, "api_error", "upstream failed", None),
    ],
)
def test_an_upstream_failure_is_answered_and_recorded(
    misbehaving: RunningStack,
    fault: str,
    status: int,
    error_type: str,
    message: str,
    upstream_status: int | None,
) -> None:
    response = ask(misbehaving.url, misbehaving.token(), model=fault)
    assert response.status_code == status
    kind, text = error_of(response)
    assert kind == error_type
    assert text.startswith(message), text
    events = audit_of(misbehaving, response.headers["ztgate-request-id"])
    assert events["request"]["decision"]["effect"] == "allow"  # committed before it went up
    assert events["outcome"]["status"] == status
    assert events["outcome"]["error_type"] == error_type
    assert events["outcome"]["upstream_status"] == upstream_status


def test_a_stream_the_upstream_leaves_silent_ends_with_an_error_event_and_says_so(
    misbehaving: RunningStack,
) -> None:
    response = ask(misbehaving.url, misbehaving.token(), model="stream-stall", stream=True)
    assert response.status_code == 200  # the stream had started
    assert "event: message_start" in response.text
    last = response.text.strip().rsplit("\n\n", 1)[-1]
    assert last.startswith("event: error")
    error = orjson.loads(last.split("data: ", 1)[1])["error"]
    assert error == {"type": "timeout_error", "message": "the upstream stream went silent"}
    events = audit_of(misbehaving, response.headers["ztgate-request-id"])
    assert events["outcome"]["status"] == 200
    assert events["outcome"]["stream_end"] == "upstream_timeout"


@pytest.mark.parametrize(
    ("model", "error_type", "stream_end"),
    [
        ("sim-fail-midstream", "overloaded_error", "upstream_error_event"),
        ("sim-disconnect-midstream", "api_error", "upstream_broken"),
        ("sim-no-stop", "api_error", "upstream_incomplete"),
    ],
)
def test_a_stream_the_upstream_breaks_is_recorded_as_it_ended(
    stack: RunningStack, model: str, error_type: str, stream_end: str
) -> None:
    response = ask(stack.url, stack.token(), model=model, stream=True)
    assert response.status_code == 200
    last = response.text.strip().rsplit("\n\n", 1)[-1]
    assert orjson.loads(last.split("data: ", 1)[1])["error"]["type"] == error_type
    events = audit_of(stack, response.headers["ztgate-request-id"])
    assert events["outcome"]["status"] == 200
    assert events["outcome"]["stream_end"] == stream_end


def test_a_tmpfs_is_unmounted_even_when_the_test_fails(tmp_path: Path) -> None:
    """The tmpfs context unmounts even when its body fails."""
    with pytest.raises(RuntimeError), tmpfs(tmp_path / "disk", "1m"):
        raise RuntimeError("the body fails")
    mounts = Path("/proc/mounts").read_text()
    assert str(tmp_path / "disk") not in mounts
    assert os.path.isdir(tmp_path / "disk")
