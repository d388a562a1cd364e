"""One writing process per database: an exclusive lock file beside a SQLite file, a
session advisory lock on PostgreSQL.

The daemon holds the lock for its whole life and ``run --once`` for its cycle, so a
second daemon, or a cron run while the daemon works, refuses to start instead of
polling every source twice. The kernel drops the lock when the process dies, so a
crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aggregator.config import AppConfig
from aggregator.errors import StorageError
from aggregator.storage.database import Storage


@contextmanager
def exclusive_lock(database: Path) -> Iterator[None]:
    """Hold ``<database>.lock`` exclusively; raise ``StorageError`` if another process does."""
    path = database.with_name(database.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 (held open for the lock's lifetime)
    except OSError as exc:
        raise StorageError(f"cannot open lock file {path}: {exc}") from exc
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise StorageError(
                f"database {database} is in use by another textile-feeds process "
                f"(pid {holder}); stop it first, or wait for its cycle to end"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


#: PostgreSQL advisory lock keys (any fixed numbers): workers hold the first shared,
#: commands that must run alone (``recategorize``) exclusively; one worker at a time
#: holds the second while it publishes.
SINGLE_WRITER_KEY = 0x7465787469  # "texti"
PUBLISHER_KEY = 0x7075626C69  # "publi"


@contextmanager
def database_lock(config: AppConfig, storage: Storage) -> Iterator[None]:
    """One writer per SQLite database (the lock file beside it); on PostgreSQL, no
    worker running (they hold the shared side of an advisory lock)."""
    if storage.engine_name == "sqlite":
        with exclusive_lock(config.database_path):
            yield
        return
    with storage.advisory_lock(SINGLE_WRITER_KEY) as taken:
        if not taken:
            raise StorageError(
                f"database {config.database_name} is in use by textile-feeds workers; "
                "stop them first"
            )
        yield


@contextmanager
def worker_lock(config: AppConfig, storage: Storage) -> Iterator[None]:
    """Workers share the database with each other, not with a command running alone."""
    with storage.advisory_lock(SINGLE_WRITER_KEY, shared=True) as taken:
        if not taken:
            raise StorageError(
                f"database {config.database_name} is in use by a command that runs alone "
                "(recategorize); wait for it to end"
            )
        yield
