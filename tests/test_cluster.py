"""cluster and minhash: shingles, the same-story decision, primary choice, MinHash
signatures and the LSH band index."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aggregator import minhash
from aggregator.cluster import ClusterSettings, jaccard, same_story, shingles, tokens
from aggregator.minhash import BandIndex, Holders, band_blob, band_keys, keys_of, signature
from aggregator.stories import Member, primary

NOW = datetime(2026, 11, 26, tzinfo=UTC)
SETTINGS = ClusterSettings()
TEXT = (
    "Lenzing expands lyocell capacity in Thailand",
    "A second lyocell line at Prachinburi adds 100,000 tonnes a year from 2027.",
)
DIGEST = "de37bc40ed648ebd538ffa9837e87455af1db5ebfcf2330d66748517186e53c8"


def test_tokens_split_latin_words_and_chinese_characters() -> None:
    assert tokens("ICE Cotton 棉花期货, source: Reuters") == [
        "ice",
        "cotton",
        "棉",
        "花",
        "期",
        "货",
        "reuters",
    ]


def test_shingles_are_adjacent_pairs_without_boilerplate() -> None:
    assert shingles("Cotton prices rise", "") == frozenset({"cotton prices", "prices rise"})
    assert "棉 花" in shingles("郑州棉花", "")


def test_repost_with_prefix_and_boilerplate_is_the_same_story() -> None:
    a = shingles(
        "Karl Mayer unveils warp knitting machine",
        "The machine detects faults with a camera and stops before a defect spreads.",
    )
    b = shingles(
        "Global Observation: Karl Mayer Unveils Warp Knitting Machine",
        "The machine detects faults with a camera and stops before a defect spreads. "
        "Click here to subscribe.",
    )
    same, similarity = same_story(a, b, SETTINGS)
    assert same and similarity > 0.7


def test_different_weekly_reports_are_different_stories() -> None:
    a = shingles(
        "Weekly cotton report: ICE futures rose to 71.4 cents",
        "ICE cotton futures rose 1.8 cents to 71.4 cents a pound in the week to November 21.",
    )
    b = shingles(
        "Weekly cotton report: ICE futures fell to 69.6 cents",
        "ICE cotton futures fell 1.1 cents to 69.6 cents a pound in the week to November 14.",
    )
    assert not same_story(a, b, SETTINGS)[0]


def test_short_texts_need_more_evidence() -> None:
    a, b = shingles("Cotton prices rise in Asia", ""), shingles("Cotton prices rise in India", "")
    similarity = same_story(a, b, ClusterSettings(short_text_margin=0))[1]
    assert same_story(a, b, ClusterSettings(threshold=similarity, short_text_margin=0))[0]
    assert not same_story(a, b, ClusterSettings(threshold=similarity))[0]  # margin applies


def test_primary_is_the_original_publisher_then_the_earliest_then_priority() -> None:
    portal = Member(
        item_id=1, published_at=NOW, source_name="Portal", original_publisher="Hebei Daily"
    )
    paper = Member(
        item_id=2,
        published_at=NOW + timedelta(hours=3),
        source_name="Hebei Daily",
        original_publisher=None,
    )
    other = Member(
        item_id=3,
        published_at=NOW - timedelta(hours=1),
        source_name="Other",
        original_publisher=None,
    )
    assert primary([portal, paper, other]) == paper  # named as the original: first
    assert primary([portal, other]) == other  # else the earliest
    tied = Member(
        item_id=4,
        published_at=other.published_at,
        source_name="Trusted",
        original_publisher=None,
        priority=5,
    )
    assert primary([other, tied]) == tied  # ties: the higher priority


def test_signatures_do_not_change_unnoticed() -> None:
    """Stored band keys derive from signatures: a change to the hashing (even a numpy
    upgrade behaving differently) would stop stored items matching new reposts, so
    it needs a migration rebuilding item_bands (as migration 9 did). The digest was
    taken from the scheme migration 9 introduced."""
    cases = [
        ("Lenzing expands lyocell capacity in Thailand", "A second lyocell line at Prachinburi."),
        ("棉花价格上涨", "新疆棉花采摘进度落后"),
        ("One", ""),
        ("", ""),
    ]
    joined = b"".join(signature(title, text) for title, text in cases)
    assert hashlib.sha256(joined).hexdigest() == DIGEST
    assert signature("", "") == b"\xff" * 512  # nothing seen: every minimum is "none"


def test_signatures_estimate_the_jaccard_similarity_of_the_shingles() -> None:
    """The share of equal minima estimates the Jaccard similarity of what ``shingles``
    gives (128 permutations: a standard error of at most 0.045)."""
    base = [
        "Hebei",
        "Qinghe",
        "cashmere",
        "makers",
        "sign",
        "export",
        "deals",
        "worth",
        "300",
        "million",
        "yuan",
        "at",
        "the",
        "autumn",
        "fair",
        "as",
        "European",
        "buyers",
        "return",
        "and",
        "spinners",
        "in",
        "Inner",
        "Mongolia",
        "raise",
        "dehairing",
        "output",
    ]
    rng = random.Random(5)
    for _ in range(30):
        edited = [w for w in base if rng.random() > rng.choice((0.05, 0.2, 0.4))]
        edited += rng.sample(["wool", "yarn", "price", "demand", "knit", "loom"], rng.randint(0, 4))
        a, b = " ".join(base), " ".join(edited)
        exact = jaccard(shingles("", a), shingles("", b))
        mine, theirs = (np.frombuffer(signature("", t), dtype="<u4") for t in (a, b))
        estimate = float(np.mean(mine == theirs))
        assert abs(estimate - exact) < 0.16, (exact, estimate)


def test_signatures_see_exactly_the_shingles() -> None:
    # Boilerplate words, case and punctuation are not shingles; word order is.
    assert signature("Cotton Prices", "rise, (source: Reuters)") == signature(
        "cotton prices", "rise reuters"
    )
    assert signature("prices cotton", "rise") != signature("cotton prices", "rise")


def test_band_keys_find_reposts_not_strangers() -> None:
    minhash = signature(*TEXT)
    assert len(minhash) == 512
    keys = band_keys(minhash)
    assert len(keys) == 32 and len(set(keys)) == 32
    assert all(0 <= key < 2**63 for key in keys)  # fits every database's BIGINT
    repost = (
        "Lenzing expands lyocell capacity in Thailand (source: Reuters)",
        "A second lyocell line at Prachinburi adds 100,000 tonnes a year from 2027. More news",
    )
    stranger = ("Cotton futures fall in New York", "Weak demand from spinners in Asia.")
    shared = set(keys) & set(band_keys(signature(*repost)))
    assert shared, "a light edit keeps most bands"
    assert not set(keys) & set(band_keys(signature(*stranger)))


def _blob(keys: list[int]) -> bytes:
    return np.array(keys, dtype="<i8").tobytes()


def test_band_blob_packs_the_band_keys() -> None:
    assert keys_of(band_blob(signature(*TEXT))) == band_keys(signature(*TEXT))


def _pairs(found: dict[int, Holders]) -> dict[int, list[tuple[int, int]]]:
    """key -> [(item id, published)]; each key's holders come in publishing order."""
    for _, published in found.values():
        assert published == sorted(published)
    return {key: list(zip(ids, published, strict=True)) for key, (ids, published) in found.items()}


