"""Precision and recall of same-story decisions on the labelled pairs, at the configured
threshold (and around it, to show the margin).

    python tests/tools/evaluate_dedupe.py
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[2]
PAIRS = PROJECT / "tests" / "data" / "dedupe-pairs.yaml"


@dataclass(frozen=True)
class PairScores:
    threshold: float
    precision: float
    recall: float
    true_positives: int
    false_positives: int
    false_negatives: int


def measure(threshold: float | None = None) -> tuple[PairScores, list[str]]:
    from dataclasses import replace

    from aggregator.cluster import same_story_texts
    from aggregator.config import load_config

    settings = load_config(PROJECT / "config").settings.cluster.settings()
    if threshold is not None:
        settings = replace(settings, threshold=threshold)
    tp = fp = fn = 0
    errors = []
    for pair in yaml.safe_load(PAIRS.read_text(encoding="utf-8"))["pairs"]:
        evidence = same_story_texts(
            pair["a"]["title"], pair["a"]["summary"], pair["b"]["title"], pair["b"]["summary"],
            settings,
        )  # fmt: skip
        same, similarity = evidence.same, evidence.similarity
        if same and pair["same"]:
            tp += 1
        elif same:
            fp += 1
            errors.append(f"false match {similarity:.2f} ({pair['kind']}): {pair['a']['title']}")
        elif pair["same"]:
            fn += 1
            errors.append(f"missed {similarity:.2f} ({pair['kind']}): {pair['b']['title']}")
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return PairScores(settings.threshold, precision, recall, tp, fp, fn), errors


def main() -> None:
    configured, errors = measure()
    for threshold in sorted({0.35, 0.4, configured.threshold, 0.5, 0.55, 0.6}):
        s, _ = measure(threshold)
        mark = "  <- configured" if threshold == configured.threshold else ""
        print(
            f"threshold {s.threshold:.2f}: precision {s.precision:.3f} recall {s.recall:.3f} "
            f"(tp {s.true_positives}, fp {s.false_positives}, fn {s.false_negatives}){mark}"
        )
    print("\n".join(["", *errors]))


if __name__ == "__main__":
    main()
