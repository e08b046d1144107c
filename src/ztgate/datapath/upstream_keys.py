"""Which Anthropic key a request goes upstream with: its team's, else the gateway's own.

One Anthropic workspace per team splits Anthropic's own usage reports by team. Keys come from
the configuration (``${VAR}`` from the environment) or from files, which are read again when
they change (a rotated secret takes effect without a restart); a file that turns unreadable or
empty keeps the last good key and says so in the log, as a certificate renewal does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ztgate.config.model import TeamKeyConfig, UpstreamConfig, check_api_key
from ztgate.datapath.scrub import KeyScrubber

log = logging.getLogger("ztgate")

DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Credential:
    """The key a request carries upstream, by name (the audit's), and what scrubs it from the
    answer."""

    name: str
    key: bytes
    scrubber: KeyScrubber

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """What every upstream request carries: the key, and a request for bodies ztgate can
        inspect (a compressed JSON or SSE answer is refused)."""
        return [(b"x-api-key", self.key), (b"accept-encoding", b"identity")]


def _credential(name: str, key: str) -> Credential:
    raw = key.encode("latin-1")
    return Credential(name, raw, KeyScrubber(raw))


class _KeyFile:
    """A key in a file, read again when the file changes."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = Path(path)
        stat = self.path.stat()
        self._stamp: tuple[int, int] | None = (stat.st_mtime_ns, stat.st_size)
        self._failing = False
        self.current = self._load(first=True)

    def _load(self, *, first: bool = False) -> Credential:
        key = check_api_key(self.path.read_text().strip())
        if not first:
            log.warning("upstream key reloaded", extra={"event": "key_reloaded", "team": self.name})
        return _credential(self.name, key)

    def get(self) -> Credential:
        """The key, read again when the file's size or time changed. A version that cannot be
        used is not read again until it changes, and is logged once."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            self._failed(exc)
            return self.current
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self.current = self._load()
            except (OSError, ValueError) as exc:
                self._failed(exc)
            else:
                self._failing = False
        return self.current

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            log.error(
                "upstream key file cannot be read; the last good key is used",
                extra={
                    "event": "key_reload_failed",
                    "team": self.name,
                    "error": type(exc).__name__,
                },
            )
        self._failing = True


class UpstreamKeys:
    def __init__(self, config: UpstreamConfig) -> None:
        self._default = _credential(DEFAULT, config.api_key.get_secret_value())
        self._teams: list[tuple[frozenset[str], Credential | _KeyFile]] = [
            (frozenset(team.groups), _source(team)) for team in config.team_keys
        ]

    @property
    def default(self) -> Credential:
        return self._default

    def for_groups(self, groups: frozenset[str]) -> Credential:
        """The first team (in configuration order) the caller is in, else the default key."""
        for team_groups, source in self._teams:
            if not team_groups.isdisjoint(groups):
                return source.get() if isinstance(source, _KeyFile) else source
        return self._default


def _source(team: TeamKeyConfig) -> Credential | _KeyFile:
    if team.key_file is not None:
        return _KeyFile(team.name, team.key_file)
    assert team.api_key is not None
    return _credential(team.name, team.api_key.get_secret_value())
