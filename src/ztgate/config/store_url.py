"""What ``store.url`` names: the embedded SQLite file or a PostgreSQL database. The audit
store opens it; the shared state lives beside it (``ztgate.shared``)."""

from __future__ import annotations

from pathlib import Path

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def sqlite_path(url: str) -> Path:
    """The database file of a ``sqlite:///PATH`` URL: ``sqlite:///data/z.db`` is relative to
    the working directory, ``sqlite:////var/lib/z.db`` absolute."""
    path = url.removeprefix(SQLITE_PREFIX)
    if not path:
        raise ValueError("sqlite:///PATH names no file")
    return Path(path).absolute()