def test_band_index_finds_items_sharing_a_key_within_the_window() -> None:
    index = BandIndex()
    index.add([(1, 100, _blob([5, 6])), (2, 200, _blob([6, 7])), (3, 900, _blob([6]))])
    assert _pairs(index.matches([6, 8], 100, 200)) == {6: [(1, 100), (2, 200)]}  # 3 is too late
    assert _pairs(index.matches([5, 7, 9], 0, 1000)) == {5: [(1, 100)], 7: [(2, 200)]}
    assert _pairs(index.matches([], 0, 1000)) == {}
    assert len(index) == 3 and 2 in index and 4 not in index


def test_band_index_leaves_out_keys_held_by_too_many_items_in_the_window() -> None:
    """A key more than ``most`` items of the window hold marks a template: it is left
    out before its holders are listed (thousands of them, in Python, were a quarter of
    a cold cycle's polling process)."""
    index = BandIndex()
    index.add([(i, 100 + i, _blob([5, 10 + i])) for i in range(1, 5)])
    index.add([(9, 900, _blob([5]))])
    assert _pairs(index.matches([5, 11], 0, 1000, most=4)) == {11: [(1, 101)]}  # 5 items hold 5
    assert _pairs(index.matches([5], 0, 200, most=4)) == {
        5: [(1, 101), (2, 102), (3, 103), (4, 104)]
    }
    assert len(_pairs(index.matches([5], 0, 1000))) == 1  # no limit


