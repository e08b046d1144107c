"""The ``audit:`` section: defaults, keys, and errors that name the key."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ztgate.audit.signing import SigningKey
from ztgate.config import ConfigError, parse_config

BASE = """
policy: policy.yaml
upstream: {api_key: k}
identity: {issuers: [{name: a, issuer: 'https://idp.example.com', audiences: [z]}]}
"""


def test_defaults() -> None:
    audit = parse_config(BASE, environ={}).audit
    assert audit.signing_key is None
    assert audit.signing_key_file is None
    assert (audit.checkpoint_every, audit.checkpoint_interval) == (1000, 60.0)
    recordings = audit.recordings
    assert recordings.enabled
    assert recordings.encryption_key is None
    assert recordings.max_bytes == 4 * 1024**2
    assert recordings.retention_days == 30


def test_every_key_set_with_keys_from_the_environment() -> None:
    signing = SigningKey.generate().private_pem().decode()
    sealing = base64.b64encode(os.urandom(32)).decode()
    text = BASE + (
        "audit:\n"
        '  signing_key: "${SIGNING_KEY}"\n'
        "  checkpoint_every: 500\n"
        "  checkpoint_interval: 30s\n"
        "  recordings:\n"
        "    enabled: false\n"
        '    encryption_key: "${RECORDING_KEY}"\n'
        "    max_bytes: 1MiB\n"
        "    retention_days: null\n"
    )
    config = parse_config(text, environ={"SIGNING_KEY": signing, "RECORDING_KEY": sealing})
    audit = config.audit
    assert audit.signing_key is not None
    assert audit.signing_key.get_secret_value() == signing
    assert (audit.checkpoint_every, audit.checkpoint_interval) == (500, 30.0)
    assert audit.recordings.encryption_key is not None
    assert audit.recordings.encryption_key.get_secret_value() == sealing
    assert (audit.recordings.enabled, audit.recordings.max_bytes) == (False, 1024**2)
    assert audit.recordings.retention_days is None
    assert signing not in repr(config)
    assert sealing not in repr(config)


@pytest.mark.parametrize(
    ("snippet", "where", "what"),
    [
        ("audit: {signing_key: 'not a pem'}", "audit.signing_key", "not an unencrypted PEM"),
        ("audit: {checkpoint_every: 0}", "audit.checkpoint_every", "greater than or equal to 1"),
        ("audit: {checkpoint_interval: 0s}", "audit", "must be positive"),
        ("audit: {checkpoint_interval: soon}", "audit.checkpoint_interval", "not a duration"),
        ("audit: {recordings: {encryption_key: c2hvcnQ=}}", "encryption_key", "32 random bytes"),
        ("audit: {recordings: {encryption_key: '!!'}}", "encryption_key", "32 random bytes"),
        ("audit: {recordings: {max_bytes: lots}}", "audit.recordings.max_bytes", "not a size"),
        ("audit: {recordings: {retention_days: 0}}", "retention_days", "greater than or equal"),
        ("audit: {signing_keys: x}", "audit.signing_keys", "unknown key"),
    ],
)
def test_invalid_values_name_the_key(snippet: str, where: str, what: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + snippet + "\n", environ={})
    message = str(info.value)
    assert where in message
    assert what in message


def test_a_key_and_a_key_file_together_are_refused() -> None:
    pem = SigningKey.generate().private_pem().decode()
    text = BASE + 'audit:\n  signing_key: "${K}"\n  signing_key_file: k.pem\n'
    with pytest.raises(ConfigError, match="not both"):
        parse_config(text, environ={"K": pem})


def test_a_non_ed25519_signing_key_is_refused() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(ConfigError, match=r"audit\.signing_key: the audit signing key must be"):
        parse_config(BASE + 'audit:\n  signing_key: "${K}"\n', environ={"K": pem})
