"""Stored items -> ``<slug>.rss`` (RSS 2.0) and ``<slug>.atom`` (Atom 1.0) with feedgen.

Output is a pure function of the items and the settings (no "now" anywhere: build
dates are the newest item's), so an unchanged topic renders the same bytes, and
``write_if_changed`` then leaves the file alone and web servers keep their ETag.
Writes are atomic: a temporary file in the same folder, fsync, rename.

Attribution, for every entry: Atom ``<source>`` (title, link, id, updated) and RSS
``<source url>``, naming the first source that carried the item; plus a readable
"Source: ..." line (and "Also carried by: ...") at the end of the summary.
"""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator import __version__
from aggregator.config import Settings, TopicConfig
from aggregator.errors import PublishError
from aggregator.models import SourceRef, StoredItem

ATOM_NS = "http://www.w3.org/2005/Atom"
GENERATOR_URI = "https://github.com/textile-feeds/textile-feeds"
#: Build date of a feed with no items yet; any fixed value keeps the output stable.
EMPTY_FEED_DATE = datetime(2020, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishResult:
    written: tuple[Path, ...]
    unchanged: tuple[Path, ...]


def publish_topic(
    topic: TopicConfig,
    items: Sequence[StoredItem],
    *,
    settings: Settings,
    titles: dict[str, str],
    output_dir: Path,
) -> PublishResult:
    """Render and write both formats of one topic; ``titles`` maps slug -> topic title."""
    renders = {
        output_dir / f"{topic.slug}.rss": render_rss(
            topic, items, settings=settings, titles=titles
        ),
        output_dir / f"{topic.slug}.atom": render_atom(
            topic, items, settings=settings, titles=titles
        ),
    }
    written: list[Path] = []
    unchanged: list[Path] = []
    for path, data in renders.items():
        (written if write_if_changed(path, data) else unchanged).append(path)
    return PublishResult(written=tuple(written), unchanged=tuple(unchanged))


def feed_url(settings: Settings, slug: str, extension: str) -> str:
    return f"{settings.base_url.rstrip('/')}/{slug}.{extension}"


def render_rss(
    topic: TopicConfig, items: Sequence[StoredItem], *, settings: Settings, titles: dict[str, str]
) -> bytes:
    generator = _generator(topic, items, settings, titles, self_ext="rss")
    rendered: bytes = generator.rss_str(pretty=True)
    return rendered


def render_atom(
    topic: TopicConfig, items: Sequence[StoredItem], *, settings: Settings, titles: dict[str, str]
) -> bytes:
    generator = _generator(topic, items, settings, titles, self_ext="atom")
    return _complete_atom_sources(generator.atom_str(pretty=True), items, settings)


def _generator(
    topic: TopicConfig,
    items: Sequence[StoredItem],
    settings: Settings,
    titles: dict[str, str],
    *,
    self_ext: str,
) -> FeedGenerator:
    self_url = feed_url(settings, topic.slug, self_ext)
    newest = max((item.updated_at for item in items), default=EMPTY_FEED_DATE)
    fg = FeedGenerator()
    fg.id(feed_url(settings, topic.slug, "atom"))
    fg.title(f"{settings.site_title}: {topic.title}")
    fg.subtitle(topic.description or f"{topic.title}: textile-industry news")
    fg.link(
        href=self_url,
        rel="self",
        type="application/rss+xml" if self_ext == "rss" else "application/atom+xml",
    )
    # feedgen uses the *last* link added as the RSS <channel><link>, whatever its rel.
    fg.link(href=settings.base_url, rel="alternate", type="text/html")
    fg.generator("textile-feeds", version=__version__, uri=GENERATOR_URI)
    fg.updated(newest)
    fg.lastBuildDate(newest)
    fg.ttl(max(1, round(settings.poll_interval / 60)))
    for item in items:
        entry = fg.add_entry(order="append")
        entry.id(item.public_id)
        entry.guid(item.public_id, permalink=False)
        entry.title(item.title or "(untitled)")
        primary = item.sources[0] if item.sources else None
        link = item.link or (primary and _source_home(primary, settings)) or settings.base_url
        entry.link(href=link, rel="alternate")
        entry.published(item.published_at)
        entry.updated(item.updated_at)
        entry.summary(_summary_with_attribution(item, settings), type="html")
        if item.author:
            entry.author(name=item.author)
        for slug in item.topics:
            entry.category(term=slug, label=titles.get(slug, slug), scheme=settings.base_url)
        if primary:
            entry.source(url=_source_feed(primary, settings), title=primary.name)
    return fg


def _source_feed(ref: SourceRef, settings: Settings) -> str:
    """Public URL of a source's feed; snapshot files have none, so their site stands in."""
    if ref.feed_url.lower().startswith(("http://", "https://")):
        return ref.feed_url
    return _source_home(ref, settings)


def _source_home(ref: SourceRef, settings: Settings) -> str:
    return ref.home_url or (ref.feed_url if ref.feed_url.startswith("http") else settings.base_url)


def _summary_with_attribution(item: StoredItem, settings: Settings) -> str:
    def named_link(ref: SourceRef) -> str:
        href = ref.link or _source_home(ref, settings)
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
        parts.append(f"<p>{line}</p>")
    return "\n".join(parts)


def _complete_atom_sources(
    document: bytes, items: Sequence[StoredItem], settings: Settings
) -> bytes:
    """Add the ``id`` and ``updated`` RFC 4287 (4.2.11) expects in ``atom:source``;
    feedgen writes only its title and link."""
    root = etree.fromstring(document)
    entries = root.findall(f"{{{ATOM_NS}}}entry")
    for element, item in zip(entries, items, strict=True):
        source = element.find(f"{{{ATOM_NS}}}source")
        if source is None or not item.sources:
            continue
        etree.SubElement(source, f"{{{ATOM_NS}}}id").text = _source_feed(item.sources[0], settings)
        etree.SubElement(source, f"{{{ATOM_NS}}}updated").text = item.updated_at.isoformat()
    etree.indent(root, space="  ")
    result: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return result


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically replace ``path`` with ``data`` unless it already holds exactly that.

    Returns True when the file was written. On any error the old file is intact and
    the temporary file is removed."""
    try:
        if path.is_file() and path.read_bytes() == data:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise PublishError(f"cannot write {path}: {exc}") from exc
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; web servers must read it
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise PublishError(f"cannot write {path}: {exc}") from exc
    return True
