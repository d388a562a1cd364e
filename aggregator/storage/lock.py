"""One writing process per SQLite database: an exclusive lock file beside it.

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

from aggregator.errors import StorageError


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
