"""Several workers sharing one PostgreSQL database: each leases hosts, polls their due
sources, releases them; one worker at a time publishes.

    textile-feeds worker        # on as many machines as you like (``run`` does the same
                                # when the database is PostgreSQL)

Coordination rests on PostgreSQL's own guarantees, not on a coordinator of ours:
- **Leases.** A worker claims up to ``workers.batch`` hosts that have a due source with
  ``SELECT ... FOR UPDATE SKIP LOCKED`` and stamps them with its name and an expiry
  (``workers.lease``). Hosts are leased whole, so one worker at a time talks to a host
  and per-host concurrency, gaps and Retry-After (stored per host) hold across workers.
  After polling it releases them. A worker that dies holds its hosts until the lease
  expires; then another claims them, and since the dead worker never wrote those polls
  the sources are still due.
- **No double storage.** A poll's items and its new next-check time commit together;
  unique keys catch two workers storing one story at the same moment. The loser's
  source is rolled back to its savepoint and decided again, which finds the winner's
  item stored (``pipeline._store_racing``); only if that keeps failing is the whole
  batch rolled back and polled again.
- **One publisher.** A worker whose round changed items records a publish request;
  whoever holds the publisher advisory lock renders the feeds, and renders again if a
  request came in meanwhile. Feeds go to ``output_dir``, which several machines must
  share (an NFS or similar folder; files are replaced atomically).
- **Configuration.** Every worker reads its own config folder and reloads it when a
  file changes or on SIGHUP, exactly like the single daemon; deploy the same folder
  to every machine (or share it).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import FrameType

from aggregator.config import AppConfig, SourceConfig
from aggregator.errors import AggregatorError, ConflictError, StorageError
from aggregator.fetch import host_of
from aggregator.models import CycleReport
from aggregator.pipeline import publish_all, run_cycle
from aggregator.prepare import Workers
from aggregator.publish import PublishResult
from aggregator.scheduler import ConfigWatcher, new_scheduler, repeat_after_each_run
from aggregator.storage import Storage
from aggregator.storage.database import LOCAL_HOST
from aggregator.storage.lock import PUBLISHER_KEY, worker_lock

log = logging.getLogger(__name__)

#: Meta keys of the publishing hand-over: a worker writes a new token to the first
#: when feeds need publishing; the publisher copies it to the second when done.
PUBLISH_REQUESTED = "publish_requested"
PUBLISHED = "publish_done"
JOB_ID = "claim-and-poll"
#: Batches in a row that may fail to store before a round gives up.
MAX_FAILED_BATCHES = 3
#: Lost unique-key races in one round before it gives up (each is retried at once).
MAX_CONFLICTS = 50


def worker_name() -> str:
    """Unique among live workers and readable in the hosts table: host, pid, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def source_host(source: SourceConfig) -> str:
    return LOCAL_HOST if source.is_local else host_of(source.url)


def poll_claimed(
    config: AppConfig,
    storage: Storage,
    owner: str,
    *,
    workers: Workers | None = None,
    stop: threading.Event | None = None,
) -> CycleReport | None:
    """Claim a batch of hosts, poll their due sources, release them. None when no host
    could be claimed (nothing due, or every due host leased by another worker)."""
    settings = config.settings.workers
    enabled = [s.id for s in config.sources if s.enabled]
    now = datetime.now(UTC)
    claimed = storage.claim_hosts(owner, enabled, now, settings.lease, settings.batch)
    if not claimed:
        return None
    hosts = set(claimed)
    try:
        report = run_cycle(
            config, storage, due_only=True, stop=stop, workers=workers, now=now,
            only=lambda source: source_host(source) in hosts, publish=False,
        )  # fmt: skip
        if report.publish_due:
            storage.set_meta(PUBLISH_REQUESTED, uuid.uuid4().hex)
    finally:
        gap = timedelta(seconds=config.settings.fetch.per_host_delay)
        storage.release_hosts(owner, claimed, free_from=datetime.now(UTC) + gap)
    log.info(
        "worker round hosts=%d sources=%d new_items=%d",
        len(claimed), len(report.sources), report.new_items,
    )  # fmt: skip
    return report


