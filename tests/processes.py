"""`ztgate serve` as real processes, wired to a running stack's issuer and upstream simulator."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.stackrunner import RunningStack
from ztgate.devtools.stack import SIMULATOR_KEY

ZTGATE = [sys.executable, "-m", "ztgate"]
ALLOW_ALL = "policy:\n  rules: [{id: everyone, effect: allow}]\n"


@contextlib.contextmanager
def replay_server(session: str, config: Path) -> Iterator[str]:
    """``ztgate replay SESSION --serve`` on a free loopback port: its base URL, until exit."""
    process = subprocess.Popen(
        [*ZTGATE, "replay", session, "--config", str(config), "--serve", "--listen", "127.0.0.1:0"],
        env={k: v for k, v in os.environ.items() if k != "ZTGATE_CONFIG"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        match = re.search(r"at (http://127\.0\.0\.1:\d+)", banner)
        assert match, banner + process.stderr.read()
        yield match.group(1)
    finally:
        process.terminate()
        process.communicate(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcesses:
    """Starts gateways as operators do and stops every one of them (and their workers)."""

    def __init__(self, stack: RunningStack, workdir: Path) -> None:
        self._stack = stack
        self._workdir = workdir
        self.processes: list[subprocess.Popen[str]] = []

    def config(
        self,
        port: int,
        extra: str = ALLOW_ALL,
        store: str | None = None,
        durability: str = "fsync",
        graceful: str = "10s",
    ) -> Path:
        """A gateway's config; its audit store is its own SQLite file unless ``store`` (a URL)
        is given: gateways that share one act as replicas, or as one gateway restarted."""
        path = self._workdir / f"ztgate-{port}.yaml"
        store = store or f"sqlite:///{self._workdir}/audit-{port}.db"
        path.write_text(
            f'listen: "127.0.0.1:{port}"\n'
            "upstream:\n"
            f'  url: "{self._stack.stack.simulator.base_url}"\n'
            '  api_key: "${SIM_KEY}"\n'
            "identity:\n"
            "  issuers:\n"
            "    - name: demo\n"
            f'      issuer: "{self._stack.stack.issuer.base_url}"\n'
            '      audiences: ["ztgate"]\n'
            "server:\n"
            f"  graceful_shutdown: {graceful}\n"
            "store:\n"
            f'  url: "{store}"\n'
            f"  durability: {durability}\n" + extra
        )
        return path

    def start(
        self,
        *args: str,
        extra: str = ALLOW_ALL,
        store: str | None = None,
        durability: str = "fsync",
        graceful: str = "10s",
    ) -> tuple[subprocess.Popen[str], str]:
        port = free_port()
        config = self.config(port, extra, store, durability, graceful)
        process = subprocess.Popen(
            [*ZTGATE, "serve", "--config", str(config), *args],
            env={**os.environ, "SIM_KEY": SIMULATOR_KEY},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # workers share the group, so teardown can stop them all
        )
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    return process, url
            except httpx.TransportError:
                time.sleep(0.1)
        process.kill()
        raise AssertionError(f"ztgate did not become ready: {process.communicate()}")

    def stop_all(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate(timeout=10)


def slow_story(client: httpx.Client, url: str, token: str) -> Any:
    """A streamed request the simulator answers slowly (50 ms an event): one in flight."""
    return client.stream(
        "POST",
        url + "/v1/messages",
        headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"},
        json={
            "model": "sim-slow",
            "max_tokens": 64,
            "stream": True,
            "messages": [{"role": "user", "content": "a slow story"}],
        },
        timeout=30,
    )
