"""Configuration: YAML files -> validated, immutable models.

A config folder holds ``settings.yaml``, ``sources.yaml`` and ``topics.yaml`` (the
topics file can be moved with the ``topics_file`` setting). ``load_config`` reads all
three, validates them with pydantic, then checks what spans files (duplicate ids,
topics naming unknown sources, snapshot files that do not exist). Every mistake in
every file is collected and raised together as one ``ConfigError`` whose problems say
``file:line: field: message``; no traceback ever reaches a curator.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from aggregator import __version__
from aggregator.cluster import ClusterSettings
from aggregator.errors import ConfigError, ConfigProblem
from aggregator.rules import RuleError, parse_expression, parse_term

#: Every feed is published in each format, as ``<slug>.<extension>``: extension -> media type.
FEED_FORMATS = {
    "rss": "application/rss+xml",
    "atom": "application/atom+xml",
    "json": "application/feed+json",
}
#: The pages published beside the feeds.
SITE_FILES = frozenset(
    {"index.html", "topics.opml", "all.opml", "sources.opml", "icon.png", "favicon.png"}
)

DEFAULT_SETTINGS_FILE = "settings.yaml"
DEFAULT_SOURCES_FILE = "sources.yaml"
DEFAULT_TOPICS_FILE = "topics.yaml"

M = TypeVar("M", bound=BaseModel)

# A YAML path such as ("topics", 2, "include"); the key of the line map.
Loc = tuple[str | int, ...]

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
#: Slugs the publisher uses itself (the feed of every item, the front page).
RESERVED_SLUGS = frozenset({"all", "index"})
_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_SOURCE_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?$")


# --- value types with messages a curator understands -------------------------------


def _fail(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _duration(value: object) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"`` or ``"1d"``; more than zero."""
    seconds = _duration_or_zero(value)
    if seconds == 0:
        raise _fail("duration", "must be greater than zero")
    return seconds


def _duration_or_zero(value: object) -> float:
    if isinstance(value, bool):
        raise _fail("duration", "expected a duration such as 90, 30s, 15m, 2h or 1d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (
        m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
    ):
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]
    else:
        raise _fail("duration", "expected a duration such as 90, 30s, 15m, 2h or 1d")
    if seconds < 0:
        raise _fail("duration", "must not be negative")
    return seconds


