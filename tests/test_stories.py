"""The story stage (``aggregator.stories``): decisions against stories rather than
single members, merging, boilerplate weighed down, template siblings told apart."""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from aggregator.cli import cli
from aggregator.cluster import ClusterSettings, ReportFacts, jaccard
from aggregator.config import load_config
from aggregator.pipeline import run_cycle
from aggregator.storage import Storage, Transaction
from aggregator.stories import (
    TITLE_FIGURES_DIFFER,
    TITLE_PLACES_DIFFER,
    Candidate,
    Report,
    StoryStage,
    WordPairCounts,
    _sibling,
    decide_story,
    weighted_similarity,
)
from tests.conftest import write_config

SETTINGS = ClusterSettings()
_WORDS = random.Random(16).sample(
    [a + b + c for a in "bcdfghklmnprstvz" for b in "aeiou" for c in "lmnrstx"], 400
)


def _text(start: int, end: int) -> str:
    return " ".join(_WORDS[start:end])


def _rss(title: str, text: str, link: str, hour: int) -> bytes:
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>p</title>'
        "<link>https://p.example/</link><description>d</description>"
        f"<item><title>{title}</title><link>{link}</link><description>{text}</description>"
        f"<pubDate>Thu, 26 Nov 2026 {hour:02d}:00:00 GMT</pubDate></item></channel></rss>"
    ).encode()


def test_a_report_proving_two_stories_one_merges_them(tmp_path: Path) -> None:
    """A and C share little; B is the same story as each. Arriving A, C, B, the old
    stage kept A's and C's stories apart for good (B joined one of them): the result
    depended on the arrival order."""
    reports = {
        "a": ("Mill report", _text(0, 40)),
        "c": ("Mill report", _text(30, 70)),
        "b": ("Mill report", _text(0, 70)),
    }
    snapshots = tmp_path / "config" / "snapshots"
    snapshots.mkdir(parents=True)
    lines = ["sources:"]
    for hour, (name, (title, text)) in enumerate(reports.items()):
        (snapshots / f"{name}.rss").write_bytes(
            _rss(title, text, f"https://{name}.example/1", hour + 1)
        )
        lines.append(f"  - {{id: {name}, name: Portal {name}, url: snapshots/{name}.rss}}")
    folder = write_config(
        tmp_path / "config", sources="\n".join(lines) + "\n",
        topics="topics:\n  - {slug: all-mills, title: Mills, include: [mill]}\n",
        settings="database: state/db.sqlite\noutput_dir: out\nfeed_window: 3650d\n"
        "retention: 3650d\n",
    )  # fmt: skip
    assert jaccard(*(frozenset(_text(*r).split()) for r in ((0, 40), (30, 70)))) < 0.2
    config = load_config(folder)
    storage = Storage.open_sqlite(config.database_path)
    run_cycle(config, storage, now=datetime(2026, 12, 1, tzinfo=UTC))
    storage.close()
    with sqlite3.connect(config.database_path) as db:
        rows = dict(db.execute("SELECT link, story_id FROM items"))
        reason = db.execute(
            "SELECT story_reason FROM items WHERE link = 'https://b.example/1'"
        ).fetchone()
    assert len(set(rows.values())) == 1, rows
    assert reason == ("words alike",)
    # explain shows the evidence of each decision.
    shown = CliRunner().invoke(cli, ["--config", str(folder), "explain", "https://b.example/1"])
    assert shown.exit_code == 0, shown.output
    assert "story urn:uuid:" in shown.output and "3 report(s)" in shown.output
    assert "(words alike)" in shown.output


