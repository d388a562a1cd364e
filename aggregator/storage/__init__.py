"""Persistence: schema migrations and every SQL statement (SQLite by default)."""

from aggregator.storage.database import SourceState, Storage, Transaction

__all__ = ["SourceState", "Storage", "Transaction"]