def _size(value: object) -> int:
    """Bytes from ``1048576``, ``"512KB"`` or ``"5MB"``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and (m := re.fullmatch(r"\s*(\d+)\s*([kmg]?b)?\s*", value.lower())):
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2) or "b"]
        if size > 0:
            return size
    raise _fail("size", "expected a positive size such as 1048576, 512KB or 5MB")


_TERM_OPTIONS = frozenset({"term", "weight", "case_sensitive", "exact", "field"})


def _list_of_terms(value: object) -> object:
    if not isinstance(value, list):
        raise _fail("term_list", "expected a list of strings")
    return value


def _term(value: object) -> TermSpec:
    """One term: ``"cotton"``, ``"title:re:^PSF"``, or ``{term: China, case_sensitive: true}``."""
    if isinstance(value, str):
        if not value.strip():
            raise _fail("term", "terms must not be empty strings")
        spec: TermSpec = value.strip()
    elif isinstance(value, dict):
        unknown = set(value) - _TERM_OPTIONS
        if unknown or "term" not in value:
            raise _fail(
                "term",
                "a term mapping takes term, weight, case_sensitive, exact, field; "
                f"got {sorted(value)}",
            )
        spec = tuple(sorted(value.items()))  # hashable and frozen
    else:
        raise _fail("term", "expected a term: a string, or a mapping with `term:`")
    try:
        parse_term(spec if isinstance(spec, str) else dict(spec))
    except RuleError as exc:
        raise _fail("term", str(exc)) from None
    return spec


def _term_groups(value: object) -> object:
    """``all_of``: each element is a term or a list of alternative terms."""
    if not isinstance(value, list):
        raise _fail("term_groups", "expected a list whose elements are terms or lists of terms")
    return [element if isinstance(element, list) else [element] for element in value]


def _expression(value: object) -> str:
    if not isinstance(value, str):
        raise _fail("expression", "expected an expression such as: cotton AND (price OR futures)")
    try:
        parse_expression(value)
    except RuleError as exc:
        raise _fail("expression", f"{exc} in {value!r}") from None
    return value


def _http_url(value: object) -> str:
    if not isinstance(value, str):
        raise _fail("url", "expected an http(s) URL")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or " " in value.strip():
        raise _fail("url", f"expected an http(s) URL, got {value!r}")
    return value.strip()


def _source_location(value: object) -> str:
    """An http(s) URL, or a path (to a snapshot file) relative to the config folder."""
    if not isinstance(value, str) or not value.strip():
        raise _fail("url", "expected an http(s) URL or a file path")
    value = value.strip()
    if "://" in value or value.lower().startswith(("http:", "https:")):
        return _http_url(value)
    return value


def _timezone(value: object) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise _fail(
            "timezone", f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)"
        ) from None
    return str(value)


def _pattern(regex: re.Pattern[str], what: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise _fail("identifier", f"{what}, got {value!r}")
        return value

    return check


Duration = Annotated[float, BeforeValidator(_duration)]
ListenAddress = Annotated[
    str,
    BeforeValidator(
        _pattern(
            re.compile(r"^(\[[0-9a-fA-F:]+\]|[\w.-]*):\d{1,5}$"),
            "expected host:port, e.g. 127.0.0.1:9180",
        )
    ),
]
DurationOrZero = Annotated[float, BeforeValidator(_duration_or_zero)]
Size = Annotated[int, BeforeValidator(_size)]
#: A term as written: a string, or the sorted items of its mapping form.
TermSpec = str | tuple[tuple[str, object], ...]
Term = Annotated[TermSpec, BeforeValidator(_term)]
TermList = Annotated[tuple[Term, ...], BeforeValidator(_list_of_terms)]
TermGroups = Annotated[
    tuple[Annotated[tuple[Term, ...], Field(min_length=1)], ...], BeforeValidator(_term_groups)
]
Expression = Annotated[str, BeforeValidator(_expression)]
HttpUrl = Annotated[str, BeforeValidator(_http_url)]
SourceLocation = Annotated[str, BeforeValidator(_source_location)]
TimeZoneName = Annotated[str, BeforeValidator(_timezone)]
Slug = Annotated[
    str, BeforeValidator(_pattern(_SLUG_RE, "expected lower-case letters, digits and dashes"))
]
SourceId = Annotated[
    str,
    BeforeValidator(
        _pattern(_SOURCE_ID_RE, "expected lower-case letters, digits, '-', '_' or '.'")
    ),
]
NonEmptyStr = Annotated[str, Field(min_length=1)]


def _database_url(value: object) -> str:
    if not isinstance(value, str) or not re.match(r"^postgres(ql)?(\+psycopg)?://", value):
        raise _fail(
            "database_url", "expected a PostgreSQL URL: postgresql://user:password@host/database"
        )
    return value


DatabaseUrl = Annotated[str, BeforeValidator(_database_url)]
#: Overrides ``database_url`` so a password need not sit in a YAML file.
DATABASE_URL_VARIABLE = "TEXTILE_FEEDS_DATABASE_URL"


class _Model(BaseModel):
    # Unknown keys are mistakes (usually typos), never silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


# --- settings.yaml -----------------------------------------------------------------


class FetchSettings(_Model):
    #: Requests in flight at once, over all hosts.
    concurrency: int = Field(default=8, ge=1, le=256)
    #: Requests in flight at once to one host.
    per_host: int = Field(default=1, ge=1, le=32)
    connect_timeout: Duration = 10.0
    read_timeout: Duration = 30.0
    #: Total time one request may take, body included, however slowly it trickles.
    deadline: Duration = 60.0
    #: Largest body accepted, counted after decompression.
    max_body: Size = 10 * 1024 * 1024
    #: Least time between the starts of two requests to one host.
    per_host_delay: DurationOrZero = 1.0
    #: Fetch private, loopback and link-local addresses (off: a feed URL must not reach
    #: into the operator's own network; tests turn it on for 127.0.0.1).
    allow_private_addresses: bool = False


class ScheduleSettings(_Model):
    """When each source is polled next; see ``aggregator.schedule``."""

    #: Bounds of every computed interval (error backoff and gone sources aside).
    min_interval: Duration = 300.0
    max_interval: Duration = 86400.0
    #: Poll busy sources more often and quiet ones less, from their posting rate.
    #: A source's own ``interval`` always wins over this.
    adaptive: bool = True
    #: First wait after an error; doubles with every further error, up to the cap.
    error_backoff: Duration = 300.0
    error_backoff_cap: Duration = 21600.0
    #: Random extra wait, as a fraction of the interval, so polls do not bunch up.
    jitter: float = Field(default=0.1, ge=0, le=1)
    #: How often a source answering 410 Gone is still probed.
    gone_interval: Duration = 7 * 86400.0
    #: Consecutive polls showing the same permanent redirect before we follow it.
    redirect_confirmations: int = Field(default=3, ge=1, le=100)
    #: Fetch without validators at least this often (servers with broken 304s).
    unconditional_every: Duration = 86400.0


class ClusterConfig(_Model):
    """Near-duplicate stories across sources; see ``aggregator.cluster``."""

    #: Jaccard similarity of word pairs (character pairs in Chinese) from which two items
    #: are one story.
    threshold: float = Field(default=0.45, gt=0, le=1)
    #: Only items published this close together can be one story.
    window: Duration = 14 * 86400.0
    #: Texts with fewer shingles than this need threshold + short_text_margin.
    short_text: int = Field(default=12, ge=0)
    short_text_margin: float = Field(default=0.2, ge=0, le=1)

    def settings(self) -> ClusterSettings:
        return ClusterSettings(
            threshold=self.threshold,
            window=timedelta(seconds=self.window),
            short_text=self.short_text,
            short_text_margin=self.short_text_margin,
        )


class LoggingSettings(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: "text" for people, "json" (one object per line) for log collectors.
    format: Literal["text", "json"] = "text"


class StatusSettings(_Model):
    #: ``status`` exits 1 when a source has failed this many polls in a row.
    failing_after: int = Field(default=3, ge=1)
    #: ``/healthz`` answers 503 when no cycle ended for this long (default: three poll
    #: intervals).
    stale_after: Duration | None = None
    #: "host:port" the daemon and workers serve ``/healthz`` and ``/metrics`` on
    #: (``run --listen`` overrides it); none by default.
    listen: ListenAddress | None = None


class WorkerSettings(_Model):
    """Workers sharing a PostgreSQL database (``textile-feeds worker``)."""

    #: How long a worker holds the hosts it claimed; a worker that dies loses them after
    #: this. Longer than one batch takes to poll.
    lease: Duration = 300.0
    #: Hosts claimed at a time (all their due sources are polled together).
    batch: int = Field(default=16, ge=1, le=1000)
    #: Pause when nothing is due.
    idle: Duration = 5.0


class Settings(_Model):
    #: SQLite file, relative to the config folder (the default database).
    database: NonEmptyStr = "../var/textile-feeds.sqlite"
    #: A PostgreSQL database instead (``postgresql://user:password@host/db``), for
    #: several workers sharing the polling; the environment variable
    #: TEXTILE_FEEDS_DATABASE_URL overrides it.
    database_url: DatabaseUrl | None = None
    #: Folder the feeds are written to, relative to the config folder.
    output_dir: NonEmptyStr = "../feeds_out"
    #: Public URL the output folder is served at; feeds' self links are built from it.
    base_url: HttpUrl = "http://localhost:8000/"
    #: Title prefix of every published feed.
    site_title: NonEmptyStr = "Textile Feeds"
    #: The language of the site's own words (titles, descriptions): feeds declare it.
    site_language: NonEmptyStr = "en"
    #: Where a site owner can reach whoever runs this instance; goes into the User-Agent.
    contact_url: HttpUrl = "https://github.com/textile-feeds/textile-feeds"
    #: Overrides the whole User-Agent (default: "textile-feeds/<version> (+<contact_url>)").
    user_agent: NonEmptyStr | None = None
    #: Default time between two polls of a source.
    poll_interval: Duration = 1800.0
    #: Entries per published feed.
    items_per_feed: int = Field(default=50, ge=1, le=1000)
    #: At most this many entries of one source in one feed, so a chatty portal cannot
    #: fill a topic (0: no cap).
    per_source_cap: int = Field(default=10, ge=0, le=1000)
    #: WebSub hub: feeds link to it and it is pinged when a feed changes.
    websub_hub: HttpUrl | None = None
    #: Items older than this leave the database, unless a feed still shows them.
    retention: Duration = 365 * 86400.0
    #: When topic rules change, items published this recently are re-categorized.
    feed_window: Duration = 30 * 86400.0
    #: Topics file, relative to the config folder (lets several configs share one taxonomy).
    topics_file: NonEmptyStr = DEFAULT_TOPICS_FILE
    #: Processes that parse, clean and categorize fetched feeds while fetching goes on
    #: (0: one per CPU). 1 keeps everything in the polling process.
    parse_workers: int = Field(default=0, ge=0, le=64)
    #: Cycles polling fewer sources than this parse in the polling process: starting
    #: workers costs more than they save on a few feeds.
    parallel_from: int = Field(default=24, ge=1)
    fetch: FetchSettings = FetchSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    cluster: ClusterConfig = ClusterConfig()
    logging: LoggingSettings = LoggingSettings()
    status: StatusSettings = StatusSettings()
    workers: WorkerSettings = WorkerSettings()


# --- sources.yaml ------------------------------------------------------------------


def _regex(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _fail("regex", "expected a regular expression")
    try:
        re.compile(value)
    except re.error as exc:
        raise _fail("regex", f"invalid regular expression: {exc}") from None
    return value


def _selector(value: object) -> str:
    """A CSS selector, optionally ending in ``::text`` or ``::attr(name)`` (parsel)."""
    if not isinstance(value, str) or not value.strip():
        raise _fail("selector", "expected a CSS selector")
    import parsel  # with lxml: only configurations with html sources pay the import

    try:
        parsel.Selector(text="<html></html>").css(value)
    except Exception as exc:  # cssselect raises several unrelated exception types
        raise _fail("selector", f"invalid CSS selector {value!r}: {exc}") from None
    return value


Regex = Annotated[str, BeforeValidator(_regex)]
CssSelector = Annotated[str, BeforeValidator(_selector)]


class ItemSelectors(_Model):
    """Where one news item sits in a list, and where its fields sit inside it.

    Field selectors are relative to the item. Without a pseudo-element a field is the
    element's whole text; ``::attr(href)`` takes an attribute, ``::text`` direct text."""

    item: CssSelector
    title: CssSelector
    link: CssSelector
    date: CssSelector | None = None
    summary: CssSelector | None = None
    category: CssSelector | None = None


