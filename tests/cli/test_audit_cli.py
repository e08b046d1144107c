"""`ztgate audit` against real stores (SQLite and PostgreSQL) filled through the real writer:
verification (and tampering found), search, export and checkpoints."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import orjson
import pytest

from tests.audit.filled import ALICE, CI, CI_AGE
from tests.audit.store.backends import RawDatabase
from tests.cli.audit_stores import FilledStore, filled_store, ztgate
from ztgate.audit.chain import GENESIS, link
from ztgate.audit.signing import SigningKey

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="module", params=BACKENDS)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FilledStore]:
    """One filled store per backend for the tests that only read."""
    with ExitStack() as stack:
        yield filled_store(request.param, tmp_path_factory.mktemp(request.param), stack)


@pytest.fixture(params=BACKENDS)
def scratch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FilledStore]:
    """A filled store of its own, for a test that tampers with it."""
    with ExitStack() as stack:
        yield filled_store(request.param, tmp_path, stack)


def _raw(store: FilledStore) -> RawDatabase:
    return RawDatabase(store.filled.url)


# -- verify -----------------------------------------------------------------------------------


def test_verify_a_sound_chain(shared: FilledStore) -> None:
    run = ztgate("audit", "verify", "--config", shared.config)
    assert run.code == 0, run.output
    events = shared.filled.events
    assert run.stdout.startswith(f"ok: {events} events, head seq {events} (")
    assert "5 checkpoints verified" in run.stdout
    report = json.loads(ztgate("audit", "verify", "--config", shared.config, "--json").stdout)
    assert report["ok"] is True
    assert report["problem"] is None
    assert report["head_seq"] == report["signed_seq"] == events


def test_verify_names_a_modified_event(scratch: FilledStore) -> None:
    raw = _raw(scratch)
    request_id = scratch.filled.request_ids["ci_xlsx"]
    [(seq, body)] = asyncio.run(
        raw.fetch(
            "SELECT seq, body FROM events WHERE request_id = ? AND kind = ?", request_id, "request"
        )
    )
    forged = bytes(body).replace(b'"allow"', b'"deny"')  # someone hides an allowed request
    assert forged != bytes(body)
    asyncio.run(raw.execute("UPDATE events SET body = ? WHERE seq = ?", forged, seq))
    run = ztgate("audit", "verify", "--config", scratch.config)
    assert run.code == 1
    assert run.stdout.startswith(
        f"FAILED at event {seq}: modified: event {seq}'s body does not match its digest"
    )
    assert f"the {seq - 1} events before it verify" in run.stdout
    report = json.loads(ztgate("audit", "verify", "--config", scratch.config, "--json").stdout)
    assert report["problem"] == {
        "kind": "modified",
        "seq": seq,
        "detail": f"event {seq}'s body does not match its digest",
    }


def test_verify_finds_a_deleted_event(scratch: FilledStore) -> None:
    asyncio.run(_raw(scratch).execute("DELETE FROM events WHERE seq = 9"))
    run = ztgate("audit", "verify", "--config", scratch.config)
    assert run.code == 1
    assert run.stdout.startswith("FAILED at event 9: deleted: event 9 missing before 10")


def test_exported_checkpoints_prove_truncation(scratch: FilledStore) -> None:
    exported = scratch.directory / "checkpoints.json"
    run = ztgate("audit", "checkpoint", "--config", scratch.config, "--export", exported)
    assert run.code == 0, run.output
    # Whoever holds the database cuts the last events off, and the checkpoints that sign them.
    raw = _raw(scratch)
    asyncio.run(raw.execute("DELETE FROM events WHERE seq > 12"))
    asyncio.run(raw.execute("DELETE FROM checkpoints WHERE seq > 12"))
    alone = ztgate("audit", "verify", "--config", scratch.config)
    assert alone.code == 0  # undetectable from the database alone: the chain is consistent
    run = ztgate("audit", "verify", "--config", scratch.config, "--checkpoints", exported)
    assert run.code == 1
    assert run.stdout.startswith("FAILED at event 13: truncated: the chain ends at seq 12")


def test_checkpoints_verify_elsewhere_with_the_exported_public_key(
    shared: FilledStore, tmp_path: Path
) -> None:
    exported = tmp_path / "checkpoints.json"
    run = ztgate(
        "audit", "checkpoint", "--config", shared.config, "--no-sign", "--export", exported
    )
    assert run.code == 0, run.output
    document = json.loads(exported.read_text())
    assert document["format"] == "ztgate-audit-checkpoints/1"
    assert len(document["checkpoints"]) == 5
    [key] = document["public_keys"]
    assert key["key_id"] == shared.filled.signing_key.key_id
    assert key["public_key"] == shared.filled.signing_key.public_pem()
    # Elsewhere: a machine whose config holds another key (or none) cannot trust the
    # checkpoints by itself ...
    other = tmp_path / "other.pem"
    other.write_bytes(SigningKey.generate().private_pem())
    elsewhere = shared.filled.config_yaml(tmp_path, audit={"signing_key_file": str(other)})
    run = ztgate("audit", "verify", "--config", elsewhere)
    assert run.code == 1
    assert (
        f"bad_checkpoint: checkpoint at seq 4 is signed by unknown key {key['key_id']}"
        in run.stdout
    )
    # ... and can with the exported file, or with the public key alone.
    assert ztgate("audit", "verify", "--config", elsewhere, "--checkpoints", exported).code == 0
    public = tmp_path / "public.pem"
    public.write_text(key["public_key"])
    assert ztgate("audit", "verify", "--config", elsewhere, "--public-key", public).code == 0


def test_checkpoint_signs_the_head_when_it_is_not_signed_yet(scratch: FilledStore) -> None:
    asyncio.run(
        _raw(scratch).execute("DELETE FROM checkpoints WHERE seq = ?", scratch.filled.events)
    )
    run = ztgate("audit", "checkpoint", "--config", scratch.config)
    assert run.code == 0
    assert f"signed a checkpoint at seq {scratch.filled.events} " in run.stderr
    again = ztgate("audit", "checkpoint", "--config", scratch.config)
    assert f"seq {scratch.filled.events} is already signed" in again.stderr
    report = json.loads(ztgate("audit", "verify", "--config", scratch.config, "--json").stdout)
    assert report["signed_seq"] == scratch.filled.events


# -- search -----------------------------------------------------------------------------------


def _search(store: FilledStore, *args: str) -> list[dict[str, object]]:
    run = ztgate("audit", "search", "--config", store.config, "--format", "json", *args)
    assert run.code == 0, run.output
    found: list[dict[str, object]] = json.loads(run.stdout)
    return found


def _ids(store: FilledStore, *names: str) -> set[str]:
    return {store.filled.request_ids[n] for n in names}


ALICE_REQUESTS = 6  # five answered, one whose outcome is unknown


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--principal", CI.principal), ("ci_email", "ci_xlsx", "ci_denied")),
        (("--decision", "deny"), ("ci_denied",)),
        (("--model", "claude-haiku-5-5"), ("ci_email", "ci_xlsx")),
        (("--skill", "xlsx"), ("ci_xlsx",)),
        (("--finding", "email"), ("ci_email",)),
        (("--group", "ci", "--decision", "allow"), ("ci_email", "ci_xlsx")),
        (("--until", "2d"), ("ci_email", "ci_xlsx", "ci_denied")),
    ],
)
def test_search_filters(
    shared: FilledStore, args: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    found = _search(shared, *args)
    assert {d["request_id"] for d in found} == _ids(shared, *expected)
    assert all(d["kind"] == "request" for d in found)


def test_search_newest_first_with_outcomes(shared: FilledStore) -> None:
    found = _search(shared, "--principal", ALICE.principal, "--since", "1d")
    assert len(found) == ALICE_REQUESTS
    seqs = [d["seq"] for d in found]
    assert seqs == sorted(seqs, reverse=True)
    crashed = found[0]
    assert crashed["request_id"] == shared.filled.request_ids["crashed"]
    assert crashed["outcome"] is None  # the gateway stopped before the request ended
    stream = next(d for d in found if d["request_id"] == shared.filled.request_ids["alice_stream"])
    outcome = stream["outcome"]
    assert isinstance(outcome, dict)
    assert (outcome["status"], outcome["stream_end"]) == (200, "complete")
    assert outcome["usage"]["output_tokens"] > 0
    assert len(_search(shared, "--limit", "2")) == 2
    one = _search(shared, "--request-id", shared.filled.request_ids["ci_denied"])
    assert one[0]["outcome"]["status"] == 403  # type: ignore[index]


def test_search_table(shared: FilledStore) -> None:
    run = ztgate("audit", "search", "--config", shared.config, "--principal", ALICE.principal)
    assert run.code == 0
    lines = run.stdout.splitlines()
    assert lines[0].split() == [
        *("TIME", "(UTC)", "SEQ", "PRINCIPAL", "WHAT"),
        *("MODEL", "DECISION", "STATUS", "FINDINGS", "REQUEST"),
    ]
    crashed = next(line for line in lines if shared.filled.request_ids["crashed"] in line)
    assert "allow (dev-any)" in crashed
    assert " unknown " in crashed
    assert "POST messages stream" in crashed
    assert lines[-1] == f"{ALICE_REQUESTS} events"
    denied = ztgate("audit", "search", "--config", shared.config, "--finding", "email")
    assert "email:1" in denied.stdout
    assert "200" in denied.stdout


def test_search_other_kinds(shared: FilledStore) -> None:
    kinds = [d["kind"] for d in _search(shared, "--kind", "startup,policy_reload")]
    assert kinds == ["policy_reload", "startup"]
    everything = _search(shared, "--kind", "all", "--limit", "1000")
    assert len(everything) == shared.filled.events


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "last tuesday"), "'last tuesday' is neither a look-back"),
        (("--kind", "requests"), "kind: 'requests' is not one of"),
        (("--since", "1d", "--until", "2d"), "since is after until"),
    ],
)
def test_search_refuses_filters_it_cannot_read(
    shared: FilledStore, args: tuple[str, ...], message: str
) -> None:
    run = ztgate("audit", "search", "--config", shared.config, *args)
    assert run.code == 2
    assert message in run.stderr


# -- export -----------------------------------------------------------------------------------


def test_export_is_every_event_in_chain_order_and_checkable(
    shared: FilledStore, tmp_path: Path
) -> None:
    run = ztgate("audit", "export", "--config", shared.config)
    assert run.code == 0
    lines = [orjson.loads(line) for line in run.stdout.splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, shared.filled.events + 1))
    previous = GENESIS
    for line in lines:  # what a SIEM can check on its own
        assert bytes.fromhex(line["prev_hash"]) == previous
        digest = bytes.fromhex(line["body_digest"])
        assert bytes.fromhex(line["hash"]) == link(previous, line["seq"], digest)
        previous = bytes.fromhex(line["hash"])
    request = next(line for line in lines if line["kind"] == "request")
    assert request["data"]["policy_input"][0]["principal"] == CI.principal
    assert {line["kind"] for line in lines} == {"startup", "request", "outcome", "policy_reload"}
    recent = ztgate("audit", "export", "--config", shared.config, "--since", f"{CI_AGE / 2:.0f}s")
    assert len(recent.stdout.splitlines()) == 2 * 5 + 1 + 1  # Alice's, the crash, the reload
    out = tmp_path / "audit.jsonl"
    to_file = ztgate("audit", "export", "--config", shared.config, "--after-seq", "10", "-o", out)
    assert to_file.stderr == f"exported {shared.filled.events - 10} events to {out}\n"
    assert out.read_text().splitlines() == run.stdout.splitlines()[10:]


def test_body_digest_is_the_digest_of_the_exported_data_as_hashed(shared: FilledStore) -> None:
    """The exported data is the data that was hashed (a SIEM can re-derive the body)."""
    line = orjson.loads(ztgate("audit", "export", "--config", shared.config).stdout.splitlines()[0])
    body = orjson.dumps(
        {k: line[k] for k in ("seq", "kind", "at", "request_id", "principal", "data")},
        option=orjson.OPT_SORT_KEYS,
    )
    assert hashlib.sha256(body).hexdigest() == line["body_digest"]
