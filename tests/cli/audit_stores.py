"""Fixtures' helpers for the audit CLI tests: filled stores per backend, and the CLI run
in-process as an operator runs it (arguments in, output and exit code out)."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from tests.audit.filled import Filled, fill, store_url
from ztgate.cli.main import cli


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def ztgate(*args: str | Path) -> Run:
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"ZTGATE_CONFIG": None})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Run(result.exit_code, result.stdout, result.stderr)


@dataclass
class FilledStore:
    filled: Filled
    config: Path  # a gateway config that reads it, with the right keys
    directory: Path


def filled_store(backend: str, directory: Path, stack: ExitStack) -> FilledStore:
    """A store on ``backend`` filled with both sessions, closed by ``stack``."""
    url = stack.enter_context(store_url(backend, directory))
    filled = asyncio.run(fill(url))
    return FilledStore(filled, filled.config_yaml(directory), directory)
