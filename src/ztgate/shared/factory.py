"""Where the shared state lives, from the deployment the configuration describes.

- ``quotas.redis_url`` set: Redis, for every replica (the fastest shared place);
- else a PostgreSQL store: its database (replicas already share it);
- else several workers on the SQLite store: a SQLite file beside it, for the machine's workers;
- else one process: memory.
"""

from __future__ import annotations

from ztgate.config.model import GatewayConfig
from ztgate.config.store_url import POSTGRES_PREFIXES, sqlite_path
from ztgate.shared.base import SharedState
from ztgate.shared.memory import MemoryState
from ztgate.shared.postgres import PostgresState
from ztgate.shared.redis import RedisState
from ztgate.shared.sqlite import SQLiteState


def shared_state(config: GatewayConfig) -> SharedState:
    if config.quotas.redis_url:
        return RedisState(config.quotas.redis_url)
    url = config.store.url
    if url.startswith(POSTGRES_PREFIXES):
        return PostgresState(url)
    if config.server.workers > 1:
        store = sqlite_path(url)
        return SQLiteState(store.with_name(store.name + ".shared"))
    return MemoryState()
