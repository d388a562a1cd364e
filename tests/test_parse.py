"""parse_feed: every supported format to a ParsedFeed; everything else to ParseError."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.errors import ParseError
from aggregator.models import FetchOutcome, FetchResult
from aggregator.parse import parse_feed


def fetched(path: Path, content_type: str = "") -> FetchResult:
    headers = (("content-type", content_type),) if content_type else ()
    return FetchResult(
        source_id="test",
        url="https://example.org/feed",
        outcome=FetchOutcome.OK,
        body=path.read_bytes(),
        headers=headers,
    )


@pytest.mark.parametrize(
    ("name", "version", "title", "first_title"),
    [
        ("rss20.xml", "rss20", "Loom Weekly", "Cotton futures rise &amp; spinners hold back"),
        ("rss091.xml", "rss091n", "Old Mill Gazette", "Worsted spinners in Bradford add a shift"),
        ("rss10.rdf", "rss10", "Fibre Research Notes", "Recyclable aramid composites"),
        ("atom10.xml", "atom10", "Nonwovens Today", "Spunbond line <b>starts</b> in Gujarat"),
        ("atom03.xml", "atom03", "Dye House Diary", "Wastewater rules tighten for dye houses"),
        ("feed11.json", "json11", "Keqiao Fabric Market", "柯桥面料成交活跃"),
        ("feed10.json", "json10", "Wool Desk", "Merino auction firm"),
    ],
    ids=["rss2.0", "rss0.91", "rss1.0", "atom1.0", "atom0.3", "jsonfeed1.1", "jsonfeed1.0"],
)
def test_formats(data_dir: Path, name: str, version: str, title: str, first_title: str) -> None:
    feed = parse_feed(fetched(data_dir / name))
    assert feed.version == version
    assert feed.title.strip() == title
    assert feed.entries[0].title == first_title
    assert feed.entries[0].link


def test_rss_keeps_raw_guid_and_dates_for_normalize(data_dir: Path) -> None:
    entry = parse_feed(fetched(data_dir / "rss20.xml")).entries[0]
    # feedparser would resolve "1001" against a base URL; we never give it one.
    assert entry.guid == "1001"
    assert entry.published_raw == "Wed, 25 Nov 2026 09:40:00 GMT"
    assert entry.categories == ("Markets",)
    assert "<script>" in entry.summary_html  # sanitizing is normalize's job


def test_atom_html_title_and_author(data_dir: Path) -> None:
    entry = parse_feed(fetched(data_dir / "atom10.xml")).entries[0]
    assert entry.title_is_html
    assert entry.author == "Priya Nair"
    assert "<em>hygiene</em>" in entry.summary_html
    assert entry.updated_raw == "2026-11-25T15:00:00Z"


def test_json_feed_numeric_id_text_content_and_authors(data_dir: Path) -> None:
    feed = parse_feed(fetched(data_dir / "feed11.json", "application/feed+json"))
    first, second = feed.entries
    assert first.guid == "42"
    assert first.author == "编辑部"
    assert first.language == "zh-CN"
    assert second.published_raw is None
    assert second.summary_html == "<p>Plain text body.</p><p>Second paragraph.</p>"


def test_json_feed_1_0_author_object(data_dir: Path) -> None:
    entry = parse_feed(fetched(data_dir / "feed10.json")).entries[0]
    assert entry.author == "Sam Lee"
    assert entry.summary_html == "<p>Prices firm.</p>"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not-a-feed.html", "HTML page"),
        ("truncated.xml", "truncated document"),
    ],
)
def test_unreadable_documents_raise_parse_error(data_dir: Path, name: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as raised:
        parse_feed(fetched(data_dir / name))
    assert raised.value.source_id == "test"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty response body"),
        (b"{not json", "invalid JSON"),
        (
            b'{"version": "https://jsonfeed.org/version/9", "items": []}',
            "unknown JSON Feed version",
        ),
        (b'{"title": "no items"}', "no 'items' list"),
    ],
    ids=["empty", "bad-json", "json-version", "json-no-items"],
)
def test_broken_bodies(body: bytes, message: str) -> None:
    result = FetchResult(source_id="s", url="u", outcome=FetchOutcome.OK, body=body)
    with pytest.raises(ParseError, match=message):
        parse_feed(result)


def test_valid_empty_feed_is_not_an_error() -> None:
    body = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
    result = FetchResult(source_id="s", url="u", outcome=FetchOutcome.OK, body=body)
    assert parse_feed(result).entries == ()


def test_http_charset_is_honoured() -> None:
    body = '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>Öko-Tex</title><link>http://x.org/a</link></item></channel></rss>'.encode(
        "latin-1"
    )
    result = FetchResult(
        source_id="s",
        url="u",
        outcome=FetchOutcome.OK,
        body=body,
        headers=(("content-type", "application/rss+xml; charset=iso-8859-1"),),
    )
    assert parse_feed(result).entries[0].title == "Öko-Tex"


def test_rss_source_dc_source_and_atom_source_name_the_original_publisher() -> None:
    from aggregator.models import FetchOutcome, FetchResult
    from aggregator.parse import parse_feed

    rss = (
        b'<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        b"<channel><title>t</title>"
        b'<item><title>A</title><link>http://a/1</link><source url="http://h/rss">Hebei Daily'
        b"</source></item><item><title>B</title><link>http://a/2</link>"
        b"<dc:source>Xinhua</dc:source></item><item><title>C</title><link>http://a/3</link>"
        b"<dc:source>http://only.a/url</dc:source></item></channel></rss>"
    )
    atom = (
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        b"<id>x</id><updated>2025-01-01T00:00:00Z</updated><entry><title>D</title><id>d</id>"
        b'<updated>2025-01-01T00:00:00Z</updated><link href="http://a/4"/><source>'
        b"<title>Reuters</title><id>r</id></source></entry></feed>"
    )
    found = []
    for body in (rss, atom):
        result = FetchResult(source_id="s", url="http://a/", outcome=FetchOutcome.OK, body=body)
        found += [e.original_publisher for e in parse_feed(result).entries]
    assert found == ["Hebei Daily", "Xinhua", None, "Reuters"]
