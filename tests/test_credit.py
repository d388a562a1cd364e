"""Credit for the original publisher in every published format, on the outside story
set (../shared/eval/stories.jsonl served as feeds): 0 of its 81 items naming their
publisher were credited "X via Portal" before. The floor sits under the measured 100%."""

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
