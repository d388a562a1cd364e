"""prepare: the worker-process path stores exactly what the in-process path stores."""

from __future__ import annotations

import os
import shutil
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from aggregator.config import load_config
from aggregator.pipeline import run_cycle
from aggregator.prepare import Workers
from aggregator.storage import Storage
from tests.conftest import PROJECT

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def demo_copy(root: Path, extra_settings: str) -> Path:
    """The offline demo config in ``root``, with its database and output inside."""
    shutil.copytree(PROJECT / "config" / "demo", root / "config" / "demo")
    shutil.copy(PROJECT / "config" / "topics.yaml", root / "config" / "topics.yaml")
    settings = root / "config" / "demo" / "settings.yaml"
    settings.write_text(settings.read_text() + extra_settings)
    return root / "config" / "demo"


def stored(folder: Path, workers: Workers | None = None, now: datetime = NOW) -> tuple[Any, ...]:
    config = load_config(folder)
    storage = Storage.open_sqlite(config.database_path)
    try:
        report = run_cycle(config, storage, now=now, workers=workers)
        items = storage.items_since(datetime(1990, 1, 1, tzinfo=UTC))
        stories = storage.story_groups(None, 1000)
    finally:
        storage.close()
    # Sources finish in any order with workers, so which of two sources carrying one
    # story stores it first (its origin, its "new" count) may differ; nothing else may.
    by_link = {
        item.link: (item.title, item.summary_html, item.published_at, topics)
        for _id, item, topics in items
    }
    grouping = sorted(sorted(m.link or "" for m in members) for _pid, members in stories)
    outcomes = sorted((s.source_id, s.outcome.value) for s in report.sources)
    return by_link, grouping, (outcomes, report.new_items)


def test_worker_processes_store_the_same_items_topics_and_stories(tmp_path: Path) -> None:
    inline = stored(demo_copy(tmp_path / "inline", "parse_workers: 1\n"))
    workers = Workers()
    try:
        parallel = stored(
            demo_copy(tmp_path / "parallel", "parse_workers: 2\nparallel_from: 1\n"), workers
        )
        assert workers._preparer is not None, "the worker path was not taken"
    finally:
        workers.close()
    by_link, grouping, outcomes = inline
    assert len(by_link) == 42 and any(len(g) == 2 for g in grouping)  # the demo's repost
    assert parallel[2] == outcomes
    differing = {k: (v, parallel[0].get(k)) for k, v in by_link.items() if parallel[0].get(k) != v}
    assert not differing
    assert parallel[1] == grouping


NEW_ITEM = """<item>
      <title>Shein opens a cotton sourcing office in Dhaka</title>
      <link>https://fashionunited.uk/news/business/shein-dhaka-office/2026112658300</link>
      <description><![CDATA[<p>The retailer will buy cotton knitwear directly.</p>]]></description>
      <pubDate>Thu, 26 Nov 2026 09:00:00 +0000</pubDate>
    </item>
    <item>"""


def edit_feed(folder: Path) -> None:
    """A new entry on top, and an edited headline further down (an update)."""
    feed = folder / "snapshots" / "fashionunited-uk.rss"
    text = feed.read_text().replace("<item>", NEW_ITEM, 1)
    text = text.replace("Inditex posts record third-quarter net profit",
                        "Inditex posts record third-quarter profit, shares rise")  # fmt: skip
    feed.write_text(text)


def test_workers_skip_entries_delivered_before_and_store_the_same(tmp_path: Path) -> None:
    folders = [
        demo_copy(tmp_path / "inline", "parse_workers: 1\n"),
        demo_copy(tmp_path / "parallel", "parse_workers: 2\nparallel_from: 1\n"),
    ]
    workers = Workers()
    try:
        first = [stored(folder, workers) for folder in folders]
        for folder in folders:
            edit_feed(folder)
        later = [stored(folder, workers, now=NOW + timedelta(hours=1)) for folder in folders]
    finally:
        workers.close()
    assert first[0][0] == first[1][0]
    inline, parallel = later
    assert inline[2][1] == 1 and parallel[2][1] == 1  # one new item, in both
    updated = "https://fashionunited.uk/news/business/inditex-posts-record-third-quarter-net-profit/2026112558210"
    assert inline[0][updated][0] == "Inditex posts record third-quarter profit, shares rise"
    differing = {
        k: (v, parallel[0].get(k)) for k, v in inline[0].items() if parallel[0].get(k) != v
    }
    assert not differing
    assert parallel[1] == inline[1]


