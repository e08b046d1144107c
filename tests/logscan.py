"""A pytest plugin: every log line the suite produces is scanned for planted secrets and tokens
at the end of the session, which fails (with the offending lines) if one is found.

What is read:

- every log record any logger in the test process handles (the in-process gateways, issuers
  and simulators of ``RunningStack`` and the admin harness, the CLI run in-process), formatted
  as a JSON log line would hold it: the message, every ``extra`` field and the traceback;
- the access log of in-process gateways (one JSON line a request, written to stderr
  directly);
- what ``ztgate`` subprocesses (``GatewayProcesses``, ``replay --serve``, CLI runs) wrote on
  stderr, their log stream, wherever a test collects it with ``communicate()`` or ``run()``.

The ``ztgate`` logger runs at INFO for the session, as in production (``logging.level``), so
access and admin lines are written and read too; a test that sets a level of its own keeps it.

What is looked for:

- tokens by their shape: a JWT (``eyJ…``.``eyJ…``.signature), an Anthropic key
  (``sk-ant-…``), an AWS access key id, a private key block;
- the exact values of every ``SecretStr`` the session built (upstream keys, ``hash_key``,
  recording keys, webhook and Slack secrets), and the secrets the tests plant in prompts
  (the detector catalogue's formats, the masking tests' keys).

A redacted form (``[REDACTED:JWT]``, a digest, a key's name or its first characters) has
none of these shapes, so a test that logs one does not trip the scan. ``LOGSCAN=off`` turns
the plugin off; ``LOGSCAN_DUMP=FILE`` writes every line it read to FILE. Registered by one
line in tests/conftest.py.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}
_MIN_SECRET = 12  # shorter planted values ("k", "unused") would match by chance

# Tokens and keys by their shape: a test cannot plant one the scan does not know of.
SHAPES = {
    "JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}"),
    "Anthropic key": re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[A-Z2-7]{16}\b"),
    "private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
}
# Modules whose string constants are the secrets tests plant in prompts and bodies.
_PLANTING_MODULES = {
    "tests.detectors.test_catalogue": (
        "ANTHROPIC", "ANTHROPIC_ADMIN", "OPENAI_PROJECT", "OPENAI_LEGACY", "AWS_KEY_ID",
        "AWS_SECRET", "GOOGLE_KEY", "AZURE_ACCOUNT_KEY", "AZURE_SHARED_KEY",
        "AZURE_CLIENT_SECRET", "GITHUB_PAT", "GITLAB", "SLACK_BOT", "SLACK_USER",
        "SLACK_WEBHOOK", "STRIPE", "NPM", "PYPI", "PASSWORD", "JWT",
    ),
    "tests.inspection.test_masking": ("ANTHROPIC", "AZURE_KEY"),
    "tests.datapath.test_hostile_requests": ("AWS_KEY",),
    "tests.inspection.test_inspection_gateway": ("AWS_KEY",),
    "ztgate.devtools.stack": ("SIMULATOR_KEY",),
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Line:
    source: str  # "log" or "stderr of <command>"
    test: str  # the test running when it was written
    text: str


@dataclass(frozen=True, slots=True)
class Leak:
    line: Line
    what: str


class LogScan:
    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.secrets: set[str] = set()
        self.test = "(collection)"
        self._undo: list[Any] = []

    # --- capture ---------------------------------------------------------------------------

    def install(self) -> None:
        scan = self
        handle = logging.Logger.handle

        def handle_and_keep(logger: logging.Logger, record: logging.LogRecord) -> None:
            scan.keep_record(record)
            handle(logger, record)

        setattr(logging.Logger, "handle", handle_and_keep)  # noqa: B010 (typed as a method)
        self._undo.append(lambda: setattr(logging.Logger, "handle", handle))

        communicate = subprocess.Popen.communicate

        def communicate_and_keep(
            process: subprocess.Popen[Any], *args: Any, **kwargs: Any
        ) -> tuple[Any, Any]:
            out, err = communicate(process, *args, **kwargs)
            scan.keep_stderr(process.args, err)
            return out, err

        setattr(subprocess.Popen, "communicate", communicate_and_keep)  # noqa: B010
        self._undo.append(lambda: setattr(subprocess.Popen, "communicate", communicate))

        import pydantic.types

        secret_init = pydantic.types._SecretBase.__init__

        def init_and_keep(secret: Any, value: Any) -> None:
            secret_init(secret, value)
            if isinstance(value, str):
                scan.plant(value)

        setattr(pydantic.types._SecretBase, "__init__", init_and_keep)  # noqa: B010
        self._undo.append(lambda: setattr(pydantic.types._SecretBase, "__init__", secret_init))

        # The access log is one line a request written straight to stderr (not through
        # logging, for speed): each in-process gateway's stream is read on its way out.
        from ztgate.audit import access_log

        access_init = access_log.AccessLog.__init__

        def access_init_and_keep(log: access_log.AccessLog, stream: Any = None) -> None:
            access_init(log, stream)
            log._stream = _Tee(log._stream, scan)  # type: ignore[assignment]

        setattr(access_log.AccessLog, "__init__", access_init_and_keep)  # noqa: B010
        self._undo.append(lambda: setattr(access_log.AccessLog, "__init__", access_init))

        ztgate = logging.getLogger("ztgate")
        if ztgate.level == logging.NOTSET:
            ztgate.setLevel(logging.INFO)
            self._undo.append(lambda: ztgate.setLevel(logging.NOTSET))

    def uninstall(self) -> None:
        while self._undo:
            self._undo.pop()()

    def keep_record(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(Line("log", self.test, format_record(record)))
        except Exception as exc:  # a record that cannot be formatted is no reason to fail
            self.lines.append(Line("log", self.test, f"<unformattable record: {exc!r}>"))

    def keep_stderr(self, command: Any, err: Any) -> None:
        if not err:
            return
        argv = [str(a) for a in command] if isinstance(command, list | tuple) else [str(command)]
        if not any("ztgate" in a for a in argv):
            return
        text = err.decode("utf-8", "replace") if isinstance(err, bytes) else str(err)
        source = "stderr of " + " ".join(a for a in argv[1:4])
        self.lines.extend(Line(source, self.test, line) for line in text.splitlines())

    def plant(self, value: str) -> None:
        if len(value) >= _MIN_SECRET and not value.startswith("${"):
            self.secrets.add(value)

    # --- scan ------------------------------------------------------------------------------

    def planted(self) -> set[str]:
        import importlib
        import sys

        values = set(self.secrets)
        for module_name, names in _PLANTING_MODULES.items():
            module = sys.modules.get(module_name)
            if module is None:  # only what this session imported can have been planted
                try:
                    module = importlib.import_module(module_name)
                except Exception:  # noqa: S112 (a module that does not import plants nothing)
                    continue
            for name in names:
                value = getattr(module, name, None)
                if isinstance(value, str) and len(value) >= _MIN_SECRET:
                    values.add(value)
        return values


class _Tee:
    """A binary stream that keeps each line written through it, for the scan."""

    def __init__(self, stream: Any, scan: LogScan) -> None:
        self._stream = stream
        self._scan = scan

    def write(self, data: bytes) -> int:
        text = data.decode("utf-8", "replace")
        self._scan.lines.extend(
            Line("access log", self._scan.test, line) for line in text.splitlines()
        )
        written: int = self._stream.write(data)
        return written

    def flush(self) -> None:
        self._stream.flush()


def format_record(record: logging.LogRecord) -> str:
    """What a log line holds of a record: level, logger, message, extra fields, traceback."""
    parts = [record.levelname, record.name, record.getMessage()]
    extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    if extras:
        parts.append(repr(extras))
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(*record.exc_info)))
    elif record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return " | ".join(parts)


def find_leaks(lines: Iterable[Line], planted: set[str]) -> list[Leak]:
    exact = (
        re.compile("|".join(re.escape(v) for v in sorted(planted, key=len, reverse=True)))
        if planted
        else None
    )
    found: list[Leak] = []
    for line in lines:
        for name, shape in SHAPES.items():
            match = shape.search(line.text)
            if match:
                found.append(Leak(line, f"a {name} ({_hint(match.group())})"))
                break
        else:
            match = exact.search(line.text) if exact is not None else None
            if match:
                found.append(Leak(line, f"a planted secret ({_hint(match.group())})"))
    return found


def _hint(value: str) -> str:
    """Enough of a value to find it in the test, not the value (this report is output too)."""
    return f"{value[:6]}… {len(value)} characters"


# --- hooks -----------------------------------------------------------------------------------

_KEY = pytest.StashKey[LogScan]()


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("LOGSCAN", "on").lower() in ("off", "0", "no"):
        return
    scan = LogScan()
    scan.install()
    config.stash[_KEY] = scan


def pytest_unconfigure(config: pytest.Config) -> None:
    scan = config.stash.get(_KEY, None)
    if scan is not None:
        scan.uninstall()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    scan = item.config.stash.get(_KEY, None)
    if scan is not None:
        scan.test = item.nodeid


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    scan = session.config.stash.get(_KEY, None)
    if scan is None:
        return
    planted = scan.planted()
    leaks = find_leaks(scan.lines, planted)
    dump = os.environ.get("LOGSCAN_DUMP")
    if dump:  # every line read, for a look at what the suite logs (holds what it found)
        with open(dump, "w", encoding="utf-8") as out:
            out.writelines(f"{line.test} [{line.source}] {line.text}\n" for line in scan.lines)
    session.config.stash[_LEAKS] = (leaks, planted)
    if leaks and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_LEAKS = pytest.StashKey[tuple[list[Leak], set[str]]]()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    scan = config.stash.get(_KEY, None)
    if scan is None:
        return
    leaks, planted = config.stash.get(_LEAKS, ([], set()))
    records = sum(1 for line in scan.lines if line.source == "log")
    access = sum(1 for line in scan.lines if line.source == "access log")
    others = len(scan.lines) - records - access
    if not leaks:
        terminalreporter.write_line(
            f"log scan: {records} log records, {access} access log lines and {others} "
            "subprocess stderr lines: no planted secret or token in any"
        )
        return
    terminalreporter.section("log scan: planted secrets or tokens in the logs", red=True)
    for leak in leaks[:50]:
        terminalreporter.write_line(f"{leak.line.test} [{leak.line.source}]: {leak.what}")
        terminalreporter.write_line("    " + _masked(leak.line.text, planted)[:400])
    if len(leaks) > 50:
        terminalreporter.write_line(f"... and {len(leaks) - 50} more")


def _masked(text: str, planted: set[str]) -> str:
    """The offending line, with every token and planted value cut short, so the report does
    not repeat what it reports."""
    for shape in SHAPES.values():
        text = shape.sub(lambda m: _hint(m.group()), text)
    for value in sorted(planted, key=len, reverse=True):
        text = text.replace(value, _hint(value))
    return text
