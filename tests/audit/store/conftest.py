"""Every test here runs against SQLite and the real PostgreSQL (see backends.py)."""

from tests.audit.store.backends import pg_database, store, store_url

__all__ = ["pg_database", "store", "store_url"]
