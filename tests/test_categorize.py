"""categorize: word matching, plurals, CJK substrings, excludes, all_of, sources (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest

from aggregator.categorize import CompiledTopic, categorize, compile_topics
from aggregator.config import TopicConfig, load_config
from aggregator.models import Item, TermHit
from aggregator.pipeline import try_source

NOW = datetime(2026, 11, 26, tzinfo=UTC)
PROJECT = Path(__file__).parent.parent


def item(
    title: str, summary: str = "", *, categories: tuple[str, ...] = (), source: str = "s"
) -> Item:
    return Item(
        source_id=source,
        keys=("link:https://x.org/a",),
        link="https://x.org/a",
        guid=None,
        title=title,
        summary_html="",
        summary_text=summary,
        published_at=NOW,
        updated_at=NOW,
        date_missing=False,
        author=None,
        categories=categories,
        language=None,
        content_hash="h",
    )


@cache
def shipped_topics() -> tuple[CompiledTopic, ...]:
    return compile_topics(load_config(PROJECT / "config").topics)


def topic(**rules: object) -> TopicConfig:
    return TopicConfig.model_validate({"slug": "t", "title": "T", **rules})


def slugs(it: Item, *topics: TopicConfig) -> list[str]:
    return [m.slug for m in categorize(it, compile_topics(topics))]


@pytest.mark.parametrize(
    ("title", "matches"),
    [
        ("New industrial park opens", True),
        ("Two industrial parks open", True),  # plural
        ("INDUSTRIAL PARK opens", True),  # case-insensitive
        ("Industrial-park opens", True),  # hyphen between words
        ("Industrial parking rules", True),  # by stem, as a search engine (=park: as written)
        ("Nonindustrial park", False),
    ],
)
def test_latin_terms_match_whole_words(title: str, matches: bool) -> None:
    assert bool(slugs(item(title), topic(include=["industrial park"]))) is matches


def test_latin_term_next_to_chinese_text() -> None:
    assert slugs(item("PTA价格上涨"), topic(include=["PTA"])) == ["t"]


def test_chinese_terms_match_as_substrings() -> None:
    assert slugs(item("郑州棉花期货上涨"), topic(include=["棉花"])) == ["t"]


def test_chinese_exclude_is_masked_first() -> None:
    cotton = topic(include=["棉花"], exclude=["棉花糖"])
    assert slugs(item("义乌棉花糖机械展销会"), cotton) == []
    assert slugs(item("新疆棉花采收"), cotton) == ["t"]


def test_exclude_vetoes_whatever_else_matched() -> None:
    cotton = topic(include=["cotton"], exclude=["cotton candy"])
    assert slugs(item("Cotton prices up", "cotton candy stall"), cotton) == []


def test_all_of_requires_every_group() -> None:
    rules = topic(include=["cotton"], all_of=[["price", "futures"], "India"])
    assert slugs(item("Cotton futures rise in India"), rules) == ["t"]
    assert slugs(item("Cotton futures rise in Pakistan"), rules) == []
    assert slugs(item("Cotton harvest in India"), rules) == []


def test_source_restriction() -> None:
    rules = topic(include=["cotton"], sources=["trusted"])
    assert slugs(item("Cotton", source="trusted"), rules) == ["t"]
    assert slugs(item("Cotton", source="other"), rules) == []


def test_hits_record_term_and_field() -> None:
    rules = topic(include=["cotton", "yarn", "spinning"])
    (match,) = categorize(
        item("Cotton rally", "Mills opened. More yarn mills", categories=("Spinning",)),
        compile_topics([rules]),
    )
    assert match.hits == (
        TermHit(term="cotton", field="title", weight=2.0),  # a title hit counts double
        TermHit(term="yarn", field="summary", weight=1.0),  # not in the lead sentence
        TermHit(term="spinning", field="category", weight=0.5),  # evidence, never enough alone
    )


def test_item_can_belong_to_several_topics() -> None:
    a = topic(include=["cotton"])
    b = topic(include=["India"]).model_copy(update={"slug": "b"})
    assert slugs(item("Cotton output in India"), a, b) == ["t", "b"]


def test_seed_article_lands_in_the_expected_shipped_topics() -> None:
    """The article the project started from, scraped from the offline example's snapshot
    of its portal, against the shipped taxonomy."""
    config = load_config(PROJECT / "config" / "demo")
    trial = try_source(config, config.source("sjfzxm-en"))
    (seed,) = [(i, t) for i, t in trial.items if i.link and i.link.endswith("/591691.html")]
    item, topics = seed
    assert item.original_publisher == "Hebei Daily"
    assert {"clusters-parks", "cashmere-wool", "fashion-brands"} <= set(topics)
    assert "sustainability" not in topics
    assert "smart-manufacturing" not in topics


@pytest.mark.parametrize(
    ("title", "slug", "expected"),
    [
        ("Steel wool scourers recalled", "cashmere-wool", False),
        ("Merino wool prices firm", "cashmere-wool", True),
        ("Cotton candy makers meet", "cotton-fibre-prices", False),
        ("Theme park visitors rise", "clusters-parks", False),
        ("Keqiao cluster upgrades dyeing", "clusters-parks", True),
        ("Carbon fibre plant opens", "sustainability", False),
        ("Delivered in a timely fashion", "fashion-brands", False),
        ("Fine china exports", "asian-markets", False),
        ("Labour Party conference", "labour-compliance", False),
        ("智能手机销量", "smart-manufacturing", False),
        ("纺织机械出口增长", "smart-manufacturing", True),
    ],
)
def test_shipped_taxonomy_excludes(title: str, slug: str, expected: bool) -> None:
    topics = [t for t in shipped_topics() if t.slug == slug]
    assert bool(categorize(item(title), topics)) is expected


def _labelled_items() -> list[Item]:
    """Every item of the project's labelled sets, and the outside development set when
    it is beside the project: realistic text in English and Chinese, with traps."""
    from aggregator.evaluate import read_labels

    paths = sorted((PROJECT / "tests" / "data").glob("topics-guide-own*.jsonl"))
    paths += sorted((PROJECT.parent / "shared" / "eval").glob("topics_*.jsonl"))
    return [case.item for path in paths for case in read_labels(path)]


def test_categorize_agrees_with_explains_full_reasoning() -> None:
    """categorize takes short cuts (topics no include term of which is there, vetoed
    topics, the include hits looked up per item): each item must get exactly the topics
    and hits that ``verdicts`` (explain's full reasoning, topic by topic) gives it."""
    from aggregator.categorize import verdicts

    config = load_config(PROJECT / "config")
    topics = compile_topics(config.topics, config.rule_sets)
    items = _labelled_items()
    assert len(items) > 200
    with_topics = 0
    for case in items:
        matched = {m.slug: m.hits for m in categorize(case, topics)}
        full = {v.slug: v.hits for v in verdicts(case, topics) if v.belongs}
        # explain names the places of a place: hit ("place:asia (Tiruppur)").
        named = {
            slug: tuple(h.term.split(" (")[0] if h.term.startswith("place:") else h.term
                        for h in hits)
            for slug, hits in full.items()
        }  # fmt: skip
        assert {slug: tuple(h.term for h in hits) for slug, hits in matched.items()} == named
        assert {slug: [h.field for h in hits] for slug, hits in matched.items()} == {
            slug: [h.field for h in hits] for slug, hits in full.items()
        }
        with_topics += bool(matched)
    assert with_topics > len(items) / 2
