"""Adding sources the way people have them: a feed or a home page URL (``add``), an OPML
subscription list (``import``); and the sources as OPML (``export``).

A URL is fetched once, as a poll would (the same limits and address checks): a feed is
taken as it is; an HTML page's advertised feeds (``<link rel="alternate">``) are tried,
then the paths sites commonly put feeds at. The entry is appended to ``sources.yaml``
through ruamel.yaml, which keeps the file's comments and layout, after it was
validated; the file is replaced atomically and checked again, and put back as it was
when the whole configuration no longer loads.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from aggregator.config import DEFAULT_SOURCES_FILE, AppConfig, load_config
from aggregator.errors import AggregatorError, ConfigError, ParseError
from aggregator.fetch import Fetcher, FetchRequest
from aggregator.models import FetchOutcome, FetchResult
from aggregator.normalize import canonical_url
from aggregator.parse.feed import advertised_feeds, parse_feed

#: Where sites commonly publish a feed they do not advertise (WordPress, Ghost, Hugo,
#: Jekyll, most CMSs).
COMMON_FEED_PATHS = ("/feed", "/rss", "/feed.xml", "/rss.xml", "/atom.xml", "/index.xml")


class SubscribeError(AggregatorError):
    """A URL that yields no feed, or an entry the configuration refuses."""


@dataclass(frozen=True, slots=True)
class FoundFeed:
    url: str
    title: str
    #: The site the feed belongs to (its channel link), if it names one.
    home: str | None
    entries: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one URL of an import."""

    url: str
    entry: dict[str, str] | None = None
    #: The id of the source already reading this feed.
    duplicate_of: str | None = None
    problem: str | None = None


def discover(url: str, fetcher: Fetcher) -> FoundFeed:
    """The feed at ``url``, or the one the page at ``url`` leads to."""
    first = _fetch(fetcher, url)
    if first.outcome is not FetchOutcome.OK:
        raise SubscribeError(f"{url}: {first.error or 'could not be fetched'}")
    if found := _as_feed(first):
        return found
    base = first.final_url or url
    tried = [*advertised_feeds(first.body, base)]
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    tried += [urljoin(origin, path) for path in COMMON_FEED_PATHS]
    for candidate in dict.fromkeys(tried):
        if candidate == url:
            continue
        result = _fetch(fetcher, candidate)
        if result.outcome is FetchOutcome.OK and (found := _as_feed(result)):
            return found
    raise SubscribeError(
        f"{url}: not a feed, and no feed found: the page advertises none that works and "
        f"none of {', '.join(COMMON_FEED_PATHS)} is one"
    )


def _fetch(fetcher: Fetcher, url: str) -> FetchResult:
    (result,) = fetcher.fetch_all([FetchRequest(source_id="add", url=url)])
    return result


def _as_feed(result: FetchResult) -> FoundFeed | None:
    try:
        parsed = parse_feed(result)
    except ParseError:
        return None
    return FoundFeed(
        url=result.final_url or result.url,
        title=parsed.title.strip(),
        home=parsed.link if parsed.link and parsed.link.startswith("http") else None,
        entries=len(parsed.entries),
    )


def new_entry(
    found: FoundFeed, taken: Iterable[str], *, source_id: str | None = None,
    name: str | None = None,
) -> dict[str, str]:  # fmt: skip
    """A sources.yaml entry for ``found``: an id from its title (or its host) that no
    source has yet, its title as the name."""
    taken = set(taken)
    base = source_id or _slug(found.title) or _slug(urlsplit(found.url).hostname or "") or "feed"
    chosen, number = base, 2
    while chosen in taken:
        chosen, number = f"{base}-{number}", number + 1
    entry = {"id": chosen, "name": name or found.title or urlsplit(found.url).hostname or chosen}
    entry["url"] = found.url
    if found.home:
        entry["home"] = found.home
    return entry


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:40].strip("-")


def known_feed(config: AppConfig, url: str) -> str | None:
    """The id of the source that already reads ``url`` (compared canonically)."""
    wanted = canonical_url(url)
    for source in config.sources:
        if not source.is_local and canonical_url(source.url) == wanted:
            return source.id
    return None


def append_sources(config: AppConfig, entries: Sequence[dict[str, str]]) -> Path:
    """Append ``entries`` to the config's sources.yaml, keeping its comments and layout;
    refuse (and leave the file as it was) when the result does not load."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    path = config.config_dir / DEFAULT_SOURCES_FILE
    original = path.read_text(encoding="utf-8")
    yaml = YAML()
    yaml.preserve_quotes = True
    offset = _sequence_offset(original)
    yaml.indent(mapping=2, sequence=offset + 2, offset=offset)
    document = yaml.load(original)
    sources = document["sources"]
    for entry in entries:
        sources.append(CommentedMap(entry))
    text = io.StringIO()
    yaml.dump(document, text)
    _replace(path, text.getvalue())
    try:
        load_config(config.config_dir)
    except ConfigError as exc:
        _replace(path, original)
        raise SubscribeError(f"not added, the configuration would not load: {exc}") from exc
    return path


def _sequence_offset(text: str) -> int:
    """How far the file indents the dashes of its sources list (kept for new entries)."""
    found = re.search(r"^sources:\s*\n(?:\s*#.*\n)*( *)- ", text, re.MULTILINE)
    return len(found.group(1)) if found else 2


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a reader or the daemon never sees half),
    keeping the file's permissions."""
    from aggregator.errors import PublishError
    from aggregator.publish import write_if_changed

    try:
        write_if_changed(path, text.encode("utf-8"), mode=path.stat().st_mode & 0o777)
    except (PublishError, OSError) as exc:
        raise SubscribeError(str(exc)) from exc


def opml_feeds(path: Path) -> list[tuple[str, str]]:
    """(feed URL, title) of every feed outline of an OPML file, in order, nested
    folders included (listparser reads OPML as feed readers write it)."""
    import listparser

    parsed = listparser.parse(path.read_bytes())
    if parsed.bozo and not parsed.feeds:
        raise SubscribeError(f"{path}: not an OPML subscription list: {parsed.bozo_exception}")
    return [(feed.url, feed.title or "") for feed in parsed.feeds if feed.url]
