"""Guards the measured quality of the shipped taxonomy on the labelled evaluation set
(figures, not timing): macro F1 at least 0.90 and no topic under 0.80."""

from __future__ import annotations

import yaml

from tests.tools.evaluate_topics import EVAL_SET, measure


def test_the_evaluation_set_is_big_bilingual_and_tricky() -> None:
    items = yaml.safe_load(EVAL_SET.read_text(encoding="utf-8"))["items"]
    assert len(items) >= 200
    assert sum(1 for i in items if i.get("language") == "zh") >= 40
    assert sum(1 for i in items if not i["topics"]) >= 30  # negatives: cotton candy, ...


def test_shipped_taxonomy_quality() -> None:
    scores, errors = measure()
    assert scores["macro"].f1 >= 0.90, errors
    weak = {slug: round(s.f1, 3) for slug, s in scores.items() if s.f1 < 0.80}
    assert not weak, errors