class ListingRules(ItemSelectors):
    #: Link to the next listing page, followed up to ``max_pages`` pages per poll.
    next_page: CssSelector | None = None
    max_pages: int = Field(default=1, ge=1, le=50)


class ArticleRules(_Model):
    """What to take from an article page (listing mode: for new items only)."""

    title: CssSelector | None = None
    date: CssSelector | None = None
    #: The article text; all matches are kept, in order.
    body: CssSelector | None = None
    category: CssSelector | None = None
    #: Finds the original publisher, first group: r"\(source:\s*([^)]+)\)" finds
    #: "Hebei Daily" in "(source: Hebei Daily)". Searched in ``publisher`` (a selector)
    #: when given, else in the whole page text.
    publisher_pattern: Regex | None = None
    publisher: CssSelector | None = None
    #: A list of further items on the page ("Related reading"), stored like listing items.
    related: ItemSelectors | None = None
    #: Links to follow in chain mode ("Read the next article", related reading).
    follow: tuple[CssSelector, ...] = ()


class ChainRules(_Model):
    """Article-chain mode: crawl from known articles along ``article.follow`` links."""

    #: Article URLs to start from (absolute, or relative to ``site``); the source's
    #: ``url`` is always the first page read.
    start: tuple[NonEmptyStr, ...] = ()
    #: Only URL paths matching this are followed (same site only, always).
    url_pattern: Regex
    #: Link steps away from a starting article, and pages fetched, per poll.
    max_hops: int = Field(default=5, ge=1, le=100)
    max_pages: int = Field(default=20, ge=1, le=500)
    #: Also restart from the newest stored articles, to find what was added after them.
    restart_from_latest: int = Field(default=3, ge=0, le=50)


