"""Feed documents -> ``ParsedFeed``.

XML feeds (RSS 0.9x/1.0/2.0, Atom 0.3/1.0) go through feedparser, given the bytes and
the response headers so an HTTP charset is honoured; it never gets a URL. The everyday
well-formed UTF-8 RSS 2.0 / Atom 1.0 feed takes a fast lxml path instead (``common``),
which gives the same result ~30 times faster. feedparser
6.0 does not read JSON Feed, so JSON Feed 1.0/1.1 is mapped here from the spec
(https://jsonfeed.org/version/1.1). Sanitizing and relative-link resolution are left
to ``normalize`` (one allow-list sanitizer for every format; links resolve against
the item URL, which feedparser cannot do).
"""

from __future__ import annotations

import html
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urljoin

import feedparser
import lxml.html
from lxml import etree

from aggregator.errors import ParseError
from aggregator.models import FetchResult, ParsedEntry, ParsedFeed
from aggregator.parse.charset import read_declared
from aggregator.parse.common import parse_common_feed, text_to_html, ttl_minutes

log = logging.getLogger(__name__)

_HTML_TYPES = ("text/html", "application/xhtml+xml")
#: expat's words for a document that ends before its root element is closed.
_TRUNCATION_MESSAGES = ("no element found", "unclosed token")
_JSON_FEED_VERSIONS = {
    "https://jsonfeed.org/version/1": "json10",
    "https://jsonfeed.org/version/1.1": "json11",
}


def parse_feed(fetched: FetchResult) -> ParsedFeed:
    """Parse the body of a successful fetch; raise ``ParseError`` if it is not a feed."""
    headers = dict(fetched.headers)
    if _looks_like_json(fetched.body, headers.get("content-type", "")):
        return _parse_json_feed(fetched)
    return _parse_xml_feed(fetched, headers)


def _looks_like_json(body: bytes, content_type: str) -> bool:
    return "json" in content_type.lower() or body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")


def _parse_xml_feed(fetched: FetchResult, headers: Mapping[str, str]) -> ParsedFeed:
    if not fetched.body.strip():
        raise ParseError(fetched.source_id, fetched.url, "empty response body")
    decoded = read_declared(fetched.source_id, fetched.url, fetched.body, headers)
    if decoded.repair is not None:
        fetched = replace(fetched, body=decoded.body)
    parsed = parse_common_feed(fetched.body, decoded.headers) or feedparser_feed(
        fetched, decoded.headers
    )
    if decoded.repair is None:
        return parsed
    log.info("charset repaired source=%s: %s", fetched.source_id, decoded.repair)
    warning = f"charset repaired: {decoded.repair}"
    return replace(parsed, warning=f"{warning}; {parsed.warning}" if parsed.warning else warning)


def feedparser_feed(fetched: FetchResult, headers: Mapping[str, str]) -> ParsedFeed:
    """Any XML feed, through feedparser (what the fast path does not read)."""
    parsed = feedparser.parse(
        fetched.body,
        response_headers=dict(headers),
        sanitize_html=False,  # nh3 sanitizes in normalize, once, with our allow-list
        resolve_relative_uris=False,  # normalize resolves against the item URL
    )
    problem = parsed.get("bozo_exception")
    if problem is not None and any(m in str(problem) for m in _TRUNCATION_MESSAGES):
        # A cut-off document: store nothing half-read, fetch it whole next time.
        raise ParseError(fetched.source_id, fetched.url, f"truncated document: {problem}")
    # A document with entries is usable even if slightly malformed; one without entries
    # is only a valid (empty) feed when it parsed cleanly.
    if not parsed.entries and (problem or not parsed.get("version")):
        reason = f"not a feed: {problem}" if problem else "not a recognizable RSS or Atom feed"
        if b"<html" in fetched.body[:4096].lower():
            reason = "not a feed: the server returned an HTML page"
            if advertised := advertised_feeds(fetched.body, fetched.final_url or fetched.url):
                reason += f"; it advertises a feed at {advertised[0]} (use that as the url)"
        raise ParseError(fetched.source_id, fetched.url, reason)
    feed = parsed.feed
    language = feed.get("language")
    return ParsedFeed(
        version=parsed.get("version") or "unknown",
        title=_plain(feed.get("title", ""), feed.get("title_detail")),
        link=feed.get("link"),
        language=language,
        entries=tuple(_xml_entry(e, language) for e in parsed.entries),
        warning=f"{type(problem).__name__}: {problem}" if problem else None,
        ttl_minutes=ttl_minutes(feed.get("ttl")),
    )


