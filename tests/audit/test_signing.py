"""The checkpoint signing key: configured, read from a file, or created once beside SQLite."""

from __future__ import annotations

import hashlib
import logging
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from ztgate.audit.signing import (
    SigningKey,
    key_id,
    load_public_key,
    load_signing_key,
    public_keys,
    sqlite_key_path,
)
from ztgate.config import ConfigError
from ztgate.config.model import AuditConfig


@pytest.fixture
def audit_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the ``ztgate.audit`` logger (whatever the rest of the suite did to logging)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("ztgate.audit")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_key_id_is_the_first_16_hex_of_sha256_over_the_raw_public_key() -> None:
    key = SigningKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.key_id == hashlib.sha256(raw).hexdigest()[:16] == key_id(key.public_key())
    assert key.key_id not in repr(key.private_pem())
    assert "PRIVATE" not in repr(key)


def test_a_configured_pem_key_is_used() -> None:
    key = SigningKey.generate()
    config = AuditConfig(signing_key=SecretStr(key.private_pem().decode()))
    assert load_signing_key(config, "postgresql://db/audit").key_id == key.key_id


def test_a_key_file_is_read(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "audit.pem"
    path.write_bytes(key.private_pem())
    config = AuditConfig(signing_key_file=str(path))
    assert load_signing_key(config, "postgresql://db/audit").key_id == key.key_id
    missing = AuditConfig(signing_key_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match=r"audit\.signing_key_file: cannot read"):
        load_signing_key(missing, "sqlite:///x.db")
    path.write_text("not a key")
    with pytest.raises(ConfigError, match=r"audit\.signing_key_file: .*not an unencrypted PEM"):
        load_signing_key(config, "sqlite:///x.db")


def test_postgres_without_a_key_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match=r"^audit\.signing_key: a PostgreSQL audit store"):
        load_signing_key(AuditConfig(), "postgresql://postgres@db/audit")


def test_sqlite_without_a_key_creates_one_beside_the_database_once(
    tmp_path: Path, audit_log: list[logging.LogRecord]
) -> None:
    url = f"sqlite:///{tmp_path}/data/audit.db"
    created = load_signing_key(AuditConfig(), url)
    path = tmp_path / "data" / "audit.db.signing-key.pem"
    assert sqlite_key_path(url) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert SigningKey.from_pem(path.read_bytes()).key_id == created.key_id
    [record] = audit_log
    assert record.getMessage() == "created an audit signing key"
    assert record.__dict__["path"] == str(path)
    pem = created.private_pem().decode()
    assert all(line not in str(record.__dict__) for line in pem.splitlines()[1:-1])
    again = load_signing_key(AuditConfig(), url)
    assert again.key_id == created.key_id
    assert len(audit_log) == 1  # logged once, when it was created
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


def test_workers_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/audit.db"
    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: load_signing_key(AuditConfig(), url).key_id, range(16)))
    assert len(set(keys)) == 1


def test_a_relative_sqlite_path_keeps_its_key_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    load_signing_key(AuditConfig(), "sqlite:///.ztgate/ztgate.db")
    assert (tmp_path / ".ztgate" / "ztgate.db.signing-key.pem").exists()


def test_public_keys_export_and_load() -> None:
    key = SigningKey.generate()
    pem = key.public_pem()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    assert key_id(load_public_key(pem)) == key.key_id
    assert list(public_keys([pem])) == [key.key_id]
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    other_pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(ValueError, match="not an Ed25519 public key"):
        load_public_key(other_pem)
    with pytest.raises(ValueError, match="not a PEM public key"):
        load_public_key("nonsense")


def test_only_ed25519_private_keys_are_accepted() -> None:
    other = ec.generate_private_key(ec.SECP256R1())
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match="must be an Ed25519 key"):
        SigningKey.from_pem(pem)
