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
from aggregator.config import load_config
from tests.conftest import (
    DATA,
    PROJECT,
    TEST_FETCH_SETTINGS,
    FeedServer,
    Hit,
    Route,
    write_config,
)


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
        assert "``" not in out, f"{name} --help shows reST markup"  # issue 18


def test_check_valid_config(demo: Path) -> None:
    code, out, _ = invoke("--config", str(demo), "check")
    assert code == 0
    assert "OK, 9 sources (9 enabled), 12 topics" in out


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
    assert "Sources: 9 ok, 0 not modified, 0 failed" in out
    topics_line = out.split("Items per topic:\n")[1].split("Feeds:")[0]
    counts = {line.split()[0]: int(line.split()[1]) for line in topics_line.strip().splitlines()}
    assert len(counts) == 12
    assert sum(1 for n in counts.values() if n > 0) >= 8
    assert "Feeds: 45 written, 0 unchanged" in out
    output = demo.parent.parent / "feeds_out"
    xml_feeds = sorted(p for p in output.iterdir() if p.suffix in (".rss", ".atom"))
    assert len(xml_feeds) == 26  # JSON Feed files are checked in test_publish
    for path in xml_feeds:
        feed = feedparser.parse(path.read_bytes())
        assert not feed.bozo, (path.name, feed.get("bozo_exception"))
        for entry in feed.entries:  # every item is attributed, in both formats
            assert entry.source.title, (path.name, entry.title)
            assert "<p>Source: " in entry.summary and "<a href=" in entry.summary, entry.title
    mtimes = {p.name: p.stat().st_mtime_ns for p in output.iterdir()}

    code, again, _ = invoke("--config", str(demo), "run", "--once")
    assert code == 0
    # The chain-crawled html source always reads its start page (see pipeline).
    assert "Sources: 1 ok, 8 not modified, 0 failed" in again
    assert "New items: 0" in again
    assert "Feeds: 0 written, 45 unchanged" in again
    assert {p.name: p.stat().st_mtime_ns for p in output.iterdir()} == mtimes

    code, status, _ = invoke("--config", str(demo), "status")
    assert code == 0
    (row,) = [line for line in status.splitlines() if line.startswith("texnet-zh ")]
    assert row.split()[1] == "not_modified"
    code, raw, _ = invoke("--config", str(demo), "status", "--json")
    assert code == 0
    rows = {row["id"]: row for row in json.loads(raw)}
    assert rows["sjfzxm-en"]["items"] == 8
    assert rows["texnet-zh"]["polls"] == 2
    assert rows["texnet-zh"]["not_modified_share"] == 0.5
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


