"""Benchmark (not a test): add items one by one to the story index, then rebuild it.

    python tests/benchmarks/bench_stories.py [N]      # default 100,000

Prints the time to add N synthetic news items one by one (shingles, MinHash, LSH query,
exact check of the candidates, insert), the growth of the process's peak memory (max
RSS), and the time to rebuild the index from persisted signatures, as after a restart.
Figures depend on the machine: compare runs on the same one.
"""

from __future__ import annotations

import random
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from aggregator.cluster import (
    ClusterSettings,
    StoryIndex,
    same_story,
    shingles,
    signature,
    signature_bytes,
    signature_from_bytes,
)

WORDS = [
    "cotton",
    "wool",
    "cashmere",
    "yarn",
    "fabric",
    "mill",
    "spinner",
    "exports",
    "prices",
    "futures",
    "textile",
    "garment",
    "factory",
    "brand",
    "retailer",
    "cluster",
    "park",
    "machinery",
    "loom",
    "knitting",
    "dyeing",
    "polyester",
    "viscose",
    "nonwovens",
    "recycled",
    "orders",
    "demand",
    "supply",
    "Bangladesh",
    "Vietnam",
    "India",
    "China",
    "Keqiao",
    "Qinghe",
    "rose",
    "fell",
    "rises",
    "falls",
    "new",
    "plant",
    "line",
    "capacity",
    "investment",
    "workers",
    "wage",
    "strike",
    "fair",
]


def synthetic_item(rng: random.Random, n: int) -> tuple[str, str]:
    title = " ".join(rng.choices(WORDS, k=8)) + f" {n}"
    text = " ".join(rng.choices(WORDS, k=40))
    return title, text


def main(count: int) -> None:
    rng = random.Random(7)
    settings = ClusterSettings()
    start_day = datetime(2026, 1, 1, tzinfo=UTC)
    texts: dict[int, frozenset[str]] = {}
    stored: list[tuple[int, datetime, bytes]] = []
    originals: list[tuple[str, str]] = []
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    index = StoryIndex(settings)
    began = time.perf_counter()
    joined = 0
    for n in range(count):
        published = start_day + timedelta(minutes=7 * n)  # ~200 items a day
        if n and rng.random() < 0.1:  # one item in ten reposts a recent one
            title, text = originals[max(0, len(originals) - rng.randint(1, 50))]
            title = "Local Hot Spot: " + title
        else:
            title, text = synthetic_item(rng, n)
            originals.append((title, text))
        mine = shingles(title, text)
        minhash = signature(mine)
        for candidate in index.candidates(minhash, published):
            if same_story(mine, texts[candidate], settings)[0]:
                joined += 1
                break
        index.add(n, minhash, published)
        texts[n] = mine  # stands in for the stored title and text
        stored.append((n, published, signature_bytes(minhash)))
    added = time.perf_counter() - began
    peak_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) * 1024

    began = time.perf_counter()
    rebuilt = StoryIndex(settings)
    for item_id, published, data in stored:
        rebuilt.add(item_id, signature_from_bytes(data), published)
    rebuild = time.perf_counter() - began
    # What the index alone holds: build it again under tracemalloc (slower, exact).
    tracemalloc.start()
    measured = StoryIndex(settings)
    for item_id, published, data in stored:
        measured.add(item_id, signature_from_bytes(data), published)
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    window_items = sum(1 for _, p, _ in stored if p >= stored[-1][1] - settings.window * 2)
    print(f"items added one by one: {count:,} in {added:.1f} s ({added / count * 1e3:.2f} ms each)")
    print(f"joined an earlier story: {joined:,}")
    print(f"peak memory growth (index, signatures, shingle sets): {peak_growth / 2**20:.0f} MiB")
    print(f"the LSH index alone, all {count:,} items: {index_bytes / 2**20:.0f} MiB")
    size = len(stored[0][2])
    print(
        f"signatures persisted: {size} bytes per item, {len(stored) * size / 2**20:.0f} MiB in all"
    )
    print(f"rebuild from persisted signatures, all {count:,} items: {rebuild:.1f} s")
    print(f"the daemon rebuilds only the last 2 windows ({window_items:,} items here): "
          f"about {rebuild * window_items / count:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
