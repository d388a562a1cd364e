"""Crawl one ``type: html`` source: listing pages, article pages, article chains.

The first page (the source's ``url``) is fetched with every other source, with
conditional GET and the same schedule; ``scrape`` takes its ``FetchResult`` and reads
further pages one at a time through ``PageFetcher``: robots.txt honoured (cached per
host), a pause between requests to the host, the fetcher's limits on each page.
Articles already stored are not fetched again (``is_known``).

Listing mode: items from the listing (and ``next_page`` pages), then each new item's
article page for its text, date and original publisher. Chain mode: from the start
articles (and the newest stored ones) along ``article.follow`` links, within the site
and ``url_pattern``, up to ``max_hops`` steps and ``max_pages`` pages per poll.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import parsel
from protego import Protego

from aggregator.config import AppConfig, HtmlRules, SourceConfig
from aggregator.errors import ParseError
from aggregator.fetch import Fetcher, FetchRequest, host_of
from aggregator.models import FetchOutcome, FetchResult, ParsedEntry
from aggregator.parse.html import (
    ScrapedArticle,
    ScrapedItem,
    article_item,
    extract_article,
    extract_items,
    next_page,
    page,
    parse_scraped_date,
    to_entry,
)

log = logging.getLogger(__name__)

ROBOTS_AGENT = "textile-feeds"
ROBOTS_TTL_SECONDS = 86400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeResult:
    entries: tuple[ParsedEntry, ...]
    #: A selector problem (drift), reported like an error; the entries found are kept.
    problem: str | None = None
    pages_fetched: int = 0


class RobotsCache:
    """robots.txt per host, kept a day (RFC 9309: 4xx = no rules, 5xx = keep out).

    Read with protego, which follows RFC 9309 (the longest matching rule wins, ``*``
    and ``$`` patterns); the standard library's parser takes the first match, so
    ``Disallow: /news/`` before ``Allow: /news/textile/`` refused the allowed pages."""

    def __init__(self) -> None:
        self._rules: dict[str, tuple[float, Protego | None]] = {}

    def allowed(self, url: str, fetch: Callable[[str], FetchResult]) -> bool:
        parts = urlsplit(url)
        host = f"{parts.scheme}://{parts.netloc}"
        cached = self._rules.get(host)
        if cached is None or time.monotonic() - cached[0] > ROBOTS_TTL_SECONDS:
            cached = (time.monotonic(), self._load(host, fetch))
            self._rules[host] = cached
        rules = cached[1]
        return rules is not None and rules.can_fetch(url, ROBOTS_AGENT)

    @staticmethod
    def _load(host: str, fetch: Callable[[str], FetchResult]) -> Protego | None:
        result = fetch(f"{host}/robots.txt")
        if result.outcome is FetchOutcome.OK:
            return Protego.parse(result.body.decode("utf-8", "replace"))
        if result.status is not None and 400 <= result.status < 500:
            return Protego.parse("")  # no robots.txt: everything is allowed
        return None  # unreachable: assume everything is disallowed for now


#: Shared by every cycle of the process, so robots.txt is read once a day per host.
ROBOTS = RobotsCache()


@dataclass
class PageFetcher:
    """Reads the further pages of one html source, politely, or from its snapshot folder."""

    config: AppConfig
    source: SourceConfig
    fetcher: Fetcher
    robots: RobotsCache = field(default_factory=lambda: ROBOTS)
    fetched: int = 0
    _last_request: float = 0.0
    #: Hosts that answered 429/503 with Retry-After during this crawl.
    _blocked: dict[str, datetime] = field(default_factory=dict)

    @property
    def rules(self) -> HtmlRules:
        assert self.source.html is not None
        return self.source.html

    def get(self, url: str) -> FetchResult:
        """One page by its real URL; a failure comes back as a FAILED result."""
        self.fetched += 1
        if self.source.is_local:
            return self._one(self.local_path(url))
        if not self.robots.allowed(url, self._request):
            return FetchResult(
                source_id=self.source.id, url=url, outcome=FetchOutcome.FAILED,
                error="robots.txt disallows this page", error_type="robots",
            )  # fmt: skip
        return self._request(url)

    def _request(self, url: str) -> FetchResult:
        # One request at a time to this host, with the configured pause in between.
        pause = self.config.settings.fetch.per_host_delay - (time.monotonic() - self._last_request)
        if pause > 0:
            time.sleep(pause)
        self._last_request = time.monotonic()
        return self._one(url)

    def _one(self, location: str) -> FetchResult:
        request = FetchRequest(source_id=self.source.id, url=location)
        result = self.fetcher.fetch_all([request], blocked_hosts=self._blocked)[0]
        if result.host_blocked_until:  # the rest of the crawl leaves this host alone
            self._blocked[host_of(location)] = result.host_blocked_until
        return result

    def local_path(self, url: str) -> str:
        """The snapshot file standing for ``url`` (``<snapshot_root>/<path>``)."""
        root = self.config.resolve(self.rules.snapshot_root or ".")
        path = urlsplit(url).path.lstrip("/") or "index.html"
        if path.endswith("/"):
            path += "index.html"
        return str((root / path).resolve())

    def real_url(self, first: FetchResult) -> str:
        """The site URL of the first page (snapshot files map back onto the site)."""
        if not self.source.is_local:
            return first.final_url or first.url
        root = self.config.resolve(self.rules.snapshot_root or ".")
        relative = Path(first.url).resolve().relative_to(root).as_posix()
        return urljoin(self.rules.site, "/" + relative)  # the folder is the site's root


def scrape(
    pages: PageFetcher,
    first: FetchResult,
    *,
    is_known: Callable[[str], bool],
    latest_links: Sequence[str] = (),
) -> ScrapeResult:
    """Everything new the source offers this poll, as ParsedEntry values."""
    source, rules = pages.source, pages.rules
    first_url = pages.real_url(first)
    root = page(first.body, first_url)
    if not root.xpath("//body | //p | //div"):
        raise ParseError(source.id, first.url, "not an HTML page")
    found: dict[str, ScrapedItem] = {}
    problems: list[str] = []

    if rules.listing:
        listing_items = _read_listing(pages, root, first_url)
        if not listing_items:
            problems.append(
                f"selector problem: listing item selector {rules.listing.item!r} matched "
                f"nothing on {first_url}"
            )
        for item in listing_items:
            found.setdefault(item.link, item)
        if rules.article and rules.fetch_articles:
            new = [link for link in found if not is_known(link)][: rules.max_article_pages]
            for link in new:
                if (article := _read_article(pages, link)) is not None:
                    found[link] = article_item(link, article, found[link])

    if rules.chain:
        chain_items = _crawl_chain(pages, root, first_url, is_known, latest_links)
        if not chain_items and not found:
            problems.append(f"selector problem: no article found from {first_url}")
        for item in chain_items:
            found.setdefault(item.link, item)

    zone = ZoneInfo(source.timezone)
    dated = [item for item in found.values() if item.date_text]
    if (
        rules.date_formats
        and dated
        and not any(parse_scraped_date(item.date_text, rules, zone) for item in dated)
    ):
        problems.append(
            f"selector problem: no date parsed with formats {list(rules.date_formats)} "
            f"(e.g. {dated[0].date_text!r})"
        )
    entries = tuple(to_entry(item, rules, zone, source.language) for item in found.values())
    return ScrapeResult(
        entries=entries,
        problem="; ".join(problems) if problems else None,
        pages_fetched=pages.fetched,
    )


def _read_listing(pages: PageFetcher, root: parsel.Selector, url: str) -> list[ScrapedItem]:
    rules = pages.rules
    assert rules.listing is not None
    items: list[ScrapedItem] = []
    current, current_url = root, url
    for number in range(rules.listing.max_pages):
        items.extend(extract_items(current, current_url, rules.listing, rules))
        following = next_page(current, current_url, rules.listing.next_page)
        if following is None or number + 1 >= rules.listing.max_pages:
            break
        if (body := _page_body(pages, following)) is None:
            break
        current, current_url = page(body, following), following
    return items


def _read_article(pages: PageFetcher, link: str) -> ScrapedArticle | None:
    rules = pages.rules
    assert rules.article is not None
    body = _page_body(pages, link)
    return None if body is None else extract_article(page(body, link), link, rules.article, rules)


def _page_body(pages: PageFetcher, url: str) -> bytes | None:
    """A further page's body; a page that fails costs its own details, not the poll."""
    result = pages.get(url)
    if result.outcome is FetchOutcome.OK:
        return result.body
    log.info("page skipped source=%s url=%s: %s", pages.source.id, url, result.error)
    return None


