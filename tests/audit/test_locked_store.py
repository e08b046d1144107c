"""A locked audit store answers callers in about ``store.write_timeout``, not twice the old
30 s busy timeout: the request is refused (503, retryable) without going upstream, the refusal
is not held for a second wait, and service comes back when the lock goes."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import anthropic
import pytest

from tests.stackrunner import RunningStack


def test_a_locked_store_refuses_within_the_write_timeout_then_recovers(
    tmp_path: Path, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    database = tmp_path / "audit.db"
    running = RunningStack(store={"url": f"sqlite:///{database}", "write_timeout": "1s"})
    holder = sqlite3.connect(database, isolation_level=None)
    try:
        client = sdk(base_url=running.url, auth_token=running.token())
        ask = {
            "model": "claude-haiku-4-5",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        }
        assert client.messages.create(**ask).content  # the store works
        before = len(running.received())

        holder.execute("BEGIN EXCLUSIVE")  # another process holds the file's write lock
        started = time.monotonic()
        with pytest.raises(anthropic.InternalServerError) as refused:
            client.messages.create(**ask)
        took = time.monotonic() - started
        assert refused.value.status_code == 503
        assert "audit store cannot record this request" in str(refused.value)
        assert refused.value.response.headers["retry-after"]
        # One wait for the lock (1 s), not a second one to record the refusal.
        assert took < 1.8, f"the caller waited {took:.1f} s for a 1 s write timeout"
        assert len(running.received()) == before  # nothing went upstream unrecorded

        holder.execute("ROLLBACK")
        assert client.messages.create(**ask).content  # back at once
    finally:
        holder.close()
        running.close()
