"""Persistence: schema migrations and every SQL statement (SQLite by default)."""

from aggregator.storage.database import NewItem, Storage, StoryJoin, Transaction

__all__ = ["NewItem", "Storage", "StoryJoin", "Transaction"]
