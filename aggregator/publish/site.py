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

from aggregator.config import AppConfig
from aggregator.models import StoredItem
from aggregator.publish.feeds import (
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
        headlines=HEADLINES_PER_TOPIC,
        source_count=sum(1 for s in config.sources if s.enabled),
        updated=_newest(feeds).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    return page.encode("utf-8")


def render_topics_opml(config: AppConfig, feeds: Sequence[FeedSpec]) -> bytes:
    """OPML 2.0 (http://opml.org/spec2.opml) of every topic feed, Atom flavour."""
    body = _opml(config, "Textile Feeds: topics", _newest(feeds))
    for spec in feeds:
        etree.SubElement(
            body, "outline", type="rss", text=spec.title, title=spec.title,
            xmlUrl=feed_url(config.settings, spec.slug, "atom"),
            htmlUrl=f"{site_url(config.settings)}#{spec.slug}", description=spec.description,
        )  # fmt: skip
    return _serialize(body)


def render_sources_opml(config: AppConfig) -> bytes:
    """OPML 2.0 of the sources we read (feeds only: scraped portals have none to share)."""
    body = _opml(config, "Textile Feeds: sources", EMPTY_FEED_DATE)
    for source in config.sources:
        if not source.enabled:
            continue
        attributes = {"text": source.name, "title": source.name}
        if source.type == "feed" and not source.is_local:
            attributes |= {"type": "rss", "xmlUrl": source.url}
        else:
            attributes |= {"type": "link", "url": source.home or source.url}
        if source.home:
            attributes["htmlUrl"] = source.home
        etree.SubElement(body, "outline", attributes)
    return _serialize(body)


def _opml(config: AppConfig, title: str, modified: datetime) -> etree._Element:
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