def test_band_index_skips_items_it_has_and_items_without_keys() -> None:
    """A refresh reads back what the cycle itself added: no item may count twice."""
    index = BandIndex()
    index.add([(1, 100, _blob([5]))])
    index.add([(1, 100, _blob([5])), (2, 100, b"")])
    assert _pairs(index.matches([5], 0, 1000)) == {5: [(1, 100)]}
    assert len(index) == 1


@pytest.mark.parametrize(
    ("run_limit", "filter_bits"), [(minhash.RUN_LIMIT, minhash.FILTER_BITS), (300, 21), (300, 3)]
)
def test_band_index_agrees_with_a_plain_dict_over_many_merged_runs(
    run_limit: int, filter_bits: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of different sizes make runs that merge (up to the run size limit, then
    with a bit filter: 3 bits make every filter full of collisions); every look-up must
    still find exactly what a dict of all keys holds."""
    monkeypatch.setattr(minhash, "RUN_LIMIT", run_limit)
    monkeypatch.setattr(minhash, "FILTER_BITS", filter_bits)
    monkeypatch.setattr(minhash, "FILTER_MASK", (1 << filter_bits) - 1)
    draw = random.Random(3)
    universe = [draw.getrandbits(62) for _ in range(5000)]
    index = BandIndex()
    reference: dict[int, list[tuple[int, int]]] = {}
    item_id = 0
    for _batch in range(300):
        rows = []
        for _ in range(draw.choice([1, 2, 5, 45])):
            item_id += 1
            published = draw.randrange(0, 1000)
            keys = draw.sample(universe, 4)
            rows.append((item_id, published, _blob(keys)))
            for key in keys:
                reference.setdefault(key, []).append((item_id, published))
        index.add(rows)
        if _batch % 50 == 0:
            query = draw.sample(universe, 200)
            got = _pairs(index.matches(query, 300, 700))
            want = {
                key: [hit for hit in reference.get(key, []) if 300 <= hit[1] <= 700]
                for key in query
            }
            assert {k: sorted(v) for k, v in got.items()} == {k: v for k, v in want.items() if v}
    runs = [len(run.keys) for run in index._runs]
    if run_limit > sum(runs):
        assert len(runs) < 12  # merged as it grew (about log2 of the batches)
    else:
        assert len(runs) > 12 and max(runs) < 3 * run_limit
        assert all(run.filter is not None for run in index._runs if len(run.keys) >= run_limit)


def test_reports_in_one_template_with_other_figures_are_other_stories() -> None:
    """Daily quotations of consecutive days share most words; their figures differ
    (the hidden set's false positives were all such reports, chained into one story)."""
    from aggregator.cluster import same_story_texts

    template = (
        "PSF market review ({day}): 1.4D direct-spun polyester staple fibre was quoted at "
        "{price} yuan/ton in East China, {change} yuan/ton from the previous day, as "
        "downstream spinners bought on demand and PTA futures {move}."
    )
    monday = template.format(day="March 3", price="7,420", change="down 30", move="fell")
    tuesday = template.format(day="March 4", price="7,465", change="up 45", move="rose")
    evidence = same_story_texts("PSF daily review", monday, "PSF daily review", tuesday, SETTINGS)
    assert evidence.similarity >= SETTINGS.threshold  # the words alone would join them
    assert not evidence.same and evidence.reason == "words alike, figures differ"
    assert same_story_texts("PSF daily review", monday, "PSF review", monday, SETTINGS).same


def test_the_same_figures_in_other_words_are_one_story() -> None:
    """Clean English against machine-translated English of one report: few word pairs
    in common (Jaccard 0.16-0.23 on the outside pairs), the same figures."""
    from aggregator.cluster import same_story_texts

    clean = ("Zhengzhou cotton falls 120 yuan as mills sit on high yarn stocks",
             "The main contract closed at 13,615 yuan/ton, down 120. The China Cotton Index "
             "3128B stood at 14,560 and commercial stocks reached 523,000 tonnes.")  # fmt: skip
    translated = ("Zheng cotton daily review: main contract closed down 120 yuan/ton",
                  "Zhengzhou main contract closed 13615 yuan/ton, fell 120 yuan. CC Index "
                  "3128B reported 14560 yuan/ton; commercial inventory 523000 tons.")  # fmt: skip
    evidence = same_story_texts(*clean, *translated, SETTINGS)
    assert evidence.similarity < SETTINGS.threshold
    assert evidence.same and evidence.reason == "same figures, other words"
    # A follow-up with new facts shares some figures only: not the same story.
    follow_up = ("Zhengzhou cotton rebounds 90 yuan", "The main contract closed at 13,705, up "
                 "90, after 120 down yesterday; stocks fell to 511,000 tonnes.")  # fmt: skip
    assert not same_story_texts(*clean, *follow_up, SETTINGS).same


def test_every_report_of_a_story_is_listed_on_its_entry() -> None:
    """A member whose source also carried the lead was left out of "Also reported
    by": a report no subscriber could reach (issue 16, hidden reports)."""
    from aggregator.models import SourceRef, StoredItem
    from aggregator.stories import story_entry

    def report(item_id: int, source: str, link: str, hours: int) -> StoredItem:
        ref = SourceRef(source_id=source, name=source.title(), home_url=None,
                        feed_url="https://x/feed", link=link)  # fmt: skip
        return StoredItem(
            item_id=item_id, public_id=f"urn:{item_id}", link=link, title="t",
            summary_html="", summary_text="", published_at=NOW + timedelta(hours=hours),
            updated_at=NOW, author=None, categories=(), sources=(ref,), topics=("t",),
        )  # fmt: skip

    members = [
        report(1, "portal", "https://portal/1", 0),
        report(2, "portal", "https://portal/2", 1),  # the same portal, a second report
        report(3, "wire", "https://wire/3", 2),
        report(4, "wire", "https://wire/3", 3),  # one link twice: listed once
    ]
    entry = story_entry("urn:story", members, {})
    assert entry.link == "https://portal/1"
    assert [ref.link for ref in entry.related] == ["https://portal/2", "https://wire/3"]


def test_a_chinese_and_an_english_version_are_one_story_by_their_figures() -> None:
    """zh<->en versions share no word pairs; figures survive translation, units and
    scales aside (亿 against billion)."""
    from aggregator.cluster import same_story_texts

    zh = ("海关总署：前三季度纺织服装出口2205亿美元 同比微降0.8%",
          "其中纺织品出口1065亿美元，同比增长1.2%，服装出口1140亿美元，同比下降2.6%。")  # fmt: skip
    en = ("China's textile and apparel exports total $220.5bn in first three quarters",
          "Exports fell 0.8%: textiles 1065 at $106.5bn (+1.2%) and garments 1140 "
          "down 2.6%, customs data show.")  # fmt: skip
    evidence = same_story_texts(*zh, *en, SETTINGS)
    assert evidence.same and evidence.reason == "same figures, other language"
    other = ("China's textile exports rise 3.1% in October", "Garments up 4.4%, textiles 1.9%.")
    assert not same_story_texts(*zh, *other, SETTINGS).same


def test_a_translation_states_its_figures_in_other_units() -> None:
    """117.8 亿元 is 11.78 billion yuan: compared by significant digits across
    languages (zh<->en pairs found through a cycle: 13 -> 19 of 30)."""
    from aggregator.cluster import judge, scale_free, significant_digits

    assert significant_digits("117.8") == significant_digits("11.78") == "1178"
    assert scale_free(frozenset({"12000", "1.2", "7"})) == frozenset({"12"})
    zh = frozenset({"117.8", "123.5", "241.3", "3.4", "2025"})
    en = frozenset({"11.78", "12.35", "24.13", "3.4", "3.6"})
    assert judge(0.0, 0.45, zh, en, cross_lingual=True).same
    assert not judge(0.0, 0.45, zh, en, cross_lingual=False).same  # one language: exact
    other = frozenset({"98.6", "14.87", "3.2", "2025"})
    assert not judge(0.0, 0.45, zh, other, cross_lingual=True).same
