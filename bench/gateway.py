"""Gateway overhead benchmark: what ztgate adds in front of a very fast Claude API.

Three paths serve the same request (``POST /v1/messages``, a small JSON body, a bearer token):

1. direct: wrk -> nginx answering with a canned message (or a canned SSE stream);
2. nginx pass-through: wrk -> nginx ``proxy_pass`` (upstream keep-alive) -> the canned upstream,
   the practical floor for one proxy hop;
3. ztgate: wrk -> ``ztgate serve`` (one worker, token verification and a 3-rule policy on)
   -> the canned upstream.

For each path it measures requests/s and p50/p99 latency with wrk at 32 connections and at 1,
non-streaming and streaming; the time to the first SSE event at 1 connection with a raw-socket
client; and the peak RSS (VmHWM) of the processes.

Why ratios: the machines are shared, noisy 2-core VMs, so absolute numbers move from run to run
by more than the effects looked at. Every target is therefore computed against baselines measured
in the same run, interleaved with the gateway's runs (odd rounds take the paths in reverse
order), and each cell of the report is the best of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import jwt
import yaml
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

BENCH_DIR = Path(__file__).resolve().parent
UPSTREAM_DIR = BENCH_DIR / "upstream"
DEFAULT_OUTPUT = BENCH_DIR / "results" / "gateway.md"

API_PATH = "/v1/messages"
ISSUER = "https://bench.issuer.invalid"
AUDIENCE = "ztgate"
KID = "bench"
SUBJECT = "bench/client"
TOKEN_LIFETIME = 3000  # the gateway accepts at most one hour
UPSTREAM_KEY = "sk-ant-bench-key"

DIRECT = "direct"
NGINX = "nginx pass-through"
ZTGATE = "ztgate"
ZTGATE_LOG = "ztgate (access log on)"
ZTGATE_NO_SCAN = "ztgate (inspection off)"
ZTGATE_PROCESS = "ztgate (durability: process)"
ZTGATE_TWO = "ztgate (2 workers)"
ZTGATE_PG = "ztgate (PostgreSQL)"
ZTGATE_PG_TWO = "ztgate (2 workers, PostgreSQL)"
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"

# MASKED: a 4 KB prompt carrying two values the bench policy masks (an e-mail address and a
# GitHub token), sent to the default ztgate only.
JSON, SSE, MASKED = "json", "sse", "json-4k-masked"
SCENARIOS = ((JSON, 32), (JSON, 1), (MASKED, 32), (SSE, 32), (SSE, 1))
MIN_MASKED_SHARE = 0.8  # of the small body's c32 throughput
MIN_TWO_WORKERS = 1.3

# Targets, from the project brief.
# Targets (the hot-path issue): c32 throughput as a share of nginx pass-through, and the c1 p50
# added over direct, with the default durability and with ``durability: process``.
MIN_THROUGHPUT_SHARE = {"ztgate": 0.12, "ztgate (durability: process)": 0.18}
MAX_C1_OVERHEAD_MS = {"ztgate": 0.5, "ztgate (durability: process)": 0.3}
MAX_TTFE_OVERHEAD_MS = 1.0
MAX_RSS_BYTES = 150 * 1000**2


class BenchError(Exception):
    """The benchmark could not run as designed; the message says what to look at."""


# ---------------------------------------------------------------- options and the request


@dataclass(frozen=True)
class Options:
    duration: int
    warmup: int
    rounds: int
    ttfe_requests: int
    ttfe_warmup: int
    nginx_workers: int
    output: Path
    check: bool


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per run (1)")
    parser.add_argument("--rounds", type=int, default=2, help="full sets, best kept (2)")
    parser.add_argument("--ttfe-requests", type=int, default=2000, help="measured (2000)")
    parser.add_argument("--ttfe-warmup", type=int, default=200, help="unmeasured first (200)")
    parser.add_argument("--nginx-workers", type=int, default=1, help="per nginx instance (1)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="report file")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target fails")
    args = parser.parse_args(argv)
    return Options(
        duration=args.duration,
        warmup=args.warmup,
        rounds=args.rounds,
        ttfe_requests=args.ttfe_requests,
        ttfe_warmup=args.ttfe_warmup,
        nginx_workers=args.nginx_workers,
        output=args.output,
        check=args.check,
    )


MASKED_VALUES = ("jane.doe@example.com", "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5")


def request_body(mode: str) -> bytes:
    content = "hello"
    if mode == MASKED:
        filler = "The quarterly report covers revenue, churn and hiring plans in detail. "
        email, token = MASKED_VALUES
        content = (filler * 28) + f"Mail {email} and use {token} for the repository. " + filler
    document: dict[str, object] = {
        "model": "claude-haiku-5-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": content}],
    }
    if mode == SSE:
        document["stream"] = True
    return json.dumps(document, separators=(",", ":")).encode()


def request_headers(token: str) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "anthropic-version": "2023-06-01",
        "authorization": f"Bearer {token}",
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- processes and ports


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (held together while picked, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def tool(name: str) -> str:
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BenchError(f"{name} is not installed (bench/run.sh installs it)")


def spawn(cmd: Sequence[str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a service in its own session, so that Ctrl-C reaches only us; we stop it."""
    with log_path.open("ab") as sink:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def vm_hwm_bytes(pid: int) -> int | None:
    """Peak resident set size of a live process, from /proc/PID/status."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * 1024 if match else None


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


# ---------------------------------------------------------------- nginx


def nginx_string(body: bytes) -> str:
    """A body as an nginx single-quoted string (``return 200 '...'`` interpolates ``$``)."""
    text = body.decode()
    if "$" in text:
        raise BenchError("a canned body may not contain '$' (nginx would read a variable)")
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def render(template: Path, values: dict[str, str]) -> str:
    text = template.read_text()
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)
    leftover = re.search(r"\{\{\w+\}\}", text)
    if leftover:
        raise BenchError(f"{template.name}: no value for {leftover.group(0)}")
    return text


def start_nginx(nginx: str, workdir: Path, name: str, config: str) -> subprocess.Popen[bytes]:
    conf = workdir / f"{name}.conf"
    conf.write_text(config)
    base = [nginx, "-p", str(workdir), "-e", str(workdir / f"{name}-error.log"), "-c", str(conf)]
    test = subprocess.run([*base, "-t", "-q"], capture_output=True, text=True, check=False)
    if test.returncode != 0:
        raise BenchError(f"nginx rejects {name}.conf:\n{test.stderr}")
    return spawn([*base, "-g", "daemon off;"], workdir / f"{name}-stdout.log", workdir)


# ---------------------------------------------------------------- ztgate


def make_identity(workdir: Path) -> tuple[Path, str]:
    """An ES256 key pair: the public half as a JWKS file, the private half mints one token."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid=KID, alg="ES256", use="sig")
    jwks = workdir / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT, "iat": now}
    claims["exp"] = now + TOKEN_LIFETIME
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": KID})
    return jwks, token