class HtmlRules(_Model):
    """How to read a portal with no feed (``type: html``)."""

    #: The real site the pages belong to; links resolve against it and, for snapshot
    #: sources, its URLs map to files under ``snapshot_root``.
    site: HttpUrl
    listing: ListingRules | None = None
    article: ArticleRules | None = None
    chain: ChainRules | None = None
    #: strptime formats tried in order; non-padded numbers ("2022/9/5 7:32:00") are fine.
    date_formats: tuple[NonEmptyStr, ...] = ()
    #: Cuts the date out of a noisy text ("2022/11/24 18:25:00 35" -> the first match).
    date_pattern: Regex | None = None
    #: Portals answer on mirror hosts; links are rewritten to this host.
    canonical_host: str | None = None
    #: First group = the article id (dedupes an article across URL variants).
    id_pattern: Regex | None = None
    #: Fetch each new listing item's page for its text, date and original publisher.
    fetch_articles: bool = True
    max_article_pages: int = Field(default=20, ge=0, le=500)
    #: Snapshot sources only: folder (relative to the config folder) standing for the
    #: site's root, so that links in snapshot pages are read from files, offline.
    snapshot_root: str | None = None

    @model_validator(mode="after")
    def _needs_a_mode(self) -> HtmlRules:
        if self.listing is None and self.chain is None:
            raise ValueError("give `listing` selectors, `chain` rules, or both")
        if self.chain is not None and (self.article is None or not self.article.follow):
            raise ValueError("chain mode needs `article` rules with `follow` link selectors")
        return self


