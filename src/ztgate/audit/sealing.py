"""Recordings as stored: encoded, capped in size, and sealed with AES-256-GCM.

A sealed blob is ``b"ZTS1" || key id (8 bytes) || nonce (12 bytes) || ciphertext+tag``. The
key id (a hash of the key, not the key) says which key sealed it, so opening with another key
fails with a clear message instead of a bare authentication error. The header and the
recording's request id are authenticated too, so a blob moved to another recording's row does
not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ztgate.audit.recording import Recording
from ztgate.audit.store.base import StoredRecording
from ztgate.config.model import RecordingsConfig

_MAGIC = b"ZTS1"
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER = len(_MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES
_FORMAT = 1


class SealError(ValueError):
    """A blob cannot be opened: another key sealed it, or it was altered."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a recording key is 32 bytes (AES-256)")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"ztgate recording key id\x00" + key).digest()[:_KEY_ID_BYTES]

    @classmethod
    def from_base64(cls, text: str) -> Sealer:
        try:
            return cls(base64.b64decode(text.strip(), validate=True))
        except binascii.Error:
            raise ValueError("a recording key is the base64 of 32 bytes") from None

    def seal(self, plaintext: bytes, *, context: bytes = b"") -> bytes:
        nonce = os.urandom(_NONCE_BYTES)  # random 96-bit nonces: safe far beyond 2**32 seals
        header = _MAGIC + self.key_id + nonce
        return header + self._aead.encrypt(nonce, plaintext, header + context)

    def open(self, sealed: bytes, *, context: bytes = b"") -> bytes:
        if len(sealed) < _HEADER + 16 or not sealed.startswith(_MAGIC):
            raise SealError("not a sealed recording")
        key_id = sealed[len(_MAGIC) : len(_MAGIC) + _KEY_ID_BYTES]
        if key_id != self.key_id:
            raise SealError(
                f"sealed with key {key_id.hex()}, but the configured key is {self.key_id.hex()}"
            )
        header = sealed[:_HEADER]
        try:
            return self._aead.decrypt(header[-_NONCE_BYTES:], sealed[_HEADER:], header + context)
        except InvalidTag:
            raise SealError("the sealed recording was altered (or belongs to another)") from None


def sealer_from_config(recordings: RecordingsConfig) -> Sealer | None:
    """The configured recording key (None: recordings are stored in the clear)."""
    key = recordings.encryption_key
    return None if key is None else Sealer.from_base64(key.get_secret_value())


def is_sealed(blob: bytes) -> bool:
    return blob.startswith(_MAGIC)


# -- encoding ----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_recording(recording: Recording) -> bytes:
    """JSON (bytes as base64): readable by anything, stable for a given recording."""
    return orjson.dumps(
        {
            "v": _FORMAT,
            "request_id": recording.request_id,
            "session_id": recording.session_id,
            "principal": recording.principal,
            "started_at": recording.started_at,
            "method": recording.method,
            "path": recording.path,
            "request_body": _b64(recording.request_body),
            "status": recording.status,
            "content_type": recording.content_type,
            "response_body": (
                None if recording.response_body is None else _b64(recording.response_body)
            ),
            "events": [[offset, _b64(data)] for offset, data in recording.events],
            "truncated": recording.truncated,
        }
    )


