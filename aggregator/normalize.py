"""``ParsedEntry`` -> ``Item``: canonical links, UTC dates, clean text, safe HTML.

Pure: data in, data out, ``now`` passed in. Never raises for odd input.

An entry is kept when a reader has something to show or follow: a title, a link, or
content that survives sanitizing (an image-only entry is titled from the image's alt
text, else "(untitled)"). One with none of them (no title, no link, and content that
is empty or only markup the sanitizer removes: SVG, MathML, scripts) yields None, and
the caller counts it as an empty entry dropped.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urljoin, urlsplit, urlunsplit

import nh3
from dateutil import parser as dateutil_parser
from w3lib.url import canonicalize_url, url_query_cleaner

from aggregator.models import Item, ParsedEntry

#: Query parameters that only track the click; removing them makes reposts comparable.
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "igshid",
        "mc_cid", "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "ref_src", "cmpid", "spm",
    }
)  # fmt: skip
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")

#: Feeds claiming dates before this are broken (one real textile feed says 1789).
EARLIEST_PLAUSIBLE = datetime(1995, 1, 1, tzinfo=UTC)
MAX_TITLE_CHARS = 300
MAX_SUMMARY_TEXT_CHARS = 2000

# Characters XML 1.0 forbids, plus lone surrogates; they break every feed reader.
_INVALID_XML_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]"
)
_WHITESPACE = re.compile(r"\s+")
_ENTITY = re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z][a-zA-Z0-9]{1,31});")
_BLOCK_BOUNDARY = re.compile(
    r"<(?:/?(?:p|div|li|ul|ol|h[1-6]|tr|td|th|blockquote|pre)|br)\b[^>]*>", re.I
)
_IMAGE_ALT = re.compile(r'<img\b[^>]*?\balt\s*=\s*"([^"]+)"', re.I)
#: The title of an entry that has content but no title and no text to take one from.
UNTITLED = "(untitled)"
#: Raise when a change here gives a stored entry a different item: entries that
#: sources delivered before are then normalized again (see ``prepare.entry_digest``).
REVISION = 1
_URL_ATTRIBUTES = frozenset({"href", "src", "cite", "longdesc"})
_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})


def normalize_entry(
    entry: ParsedEntry,
    *,
    source_id: str,
    base_url: str,
    timezone: tzinfo,
    now: datetime,
    publisher_patterns: Sequence[re.Pattern[str]] | None = None,
) -> Item | None:
    """Clean one entry. ``base_url`` resolves relative links; ``timezone`` applies to
    dates written without a zone; ``now`` is first-seen time and the future limit."""
    link, guid = _link_and_guid(entry, base_url)
    summary_html = sanitize_html(entry.summary_html, base_url=link or base_url)
    summary_text = html_to_text(summary_html, MAX_SUMMARY_TEXT_CHARS)
    named_in_text, summary_text = credit_line(summary_text, publisher_patterns)
    title = clean_title(entry.title, is_html=entry.title_is_html)
    if not title:
        title = _shorten(summary_text, 80)
    untitled = not title
    if untitled and not link and not summary_html.strip():
        return None
    if untitled:
        title = _image_alt(summary_html) or UNTITLED

    published = parse_date(entry.published_raw, timezone)
    updated = parse_date(entry.updated_raw, timezone)
    date_missing = published is None and updated is None
    published = min(published or updated or now, now)  # future dates are clamped to now
    updated = min(max(updated or published, published), now)

    # Markup-only entries differ in their markup alone: let it tell them apart.
    keys = _dedupe_keys(source_id, link, guid, title, summary_html if untitled else summary_text)
    content_hash = hashlib.sha256(
        "\x1f".join((title, summary_html, link or "")).encode("utf-8")
    ).hexdigest()
    return Item(
        source_id=source_id,
        keys=keys,
        link=link,
        guid=guid,
        title=title,
        summary_html=summary_html,
        summary_text=summary_text,
        published_at=published,
        updated_at=updated,
        date_missing=date_missing,
        author=clean_text(entry.author) or None,
        categories=tuple(dict.fromkeys(c for c in map(clean_text, entry.categories) if c)),
        language=(entry.language or "").strip().lower() or None,
        content_hash=content_hash,
        original_publisher=publisher_name(entry.original_publisher or named_in_text),
    )


def entry_keys(entry: ParsedEntry, *, source_id: str, base_url: str) -> tuple[str, ...] | None:
    """The dedupe keys ``normalize_entry`` gives the entry, when its link or guid make
    them (no text needed); None when only its text would."""
    link, guid = _link_and_guid(entry, base_url)
    return _dedupe_keys(source_id, link, guid, "", "") if link or guid else None


def _link_and_guid(entry: ParsedEntry, base_url: str) -> tuple[str | None, str | None]:
    """The entry's canonical link and clean guid, as its item and its keys have them."""
    return canonical_url(entry.link, base_url), clean_text(entry.guid) if entry.guid else None


