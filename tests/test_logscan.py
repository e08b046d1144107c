"""The log scan (tests/logscan.py) finds what it is for, and not what it must let pass."""

from __future__ import annotations

import logging
import sys

import pytest

from tests.detectors.test_catalogue import AWS_KEY_ID, JWT, pem
from tests.logscan import Line, LogScan, _masked, find_leaks, format_record
from ztgate.devtools.stack import SIMULATOR_KEY

TOKEN = JWT  # header.claims.signature, as the dev issuer mints them


def leaks(text: str, planted: set[str] | None = None) -> list[str]:
    return [leak.what for leak in find_leaks([Line("log", "t", text)], planted or set())]


@pytest.mark.parametrize(
    "text",
    [
        f"verify failed for {TOKEN}",
        f"upstream key {SIMULATOR_KEY}",
        "key sk-ant-api03-AbCdEfGhIjKlMnOp",
        f"aws {AWS_KEY_ID}",
        pem("PRIVATE KEY", 1),
        f"{{'authorization': 'Bearer {TOKEN}'}}",
    ],
)
def test_tokens_and_keys_are_found_by_their_shape(text: str) -> None:
    assert leaks(text)


@pytest.mark.parametrize(
    "text",
    [
        "token is malformed",
        "[REDACTED:JWT] and [REDACTED:ANTHROPIC_API_KEY]",
        f"token {TOKEN[:12]}… (sha256 {'ab' * 32})",
        "upstream key 'default' refused (401)",
        "sk-ant-… 108 characters",
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",  # the shape of a token, but a test's stub
    ],
)
def test_redacted_forms_pass(text: str) -> None:
    assert not leaks(text)


def test_planted_values_are_found_exactly() -> None:
    secret = "a-test-hash-key-for-ssn"
    assert leaks(f"hash key {secret} in use", {secret})
    assert not leaks("hash key in use", {secret})


def test_a_record_is_read_whole_and_a_report_never_repeats_what_it_found() -> None:
    try:
        raise ValueError(f"bad {TOKEN}")
    except ValueError:
        record = logging.LogRecord("ztgate", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    record.principal = "demo/alice"  # an ``extra`` field
    text = format_record(record)
    assert "demo/alice" in text
    assert TOKEN in text  # the traceback's message
    assert TOKEN not in _masked(text, set())
    assert "x-secret-value-123" not in _masked("x-secret-value-123", {"x-secret-value-123"})


def test_the_session_reads_every_record(request: pytest.FixtureRequest) -> None:
    from tests.logscan import _KEY

    scan: LogScan | None = request.config.stash.get(_KEY, None)
    if scan is None:
        pytest.skip("LOGSCAN=off")
    before = len(scan.lines)
    logging.getLogger("ztgate.test").warning("a line %s", "for the scan")
    assert scan.lines[before:][-1].text.endswith("a line for the scan")
    assert scan.lines[-1].test == request.node.nodeid
