"""CPU per item of the topic stage (normalized items -> topics), on the benchmark's
Zipf-like feeds (English and Chinese, ``bench_cycle.make_items``) and on the outside
development set's items (../shared/eval): what the prepare stage pays per item.

    python tests/benchmarks/bench_categorize.py [--items 4500]

Prints microseconds an item for the shipped taxonomy, and the same items' cost of
normalizing (the stage before it, run here in the same process) as the baseline the
topic stage is compared with."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=4500)
    args = parser.parse_args()

    from aggregator.categorize import categorize, compile_topics
    from aggregator.config import load_config
    from aggregator.models import ParsedEntry
    from aggregator.normalize import normalize_entry
    from tests.benchmarks.bench_cycle import make_items

    config = load_config(PROJECT / "config")
    topics = compile_topics(config.topics, config.rule_sets)
    now = datetime(2026, 11, 26, tzinfo=UTC)
    rng = random.Random(7)
    raw = [i for feed in range(args.items // 45 + 1) for i in make_items(rng, feed, 45, now)]
    raw = raw[: args.items]
    entries = [
        ParsedEntry(guid=i["id"], link=i["link"], title=i["title"], title_is_html=False,
                    summary_html=i["html"], published_raw=i["published"].isoformat(),
                    updated_raw=None, author=None, categories=(), language=None)
        for i in raw
    ]  # fmt: skip
    outside = PROJECT.parent / "shared" / "eval"
    for name in ("topics_en.jsonl", "topics_zh.jsonl"):
        if (outside / name).is_file():
            for line in (outside / name).read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                entries.append(ParsedEntry(
                    guid=row["id"], link=None, title=row["title"], title_is_html=False,
                    summary_html=row["summary"], published_raw=None, updated_raw=None,
                    author=None, categories=(row.get("source_category") or "",),
                    language=row["lang"]))  # fmt: skip
    zone = UTC
    categorize(normalize_entry(entries[0], source_id="b", base_url="", timezone=zone, now=now)
               or sys.exit("no item"), topics)  # warm up: gazetteer, stemmer  # fmt: skip
    started = time.process_time()
    items = [
        normalize_entry(e, source_id="b", base_url="", timezone=zone, now=now) for e in entries
    ]
    normalizing = time.process_time() - started
    kept = [i for i in items if i is not None]
    started = time.process_time()
    hits = sum(len(categorize(item, topics)) for item in kept)
    categorizing = time.process_time() - started
    per = 1e6 / len(kept)
    print(f"items {len(kept)}  topic hits {hits}")
    print(f"normalize  {normalizing * per:7.1f} us an item (baseline, same process)")
    print(f"categorize {categorizing * per:7.1f} us an item")
    print(f"categorize / normalize: {categorizing / normalizing:.2f}x")


if __name__ == "__main__":
    main()
