"""Precision, recall and F1 of the shipped taxonomy on the labelled evaluation set.

    python tests/tools/evaluate_topics.py            # the table
    python tests/tools/evaluate_topics.py --errors   # and every wrong decision

The set (tests/data/topics-eval.yaml) holds invented but realistic textile news in
English and Chinese, with the topics a curator would want each item in, tricky
negatives included. tests/test_topics_eval.py guards the figures.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
EVAL_SET = PROJECT / "tests" / "data" / "topics-eval.yaml"


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    support: int


def measure(config_dir: Path = PROJECT / "config") -> tuple[dict[str, Scores], list[str]]:
    """Scores per topic (plus "macro"), and a line per wrong decision."""
    from aggregator.categorize import categorize, compile_topics
    from aggregator.config import load_config
    from aggregator.models import Item

    config = load_config(config_dir)
    topics = compile_topics(config.topics, config.rule_sets)
    now = datetime(2026, 11, 26, tzinfo=UTC)
    counts = {t.slug: [0, 0, 0] for t in config.topics}  # true pos, false pos, false neg
    errors = []
    for number, case in enumerate(yaml.safe_load(EVAL_SET.read_text(encoding="utf-8"))["items"]):
        item = Item(
            source_id="eval", keys=(f"eval:{number}",), link=None, guid=None,
            title=case["title"], summary_html="", summary_text=case.get("summary", ""),
            published_at=now, updated_at=now, date_missing=False, author=None,
            categories=tuple(case.get("categories", ())), language=case.get("language", "en"),
            content_hash="",
        )  # fmt: skip
        expected = set(case["topics"])
        found = {m.slug for m in categorize(item, topics)}
        for slug in counts:
            if slug in found and slug in expected:
                counts[slug][0] += 1
            elif slug in found:
                counts[slug][1] += 1
                errors.append(f"false +{slug}: {case['title']}")
            elif slug in expected:
                counts[slug][2] += 1
                errors.append(f"missed {slug}: {case['title']}")
    scores = {}
    for slug, (tp, fp, fn) in counts.items():
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / (tp + fn) if tp + fn else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[slug] = Scores(precision, recall, f1, tp + fn)
    n = len(scores)
    scores["macro"] = Scores(
        sum(s.precision for s in scores.values()) / n,
        sum(s.recall for s in scores.values()) / n,
        sum(s.f1 for s in scores.values()) / n,
        sum(s.support for s in scores.values()),
    )
    return scores, errors


def main() -> None:
    scores, errors = measure()
    print(f"{'topic':<22} {'precision':>9} {'recall':>7} {'F1':>6} {'items':>6}")
    for slug, s in scores.items():
        print(f"{slug:<22} {s.precision:>9.3f} {s.recall:>7.3f} {s.f1:>6.3f} {s.support:>6}")
    if "--errors" in sys.argv:
        print("\n".join(["", *errors]))


if __name__ == "__main__":
    main()