def _image_alt(summary_html: str) -> str:
    """The alt text of the first image that has one (sanitized HTML quotes it with ")."""
    found = _IMAGE_ALT.search(summary_html)
    return _shorten(clean_text(html.unescape(found.group(1))), 80) if found else ""


#: Where a report names who first wrote it, as portals write it: "(source: Hebei Daily)",
#: "Source: Reuters.", "（来源：河北日报）", "来源：纺织服装周刊". Group 1 is the name.
DEFAULT_PUBLISHER_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"[(（]\s*(?:source|来源|来自|转载自)\s*[:：]\s*([^()（）\n]{2,60}?)\s*[)）]", re.I),
    # "Source:" opening a sentence, the name up to the sentence's end.
    re.compile(
        r"(?:^|(?<=[.。!?！？] )|(?<=[.。!?！？]))Source\s*:\s*([^\n]{2,60}?)\s*"
        r"(?:\.(?=\s|$)|$|(?=\s(?:Related|Click|Read|Edit)))"
    ),
    re.compile(r"(?:来源|稿源)\s*[:：]\s*([^\s。；;，,（(）)]{2,40})"),
)
_NAME_TRIM = " \t\"'“”‘’「」《》<>[]【】.,;:。，；：、·-"
#: A word every default pattern needs: a text without one is not searched (the patterns'
#: look-behinds cost a third of normalizing an item, tried at every character).
_CREDIT_WORDS = ("ource", "OURCE", "来源", "来自", "转载自", "稿源")


def credit_line(
    text: str, patterns: Sequence[re.Pattern[str]] | None = None
) -> tuple[str | None, str]:
    """(the publisher a "(source: X)"-style line names, the text without that line).

    The line is portal boilerplate: left in, it would make two reposts of different
    stories by one paper look alike, and one story credited two ways look different."""
    if patterns is None:
        if not any(word in text for word in _CREDIT_WORDS):
            return None, text
        patterns = DEFAULT_PUBLISHER_PATTERNS
    for pattern in patterns:
        found = pattern.search(text)
        if found is None:
            continue
        name = found.group(1) if found.groups() else found.group(0)
        rest = (text[: found.start()] + " " + text[found.end() :]).strip()
        return name, _WHITESPACE.sub(" ", rest)
    return None, text


def publisher_name(raw: str | None) -> str | None:
    """One publisher, one name: Unicode-normalized (full-width letters and colons of
    Chinese portals), spaces collapsed, quotes and trailing punctuation removed."""
    if not raw:
        return None
    name = _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", clean_text(raw))).strip(_NAME_TRIM)
    return name[:120] or None


#: An absolute URL already in canonical form: lower-case scheme and host, no port, a
#: path of unreserved characters without dot segments, at most one plain query
#: parameter, no fragment. Most feeds' links are; w3lib's canonicalization of each
#: cost ~6% of preparing an item.
_PLAIN_URL = re.compile(
    r"https?://[a-z0-9-]+(?:\.[a-z0-9-]+)*(?P<path>/[A-Za-z0-9._~/-]*)?"
    r"(?:\?(?P<name>[A-Za-z0-9_]+)=[A-Za-z0-9._~-]*)?"
)
_DOT_SEGMENT = re.compile(r"/\.\.?(?:/|$)")


def _plain_canonical(url: str) -> str | None:
    """``url`` canonical as it is (see ``_PLAIN_URL``), or None to work it out."""
    found = _PLAIN_URL.fullmatch(url)
    if found is None:
        return None
    path, name = found.group("path"), found.group("name")
    if path and _DOT_SEGMENT.search(path):
        return None
    if name is not None and (
        name.lower() in TRACKING_PARAMS or name.lower().startswith(TRACKING_PREFIXES)
    ):
        return None
    if not path:
        return None if name is not None else f"{url}/"  # the canonical form has a root
    return url


