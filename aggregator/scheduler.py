"""The long-lived daemon: APScheduler wiring only.

One interval job polls the sources that are due (each source has its own interval,
kept as ``next_check_at`` in the database), so the daemon and ``run --once`` share
``pipeline.run_cycle``. The job never overlaps itself (``max_instances=1``) and missed
runs collapse into one (``coalesce``). SIGINT/SIGTERM ask the running cycle to stop
after its current source's write, then the scheduler shuts down and the process exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from datetime import UTC, datetime
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from aggregator.config import AppConfig
from aggregator.errors import AggregatorError
from aggregator.pipeline import run_cycle
from aggregator.storage import Storage

log = logging.getLogger(__name__)

#: Longest time between two looks at which sources are due.
MAX_TICK_SECONDS = 60.0


def tick_seconds(config: AppConfig) -> float:
    """How often to look for due sources: often enough for the shortest interval."""
    shortest = min((config.interval_of(s) for s in config.sources if s.enabled), default=60.0)
    return max(1.0, min(MAX_TICK_SECONDS, shortest))


def run_daemon(config: AppConfig, storage: Storage, stop: threading.Event | None = None) -> None:
    """Poll due sources until SIGINT/SIGTERM (or ``stop`` is set), then return."""
    stop = stop or threading.Event()

    def poll_due() -> None:
        try:
            report = run_cycle(config, storage, due_only=True, stop=stop)
        except AggregatorError as exc:  # e.g. the disk is full: log, retry next tick
            log.error("cycle failed: %s", exc)
            return
        if report.sources:
            log.info(
                "cycle done sources=%d new_items=%d files_written=%d",
                len(report.sources), report.new_items, len(report.files_written),
            )  # fmt: skip

    scheduler = BackgroundScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    scheduler.add_job(
        poll_due,
        IntervalTrigger(seconds=tick_seconds(config), timezone=UTC),
        id="poll-due-sources",
        next_run_time=datetime.now(UTC),
    )

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping after the current write", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    scheduler.start()
    log.info("daemon started sources=%d tick=%ss", len(config.sources), tick_seconds(config))
    try:
        while not stop.wait(timeout=1.0):
            pass
    finally:
        scheduler.shutdown(wait=True)  # lets a running cycle finish its current source
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("daemon stopped")
