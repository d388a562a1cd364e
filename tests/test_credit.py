"""Credit for the original publisher in every published format, and the stored
stories against the labelled pairs, on the outside story set
(../shared/eval/stories.jsonl served as feeds, one cycle). Before this work 0 of its 81
items naming their publisher were credited "X via Portal", the stories' recall was
0.843 and no zh<->en pair was found. The floors sit under the measured figures (100%
credited; stories 1.000 / 0.986; 19 of 30 zh<->en)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.evaluate_credit import STORIES, measure


def test_items_naming_their_publisher_are_credited_in_every_format(tmp_path: Path) -> None:
    if not STORIES.is_file():
        pytest.skip(f"the outside story set is not beside the project ({STORIES})")
    scores = measure(tmp_path, STORIES)
    assert scores.named >= 80
    assert scores.credited_everywhere >= 0.95 * scores.named, scores.misses
    assert scores.present["html"] > 0 and scores.credited["html"] == scores.present["html"]


def test_stories_hold_their_measured_quality_through_a_cycle(tmp_path: Path) -> None:
    if not STORIES.is_file():
        pytest.skip(f"the outside story set is not beside the project ({STORIES})")
    tp, fp, fn = measure(tmp_path, STORIES).pairs
    assert tp / (tp + fp) >= 0.99 and tp / (tp + fn) >= 0.95, (tp, fp, fn)
    found, labelled = measure(tmp_path / "again", STORIES).cross_lingual
    # 19 found since figures compare by significant digits across languages (13 before).
    assert labelled == 30 and found >= 17


def test_stories_do_not_depend_on_the_order_reports_arrive_in(tmp_path: Path) -> None:
    """Issue 16: with 27 sources prepared in parallel, two runs over the same files
    gave different stories. Three shuffled arrival orders must give one result."""
    if not STORIES.is_file():
        pytest.skip(f"the outside story set is not beside the project ({STORIES})")
    runs = [measure(tmp_path / str(seed), STORIES, seed=seed).stories for seed in (1, 2, 3)]
    assert len(runs[0]) > 80
    assert runs[0] == runs[1] == runs[2], [len(r) for r in runs]
