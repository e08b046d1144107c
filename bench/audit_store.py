"""Audit throughput: sustained events per second through the group-committing AuditWriter.

Every request ztgate forwards first waits for its audit event to be durably committed ("no
audit, no access"), so the audit store's throughput caps the gateway's. This runs
``--producers`` concurrent writers (64: as many requests in flight), each writing one realistic
request event (~600 bytes of canonical JSON) and waiting for its commit, into SQLite (WAL,
``synchronous=FULL``, a file in a temp dir) and into the local PostgreSQL (a temporary
database, dropped afterwards), for ``--seconds`` each. Checkpoints are signed every 1000
events, as by default. The chain is verified afterwards. Target: 20,000 events/s on each.

Run: ``.venv/bin/python bench/audit_store.py`` (``--backends``, ``--seconds``, ``--events`` to
stop after a count instead, ``--postgres``, ``--check`` to exit 1 on a miss).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import uvloop

from ztgate.audit.chain import canonical_body, verify_chain_async
from ztgate.audit.events import AuditEvent
from ztgate.audit.signing import SigningKey
from ztgate.audit.store.base import AuditStore
from ztgate.audit.store.factory import open_store
from ztgate.audit.writer import AuditWriter

TARGET = 20_000
DATA: dict[str, Any] = {
    "principal": "github/acme-corp/payments-service",
    "issuer": "github",
    "subject": "repo:acme-corp/payments-service:ref:refs/heads/main",
    "groups": ["ci", "payments", "team-042"],
    "client_ip": "10.42.17.3",
    "user_agent": "claude-cli/2.1.3",
    "method": "POST",
    "path": "/v1/messages",
    "endpoint": "messages",
    "model": "claude-sonnet-4-5",
    "skills": ["xlsx"],
    "tools": ["code_execution"],
    "stream": True,
    "session_id": "3f2a9c1e-58d4-4c1b-9a57-0c2e4b7d9e11",
    "decision": {"effect": "allow", "reason": "rule", "rule_ids": ["ci-1"]},
    "findings": {"email": 1},
    "bytes_in": 18234,
    "policy_input": ["groups", "model", "tools"],
}


def event() -> AuditEvent:
    """A request event as the gateway writes it: a random request id (as ``datapath/app.py``
    makes them, so the request-id index is written at random places, as in production)."""
    return AuditEvent(
        kind="request",
        at=time.time(),
        data=DATA,
        request_id="req_ztg_" + os.urandom(12).hex(),
        principal=DATA["principal"],
    )


@dataclass
class Result:
    backend: str
    events: int
    seconds: float
    transactions: int
    p50_ms: float
    p99_ms: float
    verified: bool

    @property
    def rate(self) -> float:
        return self.events / self.seconds


async def run(store: AuditStore, backend: str, args: argparse.Namespace) -> Result:
    await store.migrate()
    key = SigningKey.generate()
    writer = AuditWriter(store, key, checkpoint_every=1000)
    await writer.start()
    latencies: list[float] = []
    counter = 0
    deadline = time.perf_counter() + args.seconds

    async def producer() -> None:
        nonlocal counter
        while (counter < args.events) if args.events else (time.perf_counter() < deadline):
            counter += 1
            began = time.perf_counter()
            await writer.write([event()])
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(producer() for _ in range(args.producers)))
    elapsed = time.perf_counter() - began
    await writer.close()
    head = await store.head()
    keys = {key.key_id: key.public_key()}
    report = await verify_chain_async(store.events(), await store.checkpoints(), keys)
    latencies.sort()
    assert head is not None
    assert head.seq == len(latencies)
    return Result(
        backend=backend,
        events=len(latencies),
        seconds=elapsed,
        transactions=writer.transactions,
        p50_ms=latencies[len(latencies) // 2] * 1000,
        p99_ms=latencies[len(latencies) * 99 // 100] * 1000,
        verified=report.ok and report.events == len(latencies),
    )


async def _admin(server: str, statement: str) -> None:
    connection = await asyncpg.connect(f"{server}/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def bench_sqlite(args: argparse.Namespace) -> Result:
    with tempfile.TemporaryDirectory(prefix="ztgate-bench-") as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'audit.db'}")
        try:
            return await run(store, "SQLite (WAL, synchronous=FULL)", args)
        finally:
            await store.close()


async def bench_postgres(args: argparse.Namespace) -> Result:
    server = args.postgres.rstrip("/")
    name = f"ztgate_bench_{secrets.token_hex(4)}"
    await _admin(server, f'CREATE DATABASE "{name}"')
    store = open_store(f"{server}/{name}")
    try:
        return await run(store, "PostgreSQL (asyncpg)", args)
    finally:
        await store.close()
        await _admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--producers", type=int, default=64, help="concurrent writers (64)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per backend (10)")
    parser.add_argument("--events", type=int, default=0, help="stop after this many instead")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    size = len(canonical_body(1, event()))
    print(
        f"{args.producers} producers, one {size}-byte request event per write, each waiting "
        "for its commit; checkpoints every 1000 events.\n"
    )
    print(
        "| backend | events | seconds | events/s | transactions | events per transaction "
        "| write p50 | write p99 | chain verifies |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    misses = []
    benches = {"sqlite": bench_sqlite, "postgres": bench_postgres}
    for backend in args.backends.split(","):
        # uvloop, as ``ztgate serve`` runs (uvicorn's fast path).
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            result = runner.run(benches[backend.strip()](args))
        print(
            f"| {result.backend} | {result.events:,} | {result.seconds:.1f} | "
            f"{result.rate:,.0f} | {result.transactions:,} | "
            f"{result.events / max(result.transactions, 1):.1f} | {result.p50_ms:.2f} ms | "
            f"{result.p99_ms:.2f} ms | {'yes' if result.verified else 'NO'} |"
        )
        if result.rate < TARGET or not result.verified:
            misses.append(result.backend)
    verdict = "met" if not misses else f"missed by: {', '.join(misses)}"
    print(f"\nTarget >= {TARGET:,} events/s per backend: {verdict}.")
    sys.stdout.flush()
    return 1 if args.check and misses else 0


if __name__ == "__main__":
    sys.exit(main())