def _crawl_chain(
    pages: PageFetcher,
    first_root: parsel.Selector,
    first_url: str,
    is_known: Callable[[str], bool],
    latest_links: Sequence[str],
) -> list[ScrapedItem]:
    rules = pages.rules
    assert rules.chain is not None and rules.article is not None
    chain = rules.chain
    pattern = re.compile(chain.url_pattern)
    site_host = urlsplit(
        f"//{rules.canonical_host}" if rules.canonical_host else rules.site
    ).hostname

    def in_scope(link: str) -> bool:
        parts = urlsplit(link)
        return parts.hostname == site_host and bool(pattern.search(parts.path))

    starts = [first_url, *(urljoin(rules.site, s) for s in chain.start)]
    starts += list(latest_links)[: chain.restart_from_latest]
    queue = [(link, 0) for link in dict.fromkeys(starts)]
    seen = {link for link, _ in queue}
    items: list[ScrapedItem] = []
    budget = chain.max_pages
    while queue and budget > 0:
        link, hops = queue.pop(0)
        if link == first_url:
            root = first_root
        else:
            budget -= 1
            if (body := _page_body(pages, link)) is None:
                continue
            root = page(body, link)
        article = extract_article(root, link, rules.article, rules)
        if in_scope(link):
            items.append(article_item(link, article, None))
        for related in article.related:
            if related.link not in seen and in_scope(related.link):
                items.append(related)
        if hops >= chain.max_hops:
            continue
        for onward in article.follow:
            # Known articles end the walk: what lies beyond them was read before.
            if onward not in seen and in_scope(onward) and not is_known(onward):
                seen.add(onward)
                queue.append((onward, hops + 1))
    return items
