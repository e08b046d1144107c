"""Running the gateway under uvicorn (uvloop, and ztgate's own HTTP protocol on httptools), in
one process or several."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn

from ztgate.config import GatewayConfig, load_config
from ztgate.datapath.app import Gateway
from ztgate.datapath.logs import configure_logging
from ztgate.datapath.protocol import Limits, protocol_factory
from ztgate.datapath.tls import context_factory
from ztgate.observe.metrics import MULTIPROCESS_ENV

CONFIG_ENV = "ZTGATE_CONFIG"
WORKERS_ENV = "ZTGATE_WORKERS"  # ``serve --workers N`` overrides server.workers in each worker
# Where each worker leaves word that its shutdown cut answers short, for the exit status.
SHUTDOWN_REPORTS_ENV = "ZTGATE_SHUTDOWN_REPORTS"
EXIT_FORCED = 1  # the graceful window ran out: some answers were cut (each with an error)

# File descriptors kept for what is not a client connection: the store, the IdP, logs.
_RESERVED_FILES = 64


class ConnectionLimitError(Exception):
    """``server.max_connections`` cannot be served with this process' open-file limit."""


def connection_limit(config: GatewayConfig) -> int:
    """How many client connections one process takes: each may hold an upstream connection
    too, so two files each. The soft open-file limit is raised to the hard one first."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    fits = max(1, (soft - _RESERVED_FILES) // 2)
    wanted = config.server.max_connections
    if wanted is None:
        return fits
    if wanted > fits:
        raise ConnectionLimitError(
            f"server.max_connections is {wanted}, but this process may open {soft} files: "
            f"at most {fits} connections fit (raise the open-file limit, ulimit -n)"
        )
    return wanted


def _uvicorn_options(config: GatewayConfig) -> dict[str, Any]:
    limits = Limits.from_config(config.server, connection_limit(config))
    tls = config.server.tls
    return {
        "ssl_context_factory": context_factory(tls) if tls is not None else None,
        "host": config.listen_host,
        "port": config.listen_port,
        "loop": "uvloop",
        "http": protocol_factory(limits),
        "lifespan": "on",
        "access_log": False,  # ztgate writes its own structured line per request
        "server_header": False,
        "proxy_headers": False,  # X-Forwarded-* from callers is not trusted
        "log_config": None,
        "timeout_graceful_shutdown": int(config.server.graceful_shutdown),
        "backlog": 4096,
    }


def serve(config: GatewayConfig, config_path: Path | None, workers: int) -> int:
    """Serve until SIGINT/SIGTERM; in-flight answers get the graceful-shutdown period. The
    exit status: 0 after a clean drain, EXIT_FORCED when the window ended with answers cut."""
    if workers == 1:
        gateway = Gateway(config)
        # uvicorn raises the signal it stopped on again once it has shut down, which would
        # end the process as killed by it (143) after a clean drain: the status is ours.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _after_shutdown)
        uvicorn.run(gateway, **_uvicorn_options(config))
        return EXIT_FORCED if gateway.cut_short else 0
    if config_path is None:
        raise ValueError("several workers need the config as a file")
    # Each worker process builds its own Gateway from the same file.
    os.environ[CONFIG_ENV] = str(config_path.resolve())
    # Each worker must know it has siblings: its shared state (quotas, one-time tokens,
    # container owners) then lives where all of them see it, not in its own memory.
    os.environ[WORKERS_ENV] = str(workers)
    if config.metrics.enabled:
        os.environ[MULTIPROCESS_ENV] = _metrics_directory(config.metrics.multiprocess_dir)
    reports = Path(tempfile.mkdtemp(prefix="ztgate-shutdown-"))
    os.environ[SHUTDOWN_REPORTS_ENV] = str(reports)
    try:
        uvicorn.run(
            "ztgate.datapath.server:create_app",
            factory=True,
            workers=workers,
            **_uvicorn_options(config),
        )
        return EXIT_FORCED if any(reports.iterdir()) else 0
    finally:
        shutil.rmtree(reports, ignore_errors=True)


def _after_shutdown(signum: int, frame: FrameType | None) -> None:
    """Receives the signal uvicorn raises again after its shutdown (it has been handled)."""


def _metrics_directory(configured: str | None) -> str:
    """Where the workers share their metrics: emptied at start, so a previous run's figures
    (and dead workers' gauges) are not added to this one's."""
    if configured is None:
        return tempfile.mkdtemp(prefix="ztgate-metrics-")
    directory = Path(configured)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return str(directory)


def in_process_server(config: GatewayConfig) -> tuple[uvicorn.Server, socket.socket]:
    """A server for the demo and tests on an already-bound socket (port 0 picks a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit it: without it, a response's head and body in two writes wait
    # on the client's delayed ACK (~40 ms a request on loopback).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((config.listen_host, config.listen_port))
    server = uvicorn.Server(uvicorn.Config(Gateway(config), **_uvicorn_options(config)))
    return server, sock


def create_app() -> Gateway:
    """Factory for ``uvicorn --factory`` and ``--workers``: the config path comes from the env."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        raise RuntimeError(f"{CONFIG_ENV} is not set")
    config = load_config(path)
    workers = os.environ.get(WORKERS_ENV)
    if workers:
        server = config.server.model_copy(update={"workers": int(workers)})
        config = config.model_copy(update={"server": server})
    configure_logging(config.logging.level)  # a spawned worker inherits no logging setup
    reports = os.environ.get(SHUTDOWN_REPORTS_ENV)
    return Gateway(config, shutdown_report=Path(reports) if reports else None)
