"""One feed's items -> RSS 2.0 and Atom 1.0 (feedgen) and JSON Feed 1.1 (json).

Output is a pure function of the items and the settings (no "now" anywhere: build
dates are the newest item's), so an unchanged feed renders the same bytes.

Every entry carries the same id, title, link, dates and attribution in the three
formats: Atom ``<source>`` (title, link, id, updated), RSS ``<source url>``, JSON Feed
``authors`` plus a ``_textile_feeds`` extension object; and a readable
"Source: ..." line ("Also carried by: ...") at the end of the HTML summary.

feedgen traps handled here: the RSS ``<channel><link>`` is the *last* link added,
whatever its rel; feedgen writes Atom ``<source>`` without the ``id`` and ``updated``
RFC 4287 expects; it drops the rel of entry links; RSS gets only one ``atom:link``
(self), so the hub link is added after rendering.
"""

from __future__ import annotations

import html
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator import __version__
from aggregator.cluster import chinese
from aggregator.config import FEED_FORMATS, Settings
from aggregator.models import SourceRef, StoredItem

ATOM_NS = "http://www.w3.org/2005/Atom"
SY_NS = "http://purl.org/rss/1.0/modules/syndication/"
GENERATOR_URI = "https://github.com/textile-feeds/textile-feeds"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
#: Build date of a feed with no items yet; any fixed value keeps the output stable.
EMPTY_FEED_DATE = datetime(2020, 1, 1, tzinfo=UTC)
FORMATS = FEED_FORMATS


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedSpec:
    """One published feed: a topic, or the ``all`` feed."""

    slug: str
    title: str
    description: str
    items: tuple[StoredItem, ...]


def feed_url(settings: Settings, slug: str, extension: str) -> str:
    return f"{settings.base_url.rstrip('/')}/{slug}.{extension}"


#: The site's images, published beside the feeds (``publish.static_files``).
ICON = "icon.png"  # 512 x 512: JSON Feed icon, Atom logo, RSS image
FAVICON = "favicon.png"  # 64 x 64: JSON Feed favicon, Atom icon, the front page
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
#: The slug of the feed of every topic.
ALL_TOPICS = "all"


def entry_id(item: StoredItem, slug: str) -> str:
    """The id of a story's entry in one feed: the story's own id in the all-topics feed,
    one derived from it and the topic elsewhere. Readers that keep one row per id
    across feeds (newsboat) showed a story of two topics in one of them only; each
    topic feed's entries are now its own, and stay stable as the story's id does."""
    if slug == ALL_TOPICS or not item.public_id.startswith("urn:uuid:"):
        return item.public_id
    story = uuid.UUID(item.public_id.removeprefix("urn:uuid:"))
    return f"urn:uuid:{uuid.uuid5(story, slug)}"


def asset_url(settings: Settings, name: str) -> str:
    return site_url(settings).rstrip("/") + "/" + name


def site_url(settings: Settings) -> str:
    """The front page (index.html) every feed links to as its website."""
    return settings.base_url


def render(spec: FeedSpec, extension: str, settings: Settings, titles: dict[str, str]) -> bytes:
    """``spec`` rendered in the format of ``extension`` ("rss", "atom" or "json")."""
    if extension == "json":
        return render_json(spec, settings=settings, titles=titles)
    if extension == "rss":
        return render_rss(spec, settings=settings, titles=titles)
    return render_atom(spec, settings=settings, titles=titles)


def render_rss(spec: FeedSpec, *, settings: Settings, titles: dict[str, str]) -> bytes:
    document = _generator(spec, settings, titles, self_ext="rss").rss_str(pretty=True)
    root = etree.fromstring(document)
    channel = root.find("channel")
    assert channel is not None
    after_self = list(channel).index(channel.find(f"{{{ATOM_NS}}}link")) + 1
    if settings.websub_hub:
        hub = etree.Element(f"{{{ATOM_NS}}}link", href=settings.websub_hub, rel="hub")
        channel.insert(after_self, hub)
    # Written here, not with feedgen's syndication extension: that one spells the
    # elements sy:UpdatePeriod, and the module (and validators) want sy:updatePeriod.
    period, frequency = update_period(settings.poll_interval)
    first_item = channel.find("item")
    position = list(channel).index(first_item) if first_item is not None else len(channel)
    for offset, (name, value) in enumerate(
        (("updatePeriod", period), ("updateFrequency", str(frequency)))
    ):
        hint = etree.Element(f"{{{SY_NS}}}{name}")
        hint.text = value
        channel.insert(position + offset, hint)
    etree.cleanup_namespaces(root, top_nsmap={"sy": SY_NS})
    return _serialize(root)


