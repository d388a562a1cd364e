"""What operators watch (issue 18): /healthz, Prometheus /metrics (daemon and serve),
systemd readiness and watchdog notifications, the progress line of run --once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from click.testing import CliRunner

from aggregator.cli import cli, progress_line
from aggregator.config import AppConfig, load_config
from aggregator.models import FetchOutcome, SourceReport
from aggregator.operations import check_health
from aggregator.pipeline import LAST_CYCLE, run_cycle
from aggregator.serve import create_app
from aggregator.storage import Storage
from tests.conftest import DATA, TEST_FETCH_SETTINGS, FeedServer, Route, write_config


def _config(tmp_path: Path, server: FeedServer) -> AppConfig:
    server.routes["/mills.rss"] = Route(body=(DATA / "e2e" / "mills.rss").read_bytes())
    server.routes["/down.rss"] = Route(status=500, validators=False)
    folder = write_config(
        tmp_path / "cfg",
        sources=f"sources:\n  - {{id: mills, name: Mills, url: '{server.url('/mills.rss')}'}}\n"
        f"  - {{id: down, name: Down, url: '{server.url('/down.rss')}'}}\n",
        settings="database: db.sqlite\noutput_dir: out\npoll_interval: 1s\n"
        "schedule:\n  min_interval: 1s\n  adaptive: false\n" + TEST_FETCH_SETTINGS,
    )
    return load_config(folder)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_daemon_serves_health_and_metrics_and_notifies_systemd(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _config(tmp_path, feed_server)
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(10)
    port = _free_port()
    environment = dict(os.environ, NOTIFY_SOCKET=str(notify), WATCHDOG_USEC="400000")
    command = [sys.executable, "-m", "aggregator", "--config", str(config.config_dir), "run",
               "--listen", f"127.0.0.1:{port}"]  # fmt: skip
    daemon = subprocess.Popen(command, env=environment, stderr=subprocess.PIPE, text=True)
    try:
        heard = [listener.recv(100).decode() for _ in range(3)]
        assert heard[0] == "READY=1" and "WATCHDOG=1" in heard[1:]  # every 0.2 s
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while (health := httpx.get(base + "/healthz")).status_code != 200:
            assert time.monotonic() < deadline, health.text
            time.sleep(0.1)
        facts = health.json()
        assert facts["database"] is True and facts["last_cycle"]["sources"] == 2
        text = httpx.get(base + "/metrics").text
        assert 'textile_feeds_polls_total{error_type="",outcome="ok"}' in text
        assert 'textile_feeds_polls_total{error_type="http",outcome="failed"}' in text
        assert "textile_feeds_new_items_total 3.0" in text
        assert "textile_feeds_fetch_duration_seconds_count" in text
        assert "textile_feeds_cycle_duration_seconds_count" in text
        assert "textile_feeds_publish_duration_seconds_count 1.0" in text
        assert 'textile_feeds_topic_items{topic="cashmere-wool"}' in text
        assert "textile_feeds_database_up 1.0" in text and "textile_feeds_sources 2.0" in text
        assert httpx.get(base + "/nothing").status_code == 404
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    rest = []
    listener.settimeout(0.5)
    try:
        while True:
            rest.append(listener.recv(100).decode())
    except TimeoutError:
        pass
    finally:
        listener.close()
    assert rest[-1] == "STOPPING=1"


def test_health_is_503_when_the_last_cycle_is_old_or_there_is_no_database(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _config(tmp_path, feed_server)
    now = datetime.now(UTC)
    assert check_health(config, None, now).ok is False
    storage = Storage.for_config(config)
    try:
        assert check_health(config, storage, now).facts["status"] == "no cycle has finished yet"
        run_cycle(config, storage)
        assert check_health(config, storage, datetime.now(UTC)).ok
        later = datetime.now(UTC) + timedelta(seconds=4)  # 3 poll intervals of 1 s
        stale = check_health(config, storage, later)
        assert not stale.ok and stale.facts["status"].startswith("stale")
        storage.set_meta(LAST_CYCLE, json.dumps({"finished_at": now.isoformat(), "seconds": 1}))
        assert check_health(config, storage, now + timedelta(seconds=2)).ok
    finally:
        storage.close()


def test_serve_answers_health_and_metrics_without_creating_a_database(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = _config(tmp_path, feed_server)
    config.output_dir.mkdir(parents=True)
    app = create_app(config.output_dir, config=config)

    def get(path: str) -> httpx.Response:
        async def fetch() -> httpx.Response:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.get(path)

        return asyncio.run(fetch())

    health = get("/healthz")
    assert health.status_code == 503 and "never run" in health.json()["status"]
    assert "textile_feeds_database_up 0.0" in get("/metrics").text
    assert not config.database_path.exists()
    storage = Storage.for_config(config)
    run_cycle(config, storage)
    storage.close()
    assert get("/healthz").status_code == 200
    metrics = get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "textile_feeds_failing_sources 0.0" in metrics.text  # one failure, not three
    assert "textile_feeds_last_cycle_duration_seconds" in metrics.text


def test_progress_line_only_on_a_terminal(tmp_path: Path, feed_server: FeedServer) -> None:
    with progress_line(enabled=False) as progress:
        assert progress is None
    with progress_line(enabled=True) as progress:
        assert progress is not None
        progress(2, None)
        progress(2, SourceReport(source_id="a", outcome=FetchOutcome.OK, new_items=3))
        progress(2, SourceReport(source_id="b", outcome=FetchOutcome.FAILED))
    config = _config(tmp_path, feed_server)
    result = CliRunner().invoke(cli, ["--config", str(config.config_dir), "run", "--once"])
    assert result.exit_code == 0 and "polling" not in result.stderr  # not a terminal
    assert "Sources: 1 ok, 0 not modified, 1 failed" in result.stdout
