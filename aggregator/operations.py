"""What operators watch: ``/healthz``, Prometheus ``/metrics``, systemd notifications.

- **Health**: the last cycle's age (any process's: ``run --once`` from cron, the daemon,
  a worker; stored in the database's meta) and whether the database answers. 503 when
  either fails, so a container's HEALTHCHECK or a load balancer notices a stuck poller.
- **Metrics** (prometheus-client): what this process polled since it started (polls by
  outcome and error class, new items, fetch and cycle durations, publish time), and on
  every scrape what the database says (failing sources, items per topic, the last
  cycle), so ``serve`` shows those too.
- **sd_notify**: READY=1 once the daemon runs, WATCHDOG=1 while it keeps cycling,
  STOPPING=1 when it stops (``Type=notify`` with ``WatchdogSec=`` in the unit file).
  The protocol is one datagram on ``$NOTIFY_SOCKET``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.config import AppConfig
from aggregator.errors import AggregatorError
from aggregator.models import CycleReport
from aggregator.pipeline import LAST_CYCLE
from aggregator.storage import Storage

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    #: The JSON body of ``/healthz``.
    facts: dict[str, Any]


def stale_after(config: AppConfig) -> float:
    """Seconds without a finished cycle after which the poller counts as stuck."""
    return config.settings.status.stale_after or 3 * config.settings.poll_interval


def check_health(config: AppConfig, storage: Storage | None, now: datetime) -> Health:
    """The database answers and the last cycle ended less than ``stale_after`` ago."""
    limit = stale_after(config)
    if storage is None:
        return Health(False, {"status": "no database yet: never run", "database": False})
    try:
        record = storage.meta(LAST_CYCLE)
    except AggregatorError as exc:
        return Health(False, {"status": "database unreachable", "database": False,
                              "error": str(exc)})  # fmt: skip
    if record is None:
        return Health(False, {"status": "no cycle has finished yet", "database": True})
    last = json.loads(record)
    age = (now - datetime.fromisoformat(last["finished_at"])).total_seconds()
    fresh = age <= limit
    return Health(fresh, {
        "status": "ok" if fresh else "stale: no cycle finished lately", "database": True,
        "last_cycle_age_seconds": round(age, 1), "stale_after_seconds": limit,
        "last_cycle": last,
    })  # fmt: skip


class Metrics:
    """This process's counters, and the database's state read at each scrape."""

    def __init__(self, config: AppConfig, storage_of: Storage | None = None) -> None:
        self.config = config
        self.storage = storage_of
        self.registry = CollectorRegistry()
        self.polls = Counter("textile_feeds_polls", "Source polls by outcome and error class",
                             ["outcome", "error_type"], registry=self.registry)  # fmt: skip
        self.new_items = Counter(
            "textile_feeds_new_items", "New items stored", registry=self.registry
        )
        self.fetch_seconds = Histogram(
            "textile_feeds_fetch_duration_seconds", "Time one source's fetch took",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=self.registry,
        )  # fmt: skip
        self.cycle_seconds = Histogram(
            "textile_feeds_cycle_duration_seconds", "Time one polling cycle took",
            buckets=(0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800), registry=self.registry,
        )  # fmt: skip
        self.publish_seconds = Histogram(
            "textile_feeds_publish_duration_seconds", "Time publishing every feed took",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=self.registry,
        )  # fmt: skip
        self.registry.register(_StoredState(self))

    def record(self, report: CycleReport) -> None:
        for source in report.sources:
            self.polls.labels(source.outcome.value, source.error_type or "").inc()
            if source.fetch_seconds:
                self.fetch_seconds.observe(source.fetch_seconds)
        self.new_items.inc(report.new_items)
        self.cycle_seconds.observe(report.seconds)
        if report.publish_seconds:
            self.publish_seconds.observe(report.publish_seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StoredState(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        storage, config = self.metrics.storage, self.metrics.config
        up = GaugeMetricFamily("textile_feeds_database_up", "The database answered")
        if storage is None:
            up.add_metric([], 0)
            yield up
            return
        try:
            states = storage.source_states()
            topics = storage.topic_counts()
            record = storage.meta(LAST_CYCLE)
        except AggregatorError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        threshold = config.settings.status.failing_after
        enabled = {s.id for s in config.sources if s.enabled}
        failing = sum(
            1 for sid, s in states.items() if sid in enabled and s.error_count >= threshold
        )
        yield GaugeMetricFamily("textile_feeds_sources", "Enabled sources", value=len(enabled))
        yield GaugeMetricFamily(
            "textile_feeds_failing_sources",
            f"Enabled sources failing {threshold} polls or more in a row",
            value=failing,
        )
        per_topic = GaugeMetricFamily(
            "textile_feeds_topic_items", "Stored items per topic", labels=["topic"]
        )
        for topic in config.topics:
            per_topic.add_metric([topic.slug], topics.get(topic.slug, 0))
        yield per_topic
        if record is not None:
            last = json.loads(record)
            finished = datetime.fromisoformat(last["finished_at"])
            yield GaugeMetricFamily(
                "textile_feeds_last_cycle_timestamp_seconds", "When the last cycle ended",
                value=finished.timestamp(),
            )  # fmt: skip
            yield GaugeMetricFamily(
                "textile_feeds_last_cycle_duration_seconds", "How long the last cycle took",
                value=last["seconds"],
            )  # fmt: skip


def serve_operations(address: str, metrics: Metrics) -> ThreadingHTTPServer:
    """``/healthz`` and ``/metrics`` on ``address`` ("host:port"), in a daemon thread."""
    host, _, port = address.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/metrics":
                self._answer(200, metrics.exposition(), CONTENT_TYPE)
            elif self.path.split("?")[0] == "/healthz":
                health = check_health(metrics.config, metrics.storage, datetime.now(UTC))
                body = json.dumps(health.facts).encode()
                self._answer(200 if health.ok else 503, body, "application/json")
            else:
                self._answer(404, b"Not Found", "text/plain")

        def _answer(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            log.debug("operations %s", format % args)

    server = ThreadingHTTPServer((host.strip("[]") or "127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="operations", daemon=True).start()
    log.info("health and metrics on http://%s:%d/ (healthz, metrics)", *server.server_address[:2])
    return server


def sd_notify(state: str) -> bool:
    """Tell systemd ``state`` ("READY=1", "WATCHDOG=1", ...) if it asked to be told
    ($NOTIFY_SOCKET; "@" starts an abstract socket name). False when not under it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), target)
    except OSError as exc:
        log.warning("could not notify systemd at %s: %s", address, exc)
        return False
    return True


def watchdog_seconds() -> float | None:
    """Half the watchdog interval systemd set for us ($WATCHDOG_USEC), if any: how
    often to send WATCHDOG=1."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000