def render_atom(spec: FeedSpec, *, settings: Settings, titles: dict[str, str]) -> bytes:
    document = _generator(spec, settings, titles, self_ext="atom").atom_str(pretty=True)
    root = etree.fromstring(document)
    # RFC 4287 4.2.11: atom:source should keep the source feed's id and updated.
    for element, item in zip(root.findall(f"{{{ATOM_NS}}}entry"), spec.items, strict=True):
        # feedgen drops rel/title of entry links (it reads them off the new XML element):
        # the first link is the alternate, the others are the story's other reports.
        links = element.findall(f"{{{ATOM_NS}}}link")
        for link, ref in zip(links[1:], item.related, strict=True):
            link.set("rel", "related")
            link.set("title", ref.name)
        if chinese(item.title):
            element.set(XML_LANG, "zh")
        # Content as well as summary: some readers (rss-parser) show only content.
        summary = element.find(f"{{{ATOM_NS}}}summary")
        if summary is not None and summary.text:
            content = etree.Element(f"{{{ATOM_NS}}}content", type="html")
            content.text = summary.text
            summary.addnext(content)
        source = element.find(f"{{{ATOM_NS}}}source")
        if source is not None and item.sources:
            etree.SubElement(source, f"{{{ATOM_NS}}}id").text = source_feed(
                item.sources[0], settings
            )
            etree.SubElement(source, f"{{{ATOM_NS}}}updated").text = item.updated_at.isoformat()
    return _serialize(root)


def render_json(spec: FeedSpec, *, settings: Settings, titles: dict[str, str]) -> bytes:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1); feedgen does not write it."""
    document: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": f"{settings.site_title}: {spec.title}",
        "home_page_url": site_url(settings),
        "feed_url": feed_url(settings, spec.slug, "json"),
        "description": spec.description,
        "authors": [{"name": settings.site_title, "url": site_url(settings)}],
        "language": settings.site_language,
        "icon": asset_url(settings, ICON),
        "favicon": asset_url(settings, FAVICON),
        "items": [_json_item(item, spec.slug, settings, titles) for item in spec.items],
    }
    if settings.websub_hub:
        document["hubs"] = [{"type": "WebSub", "url": settings.websub_hub}]
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _json_item(
    item: StoredItem, spec_slug: str, settings: Settings, titles: dict[str, str]
) -> dict[str, Any]:
    primary = item.sources[0] if item.sources else None
    entry: dict[str, Any] = {
        "id": entry_id(item, spec_slug),
        "url": entry_link(item, settings),
        "title": item.title or "(untitled)",
        "content_html": summary_with_attribution(item, settings),
        "date_published": item.published_at.isoformat(),
        "date_modified": item.updated_at.isoformat(),
        "authors": [_json_author(item, settings)],
        "tags": [titles.get(slug, slug) for slug in item.topics],
    }
    if item.summary_text:
        entry["summary"] = item.summary_text
    if chinese(item.title):
        entry["language"] = "zh"
    if primary:
        entry["_textile_feeds"] = {
            "about": "https://github.com/textile-feeds/textile-feeds#json-feed-extension",
            "source": _json_source(primary, settings),
            "also_carried_by": [_json_source(ref, settings) for ref in item.sources[1:]],
            "also_reported_by": [_json_source(ref, settings) for ref in item.related],
            "original_publisher": item.original_publisher,
            "topics": list(item.topics),
        }
    return entry


def _json_author(item: StoredItem, settings: Settings) -> dict[str, str]:
    """The writer, else the credit the other formats give ("Hebei Daily via Portal"),
    with the carrying source's site as the url."""
    primary = item.sources[0] if item.sources else None
    if primary is None:
        return {"name": item.author or settings.site_title, "url": site_url(settings)}
    credit = f"{item.original_publisher} via {primary.name}" if item.original_publisher else ""
    return {"name": item.author or credit or primary.name, "url": source_home(primary, settings)}


def _json_source(ref: SourceRef, settings: Settings) -> dict[str, Any]:
    return {
        "id": ref.source_id,
        "name": ref.name,
        "home_page_url": source_home(ref, settings),
        "feed_url": source_feed(ref, settings),
        "item_url": ref.link,
    }


