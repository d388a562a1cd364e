"""A fast path for the everyday feed: well-formed UTF-8 RSS 2.0 or Atom 1.0 whose
entries use only common elements, read with lxml into the ``ParsedFeed`` feedparser
would give.

feedparser costs ~28 ms of CPU on a 70 KB feed (SAX events through Python for every
element and character run); lxml builds the tree in C, and reading ~10 known elements
an entry from it costs well under a millisecond. Everything this module is not sure
to read as feedparser does (another format or version, another encoding, a DOCTYPE,
comments, xml:base, xml:lang on entries, unknown elements in an entry, HTML-looking
plain titles, inline XHTML, author e-mail forms, ...) returns None, and the caller
uses feedparser. ``tests/test_parse_common.py`` binds the two paths with a
differential test over every parser fixture and generated variants.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import replace

from lxml import etree

from aggregator.models import ParsedEntry, ParsedFeed

ATOM = "{http://www.w3.org/2005/Atom}"
_CONTENT = "{http://purl.org/rss/1.0/modules/content/}"
_DC = "{http://purl.org/dc/elements/1.1/}"
_XML = "{http://www.w3.org/XML/1998/namespace}"
_WFW = "{http://wellformedweb.org/CommentAPI/}"
_SLASH = "{http://purl.org/rss/1.0/modules/slash/}"
_SY = "{http://purl.org/rss/1.0/modules/syndication/}"
_MEDIA = ("{http://search.yahoo.com/mrss/}", "{http://search.yahoo.com/mrss}")  # and the old one

#: RSS item elements read here, and those feedparser keeps where we never look.
_RSS_ITEM_READ = {"title", "link", "guid", "pubDate", "description", "category",
                  f"{_CONTENT}encoded", f"{_DC}creator", "author"}  # fmt: skip
_RSS_ITEM_IGNORED = {"comments", f"{_WFW}commentRss", f"{_SLASH}comments"}
#: Item elements feedparser keeps apart from what we read when they are empty: an
#: enclosure, a Media RSS picture (70% of one benchmark's feeds had one or the other).
#: One with content is feedparser's: a media:title inside media:content is read as the
#: entry's title.
_RSS_ITEM_EMPTY_IGNORED = {
    "enclosure",
    *(f"{media}{name}" for media in _MEDIA for name in ("content", "thumbnail")),
}
#: Channel elements that do not change how feedparser reads the items.
_RSS_CHANNEL_KNOWN = {
    "title", "link", "description", "language", "ttl", "item", "lastBuildDate", "pubDate",
    "generator", "copyright", "managingEditor", "webMaster", "docs", "category", "image",
    f"{ATOM}link", f"{_SY}updatePeriod", f"{_SY}updateFrequency",
}  # fmt: skip
_ATOM_ENTRY_KNOWN = {f"{ATOM}{name}" for name in
                     ("title", "link", "id", "updated", "published", "summary", "content",
                      "category", "author")}  # fmt: skip
_ATOM_TEXT_TYPES = {None: "text/plain", "text": "text/plain", "html": "text/html"}
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_ATOM_LINK_TYPES = {"text": "text/plain", "html": "text/html", "xhtml": "application/xhtml+xml"}

_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([^"']+)["']""")
# feedparser guesses that plain RSS text holding an end tag or an entity is HTML.
_HTML_LOOKING = re.compile(r"</\w+>|&#?\w+;")


class _Unsupported(Exception):
    """Something feedparser may read differently: use feedparser."""


def parse_common_feed(body: bytes, headers: Mapping[str, str]) -> ParsedFeed | None:
    """The feed, or None when this is not a document the fast path reads."""
    if "content-location" in headers or not _utf8(body, headers.get("content-type", "")):
        return None
    head = body[:2048]
    if b"<!DOCTYPE" in head or b"<!--" in body:
        return None
    try:
        # A parser per call: lxml parsers must not be shared between threads.
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        root = etree.fromstring(body, parser)
        if root.tag == "rss" and root.get("version") == "2.0":
            return _rss(root, headers.get("content-language"))
        if root.tag == f"{ATOM}feed":
            return _atom(root, headers.get("content-language"))
    except (etree.XMLSyntaxError, ValueError, _Unsupported):
        return None
    return None


