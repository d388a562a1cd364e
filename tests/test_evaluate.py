"""``textile-feeds evaluate`` and the figures it guards: the shipped taxonomy scored on
labelled items written outside the project (../shared/eval, to the editorial guide)
and on the project's own set. The floors sit a little under the figures measured
when they were set (README, "Curating"); they catch a regression, they are no target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from aggregator.categorize import compile_topics
from aggregator.cli import cli
from aggregator.config import load_config
from aggregator.evaluate import LabelsError, evaluate, read_labels
from tests.conftest import DATA, PROJECT

OUTSIDE = PROJECT.parent / "shared" / "eval"
OUTSIDE_FILES = [OUTSIDE / "topics_en.jsonl", OUTSIDE / "topics_zh.jsonl"]


def own_labels(tmp_path: Path) -> Path:
    """The project's own labelled set (tests/data/topics-eval.yaml) as a labels file."""
    items = yaml.safe_load((DATA / "topics-eval.yaml").read_text(encoding="utf-8"))["items"]
    path = tmp_path / "own.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for number, item in enumerate(items, start=1):
            row = {"id": f"own{number}", "lang": item.get("language", "en"), "style": "own",
                   "title": item["title"], "summary": item.get("summary", ""),
                   "source_category": list(item.get("categories", ())),
                   "topics": item["topics"]}  # fmt: skip
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def guide_labels(tmp_path: Path) -> Path:
    """30 items the project wrote to the editorial guide's boundaries (contract wins,
    association lists, electricity tariffs, products that merely contain cotton),
    scored before any rule was tuned on them: 0.969."""
    return DATA / "topics-guide-own.jsonl"


def guide_labels_2(tmp_path: Path) -> Path:
    """49 items on the boundaries of the weakest topics (cotton-fibre-prices,
    corporate-finance, trade-policy), written after the first guide set and scored
    before any rule was tuned on them: 0.696."""
    return DATA / "topics-guide-own2.jsonl"


def guide_labels_3(tmp_path: Path) -> Path:
    """40 items over all twelve topics, written after the second guide set and scored
    before any rule was tuned on them: 0.831."""
    return DATA / "topics-guide-own3.jsonl"


def guide_labels_4(tmp_path: Path) -> Path:
    """46 items over all twelve topics (18 on trade-policy and corporate-finance), 10
    outside textile scope, written before the scope gate's ignore phrases and scored
    then, untouched: 0.846."""
    return DATA / "topics-guide-own4.jsonl"


def guide_labels_5(tmp_path: Path) -> Path:
    """44 items on the trade-policy and corporate-finance boundaries the guide draws
    (measures vs flows, a company vs a park or an industry, designations), 5 outside
    textile scope; scored before the rules were tuned on them: 0.673 (micro-F1 0.885)."""
    return DATA / "topics-guide-own5.jsonl"


def guide_labels_6(tmp_path: Path) -> Path:
    """42 items over all twelve topics, 11 outside textile scope or traps, written
    before the night's later rule edits and scored then, untouched: 0.869."""
    return DATA / "topics-guide-own6.jsonl"


def guide_labels_7(tmp_path: Path) -> Path:
    """40 items over all twelve topics (29 en, 11 zh), 9 traps, written after the last
    rule edits of 2026-12-02 and scored once, untouched: 0.912."""
    return DATA / "topics-guide-own7.jsonl"


def outside_labels(tmp_path: Path) -> Path:
    if not all(path.is_file() for path in OUTSIDE_FILES):
        pytest.skip(f"the outside development set is not beside the project ({OUTSIDE})")
    path = tmp_path / "outside.jsonl"
    path.write_text("".join(p.read_text(encoding="utf-8") for p in OUTSIDE_FILES), "utf-8")
    return path


def shipped_topics():  # type: ignore[no-untyped-def]
    config = load_config(PROJECT / "config")
    return compile_topics(config.topics, config.rule_sets)