def _generator(
    spec: FeedSpec, settings: Settings, titles: dict[str, str], *, self_ext: str
) -> FeedGenerator:
    newest = max((item.updated_at for item in spec.items), default=EMPTY_FEED_DATE)
    fg = FeedGenerator()
    fg.id(feed_url(settings, spec.slug, "atom"))
    fg.title(f"{settings.site_title}: {spec.title}")
    fg.subtitle(spec.description)
    fg.author(name=settings.site_title, uri=site_url(settings))
    fg.link(href=feed_url(settings, spec.slug, self_ext), rel="self", type=FORMATS[self_ext])
    if settings.websub_hub and self_ext == "atom":
        fg.link(href=settings.websub_hub, rel="hub")
    # feedgen uses the *last* link added as the RSS <channel><link>, whatever its rel.
    fg.link(href=site_url(settings), rel="alternate", type="text/html")
    fg.generator("textile-feeds", version=__version__, uri=GENERATOR_URI)
    fg.language(settings.site_language)
    fg.icon(asset_url(settings, FAVICON))
    fg.logo(asset_url(settings, ICON))
    if self_ext == "rss":
        fg.image(url=asset_url(settings, ICON), title=f"{settings.site_title}: {spec.title}",
                 link=site_url(settings))  # fmt: skip
    fg.updated(newest)
    fg.lastBuildDate(newest)
    # Readers should come back about as often as we poll the sources.
    fg.ttl(max(1, round(settings.poll_interval / 60)))
    for item in spec.items:
        entry = fg.add_entry(order="append")
        entry.id(entry_id(item, spec.slug))
        entry.guid(entry_id(item, spec.slug), permalink=False)
        entry.title(item.title or "(untitled)")
        entry.link(href=entry_link(item, settings), rel="alternate")
        for ref in item.related:  # the same story as other sources told it
            entry.link(href=ref.link or source_home(ref, settings), rel="related", title=ref.name)
        entry.published(item.published_at)
        entry.updated(item.updated_at)
        # summary(type="html"), not description(): feedgen turns HTML given to
        # description() into an Atom <content> without type="html".
        entry.summary(summary_with_attribution(item, settings), type="html")
        if item.author:
            entry.author(name=item.author)
        for slug in item.topics:
            entry.category(term=slug, label=titles.get(slug, slug), scheme=settings.base_url)
        if item.sources:
            primary = item.sources[0]
            entry.source(url=source_feed(primary, settings), title=primary.name)
    return fg


def update_period(interval_seconds: float) -> tuple[str, int]:
    """RSS syndication module hint (sy:updatePeriod, sy:updateFrequency) for an interval."""
    for period, length in (("hourly", 3600), ("daily", 86400), ("weekly", 7 * 86400)):
        if interval_seconds <= length:
            return period, max(1, round(length / interval_seconds))
    return "monthly", 1


def entry_link(item: StoredItem, settings: Settings) -> str:
    primary = item.sources[0] if item.sources else None
    return item.link or (primary and source_home(primary, settings)) or site_url(settings)


def source_feed(ref: SourceRef, settings: Settings) -> str:
    """Public URL of a source's feed; snapshot files have none, so their site stands in."""
    if ref.feed_url.lower().startswith(("http://", "https://")):
        return ref.feed_url
    return source_home(ref, settings)


def source_home(ref: SourceRef, settings: Settings) -> str:
    return ref.home_url or (ref.feed_url if ref.feed_url.startswith("http") else settings.base_url)


def summary_with_attribution(item: StoredItem, settings: Settings) -> str:
    def named_link(ref: SourceRef) -> str:
        href = ref.link or source_home(ref, settings)
        return f'<a href="{html.escape(href)}">{html.escape(ref.name)}</a>'

    parts = [item.summary_html] if item.summary_html else []
    if item.sources:
        line = f"Source: {named_link(item.sources[0])}"
        if item.original_publisher:
            # A portal reposting a provincial paper's story: credit the paper first.
            publisher = html.escape(item.original_publisher)
            line = f"Source: {publisher} via {named_link(item.sources[0])}"
        if len(item.sources) > 1:
            line += ". Also carried by: " + ", ".join(map(named_link, item.sources[1:]))
        if item.related:
            line += ". Also reported by: " + ", ".join(map(named_link, item.related))
        parts.append(f"<p>{line}</p>")
    return "\n".join(parts)


def _serialize(root: etree._Element) -> bytes:
    etree.indent(root, space="  ")
    result: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return result