def ztgate_config(
    port: int,
    upstream_port: int,
    jwks: Path,
    access_log: bool,
    inspection: bool = True,
    durability: str = "fsync",
    workers: int = 1,
    store: str = "sqlite:///.ztgate/ztgate.db",
    key_file: Path | None = None,
) -> str:
    config: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "server": {"workers": workers},
        "store": {"url": store, "durability": durability},
        "upstream": {
            "url": f"http://127.0.0.1:{upstream_port}",
            "api_key": UPSTREAM_KEY,
            "timeout": "30s",
        },
        "identity": {
            "issuers": [
                {
                    "name": "bench",
                    "issuer": ISSUER,
                    "audiences": [AUDIENCE],
                    "jwks_file": str(jwks),
                }
            ]
        },
        # The per-request access line is written at INFO; `warning` keeps it off.
        "logging": {"level": "info" if access_log else "warning"},
        # A fixed hash key: hashed values correlate across restarts (and no start-up warning).
        "inspection": {"enabled": inspection, "hash_key": "bench-hash-key-" + "0" * 32},
        # A small realistic policy, decided on every request: one grant and two denies.
        "policy": {
            "rules": [
                {
                    "id": "bench-haiku",
                    "effect": "allow",
                    "when": {
                        "issuers": ["bench"],
                        "endpoints": ["messages"],
                        "models": ["claude-haiku-*"],
                    },
                    "limits": {"max_tokens": 4096},
                    # Every request carries a mask obligation, as a real deployment's would
                    # (none without inspection, which policy then refuses to name).
                    **(
                        {"mask": {"categories": ["pii", "secret"], "action": "redact"}}
                        if inspection
                        else {}
                    ),
                },
                {"id": "no-shell", "effect": "deny", "when": {"tools": ["bash_*", "Bash"]}},
                {"id": "no-computer-use", "effect": "deny", "when": {"tools": ["computer_*"]}},
            ]
        },
    }
    if key_file is not None:
        config["audit"] = {"signing_key_file": str(key_file)}
    return yaml.safe_dump(config, sort_keys=False)


