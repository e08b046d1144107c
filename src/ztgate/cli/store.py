"""``ztgate store``: the audit store's schema; and how every command that reads the audit
opens the store the gateway writes (the same ``--config`` as ``ztgate serve``).

A store that cannot be reached, or a recording that cannot be opened, ends the command with
a message that says so and what to do, never with a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click

from ztgate.audit.reader import AuditReader
from ztgate.audit.sealing import SealError
from ztgate.audit.store.base import AuditStore, StoreUnavailable
from ztgate.audit.store.factory import open_store
from ztgate.cli.common import CONFIG_OPTION, config_or_exit, fail
from ztgate.config import GatewayConfig
from ztgate.config.store_url import SQLITE_PREFIX, sqlite_path

T = TypeVar("T")


def with_store(
    config: GatewayConfig, work: Callable[[AuditStore], Awaitable[T]], *, reading: bool = True
) -> T:
    """Open the configured store, run ``work`` on it, close it; the store's failures become
    messages and exit code 2. A reading command never creates an empty SQLite database."""
    if reading:
        _refuse_missing_sqlite(config.store.url)

    async def run() -> T:
        store = open_store(config.store.url)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except StoreUnavailable as exc:
        doing = "read" if reading else "changed"
        fail(
            f"the audit store cannot be {doing}: {exc.message}\n"
            "  Is the database up, and its schema current (`ztgate store migrate`)?"
        )
    except SealError as exc:
        fail(
            f"a recording cannot be opened: {exc}\n"
            "  Set audit.recordings.encryption_key to the key the gateway sealed it with."
        )


def with_reader(config: GatewayConfig, work: Callable[[AuditReader], Awaitable[T]]) -> T:
    """:func:`with_store`, with the configured keys for recordings and checkpoints."""

    async def read(store: AuditStore) -> T:
        try:
            reader = AuditReader.from_config(config, store)
        except ValueError as exc:
            fail(f"audit: {exc}")
        return await work(reader)

    return with_store(config, read)


def _refuse_missing_sqlite(url: str) -> None:
    """Reading must not create an empty database where the gateway's was expected."""
    if url.startswith(SQLITE_PREFIX):
        path = sqlite_path(url)
        if not path.exists():
            fail(
                f"there is no audit store at {path} (store.url {url}): the gateway creates it "
                "when it starts; run the command where the gateway runs, or fix store.url"
            )


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Manage the audit store.",
)
def store() -> None:
    """Manage the audit store (store.url in the config: SQLite or PostgreSQL)."""


@store.command(short_help="Apply pending schema migrations.")
@CONFIG_OPTION
def migrate(config_path: Path | None) -> None:
    """Create or upgrade the audit store's tables (store.url in the config). Safe to run
    again: migrations already applied are skipped. Prints the migrations it applied.

    \b
      ztgate store migrate --config ztgate.yaml
    """
    config = config_or_exit(config_path)

    async def work(opened: AuditStore) -> list[str]:
        return await opened.migrate()

    applied = with_store(config, work, reading=False)
    if applied:
        for name in applied:
            click.echo(f"applied {name}")
    else:
        click.echo("the schema is up to date")
