"""``ztgate audit``: verify, search, export and checkpoint the tamper-evident audit.

Every command reads the store the gateway writes, through the gateway's own config; the
formats are those of ``audit/views.py``, shared with the admin API.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click
import orjson

from ztgate.audit.chain import VerifyReport, checkpoint_from_json, sign_checkpoint
from ztgate.audit.events import Checkpoint
from ztgate.audit.reader import CHECKPOINTS_FORMAT, AuditReader, public_keys_document
from ztgate.audit.search import DECISIONS, KINDS, QueryError, build_query, parse_time
from ztgate.audit.signing import SigningKey, key_id, load_public_key, load_signing_key
from ztgate.audit.store.base import AuditStore
from ztgate.audit.views import event_document, iso_time, verify_document
from ztgate.cli.common import CONFIG_OPTION, WRONG, config_or_exit, count, echo_table, fail
from ztgate.cli.store import with_reader
from ztgate.config import ConfigError

_FILE = click.Path(dir_okay=False, path_type=Path)
_TIME_HELP = "a look-back (7d, 12h, 30m) or an ISO 8601 date or time (UTC unless it says)"


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="Verify, search and export the audit.",
)
def audit() -> None:
    """Verify, search and export the tamper-evident audit (docs/audit.md).

    \b
      ztgate audit verify --config ztgate.yaml
      ztgate audit search --config ztgate.yaml --principal github/repo:acme/app --since 7d
      ztgate audit export --config ztgate.yaml --since 1d > audit.jsonl
      ztgate audit checkpoint --config ztgate.yaml --export checkpoints.json
    """


@audit.command(short_help="Recompute the hash chain and check its checkpoints.")
@CONFIG_OPTION
@click.option(
    "--checkpoints",
    "checkpoint_files",
    type=_FILE,
    multiple=True,
    help="Checkpoints exported earlier (`audit checkpoint --export`): they prove truncation "
    "even if the stored ones are gone. Their public keys are trusted too.",
)
@click.option(
    "--public-key",
    "public_key_files",
    type=_FILE,
    multiple=True,
    help="An Ed25519 public key (PEM) that signed checkpoints, e.g. a key rotated out.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    config_path: Path | None,
    checkpoint_files: tuple[Path, ...],
    public_key_files: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Recompute every event's hash from seq 1 and check every signed checkpoint (stored and
    exported). Exits 0 when the chain is sound, 1 naming the first event that cannot be
    trusted and what is wrong with it (modified, deleted, inserted, reordered, truncated,
    bad_checkpoint), 2 when it could not be checked.

    \b
      ztgate audit verify --config ztgate.yaml --checkpoints /safe/place/checkpoints.json
    """
    config = config_or_exit(config_path)
    exported: list[Checkpoint] = []
    extra_keys = {}
    for path in checkpoint_files:
        document = _read_json(path)
        try:
            extra_keys.update(public_keys_document(document))
            exported.extend(checkpoint_from_json(c) for c in document.get("checkpoints", []))
        except (ValueError, AttributeError, TypeError) as exc:
            fail(f"{path}: not an exported checkpoints file ({exc})")
    for path in public_key_files:
        try:
            key = load_public_key(path.read_bytes())
        except (OSError, ValueError) as exc:
            fail(f"{path}: {exc}")
        extra_keys[key_id(key)] = key

    async def work(reader: AuditReader) -> VerifyReport:
        reader.public_keys.update(extra_keys)
        return await reader.verify(exported)

    report = with_reader(config, work)
    if as_json:
        click.echo(orjson.dumps(verify_document(report), option=orjson.OPT_INDENT_2))
    elif report.problem is None:
        click.echo(
            f"ok: {count(report.events, 'event')}, head seq {report.head_seq} "
            f"({report.head_hash.hex()[:16]}), {count(report.checkpoints, 'checkpoint')} "
            f"verified, signed up to seq {report.signed_seq}"
        )
        if report.unsigned:
            click.echo(
                f"note: the last {count(report.unsigned, 'event')} come after the last "
                "checkpoint: the chain proves their order, not that none were cut off after them"
            )
    if report.problem is not None:
        problem = report.problem
        if not as_json:
            click.echo(
                f"FAILED at event {problem.seq}: {problem.kind}: {problem.detail}\n"
                f"  the {count(report.events, 'event')} before it verify"
            )
        sys.exit(WRONG)


