"""Guards the measured same-story decisions (figures, not timing): precision >= 0.98 and
recall >= 0.90 at the configured threshold, on at least 300 labelled pairs."""

from __future__ import annotations

import yaml

from tests.tools.evaluate_dedupe import PAIRS, measure


def test_the_pair_set_is_big_and_hard() -> None:
    pairs = yaml.safe_load(PAIRS.read_text(encoding="utf-8"))["pairs"]
    assert len(pairs) >= 300
    kinds = {p["kind"] for p in pairs}
    assert {"repost-0", "repost-1", "repost-2", "repost-3", "same-subject"} <= kinds
    assert any(p["family"] == "weekly-template" and not p["same"] for p in pairs)
    assert any("清河" in p["a"]["title"] for p in pairs)  # Chinese pairs too


def test_same_story_decisions() -> None:
    scores, errors = measure()
    assert scores.precision >= 0.98, errors
    assert scores.recall >= 0.90, errors
