"""``ztgate``: the command group. Only the CLI exits; everything below it raises."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ztgate import __version__
from ztgate.audit.signing import load_signing_key
from ztgate.cli.audit import audit
from ztgate.cli.common import CONFIG_OPTION, config_or_exit, fail
from ztgate.cli.demo import demo
from ztgate.cli.policy import policy
from ztgate.cli.reviews import reviews
from ztgate.cli.sessions import replay, sessions
from ztgate.cli.store import store
from ztgate.cli.token import token
from ztgate.config import ConfigError
from ztgate.datapath.logs import configure_logging
from ztgate.datapath.runtime import serving
from ztgate.policy.loader import PolicyError
from ztgate.policy.source import PolicySource


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ztgate")
def cli() -> None:
    """ztgate: a zero-trust gateway for the Claude API."""


@cli.command()
@CONFIG_OPTION
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Worker processes sharing the port (default: server.workers from the config).",
)
def serve(config_path: Path | None, workers: int | None) -> None:
    """Run the gateway until SIGINT or SIGTERM."""
    from ztgate.datapath.server import ConnectionLimitError, connection_limit
    from ztgate.datapath.server import serve as run_server

    config = config_or_exit(config_path, starting=True)
    configure_logging(config.logging.level)
    assert config.policy is not None
    try:
        # Refuse to start on an invalid policy, or one this gateway could not serve.
        PolicySource.from_config(config.policy, serving=serving(config))
        # And without a checkpoint key (created beside an embedded store, as start-up would).
        load_signing_key(config.audit, config.store.url)
        # And with the file descriptors its connection limit needs.
        connection_limit(config)
    except (PolicyError, ConfigError, ConnectionLimitError) as exc:
        fail(f"refusing to start: {exc}")
    sys.exit(run_server(config, config_path, workers or config.server.workers))


cli.add_command(audit)
cli.add_command(demo)
cli.add_command(policy)
cli.add_command(replay)
cli.add_command(reviews)
cli.add_command(sessions)
cli.add_command(store)
cli.add_command(token)


def main() -> None:
    cli()
