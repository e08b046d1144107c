"""``store.url`` to a store: ``sqlite:///PATH`` (embedded) or ``postgresql://...``."""

from __future__ import annotations

import contextlib

from ztgate.audit.store.base import AuditStore
from ztgate.audit.store.common import redact_url
from ztgate.audit.store.postgres import PostgresStore
from ztgate.audit.store.sqlite import SQLiteStore
from ztgate.config.model import Durability
from ztgate.config.store_url import POSTGRES_PREFIXES, SQLITE_PREFIX, sqlite_path


def open_store(
    url: str, *, durability: Durability = "fsync", write_timeout: float = 5.0
) -> AuditStore:
    """A store for ``url``; nothing is connected until first used (then failures raise
    StoreUnavailable). The SQLite file's folder is created here."""
    if url.startswith(SQLITE_PREFIX):
        path = sqlite_path(url)
        with contextlib.suppress(OSError):  # if it fails, first use says so (StoreUnavailable)
            path.parent.mkdir(parents=True, exist_ok=True)
        return SQLiteStore(path, durability=durability, busy_timeout=write_timeout)
    if url.startswith(POSTGRES_PREFIXES):
        return PostgresStore(url, durability=durability, lock_timeout=write_timeout)
    raise ValueError(
        f"unsupported store URL {redact_url(url)}: use sqlite:///PATH or postgresql://"
    )