def test_stored_reports_are_compared_from_their_stored_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Figures and title places are worked out where items are prepared and stored with
    the band keys: the polling process reads them back instead of building the
    gazetteer (~70 MB, ~1 s) to take each candidate apart again."""
    snapshots = tmp_path / "config" / "snapshots"
    snapshots.mkdir(parents=True)
    title, text = "Suzhou mills raise 12.5% output", _text(0, 40) + " 13,985 tonnes in 2026"
    (snapshots / "a.rss").write_bytes(_rss(title, text, "https://a.example/1", 1))
    folder = write_config(
        tmp_path / "config", sources="sources:\n  - {id: a, name: A, url: snapshots/a.rss}\n",
        topics="topics:\n  - {slug: all-mills, title: Mills, include: [mill]}\n",
        settings="database: state/db.sqlite\noutput_dir: out\nfeed_window: 3650d\n"
        "retention: 3650d\n",
    )  # fmt: skip
    config = load_config(folder)
    storage = Storage.open_sqlite(config.database_path)
    run_cycle(config, storage, now=datetime(2026, 12, 1, tzinfo=UTC))
    expected = ReportFacts.of(title, text)
    assert {"12.5", "13985", "2026"} <= expected.figures and expected.title_places

    def no_gazetteer(*_: object) -> None:
        raise AssertionError("the story stage took a stored report apart again")

    def no_text(_: object, item_ids: list[int]) -> dict[int, tuple[str, str]]:
        assert not item_ids, "the story stage read a text it had the pairs and facts of"
        return {}

    with monkeypatch.context() as patched:
        patched.setattr(ReportFacts, "of", classmethod(no_gazetteer))
        patched.setattr(Transaction, "item_texts", no_text)
        stage = StoryStage(SETTINGS, datetime(2026, 12, 1, tzinfo=UTC))
        with storage.transaction() as tx:
            found = stage._candidates(tx, {1}, {})
    assert found[1].report.facts == expected
    # Facts stored in another layout (an older build) are worked out again, not a
    # crash of the cycle.
    with sqlite3.connect(config.database_path) as db:
        db.execute("UPDATE item_lsh SET facts = 'zh\x1e12'")
    with storage.transaction() as tx:
        found = StoryStage(SETTINGS, datetime(2026, 12, 1, tzinfo=UTC))._candidates(tx, {1}, {})
    storage.close()
    assert found[1].report.facts == expected


def _report(title: str, text: str) -> Report:
    return Report.of(title, text)


def test_a_story_with_a_member_in_the_same_template_but_other_figures_is_not_joined() -> None:
    """Comparing with the story, not one member: Monday's quote is alike in words to
    Sunday's story, but one of its members states other prices."""
    counts = WordPairCounts()
    body = "polyester staple fibre quoted in east china markets, mills cautious, " + _text(0, 30)
    sunday = _report("PSF daily", body + " at 7,050 yuan a tonne, up 1.2%")
    repost = _report("PSF daily", body + " at 7,050 yuan a tonne, up 1.2% (reposted)")
    monday = _report("PSF daily", body + " at 7,120 yuan a tonne, down 0.4%")
    assert decide_story(repost, {1: Candidate(sunday, 10)}, counts, SETTINGS).story_id == 10
    story = decide_story(
        monday, {1: Candidate(sunday, 10), 2: Candidate(repost, 10)}, counts, SETTINGS
    )
    assert story.story_id is None


def test_titles_in_one_template_naming_other_figures_or_places_are_other_stories() -> None:
    counts = WordPairCounts()
    body = "业内人士指出，行业整体仍处于调整期。受多重因素影响，市场观望情绪较浓。"
    one = _report("9月纺织服装出口下跌22.5%", body)
    other = _report("9月纺织服装出口上涨31.5%", body)
    story = decide_story(one, {1: Candidate(other, 5)}, counts, SETTINGS)
    assert story.story_id is None
    assert _sibling(one, other) == TITLE_FIGURES_DIFFER
    suzhou = _report("海运费回落，苏州外贸企业压力缓解", body)
    nantong = _report("海运费回落，南通外贸企业压力缓解", body)
    assert decide_story(suzhou, {1: Candidate(nantong, 5)}, counts, SETTINGS).story_id is None
    assert _sibling(suzhou, nantong) == TITLE_PLACES_DIFFER
    # A rewrite's title picks another figure of the same report: stated in the other.
    rewrite = _report("义乌袜企引入48台缝头机器人", body + "单线产能提升40%，48台机器人上岗。")
    first = _report("义乌袜企单线产能提升40%", body + "48台机器人上岗，单线产能提升40%。")
    assert decide_story(rewrite, {1: Candidate(first, 5)}, counts, SETTINGS).story_id == 5


def test_boilerplate_many_reports_carry_weighs_little() -> None:
    """Two reports made of the portals' stock sentences, with other headlines, are
    not one story once those sentences are known to recur (issue 16: one story of 221
    reports on the outside benchmark, chained through such sentences)."""
    stock = "受多重因素影响，市场观望情绪较浓。业内人士指出，行业整体仍处于调整期。"
    one = _report(
        "涤纶短纤价格增长，下游织造开工率上涨", stock + "相关负责人表示，公司将密切关注市场变化。"
    )
    other = _report(
        "棉纱价格走弱，纺企采购趋于谨慎", stock + "相关负责人表示，公司将密切关注市场变化。"
    )
    fresh = WordPairCounts()
    assert decide_story(one, {1: Candidate(other, 5)}, fresh, SETTINGS).story_id == 5
    seen = WordPairCounts()
    for n in range(3 * WordPairCounts.COMMON_AT):
        seen.add(_report(f"第{n}条", stock + "相关负责人表示，公司将密切关注市场变化。").pairs)
    assert decide_story(one, {1: Candidate(other, 5)}, seen, SETTINGS).story_id is None
    # What is said only in these two reports still counts in full.
    weights = seen.weights(one.pairs)
    assert weights.max() == 1.0 and weights.min() < 0.5
    total = float(weights.sum())
    assert weighted_similarity(one.pairs, weights, total, one.pairs, total) == 1.0