def advertised_feeds(page: bytes, base_url: str) -> list[str]:
    """Feed URLs an HTML page advertises with ``<link rel="alternate" type="...">``."""
    try:
        document = lxml.html.fromstring(page)
    except (etree.ParserError, ValueError):
        return []
    found = []
    for link in document.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").lower()
        href = (link.get("href") or "").strip()
        if "alternate" in rel and href and any(k in kind for k in ("rss", "atom", "json")):
            found.append(urljoin(base_url, href))
    return found


def _xml_entry(entry: Any, feed_language: str | None) -> ParsedEntry:
    title_detail = entry.get("title_detail") or {}
    return ParsedEntry(
        guid=(entry.get("id") or "").strip() or None,
        link=(entry.get("link") or "").strip() or None,
        title=entry.get("title", ""),
        title_is_html=title_detail.get("type") in _HTML_TYPES,
        summary_html=_entry_html(entry),
        published_raw=_raw(entry, "published") or _raw(entry, "created") or _raw(entry, "updated"),
        updated_raw=_raw(entry, "updated"),
        author=entry.get("author"),
        categories=tuple(
            t["term"].strip() for t in entry.get("tags", ()) if (t.get("term") or "").strip()
        ),
        language=title_detail.get("language") or feed_language,
        original_publisher=_named_source(entry),
    )


def _named_source(entry: Any) -> str | None:
    """Who first published the entry, as the feed says: RSS ``<source>``, an Atom
    ``<source>``'s title, or ``dc:source`` (a name, not a URL)."""
    source = entry.get("source") or {}
    for value in (source.get("title"), entry.get("dc_source")):
        if isinstance(value, str) and value.strip() and not value.strip().startswith("http"):
            return value.strip()
    return None


def _raw(entry: Any, key: str) -> Any:
    # dict.get bypasses feedparser's deprecated updated->published fallback (and its warning).
    return dict.get(entry, key)


def _entry_html(entry: Any) -> str:
    """The richest body the entry has, as HTML (plain text is escaped)."""
    candidates = [*entry.get("content", ()), entry.get("summary_detail")]
    for detail in candidates:
        if detail and (detail.get("value") or "").strip():
            value: str = detail["value"]
            return value if detail.get("type") in _HTML_TYPES else text_to_html(value)
    return ""


def _plain(value: str, detail: Mapping[str, Any] | None) -> str:
    return value if not detail or detail.get("type") not in _HTML_TYPES else html.unescape(value)


def _parse_json_feed(fetched: FetchResult) -> ParsedFeed:
    try:
        document = json.loads(fetched.body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(fetched.source_id, fetched.url, f"invalid JSON: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise ParseError(fetched.source_id, fetched.url, "not a JSON Feed: no 'items' list")
    version = _JSON_FEED_VERSIONS.get(str(document.get("version", "")).rstrip("/"))
    if version is None:
        raise ParseError(
            fetched.source_id, fetched.url, f"unknown JSON Feed version {document.get('version')!r}"
        )
    language = _str(document.get("language"))
    entries = tuple(
        _json_entry(item, language) for item in document["items"] if isinstance(item, dict)
    )
    return ParsedFeed(
        version=version,
        title=_str(document.get("title")) or "",
        link=_str(document.get("home_page_url")),
        language=language,
        entries=entries,
    )


def _json_entry(item: Mapping[str, Any], feed_language: str | None) -> ParsedEntry:
    # JSON Feed 1.1 replaced "author" with "authors"; read both (1.0 feeds still abound).
    authors = item.get("authors") or (
        [item["author"]] if isinstance(item.get("author"), dict) else []
    )
    author_names = [str(a["name"]) for a in authors if isinstance(a, dict) and a.get("name")]
    body = _str(item.get("content_html"))
    if not body and (text := _str(item.get("content_text") or item.get("summary"))):
        body = text_to_html(text)
    tags: list[Any] = item["tags"] if isinstance(item.get("tags"), list) else []
    return ParsedEntry(
        guid=_str(item.get("id")),
        link=_str(item.get("url")) or _str(item.get("external_url")),
        title=_str(item.get("title")) or "",
        title_is_html=False,  # the spec says title is plain text
        summary_html=body or "",
        published_raw=_str(item.get("date_published")),
        updated_raw=_str(item.get("date_modified")),
        author=", ".join(author_names) or None,
        categories=tuple(t.strip() for t in tags if isinstance(t, str) and t.strip()),
        language=_str(item.get("language")) or feed_language,
    )


def _str(value: object) -> str | None:
    """A JSON value as a non-empty string, or None (ids may be numbers in the wild)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        return str(value).strip() or None
    return None
