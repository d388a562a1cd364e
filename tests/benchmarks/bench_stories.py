"""Benchmark (not a test): store items batch by batch through the story index.

    python tests/benchmarks/bench_stories.py [N]      # default 100,000

Stores N synthetic news items in batches of 45 (one source's poll) exactly as a cycle
does: LSH band look-ups in the database, exact check of the candidates, multi-row
inserts, one transaction per batch. Prints the time per item, how many joined an
earlier story, the process's peak memory growth (max RSS), and what the index costs
on disk. Figures depend on the machine: compare runs on the same one.
"""

from __future__ import annotations

import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_cycle import _words  # the same vocabulary as the cycle benchmark

from aggregator.cluster import ClusterSettings
from aggregator.minhash import band_blob, signature
from aggregator.models import Item
from aggregator.pipeline import _Shared, _store_items
from aggregator.prepare import ReadyItem
from aggregator.storage import Storage


def synthetic_item(rng: random.Random, n: int) -> tuple[str, str]:
    """Text with the word frequencies of real textile news (see bench_cycle)."""
    return f"{_words(rng, False, 9)} {n}", _words(rng, False, 60)


def item(n: int, title: str, text: str, published: datetime) -> Item:
    return Item(
        source_id=f"portal-{n % 40}", keys=(f"link:https://portal.example/{n}",),
        link=f"https://portal.example/{n}", guid=None, title=title,
        summary_html=f"<p>{text}</p>", summary_text=text, published_at=published,
        updated_at=published, date_missing=False, author=None, categories=(),
        language="en", content_hash=str(n),
    )  # fmt: skip


def main(count: int) -> None:
    rng = random.Random(7)
    settings = ClusterSettings()
    start_day = datetime(2026, 1, 1, tzinfo=UTC)
    originals: list[tuple[str, str]] = []
    folder = Path(tempfile.mkdtemp())
    storage = Storage.open_sqlite(folder / "stories.sqlite")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stored_seconds = 0.0
    batch: list[ReadyItem] = []
    last = start_day
    shared: _Shared | None = None
    for n in range(count):
        published = last = start_day + timedelta(minutes=7 * n)  # ~200 items a day
        if n and rng.random() < 0.1:  # one item in ten reposts a recent one
            title, text = originals[max(0, len(originals) - rng.randint(1, 50))]
            title = "Local Hot Spot: " + title
        else:
            title, text = synthetic_item(rng, n)
            originals.append((title, text))
        batch.append(ReadyItem(
            item=item(n, title, text, published), topics=(),
            bands=band_blob(signature(title, text)),
        ))  # fmt: skip
        if len(batch) == 45 or n == count - 1:
            if shared is None or shared.now.date() != published.date():
                shared = _Shared(topics=(), settings=settings, now=published)  # a day's cycle
            began = time.perf_counter()
            with storage.transaction() as tx:
                _store_items(tx, shared, batch, published)
            stored_seconds += time.perf_counter() - began
            batch = []
    peak_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) * 1024
    with storage.connect() as connection:
        joined = connection.exec_driver_sql(
            "SELECT count(*) FROM items WHERE story_similarity IS NOT NULL"
        ).scalar_one()
        indexed = connection.exec_driver_sql("SELECT count(*) FROM item_lsh").scalar_one()
    storage.close()
    size = (folder / "stories.sqlite").stat().st_size
    print(f"items stored in batches of 45: {count:,} in {stored_seconds:.1f} s "
          f"({stored_seconds / count * 1e3:.2f} ms each, band look-ups and checks included)")  # fmt: skip
    print(f"joined an earlier story: {joined:,} (about one in ten was written as a repost)")
    print(f"peak memory growth of the process: {peak_growth / 2**20:.0f} MiB")
    print(f"items whose band keys are kept (two 14-day windows): {indexed:,}")
    print(f"database size: {size / 2**20:.0f} MiB ({size / count:.0f} bytes an item, all tables)")
    print(f"one cycle a simulated day loads the band index; last item {last:%Y-%m-%d}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
