"""Load and soak helpers (docs/reliability.md): the upstream simulator and ``ztgate serve`` as
processes of their own, mixed traffic and long streams from one asyncio client, samples of a
gateway process read from /proc and its metrics, and percentile tables.

Everything listens on loopback ports picked free. Every process started here logs to a file (a
pipe nobody reads fills up and stalls a process under load) and runs in a session of its own,
so that stopping it stops its children too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.processes import ZTGATE, free_port
from ztgate.audit.store.factory import open_store
from ztgate.devtools.simulator.api import DELTA_CHARS_HEADER
from ztgate.devtools.stack import SIMULATOR_KEY

EMAIL = "jane.doe@example.com"  # the mask policy redacts e-mail addresses, both ways
KINDS = ("plain", "stream", "masked", "denied")  # the mixed traffic, in equal parts
LONG = "long"  # a long stream: sim-slow-long, its events 50 ms apart (see Traffic)
EXPECTED = {"plain": 200, "stream": 200, "masked": 200, "denied": 403, LONG: 200}
UPSTREAM_IDLE = 64  # upstream.max_connections: idle keep-alive connections the gateway keeps


# -- processes ----------------------------------------------------------------------------------


class Child:
    """A process of the test's, its output in ``log``, in a session (process group) of its own."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                args,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self, timeout: float = 40) -> int | None:
        """SIGTERM and wait (a gateway drains its streams and outcomes), SIGKILL to its group
        after ``timeout``. Its exit status; None when it had to be killed."""
        if self.popen.poll() is not None:
            return self.popen.returncode
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(10)
            return None