def canonical_url(url: str | None, base_url: str = "") -> str | None:
    """Absolute http(s) URL without fragment, tracking parameters or default port, with
    lower-cased scheme and host and a sorted query; None for anything else."""
    if not url or not url.strip():
        return None
    plain = _plain_canonical(url)
    if plain is not None:
        return plain
    absolute = urljoin(base_url, _INVALID_XML_CHARS.sub("", url.strip()))
    parts = urlsplit(absolute)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    tracking = [
        name
        for name, _ in parse_qsl(parts.query, keep_blank_values=True)
        if name.lower() in TRACKING_PARAMS or name.lower().startswith(TRACKING_PREFIXES)
    ]
    if tracking:
        absolute = url_query_cleaner(absolute, tracking, remove=True, keep_fragments=True)
    try:
        canonical = canonicalize_url(absolute, keep_fragments=False)
    except ValueError:  # e.g. a port that is not a number
        return None
    parts = urlsplit(canonical)
    default_port = {"http": 80, "https": 443}[parts.scheme]
    if parts.port == default_port:
        host = parts.hostname or ""
        canonical = urlunsplit((parts.scheme, host, parts.path or "/", parts.query, ""))
    return canonical


def parse_date(raw: str | None, timezone: tzinfo) -> datetime | None:
    """A UTC datetime from RFC 822, RFC 3339/ISO 8601 or a looser common form.

    Dates without a zone are taken to be in ``timezone``. Implausible dates (before
    1995) give None, so the caller falls back to the first-seen time."""
    if not raw or not raw.strip():
        return None
    text = raw.strip()
    parsed: datetime | None = None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                parsed = dateutil_parser.parse(text)
            except (ValueError, OverflowError):
                return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone)
    parsed = parsed.astimezone(UTC)
    return parsed if parsed >= EARLIEST_PLAUSIBLE else None


def clean_text(value: str | None) -> str:
    """Single-line text: invalid characters dropped, whitespace collapsed."""
    if not value:
        return ""
    return _WHITESPACE.sub(" ", _INVALID_XML_CHARS.sub("", value)).strip()


def clean_title(title: str, *, is_html: bool) -> str:
    """Plain-text title: tags stripped, entities decoded (twice-escaped ones too)."""
    text = _INVALID_XML_CHARS.sub("", title or "")
    if is_html or "<" in text:
        text = nh3.clean(text, tags=set())
    # Publishers often escape twice ("&amp;amp;"); decode until no entity is left.
    for _ in range(3):
        if not _ENTITY.search(text):
            break
        text = html.unescape(text)
    return _shorten(clean_text(text), MAX_TITLE_CHARS)


def sanitize_html(fragment: str, *, base_url: str) -> str:
    """Allow-list sanitized HTML with every link and image made absolute."""
    if not fragment or not fragment.strip():
        return ""

    def absolute_urls(tag: str, attribute: str, value: str) -> str | None:
        if attribute not in _URL_ATTRIBUTES:
            return value
        if _PLAIN_URL.fullmatch(value):  # absolute, http(s), nothing to resolve
            return value
        resolved = urljoin(base_url, value.strip())
        return resolved if urlsplit(resolved).scheme.lower() in _SAFE_SCHEMES else None

    cleaned = nh3.clean(
        _INVALID_XML_CHARS.sub("", fragment),
        attribute_filter=absolute_urls,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    return cleaned.strip()


def html_to_text(fragment: str, limit: int) -> str:
    """Readable plain text of an HTML fragment, at most ``limit`` characters."""
    if not fragment:
        return ""
    spaced = _BLOCK_BOUNDARY.sub(" ", fragment)
    text = html.unescape(nh3.clean(spaced, tags=set()))
    return _shorten(clean_text(text), limit)


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Cut at a word boundary for Latin text; CJK text has no spaces to respect.
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"


def _dedupe_keys(
    source_id: str, link: str | None, guid: str | None, title: str, text: str
) -> tuple[str, ...]:
    """Exact-dedupe keys, strongest first.

    A link is global: two sources carrying one URL carry one story. A guid that is an
    absolute URL is a permalink and also global; any other guid (Fibre2Fashion's numeric
    ones) is only unique inside its own feed, so it is scoped by source."""
    keys: list[str] = []
    if link:
        keys.append(f"link:{link}")
    if guid:
        guid_url = canonical_url(guid) if guid.lower().startswith(("http://", "https://")) else None
        keys.append(f"link:{guid_url}" if guid_url else f"guid:{source_id}:{guid}")
    if not keys:
        digest = hashlib.sha256(f"{title}\x1f{text}".encode()).hexdigest()[:32]
        keys.append(f"hash:{source_id}:{digest}")
    return tuple(dict.fromkeys(keys))
