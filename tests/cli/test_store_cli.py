"""`ztgate store migrate`, and what every audit command says when the store is out of reach:
a message and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audit.filled import Filled
from tests.audit.store.backends import postgres_database
from tests.cli.audit_stores import ztgate
from ztgate.audit.signing import SigningKey
from ztgate.audit.store.migrations import migrations


def _config(tmp_path: Path, url: str) -> Path:
    return Filled(url, SigningKey.generate(), "A" * 43 + "=").config_yaml(tmp_path)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrate_creates_the_schema_once(backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/new/audit.db"
        _migrate_twice(tmp_path, url)
        assert (tmp_path / "new" / "audit.db").exists()
    else:
        with postgres_database() as url:
            _migrate_twice(tmp_path, url)


def _migrate_twice(tmp_path: Path, url: str) -> None:
    config = _config(tmp_path, url)
    first = ztgate("store", "migrate", "--config", config)
    backend = "sqlite" if url.startswith("sqlite") else "postgres"
    applied = "".join(f"applied {m.name}\n" for m in migrations(backend))
    assert (first.code, first.stdout) == (0, applied)
    again = ztgate("store", "migrate", "--config", config)
    assert (again.code, again.stdout) == (0, "the schema is up to date\n")
    empty = ztgate("audit", "verify", "--config", config)
    assert empty.code == 0
    assert empty.stdout.startswith("ok: 0 events")


READING = [
    ("audit", "verify"),
    ("audit", "search"),
    ("audit", "export"),
    ("audit", "checkpoint", "--no-sign", "--export", "-"),
    ("sessions", "list"),
    ("replay", "ses_x", "--no-wait"),
]


@pytest.mark.parametrize("command", [*READING, ("store", "migrate")], ids=" ".join)
def test_an_unreachable_store_is_said_plainly(command: tuple[str, ...], tmp_path: Path) -> None:
    config = _config(tmp_path, "postgresql://postgres:s3cret@127.0.0.1:1/audit")
    run = ztgate(*command, "--config", config)
    assert run.code == 2
    assert run.stderr.startswith("ztgate: the audit store cannot be ")
    assert "postgresql://postgres@127.0.0.1:1/audit" in run.stderr
    assert "s3cret" not in run.output
    assert "Traceback" not in run.output


@pytest.mark.parametrize("command", READING, ids=" ".join)
def test_reading_never_creates_an_empty_sqlite_store(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    config = _config(tmp_path, f"sqlite:///{tmp_path}/missing/audit.db")
    run = ztgate(*command, "--config", config)
    assert run.code == 2
    assert f"there is no audit store at {tmp_path}/missing/audit.db" in run.stderr
    assert not (tmp_path / "missing").exists()


def test_a_schema_that_was_never_migrated(tmp_path: Path) -> None:
    (tmp_path / "empty.db").write_bytes(b"")
    run = ztgate("audit", "search", "--config", _config(tmp_path, f"sqlite:///{tmp_path}/empty.db"))
    assert run.code == 2
    assert "no such table" in run.stderr
    assert "`ztgate store migrate`" in run.stderr


def test_no_config(tmp_path: Path) -> None:
    run = ztgate("audit", "verify")
    assert run.code == 2
    assert "no config file: pass --config PATH or set ZTGATE_CONFIG" in run.stderr