def _utf8(body: bytes, content_type: str) -> bool:
    """Whether the HTTP header and the XML declaration both say UTF-8 (or nothing)."""
    media, _, parameters = content_type.partition(";")
    charset = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", parameters, re.I)
    if charset and charset.group(1).lower() not in ("utf-8", "utf8"):
        return False
    if not charset and media.strip().lower().startswith("text/"):
        return False  # RFC 3023: text/xml without a charset is us-ascii to feedparser
    declared = _DECLARED_ENCODING.match(body[:200])
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        return False
    return not body.startswith((b"\xff\xfe", b"\xfe\xff"))


def _no_xml_attributes(root: etree._Element, allowed: frozenset[str] = frozenset()) -> None:
    """xml:base changes what links resolve against, xml:lang an entry's language."""
    for element in root.iter():
        for name in element.attrib:
            if name.startswith(_XML) and not (element is root and name in allowed):
                raise _Unsupported(name)


def _text(element: etree._Element | None) -> str:
    """An element's text, stripped as feedparser strips it; child elements (inline
    markup feedparser would serialize) are not read here."""
    if element is None:
        return ""
    if len(element):
        raise _Unsupported(f"markup inside {element.tag}")
    return (element.text or "").strip()


def _plain_rss_text(element: etree._Element | None) -> str:
    text = _text(element)
    if "<" in text or _HTML_LOOKING.search(text):
        raise _Unsupported("text feedparser may take for HTML")
    return text


# --- RSS 2.0 --------------------------------------------------------------------------


def _rss(root: etree._Element, header_language: str | None) -> ParsedFeed:
    _no_xml_attributes(root)
    channel = root.find("channel")
    if channel is None or len(root) != 1:
        raise _Unsupported("rss without a single channel")
    language = header_language
    feed_language: str | None = None
    title = link = ttl = None
    entries: list[ParsedEntry] = []
    for child in channel:
        tag = child.tag
        if tag not in _RSS_CHANNEL_KNOWN:
            raise _Unsupported(f"channel element {tag}")
        if tag == "item":
            entries.append(_rss_item(child, language))
        elif tag == "language":
            # feedparser applies the channel language to what follows it.
            feed_language = language = _text(child)
        elif tag == "title" and title is None:
            title = _plain_rss_text(child)
        elif tag == "link" and link is None:
            link = _text(child)
        elif tag == "ttl":
            ttl = _text(child)
    feed_language = feed_language or header_language
    # Items read before a <language> saw no language; feedparser then falls back to the
    # feed's, which is only known now.
    entries = [e if e.language else _with_language(e, feed_language) for e in entries]
    return ParsedFeed(
        version="rss20",
        title=title or "",
        link=link or None,
        language=feed_language,
        entries=tuple(entries),
        ttl_minutes=ttl_minutes(ttl),
    )


def _rss_item(item: etree._Element, language: str | None) -> ParsedEntry:
    found: dict[str, etree._Element] = {}
    categories: list[str] = []
    for child in item:
        tag = child.tag
        if tag == "category":
            if (term := _text(child)) and child.get("domain") is None:
                categories.append(term)
            elif child.get("domain") is not None:
                raise _Unsupported("category domain")
        elif tag in _RSS_ITEM_READ:
            if tag in found:
                raise _Unsupported(f"repeated {tag}")
            found[tag] = child
        elif tag in _RSS_ITEM_EMPTY_IGNORED:
            if len(child) or (child.text or "").strip():
                raise _Unsupported(f"{tag} with content")
        elif tag not in _RSS_ITEM_IGNORED:
            raise _Unsupported(f"item element {tag}")
    title = found.get("title")
    guid_element = found.get("guid")
    guid = _text(guid_element) or None
    link = _text(found.get("link")) or None
    permalink = guid_element is not None and guid_element.get("isPermaLink", "true") != "false"
    if link is None and guid and permalink:
        link = guid  # feedparser: a permalink guid is the link when there is none
    body = _text(found.get(f"{_CONTENT}encoded")) or _text(found.get("description"))
    return ParsedEntry(
        guid=guid,
        link=link,
        title=_plain_rss_text(title),
        title_is_html=False,
        summary_html=body,
        published_raw=_text(found.get("pubDate")) or None,
        updated_raw=None,
        author=_rss_author(found.get("author"), found.get(f"{_DC}creator")),
        categories=tuple(categories),
        language=language if title is not None else None,
    )


def _rss_author(author: etree._Element | None, creator: etree._Element | None) -> str | None:
    """The item's author as feedparser gives it: the text of ``<author>`` ("e-mail
    (Name)" left as written) or of ``dc:creator``."""
    if author is not None and creator is not None:
        raise _Unsupported("author and dc:creator")  # feedparser keeps the later one
    named = author if author is not None else creator
    if named is None:
        return None
    text = _plain_rss_text(named)
    if not text:
        raise _Unsupported("empty author")  # feedparser: "", not None
    return text


