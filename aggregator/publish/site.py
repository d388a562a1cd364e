"""The pages around the feeds: ``index.html`` for people, OPML lists for feed readers.

Like the feeds, they are pure functions of their inputs (dates come from the items),
so an unchanged site renders the same bytes. The front page needs no JavaScript and
reflows for phones; it carries ``<link rel="alternate">`` autodiscovery for every
feed in every format.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import format_datetime

import jinja2
from lxml import etree

from aggregator.cluster import chinese
from aggregator.config import AppConfig
from aggregator.models import StoredItem
from aggregator.publish.feeds import (
    ALL_TOPICS,
    EMPTY_FEED_DATE,
    FORMATS,
    FeedSpec,
    entry_link,
    feed_url,
    site_url,
)

HEADLINES_PER_TOPIC = 5

_LABELS = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("aggregator.publish", "templates"),
    autoescape=True,  # every title and name comes from the web
    trim_blocks=True,
    lstrip_blocks=True,
)


def _newest(feeds: Sequence[FeedSpec]) -> datetime:
    return max((i.updated_at for f in feeds for i in f.items), default=EMPTY_FEED_DATE)


def item_language(item: StoredItem) -> str | None:
    """ "zh" for an item with a Chinese title, on the English page (browsers and screen
    readers then pick Chinese fonts and voices for it); None otherwise."""
    return "zh" if chinese(item.title) else None


def render_index(config: AppConfig, feeds: Sequence[FeedSpec]) -> bytes:
    settings = config.settings

    def attribution(item: StoredItem) -> str:
        name = item.sources[0].name if item.sources else ""
        return f"{item.original_publisher} via {name}" if item.original_publisher else name

    page = _TEMPLATES.get_template("index.html").render(
        site_title=settings.site_title,
        feeds=feeds,
        formats=[(ext, kind, _LABELS[ext]) for ext, kind in FORMATS.items()],
        feed_url=lambda slug, ext: feed_url(settings, slug, ext),
        entry_link=lambda item: entry_link(item, settings),
        attribution=attribution,
        language=item_language,
        headlines=HEADLINES_PER_TOPIC,
        source_count=sum(1 for s in config.sources if s.enabled),
        updated=_newest(feeds).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    return page.encode("utf-8")


def render_topics_opml(config: AppConfig, feeds: Sequence[FeedSpec]) -> bytes:
    """OPML 2.0 (http://opml.org/spec2.opml) of every topic feed, Atom flavour. Not the
    all-topics feed (``render_all_opml``): its entries carry the topic feeds' ids, and a
    reader keeping one row per id (newsboat) showed every story under "all" and the
    topic feeds empty."""
    topics = [spec for spec in feeds if spec.slug != ALL_TOPICS]
    return _feed_list(config, f"{config.settings.site_title}: topics", topics)


def render_all_opml(config: AppConfig, feeds: Sequence[FeedSpec]) -> bytes:
    """OPML 2.0 of the all-topics feed alone, for those who want one feed."""
    everything = [spec for spec in feeds if spec.slug == ALL_TOPICS]
    return _feed_list(config, f"{config.settings.site_title}: all topics", everything)


def _feed_list(config: AppConfig, title: str, listed: Sequence[FeedSpec]) -> bytes:
    body = _opml(title, _lists_modified(config))
    for spec in listed:
        etree.SubElement(
            body, "outline", type="rss", text=spec.title, title=spec.title,
            xmlUrl=feed_url(config.settings, spec.slug, "atom"),
            htmlUrl=f"{site_url(config.settings)}#{spec.slug}", description=spec.description,
        )  # fmt: skip
    return _serialize(body)


def render_sources_opml(config: AppConfig) -> bytes:
    """OPML 2.0 of the sources we read that a reader can subscribe to: their feeds.
    Scraped portals and local snapshot files have none to share (listed as links,
    newsboat subscribed to their home pages as if they were feeds)."""
    body = _opml(f"{config.settings.site_title}: sources", _lists_modified(config))
    for source in config.sources:
        if not source.enabled or source.type != "feed" or source.is_local:
            continue
        attributes = {"text": source.name, "title": source.name, "type": "rss",
                      "xmlUrl": source.url}  # fmt: skip
        if source.home:
            attributes["htmlUrl"] = source.home
        etree.SubElement(body, "outline", attributes)
    return _serialize(body)


def _lists_modified(config: AppConfig) -> datetime:
    """When the lists last changed: the newest of the config files they come from (the
    same bytes until a curator edits one)."""
    times = [path.stat().st_mtime for path in config.files if path.exists()]
    return datetime.fromtimestamp(int(max(times)), UTC) if times else EMPTY_FEED_DATE


def _opml(title: str, modified: datetime) -> etree._Element:
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    etree.SubElement(head, "dateModified").text = format_datetime(modified.astimezone(UTC))
    etree.SubElement(head, "docs").text = "http://opml.org/spec2.opml"
    return etree.SubElement(root, "body")


def _serialize(body: etree._Element) -> bytes:
    root = body.getparent()
    assert root is not None
    etree.indent(root, space="  ")
    result: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return result