def wait_for(condition, process: subprocess.Popen[str], what: str, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"the daemon exited while waiting for {what}: {process.communicate()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_daemon_lifecycle(tmp_path: Path, feed_server: FeedServer) -> None:
    """The real daemon as a subprocess: polls, holds the database, survives a broken
    config, applies a good one without a restart, and stops cleanly on SIGTERM."""
    feed_server.routes["/mills.rss"] = Route(body=(DATA / "e2e" / "mills.rss").read_bytes())
    feed_server.routes["/wire.atom"] = Route(body=(DATA / "e2e" / "wire.atom").read_bytes())
    one_source = (
        f"sources:\n  - id: mills\n    name: Mills\n    url: {feed_server.url('/mills.rss')}\n"
    )
    folder = write_config(
        tmp_path / "cfg",
        sources=one_source,
        settings="database: db.sqlite\noutput_dir: out\npoll_interval: 1s\n"
        "schedule:\n  min_interval: 1s\n  adaptive: false\n"
        "logging:\n  format: json\n" + TEST_FETCH_SETTINGS,
    )
    command = [sys.executable, "-m", "aggregator", "--config", str(folder), "run"]
    daemon = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:

        def polls(path: str) -> list[Hit]:
            return [h for h in feed_server.hits if h.path == path]

        wait_for(lambda: len(polls("/mills.rss")) >= 2, daemon, "two polls")
        assert polls("/mills.rss")[1].headers.get("if-none-match")  # re-polls are conditional
        assert (folder / "out" / "cotton-fibre-prices.rss").exists()

        # One writer per database: a second daemon and a one-shot run both refuse.
        for extra in ([], ["--once"]):
            other = subprocess.run(command + extra, capture_output=True, text=True, timeout=60)
            assert other.returncode == 1
            assert f"in use by another textile-feeds process (pid {daemon.pid})" in other.stderr

        # A broken config is reported and ignored; the daemon keeps polling.
        (folder / "sources.yaml").write_text(one_source + "    bogus: 1\n")
        before = len(polls("/mills.rss"))
        wait_for(lambda: len(polls("/mills.rss")) >= before + 2, daemon, "polls after a bad edit")

        # A good config is applied without a restart.
        (folder / "sources.yaml").write_text(
            one_source + f"  - id: wire\n    name: Wire\n    url: {feed_server.url('/wire.atom')}\n"
        )
        wait_for(lambda: len(polls("/wire.atom")) >= 1, daemon, "the new source")
        time.sleep(0.5)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    messages = [entry["message"] for entry in logs]
    assert any("bogus: unknown key" in m and "sources.yaml:5" in m for m in messages), messages
    assert any(m.startswith("configuration reloaded sources=2") for m in messages)
    assert any(m == "received SIGTERM; stopping after the current write" for m in messages)
    assert messages[-1] == "daemon stopped"
    polled = [entry for entry in logs if entry["message"].startswith("polled ")]
    assert {entry["source_id"] for entry in polled} == {"mills", "wire"}
    assert all({"url", "status", "duration", "bytes", "new"} <= set(entry) for entry in polled)
    with sqlite3.connect(folder / "db.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM items").fetchone()[0] == 4


def test_status_exit_code_and_redirect_suggestion(tmp_path: Path, feed_server: FeedServer) -> None:
    feed_server.routes["/old.rss"] = Route(
        status=301, validators=False, headers={"Location": "/new.rss"}
    )
    feed_server.routes["/new.rss"] = Route(body=(DATA / "e2e" / "mills.rss").read_bytes())
    feed_server.routes["/down.rss"] = Route(status=500, validators=False)
    folder = write_config(
        tmp_path / "cfg",
        sources="sources:\n"
        f"  - id: moved\n    name: Moved\n    url: {feed_server.url('/old.rss')}\n"
        f"  - id: down\n    name: Down\n    url: {feed_server.url('/down.rss')}\n",
        settings="database: db.sqlite\noutput_dir: out\n"
        "schedule:\n  redirect_confirmations: 2\nstatus:\n  failing_after: 2\n"
        + TEST_FETCH_SETTINGS,
    )
    code, out, _ = invoke("--config", str(folder), "run", "--once")
    assert code == 0
    code, out, _ = invoke("--config", str(folder), "status")
    assert code == 0  # one failure is below the threshold of 2
    code, out, _ = invoke("--config", str(folder), "run", "--once")
    code, out, _ = invoke("--config", str(folder), "status")
    assert code == 1
    lines = out.splitlines()
    assert lines[1].startswith("down ") and "failing" in lines[1]
    assert "HTTP 500 Internal Server Error" in lines[1]
    assert lines[2].startswith("moved ") and "moved" in lines[2].split()[1]
    assert lines[3].strip() == (
        f"-> {folder / 'sources.yaml'}:4: set url of 'moved' to {feed_server.url('/new.rss')} "
        "(permanent redirect seen on 2 polls in a row; polling the new URL meanwhile)"
    )
    feed_server.hits.clear()
    invoke("--config", str(folder), "run", "--once")
    assert "/old.rss" not in [h.path for h in feed_server.hits]  # the move is followed
    assert "/new.rss" in [h.path for h in feed_server.hits]


def test_try_shows_what_a_source_would_yield_and_stores_nothing(demo: Path) -> None:
    code, out, _ = invoke("--config", str(demo), "try", "sjfzxm-en", "--limit", "2")
    assert code == 0, out
    assert "- Qinghe Cashmere Town In Xingtai, Hebei Province" in out
    assert "  date:      2022-11-24 10:25 UTC" in out
    assert "  publisher: Hebei Daily" in out
    assert "cashmere-wool" in out and "clusters-parks" in out
    assert out.rstrip().endswith("8 items (2 shown); nothing was stored.")
    assert not (demo.parent.parent / "var").exists()  # no database was even opened

    code, out, _ = invoke("--config", str(demo), "try", "texnet-zh")
    assert code == 0 and "- 郑棉期货小幅上涨 新疆棉采收进度加快" in out

    code, _, err = invoke("--config", str(demo), "try", "nope")
    assert code == 2 and "no source 'nope'" in err


def test_explain_preview_and_recategorize(demo: Path, tmp_path: Path) -> None:
    invoke("--config", str(demo), "run", "--once")
    seed = "https://www.sjfzxm.com/global/en/591691.html#comments"  # any form of the link
    code, out, _ = invoke("--config", str(demo), "explain", seed)
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("Qinghe Cashmere Town")
    (cashmere,) = [line for line in lines if " cashmere-wool " in line]
    assert cashmere.startswith("IN ") and "cashmere (title, 4)" in cashmere  # weight 2 x title 2
    (sustainability,) = [line for line in lines if " sustainability " in line]
    assert sustainability.startswith("out") and "score 0 / 3" in sustainability
    code, _, err = invoke("--config", str(demo), "explain", "https://nowhere.example/x")
    assert code == 1 and "no stored item" in err

    # An edited topics file, previewed before it is saved: "labour" now needs "strike".
    edited = tmp_path / "topics-edit.yaml"
    text = (demo.parent / "topics.yaml").read_text(encoding="utf-8")
    edited.write_text(
        text.replace(
            "  - slug: labour-compliance\n", "  - slug: labour-compliance\n    match: strike\n"
        ),
        encoding="utf-8",
    )
    code, out, _ = invoke(
        "--config", str(demo), "preview", "labour-compliance", "--file", str(edited)
    )
    assert code == 0, out
    assert out.splitlines()[0] == "labour-compliance: 0 items would be in the feed window"
    assert "0 would join:" in out and "2 would leave:" in out
    assert "Garment workers in Cambodia win minimum wage rise" in out
    code, out, _ = invoke("--config", str(demo), "preview", "labour-compliance")
    assert "0 would join:" in out and "0 would leave:" in out  # the rules in force: no change

    # Saved in place: the next run re-categorizes stored items by itself.
    (demo.parent / "topics.yaml").write_text(edited.read_text(encoding="utf-8"), encoding="utf-8")
    code, out, _ = invoke("--config", str(demo), "run", "--once")
    assert "  labour-compliance    0" in out
    code, out, _ = invoke("--config", str(demo), "recategorize")
    assert code == 0 and "0 changed topics" in out  # already applied


def test_a_cycle_of_304s_loads_no_parser_minhash_or_publisher(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """What a cycle with nothing new does not need is imported only when needed: a run
    under cron pays every import at each start (they were a third of an all-304 cycle
    of 2,000 sources beyond the fetching itself)."""
    feed_server.routes["/f.xml"] = Route(body=(DATA / "rss20.xml").read_bytes())
    sources = f"sources:\n  - id: f\n    name: F\n    url: {feed_server.url('/f.xml')}\n"
    folder = write_config(tmp_path / "cfg", sources=sources)
    first = [sys.executable, "-m", "aggregator", "--config", str(folder), "run", "--once"]
    assert subprocess.run(first, capture_output=True, timeout=60).returncode == 0
    heavy = ["numpy", "lxml", "feedparser", "feedgen", "jinja2", "parsel", "apscheduler",
             "nh3", "w3lib", "dateutil", "sqlalchemy.dialects.postgresql"]  # fmt: skip
    script = (
        "import sys\n"
        "from aggregator.cli import cli\n"
        f"cli.main(['--config', {str(folder)!r}, 'run', '--once'], standalone_mode=False)\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    again = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=60, cwd=PROJECT)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "Sources: 0 ok, 1 not modified" in again.stdout
    assert again.stdout.strip().splitlines()[-1] == "[]"
    assert [hit.status for hit in feed_server.hits] == [200, 304]


def test_status_of_a_config_that_never_ran_creates_no_database(demo: Path) -> None:
    """Issue 18: status used to create (and migrate) an empty database."""
    config = load_config(demo)
    assert not config.database_path.exists()
    code, out, err = invoke("--config", str(demo), "status")
    assert code == 0 and "never polled" in out and "never run" in err
    assert not config.database_path.exists()
    assert not config.database_path.parent.exists() or not any(
        config.database_path.parent.iterdir()
    )