class SourceConfig(_Model):
    id: SourceId
    #: Display name used in attribution ("Source: Fibre2Fashion").
    name: NonEmptyStr
    #: "feed" (RSS, Atom, JSON Feed) or "html" (a portal without a feed; see ``html``).
    type: Literal["feed", "html"] = "feed"
    #: Feed or listing-page URL, or a snapshot file path relative to the config folder.
    url: SourceLocation
    #: The publisher's website, linked from attribution.
    home: HttpUrl | None = None
    language: str | None = None
    #: Overrides settings.poll_interval for this source.
    interval: Duration | None = None
    #: Zone of dates the feed writes without one (e.g. Chinese portals: Asia/Shanghai).
    timezone: TimeZoneName = "UTC"
    enabled: bool = True
    #: Breaks ties when two sources first reported a story at the same time (higher wins).
    priority: int = 0
    #: Regular expressions finding the original publisher a report names in its text,
    #: group 1 the name; default: "(source: X)", "Source: X.", "（来源：X）", "来源：X".
    publisher_patterns: tuple[Regex, ...] | None = None
    #: ``textile``: trade press writing only about the textile business, whose items
    #: pass the scope gate's terms (its vetoes still apply); ``general``: business or
    #: general news, whose items must show they are about textiles.
    scope: Literal["general", "textile"] = "general"
    #: Scraping rules, for ``type: html`` only.
    html: HtmlRules | None = None

    @model_validator(mode="after")
    def _html_rules_match_type(self) -> SourceConfig:
        if self.type == "html" and self.html is None:
            raise ValueError("a source of type html needs an `html` block of selectors")
        if self.type == "feed" and self.html is not None:
            raise ValueError("`html` rules apply to `type: html` sources only")
        return self

    @property
    def is_local(self) -> bool:
        return not self.url.lower().startswith(("http://", "https://"))


class SourcesFile(_Model):
    sources: list[SourceConfig] = Field(min_length=1)


# --- topics.yaml -------------------------------------------------------------------


class RuleSet(_Model):
    """Terms defined once, used by several topics (``use: [name]``).

    The rule set named ``scope`` is the textile-scope gate: every topic (unless it sets
    ``scope: false``) requires an item to score ``threshold`` with its include terms,
    and any of its exclude terms vetoes every topic at once."""

    include: TermList = ()
    all_of: TermGroups = ()
    exclude: TermList = ()
    #: For the ``scope`` gate: the include score an item needs.
    threshold: float = Field(default=1.0, gt=0)
    #: For the ``scope`` gate: phrases whose words are not evidence for any topic ("steel
    #: mill": its "mill" counts nowhere, while the item itself is not vetoed).
    ignore: TermList = ()


class FieldWeights(_Model):
    """What one hit of a weight-1 term scores in each field."""

    title: float = Field(default=2.0, ge=0)
    #: The summary's first sentence: what the item is about, more than a later clause.
    lead: float = Field(default=1.5, ge=0)
    summary: float = Field(default=1.0, ge=0)
    #: The source's own labels: evidence, never enough alone (portals file most items
    #: under one catch-all label such as "brand building").
    category: float = Field(default=0.5, ge=0)
    source: float = Field(default=1.0, ge=0)
    language: float = Field(default=1.0, ge=0)


