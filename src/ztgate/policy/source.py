"""The live policy: loaded at start, reloaded on change or SIGHUP, swapped atomically.

A reload builds a whole new :class:`Policy`; if the new file is invalid the old policy keeps
deciding, the failure is logged and shown on ``/readyz``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ztgate.policy.engine import Policy
from ztgate.policy.loader import PolicyError, Serving, build_policy, load_policy_file

log = logging.getLogger("ztgate.policy")


class PolicySource:
    def __init__(
        self,
        policy: Policy,
        path: Path | None,
        warnings: list[str],
        serving: Serving | None = None,
    ) -> None:
        self.current = policy
        self.serving = serving
        # Told of every reload, applied or rejected (plain data): the audit records them.
        self.on_reload: Callable[[dict[str, Any]], None] | None = None
        self.path = path
        self.warnings = warnings
        self.last_error: str | None = None
        self.loaded_at = time.time()
        self._fingerprint = self._read_fingerprint()

    @classmethod
    def from_config(
        cls, setting: str | dict[str, Any], *, serving: Serving | None = None
    ) -> PolicySource:
        """From a file path (reloadable) or an inline document; raises PolicyError. With
        ``serving``, every load (reloads too) is checked against what the gateway offers."""
        if isinstance(setting, str):
            policy, warnings = load_policy_file(setting, serving=serving)
            return cls(policy, Path(setting), warnings, serving)
        policy, warnings = build_policy(setting, source="config policy", serving=serving)
        return cls(policy, None, warnings, serving)

    def log_warnings(self) -> None:
        for warning in self.warnings:
            log.warning("policy lint", extra={"event": "policy_lint", "warning": warning})

    def _read_fingerprint(self) -> bytes | None:
        if self.path is None:
            return None
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return None

    def reload(self) -> bool:
        """Load the file again; True when a new policy is now deciding."""
        if self.path is None:
            return False
        self._fingerprint = self._read_fingerprint()
        try:
            policy, warnings = load_policy_file(self.path, serving=self.serving)
        except PolicyError as exc:
            self.last_error = str(exc)
            log.error(
                "policy reload rejected; the previous policy keeps deciding",
                extra={"event": "policy_reload_rejected", "error": str(exc)},
            )
            self._notify({"applied": False, "path": str(self.path), "error": str(exc)})
            return False
        self.current, self.warnings = policy, warnings
        self.last_error = None
        self.loaded_at = time.time()
        log.warning(
            "policy reloaded",
            extra={"event": "policy_reloaded", "rules": len(policy.rules), "lint": warnings},
        )
        self._notify(
            {"applied": True, "path": str(self.path), "rules": len(policy.rules), "lint": warnings}
        )
        return True

    def _notify(self, data: dict[str, Any]) -> None:
        if self.on_reload is not None:
            self.on_reload(data)

    async def watch(self, interval: float = 1.0) -> None:
        """Reload whenever the file's content changes."""
        while True:
            await asyncio.sleep(interval)
            if self.path is not None and self._read_fingerprint() != self._fingerprint:
                self.reload()

    def status(self) -> dict[str, Any]:
        return {
            "file": str(self.path) if self.path else None,
            "rules": len(self.current.rules),
            "loaded_at": self.loaded_at,
            "last_error": self.last_error,
            "warnings": self.warnings,
        }
