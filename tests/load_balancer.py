"""nginx (from Debian) as the load balancer in front of gateway replicas, as operators run one.

Its own config, prefix, pid file and logs in the test's folder, in the foreground, on a free
loopback port. Round robin over the replicas with keep-alive connections to them. Each answer
says which replica gave it (``x-upstream-addr``: nginx's ``$upstream_addr``, every replica it
tried for that request, comma-separated), and the access log records the same per request.

What a caller sees when a replica dies: nginx passes a request to the next replica when it could
not connect (nothing was sent), so callers of a dead replica are served by the others; a POST
already sent to a replica that dies is NOT passed on (nginx's default: a non-idempotent request
may have run), so its caller gets ``502`` from nginx (or, for a stream whose head had arrived,
a cut-off stream). A replica that failed is left out for ``fail_timeout`` (1 s), then tried again.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.processes import free_port

NGINX = shutil.which("nginx") or next(
    (path for path in ("/usr/sbin/nginx", "/sbin/nginx") if os.access(path, os.X_OK)), None
)
REPLICA_HEADER = "x-upstream-addr"
HEALTH = "/_lb/health"  # answered by nginx itself: the balancer is up


def _config(workdir: Path, port: int, backends: Sequence[str]) -> str:
    servers = "".join(f"        server {b} max_fails=1 fail_timeout=1s;\n" for b in backends)
    # As root, nginx would run its workers as nobody, who cannot enter pytest's 0700 folders.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "".join(
        f"    {kind}_temp_path {workdir}/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"{user}"
        "daemon off;\n"
        "master_process on;\n"
        "worker_processes 1;\n"  # one round robin: consecutive requests go to different replicas
        f"pid {workdir}/nginx.pid;\n"
        f"error_log {workdir}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        f"{temp}"
        '    log_format replicas escape=json \'{"status":$status,"request":"$request",\'\n'
        '        \'"upstream":"$upstream_addr","upstream_status":"$upstream_status",\'\n'
        '        \'"request_id":"$upstream_http_ztgate_request_id"}\';\n'
        f"    access_log {workdir}/access.log replicas;\n"
        "    upstream ztgate {\n"
        f"{servers}"
        "        keepalive 64;\n"
        # Shorter than ztgate's idle_timeout (30s): nginx never reuses a connection ztgate
        # is closing (a POST sent on one would be answered 502, not retried).
        "        keepalive_timeout 10s;\n"
        "    }\n"
        "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        f"        location = {HEALTH} {{ return 200 'ok'; }}\n"
        "        location / {\n"
        "            proxy_pass http://ztgate;\n"
        "            proxy_http_version 1.1;\n"
        '            proxy_set_header Connection "";\n'
        "            proxy_set_header Host $http_host;\n"
        "            proxy_buffering off;\n"  # streams (SSE) pass event by event
        "            proxy_request_buffering on;\n"
        "            proxy_read_timeout 60s;\n"
        # the default, spelled out: connect failures go to the next replica; a POST already
        # sent does not (no `non_idempotent`)
        "            proxy_next_upstream error timeout;\n"
        f"            add_header {REPLICA_HEADER} $upstream_addr always;\n"
        "        }\n"
        "    }\n"
        "}\n"
    )


class LoadBalancer:
    """nginx in front of ``backends`` (``HOST:PORT`` each); a context manager that stops it."""

    def __init__(self, workdir: Path, backends: Sequence[str]) -> None:
        self.workdir = workdir / "nginx"
        self.backends = list(backends)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert NGINX is not None, "nginx is not installed"
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "nginx.conf"
        config.write_text(_config(self.workdir, self.port, self.backends))
        with (self.workdir / "stderr.log").open("wb") as stderr:
            self._process = subprocess.Popen(
                [NGINX, "-p", str(self.workdir), "-c", str(config), "-e", "stderr"],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,  # its workers share the group: stop() ends them all
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if self._healthy():
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"nginx did not start: {self.logs()}")

    def _healthy(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(f"GET {HEALTH} HTTP/1.0\r\nHost: lb\r\n\r\n".encode())
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # nginx's fast shutdown
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        with contextlib.suppress(ProcessLookupError):  # a worker left behind, if any
            os.killpg(process.pid, signal.SIGKILL)

    def logs(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.workdir / name
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def access_log(self) -> list[dict[str, Any]]:
        """One entry per request nginx answered: status, request line, the replicas tried."""
        path = self.workdir / "access.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def __enter__(self) -> LoadBalancer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
