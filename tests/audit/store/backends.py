"""The audit store tests' backends: SQLite in tmp_path and the machine's real PostgreSQL.

Every test that takes ``store`` runs once per backend. Each test module gets a PostgreSQL
database of its own with a random name (dropped afterwards), and each test an empty schema in
it. ``RawDatabase`` reaches past the store, as an attacker with database access would.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ztgate.audit.store.base import AuditStore
from ztgate.audit.store.factory import open_store
from ztgate.config.store_url import sqlite_path

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
BACKENDS = ["sqlite", "postgres"]
TABLES = (
    "events",
    "checkpoints",
    "recordings",
    "reviews",
    "review_grants",
    "ztgate_shared_counters",
    "ztgate_shared_claims",
    "schema_migrations",
)


def postgres_ready() -> bool:
    return (
        subprocess.run(
            ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], check=False, timeout=10
        ).returncode
        == 0
    )


def pg_cluster(action: str) -> None:
    """``pg_ctlcluster`` on the machine's one cluster: start or stop."""
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


def ensure_postgres() -> None:
    """Start the local cluster when it is down (as .ci/run does), and wait for it."""
    if postgres_ready():
        return
    if shutil.which("pg_ctlcluster") is None:
        raise AssertionError("PostgreSQL is not running and pg_ctlcluster is not installed")
    pg_cluster("start")
    deadline = time.monotonic() + 30
    while not postgres_ready():
        if time.monotonic() > deadline:
            raise AssertionError("PostgreSQL did not start")
        time.sleep(0.2)


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(f"{PG_SERVER}/postgres")
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _reset(url: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"DROP TABLE IF EXISTS {', '.join(TABLES)}")
    finally:
        await connection.close()


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a fresh database on the machine's PostgreSQL, dropped afterwards."""
    ensure_postgres()
    name = f"ztgate_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        ensure_postgres()  # a test that stopped it has restarted it; be sure before dropping
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def pg_database() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database for this test module."""
    with postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/audit.db"
    url: str = request.getfixturevalue("pg_database")
    asyncio.run(_reset(url))
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[AuditStore]:
    """A migrated, empty store."""
    opened = open_store(store_url)
    await opened.migrate()
    yield opened
    await opened.close()


class RawDatabase:
    """Direct SQL on the store's database (``?`` placeholders on both backends)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.postgres = not url.startswith("sqlite:")

    async def execute(self, sql: str, *params: Any) -> None:
        await self.fetch(sql, *params)

    async def fetch(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if not self.postgres:
            connection = sqlite3.connect(sqlite_path(self.url), isolation_level=None)
            with contextlib.closing(connection):
                return list(connection.execute(sql, params).fetchall())
        numbered = sql
        for index in range(1, len(params) + 1):
            numbered = numbered.replace("?", f"${index}", 1)
        connection = await asyncpg.connect(self.url)
        try:
            return [tuple(row) for row in await connection.fetch(numbered, *params)]
        finally:
            await connection.close()
