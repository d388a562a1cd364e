"""The daemon's job wiring: rounds longer than the tick neither overlap nor warn."""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest

from aggregator.scheduler import new_scheduler, repeat_after_each_run


def test_a_long_round_neither_overlaps_nor_logs_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An interval job logged "skipped: maximum number of running instances reached" as
    a WARNING each tick while a round ran (16-22 times in one cold start of three
    workers), tripping warning-based alerts. A long round is normal."""
    running = threading.Lock()
    overlaps: list[float] = []
    ends: list[float] = []
    done = threading.Event()

    def long_round() -> None:
        if not running.acquire(blocking=False):
            overlaps.append(time.monotonic())
            return
        try:
            time.sleep(0.35)  # seven ticks of the pause below
        finally:
            running.release()
        ends.append(time.monotonic())
        if len(ends) >= 3:
            done.set()

    scheduler = new_scheduler()
    caplog.set_level(logging.DEBUG, logger="apscheduler")
    scheduler.start()
    try:
        repeat_after_each_run(scheduler, "job", long_round, lambda: 0.05)
        assert done.wait(timeout=10), "three rounds did not run"
    finally:
        scheduler.shutdown(wait=True)
    assert overlaps == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    gaps = [later - earlier for earlier, later in itertools.pairwise(ends)]
    assert all(gap >= 0.35 for gap in gaps)  # the next round began after the last ended