# --- Atom 1.0 -------------------------------------------------------------------------


def _atom(root: etree._Element, header_language: str | None) -> ParsedFeed:
    _no_xml_attributes(root, allowed=frozenset({f"{_XML}lang"}))
    language = root.get(f"{_XML}lang") or header_language
    title = link = feed_id = None
    entries: list[ParsedEntry] = []
    for child in root:
        tag = child.tag
        if tag == f"{ATOM}entry":
            entries.append(_atom_entry(child, language))
        elif tag == f"{ATOM}title" and title is None:
            title = _atom_text(child)
        elif tag == f"{ATOM}link":
            link = _alternate(child) or link
        elif tag == f"{ATOM}id":
            feed_id = _text(child) or None
    entries = [e if e.language else _with_language(e, language) for e in entries]
    return ParsedFeed(
        version="atom10",
        title=title[0] if title else "",
        link=link or feed_id,  # feedparser: the id is the link when there is none
        language=language,
        entries=tuple(entries),
    )


def _atom_text(element: etree._Element) -> tuple[str, str]:
    """Text of a title, summary or content, and its media type."""
    kind = _ATOM_TEXT_TYPES.get(element.get("type"))
    if kind is None or element.get("src") is not None:
        raise _Unsupported("xhtml or out-of-line Atom text")
    return _text(element), kind


def _alternate(link: etree._Element) -> str | None:
    """The href of a link feedparser takes as the page link (the last one wins)."""
    rel = link.get("rel", "alternate")
    kind = link.get("type", "application/atom+xml" if rel == "self" else "text/html")
    href = link.get("href")
    if href is not None and rel == "alternate" and _ATOM_LINK_TYPES.get(kind, kind) in _HTML_TYPES:
        return href.strip()
    return None


def _atom_entry(entry: etree._Element, language: str | None) -> ParsedEntry:
    found: dict[str, etree._Element] = {}
    categories: list[str] = []
    link = None
    for child in entry:
        tag = child.tag
        if tag == f"{ATOM}link":
            link = _alternate(child) or link
        elif tag == f"{ATOM}category":
            if term := (child.get("term") or "").strip():
                categories.append(term)
        elif tag in _ATOM_ENTRY_KNOWN:
            if tag in found:
                raise _Unsupported(f"repeated {tag}")
            found[tag] = child
        else:
            raise _Unsupported(f"entry element {tag}")
    title_element = found.get(f"{ATOM}title")
    title, title_type = _atom_text(title_element) if title_element is not None else ("", "")
    body = ""
    for name in ("content", "summary"):
        element = found.get(f"{ATOM}{name}")
        if element is not None:
            value, kind = _atom_text(element)
            if value:
                body = value if kind in _HTML_TYPES else text_to_html(value)
                break
    guid = _text(found.get(f"{ATOM}id")) or None
    return ParsedEntry(
        guid=guid,
        link=link or guid,  # as in feedparser
        title=title,
        title_is_html=title_type in _HTML_TYPES,
        summary_html=body,
        published_raw=_text(found.get(f"{ATOM}published"))
        or _text(found.get(f"{ATOM}updated"))
        or None,
        updated_raw=_text(found.get(f"{ATOM}updated")) or None,
        author=_atom_author(found.get(f"{ATOM}author")),
        categories=tuple(categories),
        language=language if title_element is not None else None,
    )


def _atom_author(author: etree._Element | None) -> str | None:
    if author is None:
        return None
    names = [child for child in author if child.tag == f"{ATOM}name"]
    if any(child.tag not in (f"{ATOM}name", f"{ATOM}uri") for child in author) or len(names) > 1:
        raise _Unsupported("author with e-mail or extensions")
    return (_text(names[0]) or None) if names else None


# --- shared ---------------------------------------------------------------------------


def _with_language(entry: ParsedEntry, language: str | None) -> ParsedEntry:
    return replace(entry, language=language)


def ttl_minutes(value: object) -> int | None:
    """An RSS <ttl> as minutes (None unless a positive number)."""
    try:
        minutes = int(str(value).strip())
    except ValueError:
        return None
    return minutes if minutes > 0 else None


def text_to_html(text: str) -> str:
    """Plain text as HTML paragraphs (blank lines separate them)."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
