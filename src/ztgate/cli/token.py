"""``ztgate token``: print a fresh token for the gateway, from wherever the workload has one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import NoReturn

import click

from ztgate.cli.common import WRONG, fail
from ztgate.cli.http import HttpError
from ztgate.cli.token_sources import (
    DEFAULT_GITHUB_AUDIENCE,
    DEFAULT_KUBERNETES_TOKEN_PATH,
    CacheableSource,
    ClientCredentialsSource,
    GitHubActionsSource,
    TokenCache,
    TokenCacheError,
    kubernetes_token,
    read_token_file,
)

CLIENT_ID_ENV = "ZTGATE_CLIENT_ID"
CLIENT_SECRET_ENV = "ZTGATE_CLIENT_SECRET"  # noqa: S105 - the variable's name, not a secret

_HELP = f"""Print a fresh token for the gateway on stdout: the token and a newline, nothing else.

Use it wherever a command can supply the token: Claude Code's apiKeyHelper,
ANTHROPIC_AUTH_TOKEN="$(ztgate token ...)", or the SDK. When no token can be had it
prints one line on stderr and exits 1.

\b
Sources (--from):
  github-actions
      Inside a GitHub Actions job, ask the runner for the job's OIDC token for
      --audience (default: {DEFAULT_GITHUB_AUDIENCE}). The job needs
      `permissions: id-token: write`.
        ztgate token --from github-actions --audience ztgate
\b
  kubernetes[=PATH]
      Read a projected service-account token, by default from
      {DEFAULT_KUBERNETES_TOKEN_PATH} (a serviceAccountToken volume projected
      at /var/run/secrets/tokens with path "ztgate" and the gateway's audience).
      The kubelet refreshes the file, so it is read on every call, never cached.
        ztgate token --from kubernetes
        ztgate token --from kubernetes=/var/run/secrets/tokens/gateway
\b
  client-credentials
      OAuth 2.0 client credentials at the token endpoint that --issuer
      publishes (OIDC discovery; https except on loopback). The client id comes
      from --client-id or {CLIENT_ID_ENV}; the secret ONLY from {CLIENT_SECRET_ENV}
      (never a flag: flags leak into process lists and shell history).
      --scope, --resource (RFC 8707) and --audience are sent when given.
        export {CLIENT_ID_ENV}=ci-runner {CLIENT_SECRET_ENV}=...
        ztgate token --from client-credentials --issuer https://idp.example.com \\
            --resource https://ztgate.internal
\b
  file=PATH
      Read the token from a file, on every call, never cached.
        ztgate token --from file=/run/secrets/ztgate-token

\b
Claude Code (settings.json, with the client id and secret in its environment):
  {{"apiKeyHelper": "ztgate token --from client-credentials --issuer https://idp.example.com"}}

Tokens from github-actions and client-credentials are cached until shortly before their
exp claim (60 s or 10% of their lifetime early, whichever is more; tokens without exp are
never cached), one 0600 file per source and parameters in $XDG_CACHE_HOME/ztgate/tokens or
~/.cache/ztgate/tokens (a 0700 directory).
"""


@click.command(help=_HELP, short_help="Print a fresh token for the gateway.")
@click.option(
    "--from",
    "source",
    required=True,
    metavar="SOURCE",
    help="github-actions, kubernetes[=PATH], client-credentials or file=PATH.",
)
@click.option(
    "--audience",
    help=f"Audience to ask for (github-actions: default {DEFAULT_GITHUB_AUDIENCE}; "
    "client-credentials: sent as `audience` when given).",
)
@click.option("--issuer", help="client-credentials: the IdP's issuer URL (OIDC discovery).")
@click.option(
    "--client-id", envvar=CLIENT_ID_ENV, help=f"client-credentials: client id (or {CLIENT_ID_ENV})."
)
@click.option("--scope", help="client-credentials: space-separated scopes to ask for.")
@click.option("--resource", help="client-credentials: resource indicator (RFC 8707).")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Token cache directory (default: $XDG_CACHE_HOME/ztgate/tokens).",
)
@click.option(
    "--no-cache", is_flag=True, help="Always fetch a new token; neither read nor write the cache."
)
def token(
    source: str,
    audience: str | None,
    issuer: str | None,
    client_id: str | None,
    scope: str | None,
    resource: str | None,
    cache_dir: Path | None,
    no_cache: bool,
) -> None:
    """Print a fresh token, so that tools that run a command for their key can use the gateway."""
    kind, has_argument, argument = source.partition("=")
    given = {"--issuer": issuer, "--scope": scope, "--resource": resource}
    if kind != "client-credentials":
        _refuse_options(kind, given)
    try:
        if kind in ("kubernetes", "file"):
            if audience is not None:
                raise click.UsageError(f"--audience does not apply to --from {kind}")
            click.echo(_read_file_source(kind, argument if has_argument else None))
            return
        if has_argument:
            raise click.BadParameter(f"{kind} takes no =VALUE", param_hint="--from")
        if kind == "github-actions":
            fetcher: CacheableSource = GitHubActionsSource.from_env(
                os.environ, audience or DEFAULT_GITHUB_AUDIENCE
            )
        elif kind == "client-credentials":
            fetcher = _client_credentials(issuer, client_id, scope, resource, audience)
        else:
            raise click.BadParameter(
                f"unknown source {kind!r}: use github-actions, kubernetes[=PATH], "
                "client-credentials or file=PATH",
                param_hint="--from",
            )
        cache = (
            None if no_cache else TokenCache(cache_dir or TokenCache.default_directory(os.environ))
        )
        click.echo(_cached(fetcher, cache))
    except HttpError as exc:
        fail_token(str(exc))


def _refuse_options(kind: str, given: dict[str, str | None]) -> None:
    for name, value in given.items():
        if value is not None:
            raise click.UsageError(f"{name} applies only to --from client-credentials, not {kind}")


def _read_file_source(kind: str, argument: str | None) -> str:
    if kind == "kubernetes":
        return kubernetes_token(
            Path(argument).expanduser() if argument else DEFAULT_KUBERNETES_TOKEN_PATH
        )
    if not argument:
        raise click.BadParameter("file needs a path: file=PATH", param_hint="--from")
    return read_token_file(Path(argument).expanduser())


def _client_credentials(
    issuer: str | None,
    client_id: str | None,
    scope: str | None,
    resource: str | None,
    audience: str | None,
) -> ClientCredentialsSource:
    if not issuer:
        raise click.UsageError("--from client-credentials needs --issuer URL")
    if not client_id:
        raise click.UsageError(f"--from client-credentials needs --client-id or {CLIENT_ID_ENV}")
    secret = os.environ.get(CLIENT_SECRET_ENV, "")
    if not secret:
        fail_token(
            f"{CLIENT_SECRET_ENV} is not set: the client secret is read only from the "
            "environment, never from a flag"
        )
    return ClientCredentialsSource(issuer, client_id, secret, scope, resource, audience)


def _cached(source: CacheableSource, cache: TokenCache | None) -> str:
    """From the cache while it is good, else fetched and kept; a cache that fails only warns."""
    key = source.cache_key()
    if cache is not None and (hit := cache.get(key)) is not None:
        return hit
    fresh = asyncio.run(source.fetch())
    if cache is not None:
        try:
            cache.put(key, fresh)
        except TokenCacheError as exc:
            click.echo(f"ztgate token: warning: {exc}", err=True)
    return fresh


def fail_token(message: str) -> NoReturn:
    fail(message, WRONG, command="ztgate token")