def start_ztgate(workdir: Path, name: str, config: str) -> subprocess.Popen[bytes]:
    path = workdir / f"{name}.yaml"
    path.write_text(config)
    ztgate = Path(sys.executable).parent / "ztgate"
    if not ztgate.exists():
        raise BenchError(f"{ztgate} is missing: run `make setup` first")
    # cwd is the temp dir, so nothing the gateway writes by default lands in the repository.
    return spawn([str(ztgate), "serve", "--config", str(path)], workdir / f"{name}.log", workdir)


# ---------------------------------------------------------------- readiness and sanity


def http_call(
    port: int, method: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        path = API_PATH if method == "POST" else "/readyz"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()


def wait_ready(
    port: int,
    proc: subprocess.Popen[bytes],
    log_path: Path,
    method: str,
    timeout: float = 30.0,
) -> None:
    """Poll until the service answers 200 (ztgate: ``GET /readyz``; nginx: a POST)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"exited with {proc.returncode} during start-up:\n{tail(log_path)}")
        try:
            status, body, _ = http_call(port, method, b"{}" if method == "POST" else None, {})
        except OSError as exc:
            last = repr(exc)
        else:
            if status == 200:
                return
            last = f"{status} {body[:300]!r}"
        time.sleep(0.05)
    raise BenchError(f"not ready after {timeout:.0f} s ({last}):\n{tail(log_path)}")


def check_answer(label: str, port: int, mode: str, token: str) -> None:
    """One request by hand: the path must answer 200 with the whole canned reply."""
    status, body, headers = http_call(port, "POST", request_body(mode), request_headers(token))
    marker = b"event: message_stop" if mode == SSE else b'"type":"message"'
    if status != 200 or marker not in body:
        raise BenchError(
            f"{label} ({mode}) answered {status} {headers.get('content-type')}: {body[:500]!r}"
        )


# ---------------------------------------------------------------- wrk

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.path = "{path}"
wrk.body = [[{body}]]
{headers}

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_RESULT %d %d %.1f %.1f %d %d %d %d %d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def write_wrk_script(workdir: Path, mode: str, token: str, name: str = "post") -> Path:
    headers = "\n".join(
        f'wrk.headers["{header}"] = "{value}"' for header, value in request_headers(token).items()
    )
    script = workdir / f"{name}-{mode}.lua"
    text = WRK_SCRIPT.format(path=API_PATH, body=request_body(mode).decode(), headers=headers)
    script.write_text(text)
    return script


def run_wrk(wrk: str, port: int, script: Path, connections: int, seconds: int) -> WrkResult:
    threads = min(2, connections)
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s"]
    cmd += [str(script), f"http://127.0.0.1:{port}{API_PATH}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    fields = line.split()[1:]
    requests, duration_us = int(fields[0]), int(fields[1])
    names = ("connect", "read", "write", "non-2xx", "timeout")
    errors = dict(zip(names, map(int, fields[4:]), strict=True))
    return WrkResult(
        requests=requests,
        seconds=duration_us / 1e6,
        p50_ms=float(fields[2]) / 1000,
        p99_ms=float(fields[3]) / 1000,
        errors=errors,
    )


# ---------------------------------------------------------------- time to first event


def http_request(port: int, body: bytes, token: str) -> bytes:
    head = [f"POST {API_PATH} HTTP/1.1", f"host: 127.0.0.1:{port}"]
    head += [f"{name}: {value}" for name, value in request_headers(token).items()]
    head.append(f"content-length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def chunked_payload(body: bytes) -> bytes | None:
    """The decoded payload of a complete chunked body, or None while it is incomplete."""
    payload, pos = bytearray(), 0
    while True:
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(body[pos:line_end].split(b";")[0], 16)
        start = line_end + 2
        if size == 0:
            return bytes(payload) if body.endswith(b"\r\n", start) else None
        if len(body) < start + size + 2:
            return None
        payload += body[start : start + size]
        pos = start + size + 2


@dataclass
class _Response:
    """One HTTP/1.1 response read off a keep-alive connection."""

    status: int = 0
    length: int | None = None
    chunked: bool = False
    body: bytes = b""

    def parse_head(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length":
                self.length = int(value)
            elif name == "transfer-encoding":
                self.chunked = "chunked" in value

    def payload(self) -> bytes | None:
        if self.chunked:
            return chunked_payload(self.body)
        if self.length is None:
            raise BenchError("a response with neither content-length nor chunked encoding")
        return self.body if len(self.body) >= self.length else None


async def first_event_ms(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> float:
    """Send one request; ms until the first ``event:`` bytes; then read the response to its end."""
    started = time.perf_counter()
    writer.write(request)
    buffer, response, first = b"", _Response(), None
    head_done = False
    while True:
        chunk = await reader.read(65536)
        now = time.perf_counter()
        if not chunk:
            raise BenchError("the connection closed mid-response")
        buffer += chunk
        if not head_done and b"\r\n\r\n" in buffer:
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            response.parse_head(head)
            head_done = True
        if not head_done:
            continue
        response.body = buffer
        if first is None and b"event:" in buffer:
            first = now
        payload = response.payload()
        if payload is not None:
            break
    if response.status != 200 or first is None or b"event: message_stop" not in payload:
        raise BenchError(f"bad streaming answer {response.status}: {buffer[:300]!r}")
    return (first - started) * 1000


async def ttfe_samples(port: int, token: str, warmup: int, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    request = http_request(port, request_body(SSE), token)
    samples = []
    try:
        for index in range(warmup + count):
            elapsed = await first_event_ms(reader, writer, request)
            if index >= warmup:
                samples.append(elapsed)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return samples


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# ---------------------------------------------------------------- the run


@dataclass(frozen=True)
class Route:
    """One path under test: where its non-streaming and streaming requests go."""

    label: str
    json_port: int
    sse_port: int | None  # None: not measured streaming
    masked: bool = False  # measured with the 4 KB masked prompt too

    def port(self, mode: str) -> int | None:
        if mode == MASKED:
            return self.json_port if self.masked else None
        return self.json_port if mode == JSON else self.sse_port


@dataclass
class Services:
    """Everything started for the run, so that it can all be stopped and its RSS read."""

    routes: list[Route] = field(default_factory=list)
    databases: list[str] = field(default_factory=list)  # PostgreSQL, dropped at the end
    nginx: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ztgate: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ztgate_logs: dict[str, Path] = field(default_factory=dict)

    def died(self) -> list[str]:
        """Services that exited while they were being measured."""
        procs = {**self.nginx, **self.ztgate}
        return [
            f"{name}: exited with {proc.returncode} during the run"
            for name, proc in procs.items()
            if proc.poll() is not None
        ]

    def stop_all(self) -> None:
        for proc in [*self.ztgate.values(), *self.nginx.values()]:
            stop(proc)
        for database in self.databases:
            asyncio.run(_postgres(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))


@dataclass
class Results:
    wrk: dict[tuple[str, str, int], list[WrkResult]] = field(default_factory=dict)
    ttfe: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    rss: dict[str, int | None] = field(default_factory=dict)


async def _postgres(statement: str) -> bool:
    """Run one statement on the local PostgreSQL; False when it cannot be reached."""
    import asyncpg  # the gateway's own driver; imported here so the bench runs without it

    try:
        connection = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres", timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
    return True


def signing_key(workdir: Path) -> Path:
    """The checkpoint signing key the PostgreSQL routes share (made once per run)."""
    path = workdir / "signing-key.pem"
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    return path


def postgres_store(services: Services, label: str) -> str | None:
    """A fresh database for one PostgreSQL route, or None (said) when PostgreSQL is down."""
    name = f"ztgate_bench_{os.getpid()}_{len(services.databases)}"
    if not asyncio.run(_postgres(f"CREATE DATABASE {name}")):
        log(f"bench: PostgreSQL at {POSTGRES_SERVER} is not reachable; {label} not measured")
        return None
    services.databases.append(name)
    return f"{POSTGRES_SERVER}/{name}"


def start_services(workdir: Path, services: Services, token_jwks: Path, workers: int) -> None:
    nginx = tool("nginx")
    ports_free = free_ports(12)
    canned_json, canned_sse, proxy_json, proxy_sse, z_json, z_sse, z_log, z_raw = ports_free[:8]
    z_process, z_two, z_pg, z_pg_two = ports_free[8:]
    ports = {
        "DIR": str(workdir),
        "WORKERS": str(workers),
        "JSON_PORT": str(canned_json),
        "SSE_PORT": str(canned_sse),
        "PROXY_JSON_PORT": str(proxy_json),
        "PROXY_SSE_PORT": str(proxy_sse),
        "MESSAGE_BODY": nginx_string((UPSTREAM_DIR / "message.json").read_bytes()),
        "STREAM_BODY": nginx_string((UPSTREAM_DIR / "stream.sse").read_bytes()),
    }
    for name in ("canned", "proxy"):
        config = render(UPSTREAM_DIR / f"{name}.conf.in", ports)
        services.nginx[name] = start_nginx(nginx, workdir, name, config)
    sqlite = "sqlite:///.ztgate/ztgate.db"
    gateways = [
        ("ztgate-json", z_json, canned_json, False, True, "fsync", 1, sqlite),
        ("ztgate-sse", z_sse, canned_sse, False, True, "fsync", 1, sqlite),
        ("ztgate-json-access-log", z_log, canned_json, True, True, "fsync", 1, sqlite),
        ("ztgate-json-no-inspection", z_raw, canned_json, False, False, "fsync", 1, sqlite),
        ("ztgate-json-process", z_process, canned_json, False, True, "process", 1, sqlite),
        ("ztgate-json-2-workers", z_two, canned_json, False, True, "fsync", 2, sqlite),
    ]
    services.routes = [
        Route(DIRECT, canned_json, canned_sse),
        Route(NGINX, proxy_json, proxy_sse),
        Route(ZTGATE, z_json, z_sse, masked=True),
        Route(ZTGATE_LOG, z_log, None),
        Route(ZTGATE_NO_SCAN, z_raw, None),
        Route(ZTGATE_PROCESS, z_process, None),
        Route(ZTGATE_TWO, z_two, None),
    ]
    for name, label, port, count in (
        ("ztgate-json-postgres", ZTGATE_PG, z_pg, 1),
        ("ztgate-json-postgres-2-workers", ZTGATE_PG_TWO, z_pg_two, 2),
    ):
        store = postgres_store(services, label)
        if store is not None:
            gateways.append((name, port, canned_json, False, True, "fsync", count, store))
            services.routes.append(Route(label, port, None))
    for name, port, upstream, access_log, inspection, durability, count, url in gateways:
        # Replicas sharing a PostgreSQL store sign its checkpoints with one configured key.
        key = signing_key(workdir) if url.startswith("postgresql") else None
        config = ztgate_config(
            port, upstream, token_jwks, access_log, inspection, durability, count, url, key
        )
        services.ztgate[name] = start_ztgate(workdir, name, config)
        services.ztgate_logs[name] = workdir / f"{name}.log"
    for name, (port, method) in {
        "canned": (canned_json, "POST"),
        "proxy": (proxy_json, "POST"),
    }.items():
        wait_ready(port, services.nginx[name], workdir / f"{name}-error.log", method)
    for name, port, *_ in gateways:
        wait_ready(port, services.ztgate[name], services.ztgate_logs[name], "GET")


def check_routes(routes: Sequence[Route], token: str) -> None:
    for route in routes:
        for mode in (JSON, SSE, MASKED):
            port = route.port(mode)
            if port is not None:
                check_answer(route.label, port, mode, token)


def measure_round(
    opts: Options,
    routes: Sequence[Route],
    scripts: dict[str, Path],
    token: str,
    results: Results,
    round_no: int,
) -> None:
    wrk = tool("wrk")
    order = list(routes) if round_no % 2 == 0 else list(reversed(routes))
    for mode, connections in SCENARIOS:
        for route in order:
            port = route.port(mode)
            if port is None:
                continue
            if opts.warmup:
                run_wrk(wrk, port, scripts[mode], connections, opts.warmup)
            result = run_wrk(wrk, port, scripts[mode], connections, opts.duration)
            results.wrk.setdefault((route.label, mode, connections), []).append(result)
            log(
                f"[round {round_no + 1}/{opts.rounds}] {mode} c{connections} {route.label}: "
                f"{result.rps:,.0f} req/s, p50 {result.p50_ms:.3f} ms, "
                f"p99 {result.p99_ms:.3f} ms, errors {result.failed}"
            )
    for route in order:
        if route.sse_port is None:
            continue
        samples = asyncio.run(
            ttfe_samples(route.sse_port, token, opts.ttfe_warmup, opts.ttfe_requests)
        )
        p50, p99 = percentile(samples, 0.50), percentile(samples, 0.99)
        results.ttfe.setdefault(route.label, []).append((p50, p99))
        log(
            f"[round {round_no + 1}/{opts.rounds}] ttfe {route.label}: "
            f"p50 {p50:.3f} ms, p99 {p99:.3f} ms"
        )


def read_rss(services: Services, results: Results) -> None:
    for name, proc in services.ztgate.items():
        results.rss[name] = vm_hwm_bytes(proc.pid)
    for name, proc in services.nginx.items():
        peaks = [vm_hwm_bytes(pid) or 0 for pid in children(proc.pid)]
        results.rss[f"nginx {name} worker"] = max(peaks, default=None)


def _level(line: str) -> str | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    return str(entry.get("level")) if isinstance(entry, dict) else None


# The last, unindented line of a traceback names the exception.
_EXCEPTION_LINE = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


def first_traceback(lines: Sequence[str]) -> list[str]:
    """The first traceback (with the line before it), or the first few lines if there is none."""
    start = next((i for i, x in enumerate(lines) if x.startswith("Traceback")), None)
    if start is None:
        return list(lines[:10])
    end = next(
        (i for i in range(start + 1, len(lines)) if _EXCEPTION_LINE.match(lines[i])), start + 30
    )
    return list(lines[max(0, start - 1) : end + 1])


def ztgate_problems(services: Services) -> list[str]:
    """Per process: log lines above INFO and tracebacks, counted, with the first one in full."""
    problems = []
    for name, path in services.ztgate_logs.items():
        text = path.read_text(errors="replace") if path.exists() else ""
        lines = [x for x in text.splitlines() if _level(x) not in ("info", "debug")]
        if not lines:
            continue
        kinds = Counter(x for x in lines if _EXCEPTION_LINE.match(x))
        summary = ", ".join(f"{count} x {kind}" for kind, count in kinds.most_common(5))
        tracebacks = sum(x.startswith("Traceback") for x in lines)
        problems.append(
            f"{name}: {len(lines)} lines above INFO, {tracebacks} tracebacks ({summary or '-'})"
        )
        problems += [f"  {x}" for x in first_traceback(lines)]
    return problems


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class Row:
    rps: float | None
    p50: float | None
    p99: float | None


def best_row(runs: Sequence[WrkResult] | None) -> Row:
    if not runs:
        return Row(None, None, None)
    return Row(max(r.rps for r in runs), min(r.p50_ms for r in runs), min(r.p99_ms for r in runs))


def best_ttfe(runs: Sequence[tuple[float, float]] | None) -> tuple[float | None, float | None]:
    if not runs:
        return None, None
    return min(p50 for p50, _ in runs), min(p99 for _, p99 in runs)


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def fmt_rps(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def fmt_mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1000**2:.1f} MB"


def machine_lines(opts: Options, started: datetime) -> list[str]:
    cpu = next(
        (
            line.partition(":")[2].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    nginx_v = subprocess.run([tool("nginx"), "-v"], capture_output=True, text=True, check=False)
    wrk_v = subprocess.run([tool("wrk"), "-v"], capture_output=True, text=True, check=False)
    wrk_version = (wrk_v.stdout + wrk_v.stderr).split("\n")[0].split(" [")[0]
    command = os.environ.get("ZTGATE_BENCH_COMMAND") or shlex.join(
        [sys.executable, "bench/gateway.py", *sys.argv[1:]]
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"- date: {started:%Y-%m-%d %H:%M} UTC",
        f"- machine: nproc {len(os.sched_getaffinity(0))}, {cpu}, Linux {platform.release()}, "
        f"load average at the end {load}",
        f"- python {platform.python_version()}, {nginx_v.stderr.strip()}, {wrk_version}",
        f"- command: `{command}`",
        f"- method: wrk `-t2 -c32` and `-t1 -c1`, {opts.duration} s per run after a "
        f"{opts.warmup} s warm-up; {opts.rounds} rounds, paths interleaved (odd rounds in reverse "
        "order); **each cell is the best of the rounds** (highest req/s, lowest latency). "
        f"nginx: {opts.nginx_workers} worker per instance (canned upstream, pass-through proxy); "
        "ztgate: one worker, token verification and a 3-rule policy on, `logging.level: warning` "
        "(the access-log row "
        "uses `info`, written to a file). TTFE: raw-socket keep-alive client, "
        f"{opts.ttfe_requests} sequential requests after {opts.ttfe_warmup} unmeasured.",
    ]


def wrk_table(results: Results, routes: Sequence[Route], mode: str) -> list[str]:
    header = "| path | c32 req/s | c32 p50 | c32 p99 | c1 p50 | c1 p99 |"
    rule = "|---|---:|---:|---:|---:|---:|"
    if mode == SSE:
        header += " TTFE p50 | TTFE p99 |"
        rule += "---:|---:|"
    lines = [header, rule]
    for route in routes:
        if route.port(mode) is None:
            continue
        c32 = best_row(results.wrk.get((route.label, mode, 32)))
        c1 = best_row(results.wrk.get((route.label, mode, 1)))
        cells = [fmt_rps(c32.rps), fmt_ms(c32.p50), fmt_ms(c32.p99), fmt_ms(c1.p50)]
        cells.append(fmt_ms(c1.p99))
        if mode == SSE:
            cells += [fmt_ms(x) for x in best_ttfe(results.ttfe.get(route.label))]
        lines.append(f"| {route.label} | " + " | ".join(cells) + " |")
    return lines


@dataclass(frozen=True)
class Check:
    name: str
    measured: str
    ok: bool | None  # None: not measured


def checks(results: Results) -> list[Check]:
    nginx_c32 = best_row(results.wrk.get((NGINX, JSON, 32))).rps
    direct_c1 = best_row(results.wrk.get((DIRECT, JSON, 1))).p50
    ztgate_ttfe = best_ttfe(results.ttfe.get(ZTGATE))[0]
    direct_ttfe = best_ttfe(results.ttfe.get(DIRECT))[0]
    rss = [v for k, v in results.rss.items() if k.startswith("ztgate") and v is not None]
    out = []
    for label, least in MIN_THROUGHPUT_SHARE.items():
        ztgate_c32 = best_row(results.wrk.get((label, JSON, 32))).rps
        if ztgate_c32 is not None and nginx_c32:
            share = ztgate_c32 / nginx_c32
            text = f"{fmt_rps(ztgate_c32)} / {fmt_rps(nginx_c32)} = {share:.1%}"
            name = f"{label} c32 req/s >= {least:.0%} of nginx pass-through"
            out.append(Check(name, text, share >= least))
    one = best_row(results.wrk.get((ZTGATE, JSON, 32))).rps
    masked = best_row(results.wrk.get((ZTGATE, MASKED, 32))).rps
    if one and masked:
        text = f"{fmt_rps(masked)} / {fmt_rps(one)} = {masked / one:.2f}x"
        name = f"4 KB masked prompt c32 req/s >= {MIN_MASKED_SHARE}x the small body"
        out.append(Check(name, text, masked / one >= MIN_MASKED_SHARE))
    for single, double, store in (
        (ZTGATE, ZTGATE_TWO, "SQLite"),
        (ZTGATE_PG, ZTGATE_PG_TWO, "PostgreSQL"),
    ):
        one = best_row(results.wrk.get((single, JSON, 32))).rps
        two = best_row(results.wrk.get((double, JSON, 32))).rps
        if one and two:
            text = f"{fmt_rps(two)} / {fmt_rps(one)} = {two / one:.2f}x"
            name = f"2 workers c32 req/s >= {MIN_TWO_WORKERS}x one worker ({store})"
            out.append(Check(name, text, two / one >= MIN_TWO_WORKERS))
    for label, most in MAX_C1_OVERHEAD_MS.items():
        label_c1 = best_row(results.wrk.get((label, JSON, 1))).p50
        if label_c1 is not None and direct_c1 is not None:
            diff = label_c1 - direct_c1
            text = f"{label_c1:.3f} - {direct_c1:.3f} = {diff:.3f} ms"
            name = f"{label} c1 p50 - direct c1 p50 <= {most} ms"
            out.append(Check(name, text, diff <= most))
    if ztgate_ttfe is not None and direct_ttfe is not None:
        diff = ztgate_ttfe - direct_ttfe
        text = f"{ztgate_ttfe:.3f} - {direct_ttfe:.3f} = {diff:.3f} ms"
        out.append(
            Check("streaming TTFE p50: ztgate - direct <= 1 ms", text, diff <= MAX_TTFE_OVERHEAD_MS)
        )
    peak = max(rss, default=None)
    ok = None if peak is None else peak < MAX_RSS_BYTES
    out.append(Check("ztgate peak RSS < 150 MB (max over its processes)", fmt_mb(peak), ok))
    return out


def verdict(ok: bool | None) -> str:
    return {True: "PASS", False: "**FAIL**", None: "not measured"}[ok]


def error_lines(results: Results, problems: Sequence[str]) -> list[str]:
    lines = []
    for (label, mode, connections), runs in results.wrk.items():
        for index, run in enumerate(runs):
            if run.failed:
                bad = ", ".join(f"{k} {v}" for k, v in run.errors.items() if v)
                lines.append(f"- {label} {mode} c{connections} round {index + 1}: {bad}")
    if problems:
        lines += ["- services that died, and what ztgate logged above INFO:", "```"]
        lines += [*problems, "```"]
    return lines or ["- none: every request answered 2xx, nothing above INFO in ztgate's logs"]


def all_runs(results: Results) -> list[str]:
    lines = ["| path | mode | conns | per round: req/s, p50, p99 |", "|---|---|---:|---|"]
    for (label, mode, connections), runs in results.wrk.items():
        cells = "; ".join(f"{r.rps:,.0f}, {r.p50_ms:.3f}, {r.p99_ms:.3f}" for r in runs)
        lines.append(f"| {label} | {mode} | {connections} | {cells} |")
    for label, samples in results.ttfe.items():
        cells = "; ".join(f"p50 {p50:.3f}, p99 {p99:.3f}" for p50, p99 in samples)
        lines.append(f"| {label} | TTFE | 1 | {cells} |")
    return lines


def report(
    opts: Options,
    started: datetime,
    routes: Sequence[Route],
    results: Results,
    problems: Sequence[str],
) -> str:
    lines = ["# ztgate gateway overhead", "", *machine_lines(opts, started), ""]
    lines += ["## Non-streaming: `POST /v1/messages`, canned JSON message", ""]
    lines += [*wrk_table(results, routes, JSON), ""]
    lines += ["## The same request with a 4 KB prompt, two values masked (c32 only)", ""]
    lines += [*wrk_table(results, routes, MASKED), ""]
    lines += ['## Streaming: same request with `"stream":true`, canned SSE (9 events)', ""]
    lines += [*wrk_table(results, routes, SSE), ""]
    lines += [
        "wrk's streaming latency is time to the last byte; TTFE is the time from sending the "
        "request to the first `event:` bytes, at 1 connection.",
        "",
        "## Peak RSS (VmHWM, after the run)",
        "",
        "| process | peak RSS |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {fmt_mb(value)} |" for name, value in results.rss.items()]
    lines += ["", "## Targets (computed from the tables above)", ""]
    lines += ["| target | measured | result |", "|---|---|---|"]
    lines += [f"| {c.name} | {c.measured} | {verdict(c.ok)} |" for c in checks(results)]
    lines += ["", "## Errors", "", *error_lines(results, problems), ""]
    lines += ["## Every run (req/s, p50 ms, p99 ms)", "", *all_runs(results), ""]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(opts: Options, out: IO[str]) -> int:
    started = datetime.now(UTC)
    services = Services()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="ztgate-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx workers drop root and must still reach their temp dirs
        try:
            jwks, token = make_identity(workdir)
            start_services(workdir, services, jwks, opts.nginx_workers)
            check_routes(services.routes, token)
            scripts = {mode: write_wrk_script(workdir, mode, token) for mode in (JSON, SSE, MASKED)}
            for round_no in range(opts.rounds):
                measure_round(opts, services.routes, scripts, token, results, round_no)
            read_rss(services, results)
            problems = services.died()
        finally:
            services.stop_all()
        problems += ztgate_problems(services)  # after the stop, so shutdown errors count too
    text = report(opts, started, services.routes, results, problems)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(text)
    print(text, file=out)
    log(f"report written to {opts.output}")
    failed_requests = any(r.failed for runs in results.wrk.values() for r in runs)
    failed_targets = any(c.ok is False for c in checks(results))
    return 1 if failed_requests or (opts.check and failed_targets) else 0


def main(argv: Sequence[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(opts, sys.stdout)
    except BenchError as exc:
        log(f"bench: {exc}")
        return 1
    except KeyboardInterrupt:
        log("bench: interrupted; every process it started has been stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
