"""What every command shares: the config option, exit codes, failing with a message."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import click

from ztgate.config import ConfigError, GatewayConfig, load_config
from ztgate.datapath.server import CONFIG_ENV

# Exit codes: 0 as asked, 1 the answer is "no" (verify: tampering; policy check: problems;
# simulate: decisions would change), 2 the command could not run.
WRONG = 1
CANNOT_RUN = 2

CONFIG_OPTION = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    help=f"The gateway's YAML config file (or set {CONFIG_ENV}).",
)


def fail(message: str, code: int = CANNOT_RUN, *, command: str = "ztgate") -> NoReturn:
    """The one way a command stops early: a message on stderr and an exit code."""
    click.echo(f"{command}: {message}", err=True)
    sys.exit(code)


def config_or_exit(config_path: Path | None, *, starting: bool = False) -> GatewayConfig:
    """The config for a command, or exit 2 with a message that names the bad key."""
    if config_path is None:
        fail(f"no config file: pass --config PATH or set {CONFIG_ENV} (see docs/configuration.md)")
    try:
        return load_config(config_path, os.environ)
    except ConfigError as exc:
        fail(f"refusing to start: {exc}" if starting else str(exc))


def count(n: int, noun: str) -> str:
    """``1 warning``, ``2 warnings``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def echo_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Rows under a bold header, each column as wide as its widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    click.echo(click.style(line(header), bold=True))
    for row in rows:
        click.echo(line(row))
