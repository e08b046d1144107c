"""``ztgate serve`` killed with SIGKILL under load: the chain still verifies, and every request
whose caller got an answer has its record."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.audit.store.backends import postgres_database
from tests.processes import ALLOW_ALL, ZTGATE, GatewayProcesses
from tests.stackrunner import RunningStack
from ztgate.audit.signing import SigningKey
from ztgate.audit.store.base import AuditStore
from ztgate.audit.store.factory import open_store


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[tuple[GatewayProcesses, RunningStack]]:
    stack = RunningStack()
    gateways = GatewayProcesses(stack, tmp_path)
    yield gateways, stack
    gateways.stop_all()
    stack.close()


def _load(url: str, token: str, answered: list[str], stop: threading.Event) -> None:
    body = {
        "model": "claude-haiku-5-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    headers = {"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            try:
                response = client.post(f"{url}/v1/messages", json=body, headers=headers)
            except httpx.TransportError:
                return  # the gateway is gone
            if response.status_code == 200:
                answered.append(response.headers["ztgate-request-id"])


@pytest.mark.parametrize(
    ("backend", "durability"),
    [
        ("sqlite", "fsync"),
        pytest.param("sqlite", "process", marks=pytest.mark.long),  # in make reliability
        ("postgres", "process"),
    ],
)
def test_sigkill_under_load_leaves_a_verifiable_chain_with_every_answered_request(
    processes: tuple[GatewayProcesses, RunningStack], tmp_path: Path, backend: str, durability: str
) -> None:
    """Both durability settings promise that a request goes upstream only once its record
    survives ztgate being killed: kill -9 under load loses no answered request's record."""
    gateways, stack = processes
    with contextlib.ExitStack() as cleanup:
        store, extra = None, ALLOW_ALL
        if backend == "postgres":
            store = cleanup.enter_context(postgres_database())
            key = tmp_path / "signing.pem"
            key.write_bytes(SigningKey.generate().private_pem())
            extra = ALLOW_ALL + f'audit:\n  signing_key_file: "{key}"\n'
        process, url = gateways.start(store=store, extra=extra, durability=durability)
        port = url.rsplit(":", 1)[1]
        config = tmp_path / f"ztgate-{port}.yaml"
        token = stack.token()
        answered: list[str] = []
        stop = threading.Event()
        workers = [
            threading.Thread(target=_load, args=(url, token, answered, stop)) for _ in range(8)
        ]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 6
        while len(answered) < 120 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        stop.set()
        for worker in workers:
            worker.join(10)
        assert len(answered) >= 50, "the load never got going"

        verified = subprocess.run(
            [*ZTGATE, "audit", "verify", "--config", str(config)],
            capture_output=True,
            text=True,
            env={**os.environ, "SIM_KEY": "unused"},
            timeout=60,
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr

        async def recorded() -> set[str]:
            found: AuditStore = open_store(store or f"sqlite:///{tmp_path}/audit-{port}.db")
            try:
                return {
                    e.request_id
                    async for e in found.events()
                    if e.kind == "request" and e.request_id
                }
            finally:
                await found.close()

        missing = set(answered) - asyncio.run(recorded())
        assert not missing, f"{len(missing)} answered requests have no record"