@audit.command(short_help="Search the audit.")
@CONFIG_OPTION
@click.option("--principal", help="The caller, as issuer/subject.")
@click.option("--group", help="Callers in this group.")
@click.option("--since", help=f"From this time: {_TIME_HELP}.")
@click.option("--until", help=f"Up to this time: {_TIME_HELP}.")
@click.option("--decision", type=click.Choice(DECISIONS), help="The policy decision.")
@click.option("--model", help="The requested model.")
@click.option("--skill", help="Requests for this skill.")
@click.option("--finding", help="Requests in which inspection found this detector.")
@click.option("--request-id", help="One request.")
@click.option(
    "--kind",
    default="request",
    show_default=True,
    help=f"Event kinds, comma-separated, or all: {', '.join(KINDS)}.",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def search(config_path: Path | None, limit: int, output: str, **filters: str | None) -> None:
    """Find events, newest first. Each request is shown with how it ended; a request with no
    outcome was cut short by a crash or stop between the two, so its outcome is unknown.

    \b
      ztgate audit search --config ztgate.yaml --decision deny --since 1d
      ztgate audit search --config ztgate.yaml --finding email --format json
    """
    config = config_or_exit(config_path)
    try:
        query = build_query({**filters, "limit": str(limit)}, time.time())
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None

    async def work(reader: AuditReader) -> list[dict[str, Any]]:
        return await reader.search(query)

    found = with_reader(config, work)
    if output == "json":
        click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2))
        return
    _print_table(found)


_COLUMNS = (
    "TIME (UTC)",
    "SEQ",
    "PRINCIPAL",
    "WHAT",
    "MODEL",
    "DECISION",
    "STATUS",
    "FINDINGS",
    "REQUEST",
)


def _print_table(found: list[dict[str, Any]]) -> None:
    if not found:
        click.echo("no matching events")
        return
    echo_table(_COLUMNS, [_row(document) for document in found])
    click.echo(f"{count(len(found), 'event')}")


def _row(document: dict[str, Any]) -> list[str]:
    data = document["data"] or {}
    time_text = document["time"].replace("T", " ").removesuffix("Z")[:19]
    principal = document["principal"] or ""
    request_id = document["request_id"] or ""
    if document["kind"] == "review" and data:
        # Who did what to which review: "review approve rev_...", and the state it left.
        what = f"review {data.get('action', '')} {data.get('review_id', '')}"
        state = str(data.get("state", ""))
        return [time_text, str(document["seq"]), principal, what, "", "", state, "", request_id]
    if document["kind"] != "request":
        kind = document["kind"]
        return [time_text, str(document["seq"]), principal, kind, "", "", "", "", request_id]
    decision = data.get("decision") or {}
    effect = decision.get("effect", "")
    if decision.get("rule_ids"):
        effect += f" ({','.join(decision['rule_ids'])})"
    outcome = document.get("outcome")
    if outcome is None:
        status = "unknown"
    else:
        status = str(outcome.get("status", "?"))
        if outcome.get("error_type"):
            status += f" {outcome['error_type']}"
    findings = ",".join(f"{k}:{v}" for k, v in sorted((data.get("findings") or {}).items()))
    what = f"{data.get('method', '')} {data.get('endpoint') or data.get('path', '')}".strip()
    if data.get("stream"):
        what += " stream"
    return [
        time_text,
        str(document["seq"]),
        principal,
        what or ("(purged)" if document["purged"] else ""),
        data.get("model") or "",
        effect,
        status,
        findings,
        request_id,
    ]


