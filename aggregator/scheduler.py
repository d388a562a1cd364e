"""The long-lived daemon: APScheduler wiring, signals and config reloads.

One job looks for due sources (each source's next check is stored in the database,
see ``aggregator.schedule``) and runs ``pipeline.run_cycle`` on them, so the daemon and
``run --once`` share one code path. The job schedules its next run a tick after it
ends (``repeat_after_each_run``), so it never overlaps itself and a long round is not
an event worth a warning; feeds are re-published only after a poll round that changed
something.

Signals: SIGINT/SIGTERM ask the running cycle to stop after its current source's
write, then the process exits 0. SIGHUP, or any config file changing on disk, reloads
the configuration before the next round; an invalid new configuration is logged with
its file:line messages and the daemon keeps running on the last valid one.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from aggregator.config import AppConfig, load_config
from aggregator.errors import AggregatorError, ConfigError
from aggregator.pipeline import run_cycle
from aggregator.prepare import Workers
from aggregator.storage import Storage

log = logging.getLogger(__name__)

#: Longest time between two looks at which sources are due.
MAX_TICK_SECONDS = 60.0
JOB_ID = "poll-due-sources"


def tick_seconds(config: AppConfig) -> float:
    """How often to look for due sources: often enough for the shortest interval."""
    shortest = min(
        [config.interval_of(s) for s in config.sources if s.enabled]
        + [config.settings.schedule.min_interval],
    )
    return max(1.0, min(MAX_TICK_SECONDS, shortest))


def repeat_after_each_run(
    scheduler: BackgroundScheduler,
    job_id: str,
    func: Callable[[], None],
    pause: Callable[[], float],
) -> None:
    """Run ``func`` now, then again ``pause()`` seconds after each run ends.

    An interval trigger fires while a long round is still running, and APScheduler
    logs each such firing as a WARNING ("maximum number of running instances
    reached": 16-22 times in one cold start of three workers), which trips alerts
    though a long round is normal. One date job at a time, added when the last run
    ended, cannot overlap."""

    def run_then_schedule_next() -> None:
        try:
            func()
        finally:
            if scheduler.running:
                scheduler.add_job(
                    run_then_schedule_next,
                    DateTrigger(datetime.now(UTC) + timedelta(seconds=pause()), timezone=UTC),
                    id=job_id,
                    replace_existing=True,
                )

    scheduler.add_job(
        run_then_schedule_next, DateTrigger(datetime.now(UTC), timezone=UTC), id=job_id
    )


def new_scheduler() -> BackgroundScheduler:
    """A scheduler for ``repeat_after_each_run`` jobs: a run that starts late (a busy
    machine) still runs."""
    return BackgroundScheduler(timezone=UTC, job_defaults={"misfire_grace_time": None})


class ConfigWatcher:
    """Holds the configuration in force and swaps in a valid new one when files change."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._stamps = _stamps(config.files)
        self.reload_requested = threading.Event()

    def maybe_reload(self) -> bool:
        """Reload if asked (SIGHUP) or a file changed; True when a new config is in force."""
        stamps = _stamps(self.config.files)
        if not self.reload_requested.is_set() and stamps == self._stamps:
            return False
        self.reload_requested.clear()
        self._stamps = stamps  # a broken file is reported once, not every tick
        try:
            new = load_config(self.config.config_dir)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("config error, keeping the running configuration: %s", problem)
            return False
        if (new.database_path, new.database_url) != (
            self.config.database_path,
            self.config.database_url,
        ):
            log.error("the database changed; that needs a restart, keeping the old one")
            return False
        self._stamps = _stamps(new.files)
        self.config = new
        log.info("configuration reloaded sources=%d topics=%d", len(new.sources), len(new.topics))
        return True


def _stamps(files: tuple[Path, ...]) -> tuple[tuple[int, int] | None, ...]:
    stamps: list[tuple[int, int] | None] = []
    for path in files:
        try:
            stat = path.stat()
        except OSError:
            stamps.append(None)
        else:
            stamps.append((stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def run_daemon(
    config: AppConfig,
    storage: Storage,
    stop: threading.Event | None = None,
    *,
    listen: str | None = None,
) -> None:
    """Poll due sources until SIGINT/SIGTERM (or ``stop`` is set), then return.
    ``listen`` ("host:port", else ``status.listen``): serve /healthz and /metrics."""
    from aggregator.operations import Metrics, sd_notify, serve_operations, watchdog_seconds

    stop = stop or threading.Event()
    watcher = ConfigWatcher(config)
    metrics = Metrics(config, storage)
    listen = listen or config.settings.status.listen
    operations = serve_operations(listen, metrics) if listen else None
    # The watchdog hears from us while cycles make progress: at each source stored
    # and between rounds; a round stuck for four intervals goes quiet and is restarted.
    ping_every = watchdog_seconds()
    last_progress = [time.monotonic()]
    running = threading.Event()

    def progressed(_total: int, _report: object) -> None:
        last_progress[0] = time.monotonic()

    # Parse workers live as long as the daemon once a big cycle started them.
    workers = Workers()
    scheduler = new_scheduler()

    def poll_due() -> None:
        if watcher.maybe_reload():
            metrics.config = watcher.config
        running.set()
        try:
            report = run_cycle(watcher.config, storage, due_only=True, stop=stop,
                               workers=workers, progress=progressed)  # fmt: skip
        except AggregatorError as exc:  # e.g. the disk is full: log, retry next tick
            log.error("cycle failed: %s", exc)
            return
        finally:
            running.clear()
            last_progress[0] = time.monotonic()
        metrics.record(report)
        if report.sources:
            log.info(
                "cycle done sources=%d new_items=%d files_written=%d",
                len(report.sources), report.new_items, len(report.files_written),
            )  # fmt: skip

    repeat_after_each_run(scheduler, JOB_ID, poll_due, lambda: tick_seconds(watcher.config))

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; stopping after the current write", signal.Signals(signum).name)
        stop.set()

    def request_reload(_signum: int, _frame: FrameType | None) -> None:
        log.info("received SIGHUP; reloading the configuration before the next round")
        watcher.reload_requested.set()
        job = scheduler.get_job(JOB_ID)
        if job is not None:  # None while a round runs: the reload comes after it
            job.modify(next_run_time=datetime.now(UTC))

    handlers = {
        signal.SIGINT: request_stop,
        signal.SIGTERM: request_stop,
        signal.SIGHUP: request_reload,
    }
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    scheduler.start()
    log.info("daemon started sources=%d tick=%ss", len(config.sources), tick_seconds(config))
    sd_notify("READY=1")
    pinged = 0.0
    try:
        while not stop.wait(timeout=min(1.0, ping_every or 1.0)):
            now = time.monotonic()
            due = bool(ping_every) and now - pinged >= (ping_every or 0.0)
            progressing = not running.is_set() or now - last_progress[0] < 4 * (ping_every or 0)
            if due and progressing:
                sd_notify("WATCHDOG=1")
                pinged = now
    finally:
        sd_notify("STOPPING=1")
        scheduler.shutdown(wait=True)  # lets a running cycle finish its current source
        workers.close()
        if operations is not None:
            operations.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("daemon stopped")