class TopicConfig(_Model):
    slug: Slug
    title: NonEmptyStr
    description: str = ""
    #: Terms that count towards the item's score (any of them can be enough).
    include: TermList = ()
    #: Every element must also occur (an element that is a list: any of its terms).
    all_of: TermGroups = ()
    #: Any of these vetoes the item, whatever else matched.
    exclude: TermList = ()
    #: A boolean expression the item must satisfy: cotton AND (price OR futures).
    match: Expression | None = None
    #: Named rule sets whose terms join this topic's.
    use: tuple[NonEmptyStr, ...] = ()
    #: The item belongs when its include score reaches this (hits x field weight x term
    #: weight, each term counted once, in its best field).
    threshold: float = Field(default=1.0, gt=0)
    #: Distinct include terms the item needs, unless one of them is in its title: one
    #: word in the lead, however heavy, is a mention more often than a subject.
    min_terms: int = Field(default=1, ge=1)
    weights: FieldWeights = FieldWeights()
    #: Only items from these source ids can enter the topic.
    sources: tuple[SourceId, ...] = ()
    #: Whether items must pass the ``scope`` rule set (the textile-scope gate).
    scope: bool = True

    @model_validator(mode="after")
    def _not_empty(self) -> TopicConfig:
        if not self.include and not self.match and not self.use:
            raise ValueError("empty topic: give it include terms, a match expression or rule sets")
        return self


class TopicsFile(_Model):
    #: Named rule sets, shared between topics.
    rule_sets: dict[str, RuleSet] = {}
    topics: list[TopicConfig] = Field(min_length=1)


# --- the assembled configuration ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AppConfig:
    config_dir: Path
    settings: Settings
    sources: tuple[SourceConfig, ...]
    topics: tuple[TopicConfig, ...]
    rule_sets: Mapping[str, RuleSet] = field(default_factory=dict)
    #: Where each source's ``url`` is written ("config/sources.yaml:14"), for messages
    #: that ask the curator to edit it.
    url_locations: Mapping[str, str] = field(default_factory=dict)

    @property
    def files(self) -> tuple[Path, ...]:
        """The files this configuration was read from (watched by the daemon)."""
        return (
            self.config_dir / DEFAULT_SETTINGS_FILE,
            self.config_dir / DEFAULT_SOURCES_FILE,
            (self.config_dir / self.settings.topics_file).resolve(),
        )

    def resolve(self, relative: str) -> Path:
        """A path from the config resolved against the config folder."""
        return (self.config_dir / relative).resolve()

    @property
    def database_path(self) -> Path:
        return self.resolve(self.settings.database)

    @property
    def database_url(self) -> str | None:
        """The PostgreSQL database, if one is configured (else SQLite at database_path)."""
        return os.environ.get(DATABASE_URL_VARIABLE) or self.settings.database_url

    @property
    def database_name(self) -> str:
        """The database for messages: the SQLite path, or the URL without a password."""
        if self.database_url is None:
            return str(self.database_path)
        return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", self.database_url)

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.settings.output_dir)

    def source(self, source_id: str) -> SourceConfig:
        for source in self.sources:
            if source.id == source_id:
                return source
        raise KeyError(source_id)

    @property
    def user_agent(self) -> str:
        """A truthful User-Agent: who we are, and how to reach the operator."""
        return self.settings.user_agent or (
            f"textile-feeds/{__version__} (+{self.settings.contact_url})"
        )

    @property
    def trade_press(self) -> frozenset[str]:
        """Ids of the sources marked ``scope: textile``."""
        return frozenset(s.id for s in self.sources if s.scope == "textile")

    def interval_of(self, source: SourceConfig) -> float:
        return source.interval or self.settings.poll_interval