@audit.command(short_help="Export events as JSON lines for a SIEM.")
@CONFIG_OPTION
@click.option(
    "--format", "output", type=click.Choice(["jsonl"]), default="jsonl", show_default=True
)
@click.option("--since", help=f"Only events from this time on: {_TIME_HELP}.")
@click.option("--after-seq", type=click.IntRange(0), default=0, help="Only events after this seq.")
@click.option(
    "-o", "--output-file", type=_FILE, help="Write to this file (default: standard output)."
)
def export(
    config_path: Path | None,
    output: str,
    since: str | None,
    after_seq: int,
    output_file: Path | None,
) -> None:
    """Every event in chain order, one JSON object per line, with its seq and hashes, so a
    SIEM can ingest it and check it was not altered on the way. Kinds: request, outcome,
    startup, policy_reload, key_refresh_failure, review.

    \b
      ztgate audit export --config ztgate.yaml --since 1d > audit.jsonl
      ztgate audit export --config ztgate.yaml --after-seq 41200 -o new-events.jsonl
    """
    config = config_or_exit(config_path)
    try:
        start = None if since is None else parse_time(since, time.time())
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None

    async def work(reader: AuditReader) -> int:
        with _open_output(output_file) as sink:
            written = 0
            async for event in reader.store.events(after_seq=after_seq):
                if start is not None and event.at < start:
                    continue
                sink.write(orjson.dumps(event_document(event), option=orjson.OPT_APPEND_NEWLINE))
                written += 1
            return written

    written = with_reader(config, work)
    if output_file is not None:
        click.echo(f"exported {count(written, 'event')} to {output_file}", err=True)


@audit.command(short_help="Sign a checkpoint now and export all of them.")
@CONFIG_OPTION
@click.option(
    "--export",
    "export_path",
    type=_FILE,
    help="Write every checkpoint and the public key to this file ('-': standard output).",
)
@click.option("--no-sign", is_flag=True, help="Only export: do not sign a checkpoint now.")
def checkpoint(config_path: Path | None, export_path: Path | None, no_sign: bool) -> None:
    """Sign a checkpoint at the chain's head now (with the gateway's signing key), and with
    --export write every checkpoint with the public key to a file. Keep that file somewhere
    the gateway cannot write: `ztgate audit verify --checkpoints FILE` then detects events
    cut off the end of the chain up to the newest exported checkpoint.

    \b
      ztgate audit checkpoint --config ztgate.yaml --export /safe/place/checkpoints.json
    """
    config = config_or_exit(config_path)
    signing = None
    if not no_sign:
        try:
            signing = load_signing_key(config.audit, config.store.url)
        except ConfigError as exc:
            fail(str(exc))

    async def work(reader: AuditReader) -> tuple[str, dict[str, Any] | None]:
        message = "no checkpoint signed (--no-sign)"
        if signing is not None:
            reader.public_keys[signing.key_id] = signing.public_key()
            message = await _sign_head(reader.store, signing)
        document = None if export_path is None else await reader.checkpoints_document()
        return message, document

    message, document = with_reader(config, work)
    click.echo(message, err=True)
    if document is not None and export_path is not None:
        assert document["format"] == CHECKPOINTS_FORMAT
        data = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
        if str(export_path) == "-":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            try:
                export_path.write_bytes(data)
            except OSError as exc:
                fail(f"cannot write {export_path}: {exc.strerror}")
            click.echo(
                f"exported {count(len(document['checkpoints']), 'checkpoint')} to {export_path}",
                err=True,
            )


async def _sign_head(store: AuditStore, signing: SigningKey) -> str:
    head = await store.head()
    if head is None:
        return "the audit is empty: nothing to sign yet"
    stored = await store.checkpoints()
    if any(c.seq == head.seq and c.key_id == signing.key_id for c in stored):
        return f"seq {head.seq} is already signed by key {signing.key_id}"
    signed = sign_checkpoint(head, signing.private_key, signing.key_id, time.time())
    await store.add_checkpoint(signed)
    return (
        f"signed a checkpoint at seq {head.seq} ({iso_time(signed.at)}) with key {signing.key_id}"
    )


def _read_json(path: Path) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except orjson.JSONDecodeError as exc:
        fail(f"{path} is not JSON: {exc}")


@contextlib.contextmanager
def _open_output(path: Path | None) -> Iterator[IO[bytes]]:
    """Standard output, or a file, as a binary sink."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    try:
        file = path.open("wb")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")
    with file:
        yield file
