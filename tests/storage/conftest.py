"""Every test here runs against SQLite and the real PostgreSQL (see backends.py)."""

from tests.storage.backends import pg_database, store, store_url

__all__ = ["pg_database", "store", "store_url"]
