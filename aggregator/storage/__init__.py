"""Persistence: schema migrations and every SQL statement (SQLite by default)."""

from aggregator.storage.database import Storage, StoryJoin, Transaction

__all__ = ["Storage", "StoryJoin", "Transaction"]
