"""``ztgate sessions`` and ``ztgate replay``: recorded sessions listed, watched again in the
terminal with their original timing, or served as an upstream to re-run a client against.

Rendering is ``audit/replay.py`` (pure); serving is ``audit/replay_server.py``; this module
only reads the store, sleeps, writes and runs the server.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import click
import orjson

from ztgate.audit.reader import AuditReader
from ztgate.audit.recording import Recording
from ztgate.audit.replay import Step, paced, session_script
from ztgate.audit.replay_server import ReplayBook, ReplayUpstream
from ztgate.audit.search import MAX_LIMIT, QueryError, parse_time
from ztgate.audit.store.base import SessionQuery, SessionSummary, StoredRecording
from ztgate.audit.views import session_document
from ztgate.cli.common import CONFIG_OPTION, config_or_exit, echo_table, fail
from ztgate.cli.store import with_reader

_STYLES: dict[str, dict[str, Any]] = {
    "header": {"fg": "cyan", "bold": True},
    "request": {"fg": "yellow"},
    "answer": {},
    "thinking": {"dim": True},
    "tool": {"fg": "magenta"},
    "meta": {"dim": True},
    "error": {"fg": "red"},
}


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="List recorded sessions.",
)
def sessions() -> None:
    """Recorded sessions: the requests a client made under one session id, and the answers it
    got (docs/sessions-and-replay.md). Watch or re-run one with `ztgate replay SESSION`."""


@sessions.command("list", short_help="List recorded sessions, newest first.")
@CONFIG_OPTION
@click.option("--principal", help="Only this caller's sessions (issuer/subject).")
@click.option("--since", help="Active since: a look-back (7d, 12h) or an ISO 8601 time.")
@click.option("--until", help="Started before: a look-back or an ISO 8601 time.")
@click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=50, show_default=True)
@click.option(
    "--format", "output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def list_sessions(
    config_path: Path | None,
    principal: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    output: str,
) -> None:
    """List recorded sessions, newest first.

    \b
      ztgate sessions list --config ztgate.yaml --since 1d
    """
    config = config_or_exit(config_path)
    now = time.time()
    try:
        query = SessionQuery(
            principal=principal,
            since=None if since is None else parse_time(since, now),
            until=None if until is None else parse_time(until, now),
            limit=limit,
        )
    except QueryError as exc:
        raise click.UsageError(str(exc)) from None

    async def work(reader: AuditReader) -> list[SessionSummary]:
        return await reader.sessions(query)

    found = with_reader(config, work)
    if output == "json":
        click.echo(orjson.dumps([session_document(s) for s in found], option=orjson.OPT_INDENT_2))
        return
    if not found:
        click.echo("no recorded sessions")
        return
    rows = [
        (
            s.session_id,
            s.principal,
            session_document(s)["first_time"].replace("T", " ")[:19],
            _duration(s.last_at - s.first_at),
            str(s.requests),
        )
        for s in found
    ]
    echo_table(("SESSION", "PRINCIPAL", "STARTED (UTC)", "SPAN", "REQUESTS"), rows)


@click.command(short_help="Replay a recorded session, or serve it as an upstream.")
@click.argument("session_id")
@CONFIG_OPTION
@click.option(
    "--speed",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Pace relative to the original (2: twice as fast).",
)
@click.option("--no-wait", is_flag=True, help="Print everything at once, without the timing.")
@click.option(
    "--max-pause",
    type=click.FloatRange(min=0),
    help="Never wait longer than this many seconds between two steps.",
)
@click.option(
    "--serve", is_flag=True, help="Serve the recorded answers as an Anthropic API upstream."
)
@click.option(
    "--listen",
    default="127.0.0.1:8790",
    show_default=True,
    help="With --serve: where to listen (HOST:PORT; port 0 picks a free one).",
)
@click.option(
    "--timing", is_flag=True, help="With --serve: send stream events at their recorded pace."
)
def replay(
    session_id: str,
    config_path: Path | None,
    speed: float,
    no_wait: bool,
    max_pause: float | None,
    serve: bool,
    listen: str,
    timing: bool,
) -> None:
    """Watch a recorded session again: each request (the system prompt and the user's last
    turn), then the answer as it streamed, with the original timing.

    With --serve, act as the Anthropic API instead: the n-th request to an endpoint gets the
    n-th response recorded for it in this session (streams with their recorded bytes), so a
    client pointed at it re-runs deterministically.

    \b
      ztgate replay ses_01 --config ztgate.yaml --speed 4
      ztgate replay ses_01 --config ztgate.yaml --serve --listen 127.0.0.1:8790
      ANTHROPIC_BASE_URL=http://127.0.0.1:8790 python my_agent.py
    """
    config = config_or_exit(config_path)

    async def work(reader: AuditReader) -> list[Recording | StoredRecording]:
        return await reader.session(session_id)

    found = with_reader(config, work)
    if not found:
        fail(f"no recorded session {session_id!r} (see `ztgate sessions list`)")
    recordings = [r for r in found if isinstance(r, Recording)]
    purged = len(found) - len(recordings)
    if purged:
        click.echo(
            f"note: {purged} of the session's {len(found)} recordings were purged by retention",
            err=True,
        )
    if not recordings:
        fail(f"every recording of session {session_id!r} was purged by retention")
    if serve:
        _serve(ReplayBook(session_id, recordings), listen, timing=timing, speed=speed)
        return
    script = session_script(recordings)
    _play(paced(script, speed=speed, max_pause=max_pause), wait=not no_wait)


def _play(steps: list[Step], *, wait: bool) -> None:
    start = time.monotonic()
    for step in steps:
        if wait:
            delay = start + step.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        click.echo(click.style(step.text, **_STYLES[step.style]), nl=False)
    click.echo()


def _serve(book: ReplayBook, listen: str, *, timing: bool, speed: float) -> None:
    import uvicorn

    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not (port.isascii() and port.isdigit()):
        raise click.UsageError("--listen: use HOST:PORT, for example 127.0.0.1:8790")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        fail(f"cannot listen on {listen}: {exc.strerror}")
    bound = sock.getsockname()[1]
    app = ReplayUpstream(book, timing=timing, speed=speed)
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, lifespan="on", access_log=False, server_header=False)
    )
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    click.echo(
        f"serving session {book.session_id} ({book.remaining()} recorded responses) at "
        f"http://{shown}:{bound}  (Ctrl-C to stop)",
        err=True,
    )
    with sock:
        asyncio.run(server.serve(sockets=[sock]))


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