def test_word_pair_counts_survive_storing_and_halve_as_they_age() -> None:
    counts = WordPairCounts()
    pairs = _report("title", _text(0, 20)).pairs
    for _ in range(5):
        counts.add(pairs)
    again = WordPairCounts.from_bytes(counts.reports, counts.to_bytes())
    assert again.reports == 5 and set(again.weights(pairs).tolist()) == {1.0}
    assert int(again.counts.max()) == 5
    again.reports = WordPairCounts.HALVE_AFTER - 1
    again.add(pairs)
    assert int(again.counts.max()) == 3 and again.reports == WordPairCounts.HALVE_AFTER // 2
    # Damaged counters (a torn write, an edited database) start counting again.
    for damaged in (b"not zlib", counts.to_bytes()[:-7]):
        fresh = WordPairCounts.from_bytes(9, damaged)
        assert fresh.reports == 0 and int(fresh.counts.max()) == 0


def test_the_report_cache_forgets_the_stories_of_the_reports_it_evicts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cold cycle of 89,000 items kept an empty member set for each of ~55,000
    stories whose reports had left the cache (~20 MB of the polling process)."""
    from aggregator import stories

    monkeypatch.setattr(stories, "REPORTS_KEPT", 3)
    stage = StoryStage(SETTINGS, datetime(2026, 12, 1, tzinfo=UTC))
    for item_id in range(1, 11):
        stage._keep(item_id, _report(f"Report {item_id}", "text"), story_id=100 + item_id)
    stage._keep(11, _report("Report 11", "text"), story_id=110)  # joins item 10's story
    assert list(stage.reports) == [9, 10, 11]
    assert stage.members == {109: {9}, 110: {10, 11}}


def test_decoded_report_facts_share_their_strings() -> None:
    """The cycle caches ~32,000 reports' facts; the figures and places a template
    repeats are one string each, not one a report."""
    facts = ReportFacts.of("Cotton yarn at 12.5% in Jiangsu", "Prices 12.5% higher in Jiangsu")
    stored = facts.encode()
    first, second = ReportFacts.decode(stored), ReportFacts.decode(stored)
    assert first is not None and second is not None and first == second
    for mine, theirs in ((first.figures, second.figures), (first.places, second.places)):
        assert mine
        assert all(any(a is b for b in theirs) for a in mine)


def test_a_cycle_drops_its_story_index_before_publishing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The band index and the report cache are let go once the last item is stored:
    publishing's memory then reuses theirs (a cold cycle's peak was their sum)."""
    import aggregator.pipeline as pipeline

    snapshots = tmp_path / "config" / "snapshots"
    snapshots.mkdir(parents=True)
    (snapshots / "a.rss").write_bytes(_rss("Mill report", _text(0, 40), "https://a.example/1", 1))
    folder = write_config(
        tmp_path / "config", sources="sources:\n  - {id: a, name: A, url: snapshots/a.rss}\n",
        topics="topics:\n  - {slug: all-mills, title: Mills, include: [mill]}\n",
        settings="database: state/db.sqlite\noutput_dir: out\n",
    )  # fmt: skip
    events: list[str] = []
    real_release, real_report = StoryStage.release, pipeline._report

    def release(stage: StoryStage) -> None:
        events.append("release" if stage.bands is not None else "release (no index)")
        real_release(stage)
        assert stage.bands is None and stage.counts is None and not stage.reports

    def report(*args: object, **kwargs: object) -> object:
        events.append("publish")
        return real_report(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(StoryStage, "release", release)
    monkeypatch.setattr(pipeline, "_report", report)
    config = load_config(folder)
    storage = Storage.open_sqlite(config.database_path)
    run_cycle(config, storage, now=datetime(2026, 12, 1, tzinfo=UTC))
    storage.close()
    assert events == ["release", "publish"]
