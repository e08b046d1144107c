"""``store.url`` to a store: ``sqlite:///PATH`` (embedded) or ``postgresql://...``."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ztgate.audit.store.base import AuditStore
from ztgate.audit.store.common import redact_url
from ztgate.audit.store.postgres import PostgresStore
from ztgate.audit.store.sqlite import SQLiteStore
from ztgate.config.model import Durability

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def sqlite_path(url: str) -> Path:
    """The database file of a ``sqlite:///PATH`` URL: ``sqlite:///data/z.db`` is relative to
    the working directory, ``sqlite:////var/lib/z.db`` absolute."""
    path = url.removeprefix(SQLITE_PREFIX)
    if not path:
        raise ValueError("sqlite:///PATH names no file")
    return Path(path).absolute()


def open_store(url: str, *, durability: Durability = "fsync") -> AuditStore:
    """A store for ``url``; nothing is connected until first used (then failures raise
    StoreUnavailable). The SQLite file's folder is created here."""
    if url.startswith(SQLITE_PREFIX):
        path = sqlite_path(url)
        with contextlib.suppress(OSError):  # if it fails, first use says so (StoreUnavailable)
            path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path, durability=durability)
    if url.startswith(POSTGRES_PREFIXES):
        return PostgresStore(url, durability=durability)
    raise ValueError(
        f"unsupported store URL {redact_url(url)}: use sqlite:///PATH or postgresql://"
    )
