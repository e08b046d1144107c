"""``ztgate reviews``: see, decide and wait on reviews, through a gateway's admin API.

Approving is an act of a verified person, so the CLI never opens the store: it speaks to the
gateway with the caller's own token (``ZTGATE_TOKEN``, or a file), and the gateway applies the
same rules as for every other approver (docs/approvals.md). ``wait`` is the CI side: a job that
got a review id blocks on it, then sends its request again.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import orjson

from ztgate.audit.views import iso_time
from ztgate.cli.common import CANNOT_RUN, WRONG, echo_table, fail
from ztgate.cli.http import HttpError, client_session, one_line, request_json, require_secure_url
from ztgate.config.units import parse_duration

_NAME = "ztgate reviews"
URL_ENV = "ZTGATE_URL"
TOKEN_ENV = "ZTGATE_TOKEN"  # noqa: S105 - the variable's name, not a secret
_API = "/ztgate/api/v1/reviews"
STATES = ("pending", "approved", "denied", "expired", "executed", "cancelled")
# What ``wait`` ends on, and its exit code: approved (run the request now) or not to be.
_FINAL = {"approved": 0, "denied": WRONG, "expired": WRONG, "cancelled": WRONG, "executed": WRONG}


class _Gateway:
    """The admin API's reviews endpoints, with one caller's token."""

    def __init__(self, url: str, token: str) -> None:
        self.base = url.rstrip("/")
        self._token = token

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        url = f"{self.base}{_API}{path}"
        async with client_session() as session:
            return await request_json(
                session,
                method,
                url,
                what=f"{method} {_API}{path}",
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                secrets=[self._token],
                explain=_api_error,
                json=body,
            )


def _api_error(document: Mapping[str, Any] | None, secrets: Collection[str]) -> str:
    """``: the gateway's message``, from the Anthropic error shape the gateway answers in."""
    error = document.get("error") if document is not None else None
    message = error.get("message") if isinstance(error, dict) else None
    return f": {one_line(message, secrets)}" if isinstance(message, str) else ""


def _gateway(url: str | None, token_file: Path | None) -> _Gateway:
    if not url:
        fail(f"no gateway: pass --url or set {URL_ENV}", command=_NAME)
    try:
        require_secure_url(url, "--url")
    except HttpError as exc:
        fail(str(exc), command=_NAME)
    token = _token(token_file)
    return _Gateway(url, token)


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read the token file {token_file}: {exc}", command=_NAME)
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        fail(
            f"no token: set {TOKEN_ENV} (for example from `ztgate token`) or pass --token-file",
            command=_NAME,
        )
    return token


def _run(gateway: _Gateway, method: str, path: str, body: Any = None) -> dict[str, Any]:
    try:
        return asyncio.run(gateway.call(method, path, body))
    except HttpError as exc:
        # A refusal (not yours to decide, no such review, no longer open) is a "no".
        fail(str(exc), WRONG if exc.status in (400, 403, 404) else CANNOT_RUN, command=_NAME)


_URL_OPTION = click.option(
    "--url",
    envvar=URL_ENV,
    help=f"The gateway's base URL, https://... (or set {URL_ENV}).",
)
_TOKEN_FILE_OPTION = click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Read your token from this file instead of {TOKEN_ENV}.",
)
_JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print the review as JSON.")


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    short_help="See, approve, deny and wait on reviews.",
)
def reviews() -> None:
    """Requests held for approval (docs/approvals.md), through the gateway's admin API, as
    you: set ZTGATE_URL and ZTGATE_TOKEN (your own token, for example from `ztgate token`).

    \b
      ztgate reviews list --state pending
      ztgate reviews approve rev_... --reason "ticket OPS-1234"
      ztgate reviews wait rev_... --timeout 30m
    """


