"""Durable storage for the audit chain and recordings: SQLite (embedded) and PostgreSQL."""
