"""``store.url`` to a store."""

from __future__ import annotations

from pathlib import Path

import pytest

from ztgate.audit.store.common import redact_url
from ztgate.audit.store.factory import open_store
from ztgate.audit.store.postgres import PostgresStore
from ztgate.audit.store.sqlite import SQLiteStore
from ztgate.config.store_url import sqlite_path


async def test_a_relative_sqlite_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///.ztgate/nested/audit.db")
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == tmp_path / ".ztgate" / "nested" / "audit.db"
        assert store.path.parent.is_dir()  # created for it
        assert await store.migrate() == ["0001_audit", "0002_reviews", "0003_health"]
        assert store.path.exists()
    finally:
        await store.close()


def test_an_absolute_sqlite_path() -> None:
    assert sqlite_path("sqlite:////var/lib/ztgate/audit.db") == Path("/var/lib/ztgate/audit.db")
    with pytest.raises(ValueError, match="names no file"):
        sqlite_path("sqlite:///")


async def test_postgres_urls_connect_lazily() -> None:
    for url in ("postgresql://u:pw@db.internal/audit", "postgres://u@db.internal:6543/audit"):
        store = open_store(url)
        assert isinstance(store, PostgresStore)
        assert "pw" not in repr(store)
        await store.close()


def test_other_schemes_are_refused_without_their_password() -> None:
    with pytest.raises(ValueError, match="unsupported store URL mysql://u@db/x") as info:
        open_store("mysql://u:topsecret@db/x")
    assert "topsecret" not in str(info.value)


def test_redact_url_drops_password_and_options() -> None:
    assert (
        redact_url("postgresql://audit:pa%40ss@[::1]:5433/z?password=x&sslmode=require")
        == "postgresql://audit@[::1]:5433/z"
    )
    assert redact_url("postgresql://db/z") == "postgresql://db/z"
