"""Recordings as stored: AES-256-GCM sealing, the JSON encoding, and the size cap."""

from __future__ import annotations

import base64
import dataclasses
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from ztgate.audit.recording import Recording
from ztgate.audit.sealing import (
    Sealer,
    SealError,
    cap_recording,
    decode_recording,
    encode_recording,
    is_sealed,
    load_recording,
    sealer_from_config,
    store_recording,
)
from ztgate.config.model import RecordingsConfig

KEY = os.urandom(32)


def stream_recording(events: int = 20, size: int = 200) -> Recording:
    return Recording(
        request_id="req_1",
        session_id="s1",
        principal="github/acme/api",
        started_at=1_750_000_000.25,
        method="POST",
        path="/v1/messages",
        request_body=b'{"model":"claude-haiku-4-5","stream":true}',
        status=200,
        content_type="text/event-stream",
        events=[(i * 0.01, f"event: e{i}\ndata: ".encode() + b"x" * size) for i in range(events)],
    )


def test_seal_and_open_round_trip_with_a_fresh_nonce_each_time() -> None:
    sealer = Sealer(KEY)
    first = sealer.seal(b"secret", context=b"req_1")
    second = sealer.seal(b"secret", context=b"req_1")
    assert first != second  # random nonce
    assert is_sealed(first)
    assert b"secret" not in first
    assert sealer.open(first, context=b"req_1") == b"secret"


def test_a_wrong_key_fails_clearly_naming_both_key_ids() -> None:
    sealed = Sealer(KEY).seal(b"secret")
    other = Sealer(os.urandom(32))
    with pytest.raises(SealError, match=f"sealed with key {Sealer(KEY).key_id.hex()}"):
        other.open(sealed)


def test_altered_or_moved_blobs_do_not_open() -> None:
    sealer = Sealer(KEY)
    sealed = sealer.seal(b"secret", context=b"req_1")
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(SealError, match="altered"):
        sealer.open(flipped, context=b"req_1")
    with pytest.raises(SealError, match="altered"):
        sealer.open(sealed, context=b"req_2")  # another recording's row
    with pytest.raises(SealError, match="not a sealed recording"):
        sealer.open(b"plain json")


def test_keys_must_be_32_bytes_of_base64() -> None:
    assert Sealer.from_base64(base64.b64encode(KEY).decode()).key_id == Sealer(KEY).key_id
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer(os.urandom(16))
    with pytest.raises(ValueError, match="base64"):
        Sealer.from_base64("not base64!")


def test_the_encoding_is_json_with_bytes_as_base64() -> None:
    recording = stream_recording(events=2, size=3)
    blob = encode_recording(recording)
    assert blob.startswith(b'{"v":1,"request_id":"req_1"')
    assert base64.b64encode(recording.request_body) in blob
    assert decode_recording(blob) == recording
    with pytest.raises(ValueError, match="not a recording"):
        decode_recording(b'{"v":1}')
    with pytest.raises(ValueError, match="not a recording"):
        decode_recording(b"\x00garbage")


recordings = st.builds(
    Recording,
    request_id=st.text(min_size=1, max_size=20),
    session_id=st.text(max_size=20),
    principal=st.text(max_size=40),
    started_at=st.floats(0, 4e9, allow_nan=False),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    path=st.text(max_size=40),
    request_body=st.binary(max_size=300),
    status=st.none() | st.integers(100, 599),
    content_type=st.none() | st.text(max_size=30),
    response_body=st.none() | st.binary(max_size=300),
    events=st.lists(st.tuples(st.floats(0, 600, allow_nan=False), st.binary(max_size=80))),
    truncated=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(recording=recordings)
def test_encoding_and_sealing_round_trip(recording: Recording) -> None:
    assert decode_recording(encode_recording(recording)) == recording
    sealer = Sealer(KEY)
    stored = store_recording(recording, sealer=sealer, max_bytes=1 << 30)
    assert stored.sealed
    assert load_recording(stored, sealer=sealer) == recording


@settings(max_examples=200, deadline=None)
@given(recording=recordings, max_bytes=st.integers(200, 3000))
def test_the_cap_is_kept_and_truncation_is_marked(recording: Recording, max_bytes: int) -> None:
    capped = cap_recording(recording, max_bytes)
    if len(encode_recording(recording)) <= max_bytes:
        assert capped is recording
        return
    assert capped.truncated
    metadata_only = Recording(**_metadata(capped))  # type: ignore[arg-type]
    if len(encode_recording(metadata_only)) <= max_bytes:
        assert len(encode_recording(capped)) <= max_bytes
    # What is kept is a prefix of what there was.
    assert recording.request_body.startswith(capped.request_body)
    assert capped.events == recording.events[: len(capped.events)]
    if recording.response_body is not None and capped.response_body is not None:
        assert recording.response_body.startswith(capped.response_body)


def _metadata(recording: Recording) -> dict[str, object]:
    return {
        "request_id": recording.request_id,
        "session_id": recording.session_id,
        "principal": recording.principal,
        "started_at": recording.started_at,
        "method": recording.method,
        "path": recording.path,
        "status": recording.status,
        "content_type": recording.content_type,
        "response_body": None if recording.response_body is None else b"",
        "truncated": True,
    }


def test_a_long_stream_keeps_the_request_and_the_first_events() -> None:
    recording = stream_recording(events=100, size=1000)
    capped = cap_recording(recording, 20_000)
    assert capped.truncated
    assert capped.request_body == recording.request_body
    assert 5 < len(capped.events) < 100
    assert capped.events == recording.events[: len(capped.events)]
    assert 19_000 < len(encode_recording(capped)) <= 20_000
    assert not recording.truncated  # the original is left alone


def test_a_large_json_response_is_cut_to_a_prefix() -> None:
    recording = stream_recording(events=0)
    recording.response_body = b"{" + b"a" * 50_000
    capped = cap_recording(recording, 10_000)
    assert capped.truncated
    assert capped.request_body == recording.request_body
    assert capped.response_body is not None
    assert recording.response_body.startswith(capped.response_body)
    assert 9_990 < len(encode_recording(capped)) <= 10_000


def test_a_huge_request_is_cut_last() -> None:
    recording = stream_recording(events=10)
    recording.request_body = b"q" * 100_000
    capped = cap_recording(recording, 5_000)
    assert capped.events == []
    assert 0 < len(capped.request_body) < 4_000
    assert len(encode_recording(capped)) <= 5_000


def test_stored_without_a_key_is_clear_and_says_so() -> None:
    recording = stream_recording(events=3)
    stored = store_recording(recording, sealer=None, max_bytes=1 << 20)
    assert not stored.sealed
    assert stored.blob == encode_recording(recording)
    assert stored.size == len(stored.blob)
    assert (stored.request_id, stored.session_id, stored.truncated) == ("req_1", "s1", False)
    assert load_recording(stored, sealer=None) == recording
    sealed = store_recording(recording, sealer=Sealer(KEY), max_bytes=1 << 20)
    with pytest.raises(SealError, match=r"no recordings\.encryption_key"):
        load_recording(sealed, sealer=None)
    assert load_recording(dataclasses.replace(stored, blob=None), sealer=None) is None


def test_the_configured_key_seals() -> None:
    text = base64.b64encode(KEY).decode()
    sealer = sealer_from_config(RecordingsConfig(encryption_key=SecretStr(text)))
    assert sealer is not None
    assert sealer.key_id == Sealer(KEY).key_id
    assert sealer_from_config(RecordingsConfig()) is None
