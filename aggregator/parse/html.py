"""HTML pages of feed-less portals -> items, with CSS selectors from ``sources.yaml``.

Pure: a page's bytes and its real URL in, plain data out; fetching and crawling live in
``aggregator.scrape``. Selectors are parsel CSS: without a pseudo-element a field is
the matched element's whole text; ``::attr(href)`` takes an attribute, ``::text`` the
element's own text. Relative links resolve against the page URL, then move to the
configured canonical host (portals answer on mirror hosts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, tzinfo
from urllib.parse import urljoin, urlsplit, urlunsplit

import parsel

from aggregator.config import ArticleRules, HtmlRules, ItemSelectors
from aggregator.models import ParsedEntry
from aggregator.normalize import canonical_url, clean_text


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapedItem:
    """One article as a listing (or an article page) shows it."""

    link: str
    title: str
    #: The date text as found (after ``date_pattern``), not yet parsed.
    date_text: str | None = None
    summary_html: str = ""
    categories: tuple[str, ...] = ()
    publisher: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapedArticle:
    """What an article page holds: its own fields, related items and links onward."""

    title: str | None
    date_text: str | None
    body_html: str
    categories: tuple[str, ...]
    publisher: str | None
    related: tuple[ScrapedItem, ...]
    follow: tuple[str, ...]


def page(body: bytes, url: str) -> parsel.Selector:
    return parsel.Selector(body=body, base_url=url, type="html")


def select_text(root: parsel.Selector, selector: str | None) -> str | None:
    """The first match's value: its whole text, or the ``::attr()``/``::text`` asked for."""
    if not selector:
        return None
    matches = root.css(selector)
    if not matches:
        return None
    value = matches.get() if "::" in selector else matches[0].xpath("string()").get()
    return clean_text(value) or None


def select_all(root: parsel.Selector, selector: str) -> list[str]:
    matches = root.css(selector)
    values = matches.getall() if "::" in selector else matches.xpath("string()").getall()
    return [text for text in map(clean_text, values) if text]


def link_of(href: str | None, page_url: str, rules: HtmlRules) -> str | None:
    """Absolute canonical link of ``href`` found on ``page_url``."""
    if not href:
        return None
    absolute = urljoin(page_url, href)
    if rules.canonical_host:
        parts = urlsplit(absolute)
        site_host = urlsplit(rules.site).hostname or ""
        # Mirrors share the site's registrable name (znyjcn.sjfzxm.com -> www.sjfzxm.com).
        if parts.hostname and _same_site(parts.hostname, site_host):
            absolute = urlunsplit((parts.scheme, rules.canonical_host, *parts[2:]))
    return canonical_url(absolute)


def _same_site(host: str, site_host: str) -> bool:
    def base(name: str) -> str:
        return ".".join(name.lower().split(".")[-2:])

    return base(host) == base(site_host)


def extract_items(
    root: parsel.Selector, page_url: str, selectors: ItemSelectors, rules: HtmlRules
) -> list[ScrapedItem]:
    """Every item the ``selectors`` find on the page (items without title or link skipped)."""
    items = []
    for node in root.css(selectors.item):
        title = select_text(node, selectors.title)
        link = link_of(select_text(node, selectors.link), page_url, rules)
        if not title or not link:
            continue
        summary = select_text(node, selectors.summary)
        category = select_text(node, selectors.category)
        items.append(
            ScrapedItem(
                link=link,
                title=title,
                date_text=date_text(select_text(node, selectors.date), rules),
                summary_html=f"<p>{_escape(summary)}</p>" if summary else "",
                categories=(category,) if category else (),
            )
        )
    return items


def next_page(root: parsel.Selector, page_url: str, selector: str | None) -> str | None:
    href = select_text(root, selector)
    return canonical_url(urljoin(page_url, href)) if href else None


def extract_article(
    root: parsel.Selector, page_url: str, article: ArticleRules, rules: HtmlRules
) -> ScrapedArticle:
    body_html = ""
    if article.body:
        paragraphs = select_all(root, article.body)
        body_html = "".join(f"<p>{_escape(p)}</p>" for p in paragraphs)
    publisher = None
    if article.publisher_pattern:
        if article.publisher:
            text = " ".join(select_all(root, article.publisher))
        else:
            text = " ".join(root.xpath("//body//text()").getall())
        if match := re.search(article.publisher_pattern, text):
            publisher = clean_text(match.group(1) if match.groups() else match.group(0))
    follow: list[str] = []
    for selector in article.follow:
        for href in select_all(root, selector):
            if (link := link_of(href, page_url, rules)) and link not in follow:
                follow.append(link)
    category = select_text(root, article.category)
    return ScrapedArticle(
        title=select_text(root, article.title),
        date_text=date_text(select_text(root, article.date), rules),
        body_html=body_html,
        categories=(category,) if category else (),
        publisher=publisher or None,
        related=tuple(extract_items(root, page_url, article.related, rules))
        if article.related
        else (),
        follow=tuple(follow),
    )


def article_item(link: str, article: ScrapedArticle, listed: ScrapedItem | None) -> ScrapedItem:
    """An item from its article page, filling in what the listing lacked."""
    base = listed or ScrapedItem(link=link, title=article.title or "")
    return replace(
        base,
        title=base.title or article.title or "",
        date_text=article.date_text or base.date_text,
        summary_html=article.body_html or base.summary_html,
        categories=base.categories or article.categories,
        publisher=article.publisher or base.publisher,
    )


def date_text(raw: str | None, rules: HtmlRules) -> str | None:
    """The date part of a noisy text ("2022/11/24 18:25:00 35" -> "2022/11/24 18:25:00")."""
    if not raw:
        return None
    if rules.date_pattern:
        match = re.search(rules.date_pattern, raw)
        return match.group(0) if match else None
    return raw


def parse_scraped_date(text: str | None, rules: HtmlRules, zone: tzinfo) -> datetime | None:
    """``text`` read with the configured formats, in the source's zone; None if none fit."""
    if not text:
        return None
    for fmt in rules.date_formats:
        try:
            parsed = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=zone) if parsed.tzinfo is None else parsed
    return None


def to_entry(
    item: ScrapedItem, rules: HtmlRules, zone: tzinfo, language: str | None
) -> ParsedEntry:
    """A ScrapedItem in the shape every source produces. The guid is the article id (when
    ``id_pattern`` finds one), so URL variants of one article stay one item."""
    published = parse_scraped_date(item.date_text, rules, zone)
    guid = None
    if rules.id_pattern and (match := re.search(rules.id_pattern, urlsplit(item.link).path)):
        guid = f"{rules.canonical_host or urlsplit(item.link).hostname}/{match.group(1)}"
    return ParsedEntry(
        guid=guid,
        link=item.link,
        title=item.title,
        title_is_html=False,
        summary_html=item.summary_html,
        # A parsed date goes on as ISO 8601 with its zone; an unparsed text is left to
        # normalize's lenient parser (which applies the source zone too).
        published_raw=published.isoformat() if published else item.date_text,
        updated_raw=None,
        author=None,
        categories=item.categories,
        language=language,
        original_publisher=item.publisher,
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
