"""The command line: exit codes, messages, the offline demo, and the daemon process."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

from aggregator.cli import cli
from tests.conftest import DATA, PROJECT, TEST_FETCH_SETTINGS, FeedServer, Route, write_config


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of the shipped offline example, laid out as in the repository."""
    shutil.copytree(PROJECT / "config" / "demo", tmp_path / "config" / "demo")
    shutil.copy(PROJECT / "config" / "topics.yaml", tmp_path / "config" / "topics.yaml")
    return tmp_path / "config" / "demo"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_every_command_has_help() -> None:
    for name, command in cli.commands.items():
        assert command.help, f"command {name!r} has no help text"
        code, out, _ = invoke(name, "--help")
        assert code == 0 and "Usage:" in out


def test_check_valid_config(demo: Path) -> None:
    code, out, _ = invoke("--config", str(demo), "check")
    assert code == 0
    assert "OK, 8 sources (8 enabled), 12 topics" in out


def test_config_errors_exit_2_without_traceback(tmp_path: Path) -> None:
    folder = write_config(
        tmp_path / "cfg",
        sources="sources:\n  - id: a\n    name: A\n    url: ftp://a.example/feed\n",
        topics="topics:\n  - slug: t\n    title: T\n    include: cotton\n",
    )
    for command in (["check"], ["run", "--once"], ["status"]):
        code, out, err = invoke(*command, "--config", str(folder))
        assert code == 2, command
        assert "Traceback" not in out + err
        assert f"{folder / 'sources.yaml'}:4: sources[0].url: expected an http(s) URL" in err
        assert f"{folder / 'topics.yaml'}:4: topics[0].include: expected a list of strings" in err
        assert "2 configuration error(s)" in err


def test_demo_runs_offline_and_a_rerun_changes_nothing(demo: Path) -> None:
    code, out, _ = invoke("--config", str(demo), "run", "--once")
    assert code == 0, out
    assert "Sources: 8 ok, 0 not modified, 0 failed" in out
    topics_line = out.split("Items per topic:\n")[1].split("Feeds:")[0]
    counts = {line.split()[0]: int(line.split()[1]) for line in topics_line.strip().splitlines()}
    assert len(counts) == 12
    assert sum(1 for n in counts.values() if n > 0) >= 8
    assert "Feeds: 24 written, 0 unchanged" in out
    output = demo.parent.parent / "feeds_out"
    for path in sorted(output.iterdir()):
        feed = feedparser.parse(path.read_bytes())
        assert not feed.bozo, (path.name, feed.get("bozo_exception"))
        for entry in feed.entries:  # every item is attributed, in both formats
            assert entry.source.title, (path.name, entry.title)
            assert "<p>Source: <a href=" in entry.summary, (path.name, entry.title)
    mtimes = {p.name: p.stat().st_mtime_ns for p in output.iterdir()}

    code, again, _ = invoke("--config", str(demo), "run", "--once")
    assert code == 0
    assert "Sources: 0 ok, 8 not modified, 0 failed" in again
    assert "New items: 0" in again
    assert "Feeds: 0 written, 24 unchanged" in again
    assert {p.name: p.stat().st_mtime_ns for p in output.iterdir()} == mtimes

    code, status, _ = invoke("--config", str(demo), "status")
    assert code == 0
    (row,) = [line for line in status.splitlines() if line.startswith("sjfzxm-en ")]
    assert row.split()[1] == "not_modified"
    code, raw, _ = invoke("--config", str(demo), "status", "--json")
    assert code == 0
    rows = {row["id"]: row for row in json.loads(raw)}
    assert rows["sjfzxm-en"]["items"] == 7
    assert rows["sjfzxm-en"]["polls"] == 2
    assert rows["sjfzxm-en"]["not_modified_share"] == 0.5
    assert rows["sjfzxm-en"]["consecutive_errors"] == 0


def test_python_dash_m_works_the_same(demo: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(demo), "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "12 topics" in completed.stdout


def test_daemon_polls_repeatedly_and_stops_cleanly_on_sigterm(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    feed_server.routes["/mills.rss"] = Route(body=(DATA / "e2e" / "mills.rss").read_bytes())
    folder = write_config(
        tmp_path / "cfg",
        sources="sources:\n  - id: mills\n    name: Mills\n"
        f"    url: {feed_server.url('/mills.rss')}\n",
        settings="database: db.sqlite\noutput_dir: out\npoll_interval: 1s\n"
        "schedule:\n  min_interval: 1s\n  adaptive: false\n" + TEST_FETCH_SETTINGS,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(folder), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            polls = [h for h in feed_server.hits if h.path == "/mills.rss"]
            if len(polls) >= 2 and (folder / "out" / "cotton-fibre-prices.rss").exists():
                break
            assert process.poll() is None, process.communicate()
            time.sleep(0.2)
        else:
            pytest.fail("the daemon did not poll twice within 30 s")
        assert polls[1].headers.get("if-none-match")  # the re-poll is conditional
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "received SIGTERM" in err
    assert "daemon stopped" in err
    with sqlite3.connect(folder / "db.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 3