def publish_if_requested(config: AppConfig, storage: Storage) -> PublishResult | None:
    """Publish when some worker asked for it and no other worker is publishing; again
    if a request arrived meanwhile. None when there was nothing to do here."""
    result = None
    with storage.advisory_lock(PUBLISHER_KEY) as publisher:
        if not publisher:
            return None  # the publisher will see our request when it looks again
        while (requested := storage.meta(PUBLISH_REQUESTED)) is not None and requested != (
            storage.meta(PUBLISHED)
        ):
            result = publish_all(config, storage)
            storage.set_meta(PUBLISHED, requested)
            log.info("published files_written=%d", len(result.written))
    return result


def work(
    config: AppConfig,
    storage: Storage,
    owner: str,
    *,
    workers: Workers | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Claim and poll batches until none is left to claim, then publish if asked.
    Returns how many sources were polled."""
    polled = 0
    with storage.transaction() as tx:  # new sources (and their hosts) become claimable
        tx.sync_sources(config.sources)
    failures = conflicts = 0
    while stop is None or not stop.is_set():
        try:
            report = poll_claimed(config, storage, owner, workers=workers, stop=stop)
        except ConflictError as exc:
            # Two workers stored one story at the same moment and this batch lost the
            # race on a unique key: it was rolled back and its hosts released, so the
            # next claim polls them again and finds the story stored.
            conflicts += 1
            log.info("batch lost a race and is polled again (%d): %s", conflicts, exc)
            if conflicts >= MAX_CONFLICTS:
                raise
            continue
        except StorageError as exc:
            # Anything else may pass (a restarted server); a database that keeps
            # failing ends the round instead.
            failures += 1
            log.warning("batch rolled back (%d in a row): %s", failures, exc)
            if failures >= MAX_FAILED_BATCHES:
                raise
            continue
        failures = 0
        if report is None:
            break
        polled += len(report.sources)
    publish_if_requested(config, storage)
    return polled


def run_worker(
    config: AppConfig, storage: Storage, *, once: bool = False, stop: threading.Event | None = None
) -> None:
    """``once``: work until nothing is left to claim, then return (cron). Otherwise
    look for due hosts every ``workers.idle`` seconds until SIGINT/SIGTERM."""
    owner = worker_name()
    stop = stop or threading.Event()
    parse_workers = Workers()
    with worker_lock(config, storage):
        log.info("worker started name=%s database=%s", owner, config.database_name)
        try:
            if once:
                work(config, storage, owner, workers=parse_workers, stop=stop)
            else:
                _serve(config, storage, owner, parse_workers, stop)
        finally:
            parse_workers.close()
    log.info("worker stopped name=%s", owner)


def _serve(
    config: AppConfig, storage: Storage, owner: str, parse_workers: Workers, stop: threading.Event
) -> None:
    watcher = ConfigWatcher(config)
    scheduler = new_scheduler()

    def round_() -> None:
        watcher.maybe_reload()
        try:
            work(watcher.config, storage, owner, workers=parse_workers, stop=stop)
        except AggregatorError as exc:  # a database outage: log, try again next round
            log.error("worker round failed: %s", exc)

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping after the current write", signal.Signals(signum).name)
        stop.set()

    def request_reload(_signum: int, _frame: FrameType | None) -> None:
        watcher.reload_requested.set()

    handlers = {
        signal.SIGINT: request_stop,
        signal.SIGTERM: request_stop,
        signal.SIGHUP: request_reload,
    }
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    scheduler.start()
    repeat_after_each_run(scheduler, JOB_ID, round_, lambda: watcher.config.settings.workers.idle)
    try:
        while not stop.wait(timeout=1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