def decode_recording(blob: bytes) -> Recording:
    """The inverse of :func:`encode_recording`; ValueError when it is not one."""
    try:
        document = orjson.loads(blob)
        if not isinstance(document, dict) or document.get("v") != _FORMAT:
            raise ValueError("unknown recording format")
        response = document["response_body"]
        return Recording(
            request_id=_text(document["request_id"]),
            session_id=_text(document["session_id"]),
            principal=_text(document["principal"]),
            started_at=float(document["started_at"]),
            method=_text(document["method"]),
            path=_text(document["path"]),
            request_body=_unb64(document["request_body"]),
            status=None if document["status"] is None else int(document["status"]),
            content_type=document["content_type"],
            response_body=None if response is None else _unb64(response),
            events=[(float(offset), _unb64(data)) for offset, data in document["events"]],
            truncated=bool(document["truncated"]),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise ValueError(f"not a recording: {exc}") from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _unb64(value: Any) -> bytes:
    return base64.b64decode(_text(value), validate=True)


# -- the size cap ------------------------------------------------------------------------------


def cap_recording(recording: Recording, max_bytes: int) -> Recording:
    """``recording`` if it encodes within ``max_bytes``; otherwise a copy cut from the end
    and marked ``truncated``: stream events go first (latest first), then the response body,
    then the request body, each kept as a prefix. The metadata is always kept, so a cap
    smaller than the metadata alone still yields a (marked, over-size) recording."""
    if len(encode_recording(recording)) <= max_bytes:
        return recording
    cut = _copy(recording, truncated=True)
    if recording.events:
        events = recording.events
        low, high = -1, len(events) - 1  # the largest count of events that fits (-1: none)
        while low < high:
            middle = (low + high + 1) // 2
            cut.events = events[:middle]
            if len(encode_recording(cut)) <= max_bytes:
                low = middle
            else:
                high = middle - 1
        cut.events = events[: max(low, 0)]
        if low >= 0:
            return cut
    if recording.response_body and _fit_prefix(cut, "response_body", max_bytes):
        return cut
    _fit_prefix(cut, "request_body", max_bytes)
    return cut


def _fit_prefix(cut: Recording, attribute: str, max_bytes: int) -> bool:
    """Cut ``attribute`` to its longest prefix that keeps the encoding within budget (to
    nothing when none does); whether what remains fits."""
    full: bytes = getattr(cut, attribute)
    setattr(cut, attribute, b"")
    spare = max_bytes - len(encode_recording(cut))
    # base64 is 4 characters per 3 bytes and needs no JSON escaping: the arithmetic is exact.
    setattr(cut, attribute, full[: max(0, spare // 4 * 3)])
    return spare >= 0


def _copy(recording: Recording, *, truncated: bool) -> Recording:
    return Recording(
        request_id=recording.request_id,
        session_id=recording.session_id,
        principal=recording.principal,
        started_at=recording.started_at,
        method=recording.method,
        path=recording.path,
        request_body=recording.request_body,
        status=recording.status,
        content_type=recording.content_type,
        response_body=recording.response_body,
        events=list(recording.events),
        truncated=truncated,
    )


# -- to and from the store ---------------------------------------------------------------------


def store_recording(
    recording: Recording, *, sealer: Sealer | None, max_bytes: int
) -> StoredRecording:
    """Cap, encode and (with a key) seal ``recording``; ``size`` is the encoded size."""
    capped, encoded = recording, encode_recording(recording)
    if len(encoded) > max_bytes:  # encoded once in the common case: this runs per request
        capped = cap_recording(recording, max_bytes)
        encoded = encode_recording(capped)
    blob = encoded if sealer is None else sealer.seal(encoded, context=_context(capped))
    return StoredRecording(
        request_id=capped.request_id,
        session_id=capped.session_id,
        principal=capped.principal,
        started_at=capped.started_at,
        size=len(encoded),
        truncated=capped.truncated,
        sealed=sealer is not None,
        blob=blob,
    )


def load_recording(stored: StoredRecording, *, sealer: Sealer | None) -> Recording | None:
    """The recording back (None once retention purged it); SealError when it cannot be
    opened with ``sealer`` (or is sealed and no key is configured)."""
    if stored.blob is None:
        return None
    blob = stored.blob
    if stored.sealed:
        if sealer is None:
            raise SealError("the recording is sealed and no recordings.encryption_key is set")
        blob = sealer.open(blob, context=stored.request_id.encode())
    return decode_recording(blob)


def _context(recording: Recording) -> bytes:
    return recording.request_id.encode()