def load_config(config_dir: Path | str, *, topics_path: Path | None = None) -> AppConfig:
    """Read and validate a config folder; raise ``ConfigError`` listing every problem.

    ``topics_path`` reads the topics from another file (``preview --file``)."""
    config_dir = Path(config_dir)
    problems: list[ConfigProblem] = []
    if not config_dir.is_dir():
        raise ConfigError([ConfigProblem(config_dir, None, "", "config folder not found")])

    settings_doc = _YamlDocument.load(config_dir / DEFAULT_SETTINGS_FILE, problems, optional=True)
    settings = settings_doc.validate(Settings, problems) if settings_doc else Settings()
    topics_name = settings.topics_file if settings else DEFAULT_TOPICS_FILE
    sources_doc = _YamlDocument.load(config_dir / DEFAULT_SOURCES_FILE, problems)
    topics_doc = _YamlDocument.load(topics_path or config_dir / topics_name, problems)
    sources_file = sources_doc.validate(SourcesFile, problems) if sources_doc else None
    topics_file = topics_doc.validate(TopicsFile, problems) if topics_doc else None

    if sources_file and sources_doc:
        _check_unique(sources_doc, "sources", [s.id for s in sources_file.sources], "id", problems)
        for index, source in enumerate(sources_file.sources):
            if source.is_local and not (config_dir / source.url).is_file():
                problems.append(
                    sources_doc.problem(
                        ("sources", index, "url"),
                        f"snapshot file not found: {(config_dir / source.url).resolve()}",
                    )
                )
    if topics_file and topics_doc:
        _check_unique(topics_doc, "topics", [t.slug for t in topics_file.topics], "slug", problems)
        for index, topic in enumerate(topics_file.topics):
            if topic.slug in RESERVED_SLUGS:
                problems.append(
                    topics_doc.problem(
                        ("topics", index, "slug"),
                        f"{topic.slug!r} is reserved for the feed of every item; pick another",
                    )
                )
        for name, rule_set in topics_file.rule_sets.items():
            if rule_set.ignore and name != "scope":
                problems.append(
                    topics_doc.problem(
                        ("rule_sets", name, "ignore"),
                        "ignore applies to every topic, so only the rule set 'scope' "
                        "(the textile-scope gate) may have it",
                    )
                )
        known = {s.id for s in sources_file.sources} if sources_file else None
        for index, topic in enumerate(topics_file.topics):
            for j, name in enumerate(topic.use):
                if name not in topics_file.rule_sets:
                    sets = topics_file.rule_sets
                    problems.append(
                        topics_doc.problem(
                            ("topics", index, "use", j),
                            f"unknown rule set {name!r}{_suggest(name, sets)}"
                            + ("" if sets else " (define it under rule_sets:)"),
                        )
                    )

            for j, source_id in enumerate(topic.sources):
                if known is not None and source_id not in known:
                    problems.append(
                        topics_doc.problem(
                            ("topics", index, "sources", j),
                            f"unknown source id {source_id!r}{_suggest(source_id, known)}",
                        )
                    )
    if problems or settings is None or sources_file is None or topics_file is None:
        raise ConfigError(problems)
    assert sources_doc is not None
    return AppConfig(
        config_dir=config_dir.resolve(),
        settings=settings,
        sources=tuple(sources_file.sources),
        topics=tuple(topics_file.topics),
        rule_sets=dict(topics_file.rule_sets),
        url_locations={
            source.id: f"{sources_doc.path}:{sources_doc.line_of(('sources', i, 'url'))}"
            for i, source in enumerate(sources_file.sources)
        },
    )


def _check_unique(
    doc: _YamlDocument, section: str, values: list[str], key: str, problems: list[ConfigProblem]
) -> None:
    first_index: dict[str, int] = {}
    for index, value in enumerate(values):
        if value in first_index:
            first_line = doc.line_of((section, first_index[value], key))
            problems.append(
                doc.problem(
                    (section, index, key),
                    f"duplicate {key} {value!r} (first used at line {first_line})",
                )
            )
        else:
            first_index[value] = index


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --- YAML with line numbers --------------------------------------------------------


