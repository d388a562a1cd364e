"""normalize: canonical links, dates, titles, sanitized HTML and dedupe keys (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from aggregator.models import ParsedEntry
from aggregator.normalize import (
    canonical_url,
    clean_title,
    html_to_text,
    normalize_entry,
    parse_date,
    sanitize_html,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def entry(**overrides: object) -> ParsedEntry:
    values: dict[str, object] = {
        "guid": None,
        "link": "https://news.example.com/a",
        "title": "Cotton prices rise",
        "title_is_html": False,
        "summary_html": "<p>Body</p>",
        "published_raw": "Wed, 25 Nov 2026 09:40:00 GMT",
        "updated_raw": None,
        "author": None,
        "categories": (),
        "language": "en",
    }
    values.update(overrides)
    return ParsedEntry(**values)  # type: ignore[arg-type]


def normalize(**overrides: object):  # type: ignore[no-untyped-def]
    return normalize_entry(
        entry(**overrides),
        source_id="src",
        base_url="https://news.example.com/feed/",
        timezone=SHANGHAI,
        now=NOW,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://WWW.Example.COM/a?b=2&a=1#frag", "http://www.example.com/a?a=1&b=2"),
        ("https://example.com:443/x", "https://example.com/x"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        (
            "https://example.com/n?id=5&utm_source=feedburner&utm_medium=rss&fbclid=abc&gclid=1",
            "https://example.com/n?id=5",
        ),
        ("/relative/path", "https://news.example.com/relative/path"),
        ("story.html", "https://news.example.com/feed/story.html"),
        ("javascript:alert(1)", None),
        ("mailto:editor@example.com", None),
        ("", None),
        ("https://例子.中国/新闻", "https://xn--fsqu00a.xn--fiqs8s/%E6%96%B0%E9%97%BB"),
    ],
)
def test_canonical_url(raw: str, expected: str | None) -> None:
    assert canonical_url(raw, "https://news.example.com/feed/") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Wed, 25 Nov 2026 09:40:00 GMT", datetime(2026, 11, 25, 9, 40, tzinfo=UTC)),
        ("Tue, 24 Nov 2026 08:00:00 +0800", datetime(2026, 11, 24, 0, 0, tzinfo=UTC)),
        ("2026-11-24T10:00:00+01:00", datetime(2026, 11, 24, 9, 0, tzinfo=UTC)),
        ("2026-11-24T10:00:00Z", datetime(2026, 11, 24, 10, 0, tzinfo=UTC)),
        # No zone written: the source's zone applies (China time, UTC+8).
        ("2022/11/24 18:25:00", datetime(2022, 11, 24, 10, 25, tzinfo=UTC)),
        ("2023/9/25 19:51:00", datetime(2023, 9, 25, 11, 51, tzinfo=UTC)),
        ("2026-11-23", datetime(2026, 11, 22, 16, 0, tzinfo=UTC)),
        ("Tue, 20 Jan 1789 00:00:00 +0000", None),
        ("11/03/2025 – Sustainability", None),
        ("not a date", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_date(raw: str | None, expected: datetime | None) -> None:
    assert parse_date(raw, SHANGHAI) == expected


def test_future_dates_are_clamped_and_missing_dates_use_first_seen() -> None:
    future = normalize(published_raw="Fri, 01 Jan 2099 10:00:00 +0000")
    assert future is not None
    assert future.published_at == NOW
    assert not future.date_missing
    missing = normalize(published_raw=None)
    assert missing is not None
    assert missing.published_at == NOW
    assert missing.date_missing


def test_updated_never_before_published() -> None:
    item = normalize(published_raw="2026-11-25T10:00:00Z", updated_raw="2026-11-20T10:00:00Z")
    assert item is not None
    assert item.updated_at == item.published_at


@pytest.mark.parametrize(
    ("raw", "is_html", "expected"),
    [
        ("  Cotton\n\tprices   rise ", False, "Cotton prices rise"),
        ("Cotton &amp;amp; wool", True, "Cotton & wool"),
        ("AT&amp;T &#8211; results", False, "AT&T – results"),
        ("Spunbond <b>starts</b>", True, "Spunbond starts"),
        ("Bell\x07 and \x00null", False, "Bell and null"),
        ("Price < $1 & rising", False, "Price < $1 & rising"),
    ],
)
def test_clean_title(raw: str, is_html: bool, expected: str) -> None:
    assert clean_title(raw, is_html=is_html) == expected


def test_clean_title_shortens_very_long_titles() -> None:
    title = clean_title("word " * 1000, is_html=False)
    assert len(title) <= 300
    assert title.endswith("…")


def test_sanitize_removes_scripts_and_handlers_and_resolves_links() -> None:
    dirty = (
        '<p onclick="steal()">Hi <a href="/markets">m</a> <img src="img/c.png" onerror="x()">'
        '<a href="javascript:alert(1)">bad</a></p><script>alert(1)</script><!-- c -->'
    )
    clean = sanitize_html(dirty, base_url="https://news.example.com/n/1.html")
    assert "script" not in clean
    assert "onclick" not in clean and "onerror" not in clean
    assert "javascript" not in clean
    assert "<!--" not in clean
    assert 'href="https://news.example.com/markets"' in clean
    assert 'src="https://news.example.com/n/img/c.png"' in clean


def test_html_to_text_keeps_block_boundaries() -> None:
    assert html_to_text("<p>One&nbsp;two</p><p>three</p>", 100) == "One two three"


def test_numeric_guid_is_scoped_to_its_source_and_link_is_global() -> None:
    item = normalize(guid="312398")
    assert item is not None
    assert item.keys == ("link:https://news.example.com/a", "guid:src:312398")


def test_permalink_guid_is_a_global_key() -> None:
    item = normalize(link=None, guid="https://news.example.com/story?utm_source=x")
    assert item is not None
    assert item.keys == ("link:https://news.example.com/story",)


def test_entry_without_link_or_guid_gets_a_content_key() -> None:
    item = normalize(link=None)
    assert item is not None
    assert item.keys[0].startswith("hash:src:")


@pytest.mark.parametrize(
    "markup",
    ["", "   ", "<svg><circle r='4'/></svg>", "<math><mi>x</mi></math>", "<script>x()</script>"],
    ids=["empty", "blank", "svg", "mathml", "script"],
)
def test_entry_with_nothing_to_show_is_dropped(markup: str) -> None:
    assert normalize(link=None, title="", summary_html=markup) is None


def test_image_only_entries_are_kept_and_told_apart() -> None:
    """Entries whose only content is an image, with no title and no link, were dropped
    (647 feedparser fixtures lost entries that way); a reader shows the image."""
    first = normalize(link=None, title="", summary_html='<img src="/a.png" alt="New loom line">')
    second = normalize(link=None, title="", summary_html='<img src="/b.png">')
    third = normalize(link=None, title="", summary_html='<img src="/c.png">')
    assert first is not None and second is not None and third is not None
    assert first.title == "New loom line"
    assert second.title == third.title == "(untitled)"
    assert 'src="https://news.example.com/b.png"' in second.summary_html
    assert second.keys != third.keys  # two image posts are two items


def test_untitled_entry_borrows_its_summary() -> None:
    item = normalize(title="", summary_html="<p>Mills in Surat restart looms</p>")
    assert item is not None
    assert item.title == "Mills in Surat restart looms"


def test_content_hash_tracks_visible_content() -> None:
    first, again, edited = normalize(), normalize(), normalize(title="Cotton prices fall")
    assert first is not None and again is not None and edited is not None
    assert first.content_hash == again.content_hash
    assert first.content_hash != edited.content_hash


@pytest.mark.parametrize(
    ("summary", "publisher", "left"),
    [
        ("Prices rose 8%. (source: Dhaka Trade Herald)", "Dhaka Trade Herald", "Prices rose 8%."),
        (
            "Output rose. Source: Fibre Asia Daily. Related reading: more",
            "Fibre Asia Daily",
            "Output rose. Related reading: more",
        ),
        (
            "门店面积420平方米。（来源：Fashion Retail Brief）点击关注",
            "Fashion Retail Brief",
            "门店面积420平方米。 点击关注",
        ),
        ("羊绒价格持平。（来源：河北日报）", "河北日报", "羊绒价格持平。"),
        ("来源：纺织服装周刊 责任编辑：王", "纺织服装周刊", "责任编辑：王"),
        ("Yarn output fell. (SOURCE: Textile Gazette)", "Textile Gazette", "Yarn output fell."),
        ("棉价回落。（来自：中国纺织报）", "中国纺织报", "棉价回落。"),
        ("稿源：新疆日报 编辑：李", "新疆日报", "编辑：李"),
        ("Open source: code for looms", None, "Open source: code for looms"),  # not a credit
        ("The source of the yarn is Egypt.", None, "The source of the yarn is Egypt."),
    ],
)
def test_the_credit_line_names_the_publisher_and_leaves_the_text(
    summary: str, publisher: str | None, left: str
) -> None:
    """Feed sources carry "(source: X)" lines as html ones do; they were only read for
    html sources (0 of 81 outside items credited). The line is left out of the text
    that topics and story similarity see."""
    item = normalize(summary_html=f"<p>{summary}</p>", link=None)
    assert item is not None
    assert item.original_publisher == publisher
    assert item.summary_text == left


def test_a_named_source_from_the_feed_wins_and_names_are_normalized() -> None:
    item = normalize(original_publisher="  Hebei  Daily. ", summary_html="<p>(source: Other)</p>")
    assert item is not None and item.original_publisher == "Hebei Daily"
    full_width = normalize(summary_html="<p>价格持平。（来源：ＸＹＺ　Ｎｅｗｓ）</p>")
    assert full_width is not None and full_width.original_publisher == "XYZ News"


def test_plain_urls_skip_canonicalization_without_changing_it() -> None:
    """The fast path for links already canonical gives what the full canonicalization
    gives, for every URL near one it takes (one character inserted anywhere, case,
    ports, queries, dot segments, fragments); sanitizing keeps such a link as resolving
    it would."""
    import random
    from urllib.parse import urljoin

    import aggregator.normalize as normalize

    seeds = [
        "https://www.textile-news.example/2026/05/29/mills-strike/",
        "https://a.example/news/523516.html",
        "https://a.example/?p=523516",
        "http://b-c.example/x_y~z.php?id=7",
        "https://a.example",
    ]
    rng = random.Random(3)
    urls = set(seeds)
    for seed in seeds:
        for _ in range(400):
            chars = list(seed)
            chars.insert(rng.randrange(len(chars) + 1), rng.choice("aZ09-._~/?=&%#:;@+ Ü中"))
            urls.add("".join(chars))
        urls |= {seed.upper(), f"{seed}?utm_source=x", f"{seed}?b=2&a=1", f"{seed}/./x",
                 f"{seed}/../y", f"{seed}#top", f"{seed}:80", f"{seed}?UTM_medium=y"}  # fmt: skip
    taken = 0
    for url in sorted(urls):
        fast = normalize._plain_canonical(url)
        taken += fast is not None
        full = normalize.canonical_url(
            url.replace("https://", "HTTPS://", 1), "https://base.example/"
        )
        if fast is not None:
            assert fast == full, url
        if normalize._PLAIN_URL.fullmatch(url):  # a link sanitizing keeps as it is
            for base in ("https://base.example/dir/", "http://b.example", ""):
                assert urljoin(base, url) == url, (base, url)
    assert taken > 100
