"""The checkpoint signing key: from the config, or made once beside an embedded database.

A checkpoint is only as good as its key is secret, so the key never appears in a log line or
an error. PostgreSQL deployments run several replicas that must be verifiable with keys an
operator knows about, so there the key must be configured; the embedded SQLite default gets a
key of its own on first start, written beside the database with mode 0600.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ztgate.config import ConfigError
from ztgate.config.model import AuditConfig

log = logging.getLogger("ztgate.audit")

KEY_FILE_SUFFIX = ".signing-key.pem"


def key_id(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256 over the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    key_id: str

    @classmethod
    def generate(cls) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        return cls(private, key_id(private.public_key()))

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SigningKey:
        """ValueError (never quoting the text) unless it is an unencrypted Ed25519 PEM key."""
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            private = serialization.load_pem_private_key(data.strip(), password=None)
        except (ValueError, TypeError):
            raise ValueError("not an unencrypted PEM (PKCS#8) private key") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError("the audit signing key must be an Ed25519 key")
        return cls(private, key_id(private.public_key()))

    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_pem(self) -> str:
        """The public key to hand to verifiers (``ztgate audit verify --public-key``)."""
        return public_key_pem(self.public_key())

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def __repr__(self) -> str:  # never the key itself
        return f"SigningKey(key_id={self.key_id!r})"


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; ValueError otherwise."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data.strip())
    except (ValueError, TypeError):
        raise ValueError("not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def public_keys(pems: Iterable[str | bytes]) -> dict[str, Ed25519PublicKey]:
    """Verification keys by key id, as :func:`ztgate.audit.chain.verify_chain` takes them."""
    keys = {}
    for pem in pems:
        key = load_public_key(pem)
        keys[key_id(key)] = key
    return keys


def sqlite_key_path(store_url: str) -> Path | None:
    """Where an embedded store keeps its own key (None for a server database)."""
    if not store_url.startswith("sqlite:///"):
        return None
    database = Path(store_url.removeprefix("sqlite:///"))
    return database.with_name(database.name + KEY_FILE_SUFFIX)


def load_signing_key(config: AuditConfig, store_url: str) -> SigningKey:
    """The key that signs checkpoints; ConfigError (naming the key) when there is none usable."""
    if config.signing_key is not None:
        try:
            return SigningKey.from_pem(config.signing_key.get_secret_value())
        except ValueError as exc:
            raise ConfigError(f"audit.signing_key: {exc}") from None
    if config.signing_key_file is not None:
        return _read_key_file(Path(config.signing_key_file), "audit.signing_key_file")
    path = sqlite_key_path(store_url)
    if path is None:
        raise ConfigError(
            "audit.signing_key: a PostgreSQL audit store needs a configured Ed25519 signing "
            "key (audit.signing_key or audit.signing_key_file), shared by every replica, so "
            "that checkpoints can be verified; create one with "
            "`openssl genpkey -algorithm ed25519`"
        )
    if path.exists():
        return _read_key_file(path, "audit.signing_key_file")
    return _create_key_file(path)


def _read_key_file(path: Path, setting: str) -> SigningKey:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from None
    try:
        return SigningKey.from_pem(text)
    except ValueError as exc:
        raise ConfigError(f"{setting}: {path}: {exc}") from None


def _create_key_file(path: Path) -> SigningKey:
    """Write a new key at ``path`` unless another process got there first (then use theirs):
    written to a private temporary file, then hard-linked into place, so a key file is never
    seen half written and two workers starting together agree on one key."""
    key = SigningKey.generate()
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key.private_pem())
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    except FileExistsError:
        return _read_key_file(path, "audit.signing_key_file")
    except OSError as exc:
        raise ConfigError(
            f"audit.signing_key: no key is configured and none could be created at {path}: "
            f"{exc.strerror}"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()
    log.warning(
        "created an audit signing key",
        extra={"event": "audit_key_created", "path": str(path), "key_id": key.key_id},
    )
    return key