class _YamlDocument:
    """A parsed YAML file that remembers the line of every value, for error messages."""

    def __init__(self, path: Path, data: Any, lines: dict[Loc, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    @classmethod
    def load(
        cls, path: Path, problems: list[ConfigProblem], *, optional: bool = False
    ) -> _YamlDocument | None:
        """Parse ``path``; on failure append a problem and return None."""
        if not path.is_file():
            if optional:
                return None
            problems.append(ConfigProblem(path, None, "", "file not found"))
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(ConfigProblem(path, None, "", f"cannot read file: {exc}"))
            return None
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                problems.append(ConfigProblem(path, 1, "", "file is empty"))
                return None
            # An alias is written "*name": a file without an asterisk has none, and
            # is spared the count (a walk over every node: 60 ms for 2,000 sources).
            if "*" in text and (bomb := _alias_bomb(node)):
                problems.append(ConfigProblem(path, bomb, "", _ALIAS_BOMB_MESSAGE))
                return None
            lines: dict[Loc, int] = {}
            data = _construct(loader, node, (), lines, path, problems)
        except _TooDeepError as exc:
            message = f"values nested more than {MAX_NESTING} levels deep"
            problems.append(ConfigProblem(path, exc.line, "", message))
            return None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            problems.append(ConfigProblem(path, line, "", f"YAML syntax error: {exc.problem}"))
            return None
        except yaml.YAMLError as exc:
            problems.append(ConfigProblem(path, None, "", f"YAML error: {exc}"))
            return None
        finally:
            loader.dispose()
        return cls(path, data, lines)

    def line_of(self, loc: Loc) -> int | None:
        """Line of the value at ``loc``, or of its nearest enclosing value."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

    def problem(self, loc: Loc, message: str) -> ConfigProblem:
        return ConfigProblem(self.path, self.line_of(loc), _format_loc(loc), message)

    def validate(self, model: type[M], problems: list[ConfigProblem]) -> M | None:
        if not isinstance(self.data, dict):
            problems.append(self.problem((), "expected a mapping at the top of the file"))
            return None
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            for error in exc.errors():
                loc = tuple(error["loc"])
                problems.append(self.problem(loc, _message(model, loc, error)))
            return None


#: LibYAML's parser when PyYAML was built with it: the pure-Python scanner took 0.35 s
#: of every start with 2,000 sources. Both give the nodes' lines.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: Values that aliases may add to a file when expanded. A few kilobytes of nested
#: aliases expand to billions of values (the "billion laughs" of YAML): 284 bytes took
#: 2.4 GB and 25 s to check before this limit. Sharing a block a few times stays far
#: below it.
ALIAS_EXPANSION_BUDGET = 100_000
_ALIAS_BOMB_MESSAGE = (
    f"aliases here expand to more than {ALIAS_EXPANSION_BUDGET:,} values "
    "(nested anchors and aliases?); refusing to read the file"
)
#: Nesting deeper than this is refused (reading it back would recurse past Python's
#: stack); a config file needs fewer than ten levels.
MAX_NESTING = 64


class _TooDeepError(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def _alias_bomb(root: yaml.Node) -> int | None:
    """The line of the first value whose alias expansion is over budget, else None.

    Counts, without expanding anything, how many values the document would have with
    every alias replaced by a copy of its anchor: one pass over the distinct nodes, in
    bounded time and memory however deep the nesting."""
    expanded: dict[int, int] = {}  # id(node) -> values under it, itself included
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in expanded:
            continue
        children = _children(node)
        if not children_done and children:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in expanded)
            continue
        size = 1 + sum(expanded[id(child)] for child in children)
        expanded[id(node)] = size
        # Under-counts the copies until the root is reached (every distinct node seen
        # so far is subtracted), so it never refuses a file that is within budget.
        if size - len(expanded) > ALIAS_EXPANSION_BUDGET:
            return node.start_mark.line + 1
    return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _construct(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    path: Path,
    problems: list[ConfigProblem],
) -> Any:
    lines[loc] = node.start_mark.line + 1
    if len(loc) > MAX_NESTING:
        raise _TooDeepError(lines[loc])
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolves "<<" merge keys
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                problems.append(
                    ConfigProblem(path, line, _format_loc(loc), f"key {key!r} must be a string")
                )
                continue
            if key in result:
                problems.append(
                    ConfigProblem(path, line, _format_loc((*loc, key)), "duplicate key")
                )
                continue
            result[key] = _construct(loader, value_node, (*loc, key), lines, path, problems)
            lines[(*loc, key)] = line
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(loader, child, (*loc, i), lines, path, problems)
            for i, child in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


def _format_loc(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


_PLAIN_MESSAGES = {
    "missing": "required field is missing",
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping of keys to values",
    "model_type": "expected a mapping of keys to values",
    "model_attributes_type": "expected a mapping of keys to values",
}


def _message(model: type[BaseModel], loc: Loc, error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        hint = _suggest(str(loc[-1]), allowed) if allowed else ""
        listing = f"; allowed: {', '.join(sorted(allowed))}" if allowed and not hint else ""
        return f"unknown key{hint}{listing}"
    if kind == "literal_error":
        return f"{error['msg'].replace('Input should be', 'expected')}, got {error['input']!r}"
    if kind == "too_short" and isinstance(error.get("input"), list | tuple | dict):
        return "must not be empty"
    if kind in _PLAIN_MESSAGES:
        return _PLAIN_MESSAGES[kind]
    message: str = error["msg"]
    return message.removeprefix("Value error, ").replace("Input should be", "expected")


def _fields_at(model: type[BaseModel], loc: Loc) -> set[str]:
    """Field names allowed at ``loc`` inside ``model`` (for "did you mean" hints)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return set()
        field = current.model_fields.get(part)
        if field is None:
            return set()
        current = field.annotation
        if isinstance(current, types.UnionType):
            current = next((a for a in typing.get_args(current) if a is not type(None)), None)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return set(current.model_fields)
    return set()