def test_entries_delivered_before_are_not_categorized_again() -> None:
    from aggregator.categorize import compile_topics
    from aggregator.config import SourceConfig, load_config
    from aggregator.minhash import keys_of
    from aggregator.models import ParsedEntry
    from aggregator.prepare import fingerprint, normalize_items, ready_items

    config = load_config(PROJECT / "config" / "demo")
    topics = compile_topics(config.topics, config.rule_sets)
    source = SourceConfig(id="s", name="S", url="https://s.example/feed")
    entries = [
        ParsedEntry(
            guid=None,
            link=f"https://s.example/{n}",
            title=f"Cotton prices {n}",
            title_is_html=False,
            summary_html="<p>Cotton yarn.</p>",
            published_raw=None,
            updated_raw=None,
            author=None,
            categories=(),
            language="en",
        )
        for n in range(2)
    ]
    old = normalize_items(source, "", entries, NOW)[0][0]
    seen = frozenset({fingerprint(old.keys[0], old.content_hash)})
    ready, empty = ready_items(source, "", entries, NOW, topics, seen)
    assert empty == 0
    assert [r.complete for r in ready] == [False, True]
    assert ready[1].topics and len(keys_of(ready[1].bands)) == 32


def test_a_dead_worker_is_replaced_and_the_cycle_goes_on() -> None:
    """A parse worker killed mid-cycle (out of memory, ``kill -9``) broke the pool for
    good: every later body raised BrokenProcessPool in the fetch thread, which ended the
    cycle, and the daemon kept the broken pool for every cycle after it."""
    import signal

    from aggregator.config import SourceConfig
    from aggregator.models import FetchOutcome, FetchResult
    from aggregator.prepare import Preparer

    config = load_config(PROJECT / "config" / "demo")
    snapshot = sorted((PROJECT / "config" / "demo" / "snapshots").iterdir())[0]
    source = SourceConfig(id="s", name="S", url="https://s.example/feed")
    result = FetchResult(
        source_id="s", url=source.url, outcome=FetchOutcome.OK, body=snapshot.read_bytes()
    )
    pool = Preparer(config.topics, config.rule_sets, 1)
    try:
        assert pool.submit(source, result, NOW).result(timeout=60).items
        for pid in list(pool._pool._processes):  # type: ignore[attr-defined]
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(BrokenProcessPool):
            pool._pool.submit(os.getpid).result(timeout=60)  # the pool notices the death
        assert pool.submit(source, result, NOW).result(timeout=60).items
        assert pool.restarts == 1 and not pool.broken
    finally:
        pool.close()