def wait_until(ready: Callable[[], bool], child: Child, what: str, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.popen.poll() is not None:
            break
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not start:\n{child.tail()}")


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
        return int(response.status), bytes(response.read())


@dataclass
class Simulator:
    """``python -m ztgate.devtools.simulator``: the upstream, on a core of its own if it can."""

    child: Child
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def forget(self) -> None:
        """Drop what it has received so far (it keeps every request for tests to read)."""
        url = self.url + "/_simulator/received"
        request = urllib.request.Request(url, method="DELETE")  # noqa: S310 (loopback)
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310


@contextlib.contextmanager
def simulator(workdir: Path) -> Iterator[Simulator]:
    port = free_port()
    args = [sys.executable, "-m", "ztgate.devtools.simulator", "--port", str(port)]
    child = Child([*args, "--api-key", SIMULATOR_KEY], workdir / "simulator.log")
    try:
        running = Simulator(child, port)
        wait_until(
            lambda: http_get(running.url + "/_simulator/received")[0] == 200, child, "the simulator"
        )
        yield running
    finally:
        child.stop(10)


def gateway_config(
    port: int,
    metrics_port: int,
    issuer: str,
    upstream: str,
    store: str,
    *,
    redis_url: str | None = None,
    key_file: Path | None = None,
    token_cache_size: int = 100_000,
) -> str:
    """Everything on: inspection with a mask rule (e-mail redacted both ways), a deny rule
    (Opus), a quota counted on every request (never reached), the audit with recordings,
    metrics on a port of their own."""
    signing = f'  signing_key_file: "{key_file}"\n' if key_file else ""
    quotas = f'quotas:\n  redis_url: "{redis_url}"\n' if redis_url else ""
    return (
        f'listen: "127.0.0.1:{port}"\n'
        "upstream:\n"
        f'  url: "{upstream}"\n'
        '  api_key: "${SIM_KEY}"\n'
        f"  max_connections: {UPSTREAM_IDLE}\n"
        "identity:\n"
        f"  token_cache_size: {token_cache_size}\n"
        "  issuers:\n"
        "    - name: demo\n"
        f'      issuer: "{issuer}"\n'
        '      audiences: ["ztgate"]\n'
        "server:\n"
        "  graceful_shutdown: 30s\n"
        "store:\n"
        f'  url: "{store}"\n'
        "audit:\n"
        f"{signing}"
        "  recordings: {enabled: true}\n"
        "inspection: {enabled: true}\n"
        f'metrics: {{enabled: true, listen: "127.0.0.1:{metrics_port}"}}\n'
        f"{quotas}"
        "policy:\n"
        "  rules:\n"
        "    - id: everyone\n"
        "      effect: allow\n"
        "      mask: {detectors: {email: redact}}\n"
        "      limits: {requests_per_minute: 100000000}\n"
        "    - id: no-opus\n"
        '      when: {models: ["claude-opus-*"]}\n'
        "      effect: deny\n"
        "      message: Opus is not served here\n"
    )


@dataclass
class Gateway:
    """One ``ztgate serve`` (one worker) with :func:`gateway_config`."""

    child: Child
    config: Path
    port: int
    metrics_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.pid


def start_gateway(workdir: Path, name: str, issuer: str, upstream: str, **options: Any) -> Gateway:
    """A gateway started with ``options`` (those of :func:`gateway_config`; ``store`` defaults
    to a SQLite file of its own); :func:`wait_ready` then waits for it."""
    port, metrics_port = free_port(), free_port()
    store = options.pop("store", None) or f"sqlite:///{workdir}/{name}.db"
    config = workdir / f"{name}.yaml"
    config.write_text(gateway_config(port, metrics_port, issuer, upstream, store, **options))
    child = Child(
        [*ZTGATE, "serve", "--config", str(config)],
        workdir / f"{name}.log",
        {"SIM_KEY": SIMULATOR_KEY},
    )
    return Gateway(child, config, port, metrics_port)


def wait_ready(gateway: Gateway) -> None:
    wait_until(lambda: http_get(gateway.url + "/readyz")[0] == 200, gateway.child, gateway.address)


# -- samples ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One look at a gateway process: memory, files, threads, its TCP connections, and what its
    metrics say is under way."""

    at: float  # time.monotonic()
    rss_mb: float
    fds: int
    threads: int
    clients: int  # connections accepted on its listener
    peers: dict[str, int]  # its connections to each named port (the upstream, PostgreSQL...)
    streams: float  # ztgate_streams_active
    audit_queue: float  # ztgate_audit_queue_events
    tasks: float  # ztgate_asyncio_tasks
    upstream_idle: float  # ztgate_upstream_idle_connections
    cached_tokens: float  # ztgate_token_cache_entries
    recordings: float  # ztgate_audit_queue_recordings


def _socket_ports() -> dict[str, tuple[int, int]]:
    """Every TCP socket's inode: its local and remote ports."""
    ports: dict[str, tuple[int, int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
                ports[fields[9]] = (int(local, 16), int(remote, 16))
    return ports


def gauges(metrics_url: str, names: Sequence[str]) -> dict[str, float]:
    """Unlabelled gauges from a Prometheus exposition (NaN when absent)."""
    found = dict.fromkeys(names, float("nan"))
    for line in http_get(metrics_url, timeout=15)[1].decode().splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found


def sample(gateway: Gateway, peers: Mapping[str, int]) -> Sample:
    """``gateway`` now; ``peers`` names the ports whose connections are counted."""
    pid = gateway.pid
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    fds = os.listdir(f"/proc/{pid}/fd")
    inodes = []
    for fd in fds:
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.append(target[8:-1])
    ports = _socket_ports()
    connected = [ports[i] for i in inodes if i in ports]
    metrics = gauges(
        f"http://127.0.0.1:{gateway.metrics_port}/metrics",
        (
            "ztgate_streams_active",
            "ztgate_audit_queue_events",
            "ztgate_asyncio_tasks",
            "ztgate_upstream_idle_connections",
            "ztgate_token_cache_entries",
            "ztgate_audit_queue_recordings",
        ),
    )
    return Sample(
        at=time.monotonic(),
        rss_mb=int(status["VmRSS"].split()[0]) / 1024,
        fds=len(fds),
        threads=int(status["Threads"]),
        clients=sum(1 for local, remote in connected if local == gateway.port and remote),
        peers={n: sum(1 for _, remote in connected if remote == p) for n, p in peers.items()},
        streams=metrics["ztgate_streams_active"],
        audit_queue=metrics["ztgate_audit_queue_events"],
        tasks=metrics["ztgate_asyncio_tasks"],
        upstream_idle=metrics["ztgate_upstream_idle_connections"],
        cached_tokens=metrics["ztgate_token_cache_entries"],
        recordings=metrics["ztgate_audit_queue_recordings"],
    )


class Sampler:
    """Samples of gateways every ``interval`` seconds, from a thread of its own (a busy client
    loop does not delay them), while the context lasts; a sample that fails stops the sampling
    and fails the context's exit."""

    def __init__(
        self, gateways: Sequence[Gateway], peers: Mapping[str, int], interval: float
    ) -> None:
        self.gateways = list(gateways)
        self.samples: dict[int, list[Sample]] = {g.pid: [] for g in gateways}
        self._peers = peers
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._failure: Exception | None = None

    def take(self) -> list[Sample]:
        """A sample of each gateway now (kept with the others)."""
        taken = [sample(g, self._peers) for g in self.gateways]
        for gateway, found in zip(self.gateways, taken, strict=True):
            self.samples[gateway.pid].append(found)
        return taken

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.take()
            except Exception as exc:
                self._failure = exc
                return

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        if self._failure is not None and kind is None:
            raise AssertionError("sampling failed") from self._failure


# -- traffic ------------------------------------------------------------------------------------


@dataclass
class Call:
    kind: str
    status: int | None = None
    seconds: float = 0.0  # to the end of the answer
    first_event: float | None = None  # streams: to the first event
    request_id: str | None = None
    error: str | None = None  # what was wrong with the answer; None when it was as expected


def _body(kind: str, n: int) -> bytes:
    model = {"denied": "claude-opus-4-1", LONG: "sim-slow-long"}.get(kind, "claude-haiku-5-5")
    text = f"load {kind} {n}" + (f": write to {EMAIL} today" if kind == "masked" else "")
    document = {
        "model": model,
        "max_tokens": 64,
        "stream": kind in ("stream", LONG),
        "messages": [{"role": "user", "content": text}],
    }
    return orjson.dumps(document)


def _problem(call: Call, body: bytes) -> str | None:
    if call.status != EXPECTED[call.kind]:
        return f"status {call.status}: {body[:200]!r}"
    if call.request_id is None:
        return "no ztgate-request-id"
    if call.kind == "denied":
        error = orjson.loads(body).get("error", {})
        return None if error.get("type") == "permission_error" else f"not a deny: {body[:200]!r}"
    if EMAIL.encode() in body:
        return "the e-mail address came back"
    if call.kind in ("stream", LONG):
        if b"event: error" in body or not body.rstrip().endswith(b'{"type":"message_stop"}'):
            return f"stream cut short: ...{body[-200:]!r}"
    elif orjson.loads(body).get("type") != "message":
        return f"not a message: {body[:200]!r}"
    return None


class Traffic:
    """Calls to one URL (a gateway or the load balancer) from one aiohttp session: no limit on
    connections, keep-alive. ``token`` is asked for a bearer token on every call. With
    ``long_chars``, a long stream's text comes that many characters an event (10: about 600
    events, 30 s or more), else three words an event (about 210 events, 10 s or more)."""

    def __init__(self, url: str, token: Callable[[], str], long_chars: int | None = None) -> None:
        self.url = url + "/v1/messages"
        self.token = token
        self.long_chars = long_chars
        self.calls: list[Call] = []
        self._session: aiohttp.ClientSession | None = None
        self._sent = 0

    async def __aenter__(self) -> Traffic:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, kind: str, opened: Callable[[], None] | None = None) -> Call:
        """One request of ``kind``; ``opened`` is called when a stream's first event arrives."""
        assert self._session is not None
        self._sent += 1
        call = Call(kind)
        headers = {
            "authorization": f"Bearer {self.token()}",
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        }
        if kind == LONG and self.long_chars is not None:
            headers[DELTA_CHARS_HEADER] = str(self.long_chars)
        started = time.perf_counter()
        body = bytearray()
        try:
            async with self._session.post(
                self.url, data=_body(kind, self._sent), headers=headers
            ) as response:
                call.status = response.status
                call.request_id = response.headers.get("ztgate-request-id")
                async for chunk in response.content.iter_any():
                    if call.first_event is None:
                        call.first_event = time.perf_counter() - started
                        if opened is not None:
                            opened()
                    body += chunk
            call.error = _problem(call, bytes(body))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            call.error = f"{type(exc).__name__}: {exc}"
        call.seconds = time.perf_counter() - started
        self.calls.append(call)
        return call

    async def mixed(self, seconds: float, rate: float, workers: int) -> None:
        """``rate`` requests a second, the kinds in turn, for ``seconds``: each worker sends at
        its share of the rate (at once when it is behind)."""
        interval = workers / rate
        deadline = time.monotonic() + seconds

        async def worker(offset: int) -> None:
            turn = offset
            due = time.monotonic() + offset * interval / workers
            while due < deadline:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await self.call(KINDS[turn % len(KINDS)])
                turn += 1
                due += interval

        await asyncio.gather(*(worker(i) for i in range(workers)))

    async def keep_streaming(self, count: int, seconds: float) -> None:
        """``count`` long streams under way for ``seconds``, each followed by another when it
        ends, as long as another would end in time (their starts spread over a tenth of the
        time, ten seconds at most)."""
        deadline = time.monotonic() + seconds
        spread = min(10.0, seconds / 10)

        async def one(offset: float) -> None:
            await asyncio.sleep(offset)
            last = 0.0
            while time.monotonic() + last < deadline:
                last = (await self.call(LONG)).seconds

        await asyncio.gather(*(one(spread * i / count) for i in range(count)))

    async def long_streams(
        self, count: int, while_open: Callable[[int], object], opening: int = 100
    ) -> list[Call]:
        """``count`` long streams at once (``opening`` at a time being opened). Once every one
        has its first event (or has failed), ``while_open`` is called with how many are still
        under way; then they are read to their end."""
        gate = asyncio.Semaphore(opening)
        waiting = count
        all_open = asyncio.Event()

        async def stream() -> Call:
            nonlocal waiting
            first = asyncio.Event()
            async with gate:
                call = asyncio.ensure_future(self.call(LONG, first.set))
                opened = asyncio.ensure_future(first.wait())
                await asyncio.wait([call, opened], return_when=asyncio.FIRST_COMPLETED)
                opened.cancel()
            waiting -= 1
            if waiting == 0:
                all_open.set()
            return await call

        streams = [asyncio.ensure_future(stream()) for _ in range(count)]
        await all_open.wait()
        while_open(sum(not s.done() for s in streams))
        return list(await asyncio.gather(*streams))


# -- figures ------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank; NaN for none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def calls_table(calls: Sequence[Call]) -> str:
    """Per kind: count, statuses, errors, and p50/p95/p99 of the answer time (streams: of the
    first event too), in milliseconds."""
    rows = ["kind     calls statuses          errors  p50 ms  p95 ms  p99 ms  first p50/p95/p99 ms"]
    for kind in (*KINDS, LONG):
        mine = [c for c in calls if c.kind == kind]
        if not mine:
            continue
        statuses = ",".join(
            f"{s}:{n}" for s, n in sorted(Counter(c.status or 0 for c in mine).items())
        )
        ms = [c.seconds * 1000 for c in mine]
        first = [c.first_event * 1000 for c in mine if c.first_event is not None]
        firsts = (
            "/".join(f"{percentile(first, q):.0f}" for q in (50, 95, 99))
            if kind in ("stream", LONG)
            else "-"
        )
        p50, p95, p99 = (percentile(ms, q) for q in (50, 95, 99))
        errors = sum(1 for c in mine if c.error)
        rows.append(
            f"{kind:<8} {len(mine):>5} {statuses:<17} {errors:>6}"
            f" {p50:>7.1f} {p95:>7.1f} {p99:>7.1f}  {firsts}"
        )
    return "\n".join(rows)


def samples_table(rows: Sequence[tuple[str, Sample]]) -> str:
    """One line per labelled sample."""
    names = sorted({name for _, found in rows for name in found.peers})
    lines = [
        f"{'':<16} {'RSS MB':>7} {'fds':>5} {'threads':>7} {'clients':>7} "
        + "".join(f"{name:>9}" for name in names)
        + f" {'streams':>7} {'audit q':>7} {'tasks':>6} {'tokens':>6} {'rec q':>5}"
    ]
    for label, found in rows:
        lines.append(
            f"{label:<16} {found.rss_mb:>7.1f} {found.fds:>5} {found.threads:>7} "
            f"{found.clients:>7} "
            + "".join(f"{found.peers.get(name, 0):>9}" for name in names)
            + f" {found.streams:>7.0f} {found.audit_queue:>7.0f} {found.tasks:>6.0f}"
            f" {found.cached_tokens:>6.0f} {found.recordings:>5.0f}"
        )
    return "\n".join(lines)


def audit_of(store: str) -> dict[str, tuple[bool, int | None]]:
    """Per request id in the audit store: whether its ``request`` event is there, and the
    status its ``outcome`` event gives (None without one)."""

    async def read() -> dict[str, tuple[bool, int | None]]:
        opened = open_store(store)
        found: dict[str, tuple[bool, int | None]] = {}
        try:
            async for event in opened.events():
                if event.request_id is None or event.kind not in ("request", "outcome"):
                    continue
                request, status = found.get(event.request_id, (False, None))
                if event.kind == "request":
                    request = True
                else:
                    status = event.data()["status"]
                found[event.request_id] = (request, status)
        finally:
            await opened.close()
        return found

    return asyncio.run(read())


def unrecorded(calls: Sequence[Call], audit: dict[str, tuple[bool, int | None]]) -> list[Call]:
    """Answered calls without both their request and their outcome (with the status the caller
    got) in the audit."""
    return [
        c
        for c in calls
        if c.request_id is not None
        and c.status is not None
        and audit.get(c.request_id) != (True, c.status)
    ]