@pytest.mark.parametrize(
    ("labels", "macro_floor", "no_topic_ceiling", "topic_floor"),
    [
        (outside_labels, 0.92, 0.06, 0.80),
        (own_labels, 0.90, 0.08, 0.80),
        (guide_labels, 0.95, 0.25, 0.80),
        # A topic with no gold item and one false one scores 0 here: no topic floor.
        (guide_labels_2, 0.78, 0.20, 0.0),
        (guide_labels_3, 0.89, 0.20, 0.0),
        (guide_labels_4, 0.83, 0.10, 0.0),
        (guide_labels_5, 0.74, 0.0, 0.0),
        (guide_labels_6, 0.85, 0.20, 0.0),
        (guide_labels_7, 0.88, 0.15, 0.0),
    ],
    ids=[
        "outside-development-set",
        "own-set",
        "own-guide-set",
        "own-guide-set-2",
        "own-guide-set-3",
        "own-guide-set-4",
        "own-guide-set-5",
        "own-guide-set-6",
        "own-guide-set-7",
    ],
)
def test_shipped_taxonomy_holds_its_measured_quality(
    tmp_path: Path,
    labels,  # type: ignore[no-untyped-def]
    macro_floor: float,
    no_topic_ceiling: float,
    topic_floor: float,
) -> None:
    overall, groups = evaluate(read_labels(labels(tmp_path)), shipped_topics())
    assert overall.macro_f1 >= macro_floor, overall.macro_f1
    assert overall.no_topic_wrong <= no_topic_ceiling * overall.no_topic_items
    weak = {s: round(t.f1, 2) for s, t in overall.per_topic.items() if t.f1 < topic_floor}
    assert not weak
    assert {g.label for g in groups} >= {"lang=en", "lang=zh"}


def test_out_of_scope_items_get_no_topic_whatever_their_words() -> None:
    """The textile-scope gate: each of these held a topic's words and got topics."""
    cases = [
        ("US bans seafood from Chinese fishing fleet over forced labour", "Tuna and squid."),
        ("US raises tariffs on Chinese-made drones to 50%", "Drone makers added to a list."),
        ("Phone maker's smart factory starts production", "Robots assemble smartphones."),
        ("Chip designer files for IPO in Shanghai", "The semiconductor firm seeks funds."),
        ("School PTA raises money for a playground", "Parents ran a summer fair."),
        ("Footballers strike over unpaid wages", "Players refused to train."),
        # Other senses of textile words (the scope gate's ignore phrases, =loom, Gap).
        ("Power tariff hike hits steel mills in Punjab", "Rolling mills may cut output."),
        ("Looming tariffs weigh on Asian toy makers", "Exports could fall."),
        ("Conglomerate spins off its fibre optic unit", "The listing values it at $2bn."),
        ("China's trade gap with India widens", "Imports of electronics rose."),
    ]
    topics = shipped_topics()
    from aggregator.categorize import categorize
    from tests.test_categorize import item

    for title, summary in cases:
        assert categorize(item(title, summary), topics) == (), title


def test_evaluate_command_prints_scores_and_reasons(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    rows = [
        {"id": "a1", "title": "ICE cotton futures slip as mills hold off", "summary":
         "Cotton futures fell 2 cents a pound.", "topics": ["cotton-fibre-prices"]},
        {"id": "a2", "title": "Cotton candy stall opens at the county fair", "topics": []},
        {"id": "a3", "title": "Mill news", "topics": ["labour-compliance"]},
    ]  # fmt: skip
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(PROJECT / "config"), "evaluate", str(labels)])
    assert result.exit_code == 0, result.output
    assert "3 labelled items" in result.output
    assert "cotton-fibre-prices     1.00  1.00  1.00     1    1    0    0" in result.output
    assert "labour-compliance       0.00  0.00  0.00     1    0    0    1" in result.output
    assert "- labour-compliance: score 0/3" in result.output  # the miss, with its reasons
    odd = CliRunner().invoke(
        cli, ["--config", str(PROJECT / "config"), "evaluate", str(labels), "--part", "even"]
    )
    assert "1 labelled items" in odd.output  # a2 only


def test_a_broken_labels_file_names_file_and_line(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"title": "ok", "topics": []}\n{"title": "no topics"}\n', "utf-8")
    with pytest.raises(LabelsError, match=rf"{labels}:2: 'topics'"):
        read_labels(labels)
    result = CliRunner().invoke(cli, ["--config", str(PROJECT / "config"), "evaluate", str(labels)])
    assert result.exit_code == 2 and f"{labels}:2:" in result.output