OWNER_SCRIPT = """
import os, sys, time
from aggregator.config import load_config
from aggregator.prepare import Preparer

if __name__ == "__main__":
    config = load_config(sys.argv[1])
    pool = Preparer(config.topics, config.rule_sets, 2)
    pids = {pool._pool.submit(os.getpid).result() for _ in range(8)}
    print("ready", flush=True)
    time.sleep(600)
"""


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_worker_processes_end_with_a_killed_owner(tmp_path: Path) -> None:
    """After a ``kill -9`` of the process owning the pool, the fork server, the
    resource tracker and the parse workers stayed alive for good (reparented to
    PID 1; a worker held the pipe the fork server watches). They end with it now."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "owner.py"
    script.write_text(OWNER_SCRIPT)
    owner = subprocess.Popen(
        [sys.executable, str(script), str(PROJECT / "config" / "demo")],
        stdout=subprocess.PIPE, text=True, cwd=PROJECT,
    )  # fmt: skip
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "ready"
        helpers = _descendants(owner.pid)
        assert len(helpers) >= 3  # fork server, resource tracker, workers
    finally:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        owner.stdout.close()  # the helpers hold its other end: never read it to EOF
    deadline = time.monotonic() + 10
    while any(map(_running, helpers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in helpers if _running(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


def _entry(n: int, title: str = "") -> Any:
    from aggregator.models import ParsedEntry

    return ParsedEntry(
        guid=None, link=f"https://s.example/{n}", title=title or f"Wool prices {n}",
        title_is_html=False, summary_html=f"<p>Merino tops {n}.</p>", published_raw=None,
        updated_raw=None, author=None, categories=(), language="en",
    )  # fmt: skip


def test_entries_delivered_exactly_so_before_are_not_even_normalized(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import aggregator.normalize
    from aggregator.config import SourceConfig
    from aggregator.prepare import _digest_context, entry_digest, normalize_items

    source = SourceConfig(id="s", name="S", url="https://s.example/feed")
    new, old, older = _entry(0), _entry(1), _entry(2)
    context = _digest_context(source, "")
    seen = frozenset({entry_digest(old, context), entry_digest(older, context)})
    calls: list[str] = []
    real = aggregator.normalize.normalize_entry

    def counting(entry: Any, **options: Any) -> Any:
        calls.append(entry.link)
        return real(entry, **options)

    monkeypatch.setattr(aggregator.normalize, "normalize_entry", counting)
    items, empty = normalize_items(source, "", [new, old, older], NOW, seen)
    assert [i.link for i in items] == ["https://s.example/0"] and empty == 0
    assert calls == ["https://s.example/0"]
    assert items[0].entry_digest == entry_digest(new, context)
    # A skipped entry still keeps a later listing of its story out of the feed's items.
    again = _entry(1, title="Wool prices, the same story listed again")
    items, _ = normalize_items(source, "", [old, again], NOW, seen)
    assert items == []
    # What normalizing depends on changed (here the source's time zone): nothing skipped.
    moved = SourceConfig(id="s", name="S", url="https://s.example/feed", timezone="Asia/Dhaka")
    items, _ = normalize_items(moved, "", [new, old, older], NOW, seen)
    assert len(items) == 3


def test_entry_digests_are_recorded_for_deliveries_stored_before_them(tmp_path: Path) -> None:
    import sqlite3

    folder = demo_copy(tmp_path / "parallel", "parse_workers: 2\nparallel_from: 1\n")
    database = load_config(folder).database_path
    workers = Workers()
    try:
        stored(folder, workers)
        with sqlite3.connect(database) as connection:
            total, recorded = connection.execute(
                "SELECT count(*), count(entry_digest) FROM item_sources"
            ).fetchone()
            assert total and recorded == total
            connection.execute("UPDATE item_sources SET entry_digest = NULL")  # stored before
        edit_feed(folder)
        stored(folder, workers, now=NOW + timedelta(hours=1))
    finally:
        workers.close()
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT count(*), count(entry_digest) FROM item_sources WHERE source_id = ?",
            ("fashionunited-uk",),
        ).fetchone()
    assert rows[0] and rows[1] == rows[0]  # the changed feed's entries, recorded again


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_run_once_counts_its_workers_cpu_as_its_childrens(tmp_path: Path) -> None:
    """What ``time`` reports for ``run --once`` (its children's rusage) includes the parse
    workers, which are the fork server's children: the fork server is stopped and
    reaped before the process ends."""
    import subprocess
    import sys

    folder = demo_copy(tmp_path, "parse_workers: 2\nparallel_from: 1\n")
    script = (
        "import sys\n"
        "from aggregator.cli import cli\n"
        "try:\n"
        "    cli(['--config', sys.argv[1], 'run', '--once'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import multiprocessing.forkserver as f\n"
        "print('fork server still running:', f._forkserver._forkserver_pid is not None)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=300,
        cwd=PROJECT,
    )  # fmt: skip
    assert "fork server still running: False" in done.stdout, done.stdout + done.stderr[-2000:]
