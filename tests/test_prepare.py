"""prepare: the worker-process path stores exactly what the in-process path stores."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

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


def stored(folder: Path, workers: Workers | None = None) -> tuple[object, ...]:
    config = load_config(folder)
    storage = Storage.open_sqlite(config.database_path)
    try:
        report = run_cycle(config, storage, now=NOW, workers=workers)
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