@reviews.command("list", short_help="List the reviews you may see, newest first.")
@_URL_OPTION
@_TOKEN_FILE_OPTION
@click.option("--state", type=click.Choice(STATES), help="Only reviews in this state.")
@click.option("--requester", help="Only this requester's reviews (issuer/subject).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def list_reviews(
    url: str | None,
    token_file: Path | None,
    state: str | None,
    requester: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List the reviews you may see: yours, and those your groups decide (admins: all)."""
    query = {"state": state, "requester": requester, "limit": str(limit)}
    given = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items() if v is not None)
    found = _run(_gateway(url, token_file), "GET", f"?{given}")["reviews"]
    if as_json:
        click.echo(orjson.dumps(found, option=orjson.OPT_INDENT_2))
        return
    if not found:
        click.echo("no reviews")
        return
    rows = [
        (
            r["id"],
            r["state"],
            r["requester"],
            iso_time(r["created_at"]).replace("T", " ")[:19],
            r["summary"].get("model") or "",
            ",".join(rule["id"] for rule in r["summary"].get("rules", [])),
        )
        for r in found
    ]
    echo_table(("REVIEW", "STATE", "REQUESTER", "OPENED (UTC)", "MODEL", "RULES"), rows)


@reviews.command("show", short_help="Show what a review is for and who decided what.")
@click.argument("review_id")
@_URL_OPTION
@_TOKEN_FILE_OPTION
@_JSON_OPTION
def show_review(review_id: str, url: str | None, token_file: Path | None, as_json: bool) -> None:
    """Show a review: the request it holds (masked), the rules that asked, every decision."""
    review = _run(_gateway(url, token_file), "GET", f"/{review_id}")
    _echo(review, as_json)


def _decide(verdict: str) -> click.Command:
    helps = {
        "approve": "Approve a review: its request may run, once.",
        "deny": "Deny a review: its request is refused, and the review ends.",
        "cancel": "Cancel your own review: you no longer want the request run.",
    }

    @click.command(verdict, help=helps[verdict], short_help=helps[verdict].split(":")[0] + ".")
    @click.argument("review_id")
    @click.option("--reason", required=True, help="Why: kept in the audit with your name.")
    @_URL_OPTION
    @_TOKEN_FILE_OPTION
    @_JSON_OPTION
    def command(
        review_id: str, reason: str, url: str | None, token_file: Path | None, as_json: bool
    ) -> None:
        gateway = _gateway(url, token_file)
        review = _run(gateway, "POST", f"/{review_id}/{verdict}", {"reason": reason})
        _echo(review, as_json)

    return command


for _verdict in ("approve", "deny", "cancel"):
    reviews.add_command(_decide(_verdict))


@reviews.command("wait", short_help="Wait until a review is decided (for CI).")
@click.argument("review_id")
@_URL_OPTION
@_TOKEN_FILE_OPTION
@click.option(
    "--timeout",
    callback=lambda _ctx, _param, value: _duration(value, "--timeout"),
    default="1h",
    show_default=True,
    help="Give up after this long (30s, 30m, 2h).",
)
@click.option(
    "--interval",
    callback=lambda _ctx, _param, value: max(0.1, _duration(value, "--interval")),
    default="2s",
    show_default=True,
    help="How long between two looks.",
)
def wait_review(
    review_id: str, url: str | None, token_file: Path | None, timeout: float, interval: float
) -> None:
    """Wait until a review is decided: exit 0 once it is approved (send the request again
    now: it runs once), 1 if it was denied, expired, cancelled or has already run, 2 if it is
    still pending after --timeout or the gateway cannot be asked.

    \b
      review=$(...the ztgate-review-id header of the refused request...)
      ztgate reviews wait "$review" --timeout 1800 && python ci_job.py
    """
    gateway = _gateway(url, token_file)
    deadline = time.monotonic() + timeout
    while True:
        review = _run(gateway, "GET", f"/{review_id}")
        state = review["state"]
        if state in _FINAL:
            click.echo(f"review {review_id} is {state}{_last_word(review)}")
            raise SystemExit(_FINAL[state])
        if time.monotonic() + interval > deadline:
            fail(f"review {review_id} is still {state} after {timeout:g} s", command=_NAME)
        time.sleep(interval)


def _duration(text: str, name: str) -> float:
    try:
        return parse_duration(text.strip() if text.strip()[-1:].isalpha() else f"{text}s")
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from None


def _last_word(review: Mapping[str, Any]) -> str:
    decisions = review.get("decisions") or []
    if not decisions:
        return ""
    last = decisions[-1]
    return f" ({last['verdict']} by {last['by']}: {last['reason']})"


def _echo(review: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(review, option=orjson.OPT_INDENT_2))
        return
    summary = review["summary"]
    lines = [
        ("review", review["id"]),
        ("state", review["state"]),
        ("requester", review["requester"]),
        ("opened", iso_time(review["created_at"])),
        ("expires", iso_time(review["expires_at"])),
        ("request", f"{summary.get('method', '')} {summary.get('path', '')}"),
        ("model", summary.get("model") or ""),
        ("stream", "yes" if summary.get("stream") else "no"),
        ("skills", ", ".join(summary.get("skills", []))),
        ("tools", ", ".join(summary.get("tools", []))),
        ("mcp servers", ", ".join(summary.get("mcp_servers", []))),
        ("findings", ", ".join(summary.get("findings", []))),
        ("approvers", ", ".join(review["approvers"])),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        if value:
            click.echo(f"{name.ljust(width)}  {value}")
    for rule in summary.get("rules", []):
        click.echo(f"{'rule'.ljust(width)}  {rule['id']}: {rule['message']}")
    for name in ("prompt_excerpt", "tool_result_excerpt"):
        if summary.get(name):
            click.echo(click.style(f"\n{name.replace('_', ' ')}:", bold=True))
            click.echo(summary[name])
    if review["decisions"]:
        click.echo(click.style("\ndecisions:", bold=True))
    for d in review["decisions"]:
        click.echo(f"  {iso_time(d['at'])}  {d['verdict']} by {d['by']}: {d['reason']}")
