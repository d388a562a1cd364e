"""publish: RSS and Atom with attribution, stable bytes, atomic writes."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from aggregator.config import Settings, TopicConfig
from aggregator.errors import PublishError
from aggregator.models import SourceRef, StoredItem
from aggregator.publish import publish_topic, render_atom, render_rss, write_if_changed

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SETTINGS = Settings.model_validate({"base_url": "https://feeds.example.org/textile/"})
TOPIC = TopicConfig.model_validate(
    {"slug": "cotton", "title": "Cotton & Fibre", "description": "Cotton news", "include": ["x"]}
)
TITLES = {"cotton": "Cotton & Fibre", "asia": "Asian Markets"}
F2F = SourceRef(
    source_id="f2f", name="Fibre2Fashion", home_url="https://www.fibre2fashion.com/",
    feed_url="https://feeds.feedburner.com/fibre2fashion", link="https://f2f.example/a",
)  # fmt: skip
SNAP = SourceRef(
    source_id="snap", name="Snapshot & Co", home_url="https://snap.example/",
    feed_url="snapshots/x.rss", link="https://snap.example/a",
)  # fmt: skip


def stored(n: int, *refs: SourceRef, **kw: object) -> StoredItem:
    values: dict[str, object] = {
        "item_id": n, "public_id": f"urn:uuid:00000000-0000-5000-8000-00000000000{n}",
        "link": f"https://f2f.example/{n}", "title": f"Cotton story {n}",
        "summary_html": "<p>Body <b>bold</b></p>", "summary_text": "Body bold",
        "published_at": NOW - timedelta(hours=n), "updated_at": NOW - timedelta(hours=n),
        "author": None, "categories": (), "sources": refs or (F2F,), "topics": ("asia", "cotton"),
    }  # fmt: skip
    values.update(kw)
    return StoredItem(**values)  # type: ignore[arg-type]


ITEMS = [stored(1, F2F, SNAP), stored(2, SNAP, author="Lee")]


def test_rss_channel_entries_and_attribution() -> None:
    feed = feedparser.parse(render_rss(TOPIC, ITEMS, settings=SETTINGS, titles=TITLES))
    assert feed.version == "rss20"
    assert not feed.bozo
    assert feed.feed.title == "Textile Feeds: Cotton & Fibre"
    # The channel <link> must be the website, not the self link (a feedgen trap).
    assert feed.feed.link == "https://feeds.example.org/textile/"
    self_links = [link.href for link in feed.feed.links if link.rel == "self"]
    assert self_links == ["https://feeds.example.org/textile/cotton.rss"]
    first, second = feed.entries
    assert first.id == ITEMS[0].public_id
    assert first.link == "https://f2f.example/1"
    assert first.source == {
        "href": "https://feeds.feedburner.com/fibre2fashion",
        "title": "Fibre2Fashion",
    }
    assert 'Source: <a href="https://f2f.example/a">Fibre2Fashion</a>' in first.summary
    assert (
        'Also carried by: <a href="https://snap.example/a">Snapshot &amp; Co</a>' in first.summary
    )
    assert [t.term for t in first.tags] == ["Asian Markets", "Cotton & Fibre"]
    # A snapshot source has no public feed URL: its site stands in.
    assert second.source.href == "https://snap.example/"
    assert feed.feed.ttl == "30"


def test_atom_source_has_id_and_updated() -> None:
    document = render_atom(TOPIC, ITEMS, settings=SETTINGS, titles=TITLES)
    feed = feedparser.parse(document)
    assert feed.version == "atom10"
    assert not feed.bozo
    assert feed.feed.id == "https://feeds.example.org/textile/cotton.atom"
    assert [link.href for link in feed.feed.links if link.rel == "self"] == [
        "https://feeds.example.org/textile/cotton.atom"
    ]
    root = etree.fromstring(document)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    sources = root.findall("a:entry/a:source", ns)
    assert [s.findtext("a:title", namespaces=ns) for s in sources] == [
        "Fibre2Fashion",
        "Snapshot & Co",
    ]
    assert [s.findtext("a:id", namespaces=ns) for s in sources] == [
        "https://feeds.feedburner.com/fibre2fashion",
        "https://snap.example/",
    ]
    assert all(s.findtext("a:updated", namespaces=ns) for s in sources)
    summary = root.find("a:entry/a:summary", ns)
    assert summary is not None and summary.get("type") == "html"
    assert feed.entries[1].author == "Lee"
    assert feed.entries[0].published_parsed[:4] == (2026, 11, 26, 11)


def test_rendering_is_deterministic_and_newest_item_dates_the_feed() -> None:
    one = render_rss(TOPIC, ITEMS, settings=SETTINGS, titles=TITLES)
    two = render_rss(TOPIC, list(ITEMS), settings=SETTINGS, titles=TITLES)
    assert one == two
    assert b"<lastBuildDate>Thu, 26 Nov 2026 11:00:00 +0000</lastBuildDate>" in one


def test_empty_topic_renders_a_valid_feed() -> None:
    for document in (
        render_rss(TOPIC, [], settings=SETTINGS, titles=TITLES),
        render_atom(TOPIC, [], settings=SETTINGS, titles=TITLES),
    ):
        feed = feedparser.parse(document)
        assert not feed.bozo
        assert feed.entries == []


def test_publish_writes_once_then_leaves_files_alone(tmp_path: Path) -> None:
    first = publish_topic(TOPIC, ITEMS, settings=SETTINGS, titles=TITLES, output_dir=tmp_path)
    assert sorted(p.name for p in first.written) == ["cotton.atom", "cotton.rss"]
    stats = {p: p.stat().st_mtime_ns for p in first.written}
    assert all(oct(p.stat().st_mode)[-3:] == "644" for p in first.written)
    again = publish_topic(TOPIC, ITEMS, settings=SETTINGS, titles=TITLES, output_dir=tmp_path)
    assert again.written == ()
    assert {p: p.stat().st_mtime_ns for p in first.written} == stats
    changed = publish_topic(
        TOPIC, [stored(3), *ITEMS], settings=SETTINGS, titles=TITLES, output_dir=tmp_path
    )
    assert len(changed.written) == 2


def test_failed_write_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cotton.rss"
    target.write_bytes(b"old")

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(PublishError, match="No space left on device"):
        write_if_changed(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cotton.rss"]


def test_hostile_text_still_gives_well_formed_xml() -> None:
    hostile = stored(
        1,
        title="A ]]> B & <C>",
        summary_html="<p>x ]]&gt; y &amp; &lt;z&gt;</p>",
    )
    for document in (
        render_rss(TOPIC, [hostile], settings=SETTINGS, titles=TITLES),
        render_atom(TOPIC, [hostile], settings=SETTINGS, titles=TITLES),
    ):
        etree.fromstring(document)  # raises if not well-formed
        assert feedparser.parse(document).entries[0].title == "A ]]> B & <C>"
