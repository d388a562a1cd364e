"""Data passed between pipeline stages.

Names follow an item's life: ``FetchResult`` -> ``ParsedFeed``/``ParsedEntry`` ->
``Item`` -> ``StoredItem``. All are frozen; collections are tuples; every datetime is
timezone-aware UTC. Nothing from feedparser, httpx or SQLAlchemy leaks past its stage.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")

#: Field names of each class pickled by ``compact_pickle``, in order.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _unpickle(cls: type[T], values: tuple[Any, ...]) -> T:
    made = object.__new__(cls)
    for name, value in zip(_FIELD_NAMES[cls], values, strict=True):
        object.__setattr__(made, name, value)
    return made


def compact_pickle(cls: type[T]) -> type[T]:
    """Pickle a frozen dataclass as its field values in order.

    Frozen slots dataclasses otherwise pickle through dataclasses' generic state
    functions, which call ``fields()`` for every object: shipping prepared items from
    the worker processes cost ~110 us an item (pickling and unpickling), about a tenth
    of a cold cycle's CPU; ~25 us this way. Only for objects passed between processes
    of one version: ``__init__`` is not run again."""
    names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    _FIELD_NAMES[cls] = names

    def __reduce__(self: T) -> tuple[Callable[..., T], tuple[Any, ...]]:
        return _unpickle, (cls, tuple([getattr(self, name) for name in names]))

    cls.__reduce__ = __reduce__  # type: ignore[assignment,method-assign]
    return cls


class FetchOutcome(enum.StrEnum):
    OK = "ok"
    #: HTTP 304, an unchanged snapshot file, or a body identical to the last one.
    NOT_MODIFIED = "not_modified"
    FAILED = "failed"
    #: Not requested: the host asked us to wait (Retry-After). Not an error.
    DEFERRED = "deferred"


@dataclass(frozen=True, slots=True, kw_only=True)
class Validators:
    """HTTP cache validators remembered per source for conditional GET."""

    #: ETag header of the last 200 response, sent back as If-None-Match.
    etag: str | None = None
    #: Last-Modified header of the last 200 response, sent back as If-Modified-Since.
    last_modified: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchResult:
    """What one download attempt of one source produced."""

    source_id: str
    url: str
    outcome: FetchOutcome
    #: HTTP status, or None for local files and network failures.
    status: int | None = None
    #: Response body (decoded from transfer encoding); empty unless outcome is OK.
    body: bytes = b""
    #: Response headers that matter to the parser (lower-cased names).
    headers: tuple[tuple[str, str], ...] = ()
    #: Validators to remember for the next request.
    validators: Validators = field(default_factory=Validators)
    #: URL after redirects (base for resolving relative links).
    final_url: str = ""
    #: Human-readable reason when outcome is FAILED, e.g. "HTTP 503".
    error: str | None = None
    #: Kind of failure: "http", "timeout", "network", "too_large", "redirects",
    #: "forbidden_address", "decoding", "file" (and "parse", set by the pipeline).
    error_type: str | None = None
    #: Wall-clock seconds the attempt took.
    duration: float = 0.0
    #: Where redirects ended, when the request was redirected.
    redirected_to: str | None = None
    #: True when every redirect hop was permanent (301/308).
    redirect_permanent: bool = False
    #: True when cache validators were sent with the request.
    conditional: bool = False
    #: Until when the host asked us to stay away (429/503 with Retry-After).
    host_blocked_until: datetime | None = None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedEntry:
    """One entry as the feed stated it, before any cleaning."""

    guid: str | None
    link: str | None
    title: str
    #: True when the title is HTML (entities and tags still to be cleaned).
    title_is_html: bool
    summary_html: str
    #: Date strings exactly as written in the feed; normalize parses them.
    published_raw: str | None
    updated_raw: str | None
    author: str | None
    categories: tuple[str, ...]
    language: str | None
    #: Who first published the story, when the page names it ("(source: Hebei Daily)").
    original_publisher: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParsedFeed:
    """A feed document turned into plain data."""

    #: Detected format, e.g. "rss20", "atom10", "rss10", "json11".
    version: str
    title: str
    link: str | None
    language: str | None
    entries: tuple[ParsedEntry, ...]
    #: Non-fatal problem the parser reported (the feed was still usable).
    warning: str | None = None
    #: RSS <ttl>: minutes the publisher asks us to wait between polls.
    ttl_minutes: int | None = None


@compact_pickle
@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """A normalized entry: clean text, canonical link, UTC dates, dedupe keys."""

    source_id: str
    #: Dedupe keys, strongest first: "link:<canonical url>", "guid:<source>:<guid>".
    keys: tuple[str, ...]
    link: str | None
    guid: str | None
    title: str
    summary_html: str
    summary_text: str
    published_at: datetime
    updated_at: datetime
    #: True when the feed gave no usable date and published_at is the first-seen time.
    date_missing: bool
    author: str | None
    categories: tuple[str, ...]
    language: str | None
    #: Hash of the content a subscriber sees; a change means the item was edited.
    content_hash: str
    #: Who first published the story, when the source names it ("Hebei Daily").
    original_publisher: str | None = None
    #: The feed entry it was made from, digested (``prepare.entry_digest``): when the
    #: source lists that entry unchanged again, it is not normalized again.
    entry_digest: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TermHit:
    """One rule term found in one field of an item."""

    term: str
    field: str
    #: Points the hit scored (field weight x term weight).
    weight: float = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicMatch:
    """An item belongs to a topic, and why."""

    slug: str
    hits: tuple[TermHit, ...]

    def __reduce__(self) -> tuple[Callable[..., TopicMatch], tuple[Any, ...]]:
        # Hits travel as plain tuples and come back shared (see compact_pickle).
        return _topic_match, (self.slug, tuple([(h.term, h.field, h.weight) for h in self.hits]))


def _topic_match(slug: str, hits: tuple[tuple[str, str, float], ...]) -> TopicMatch:
    return TopicMatch(slug=slug, hits=tuple([term_hit(*values) for values in hits]))


# TermHits are immutable and drawn from a taxonomy's few hundred terms: made once each
# (an item carries ~20; making them was a tenth of categorizing).
_term_hits: dict[tuple[str, str, float], TermHit] = {}


def term_hit(term: str, field: str, weight: float) -> TermHit:
    """The one TermHit with these values."""
    values = (term, field, weight)
    hit = _term_hits.get(values)
    if hit is None:
        if len(_term_hits) > 50_000:  # taxonomies replaced many times over
            _term_hits.clear()
        hit = _term_hits[values] = TermHit(term=term, field=field, weight=weight)
    return hit


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRef:
    """A source that carried a stored item."""

    source_id: str
    name: str
    home_url: str | None
    feed_url: str
    link: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredItem:
    """An item as read back from storage for publishing."""

    item_id: int
    #: Stable public id, never changes once assigned ("urn:uuid:...").
    public_id: str
    link: str | None
    title: str
    summary_html: str
    summary_text: str
    published_at: datetime
    updated_at: datetime
    author: str | None
    categories: tuple[str, ...]
    #: Every source that carried the item, the first one first.
    sources: tuple[SourceRef, ...]
    #: Slugs of the topics the item belongs to.
    topics: tuple[str, ...]
    original_publisher: str | None = None
    #: The story the item belongs to (near-duplicates across sources share one).
    story_id: int | None = None
    #: Other reports of the same story (publishing puts them in the attribution).
    related: tuple[SourceRef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceState:
    """What we remember about polling one source (one database row)."""

    source_id: str
    name: str
    #: The URL from the config, as last synced.
    url: str
    validators: Validators = field(default_factory=Validators)
    last_outcome: str | None = None
    last_status: int | None = None
    last_error: str | None = None
    last_error_type: str | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    #: The first poll that read the source: the adaptive interval needs a week since.
    first_success_at: datetime | None = None
    #: Consecutive failed polls (0 after any success).
    error_count: int = 0
    #: Interval chosen at the last poll, in seconds (before jitter).
    interval: float | None = None
    next_check_at: datetime | None = None
    #: sha256 of the last body that parsed, to skip parsing a server's unchanged 200s.
    body_hash: str | None = None
    #: Permanent-redirect target seen at the last polls, and on how many in a row.
    redirect_target: str | None = None
    redirect_count: int = 0
    #: The source answered 410 Gone; it is now only probed rarely.
    gone: bool = False
    last_unconditional_at: datetime | None = None
    polls: int = 0
    not_modified_polls: int = 0
    item_count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PollUpdate:
    """What one poll changes in a source's state (written by storage as it is)."""

    source_id: str
    outcome: FetchOutcome
    status: int | None
    error: str | None
    error_type: str | None
    #: None keeps the stored validators (failures must not lose them).
    validators: Validators | None
    #: None keeps the stored hash.
    body_hash: str | None
    error_count: int
    interval: float
    next_check_at: datetime
    redirect_target: str | None
    redirect_count: int
    gone: bool
    #: The request went out without validators (refreshes last_unconditional_at).
    unconditional: bool
    #: Counts towards polls (a deferred source was not polled).
    polled: bool
    host: str | None = None
    host_blocked_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceReport:
    """The outcome of polling one source in one cycle."""

    source_id: str
    outcome: FetchOutcome
    error: str | None = None
    entries_seen: int = 0
    #: Entries with nothing a reader could show (no title, link or content): dropped.
    empty_entries: int = 0
    new_items: int = 0
    updated_items: int = 0
    #: When the source will be tried next (for a deferred one: after its host's wait).
    next_check_at: datetime | None = None
    #: Seconds its fetch took, and the kind of failure ("http", "timeout", "parse", ...).
    fetch_seconds: float = 0.0
    error_type: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CycleReport:
    """What one polling cycle did, for the summary an operator reads."""

    sources: tuple[SourceReport, ...]
    #: Items per published topic after the cycle.
    topic_counts: tuple[tuple[str, int], ...]
    files_written: tuple[str, ...]
    files_unchanged: int
    #: Feeds that could not be written (full disk, permissions); old files stay intact.
    publish_errors: tuple[str, ...] = ()
    #: The feeds need publishing, which the caller chose to do itself (workers).
    publish_due: bool = False
    #: Seconds publishing took (0 when nothing was published), and the whole cycle.
    publish_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def new_items(self) -> int:
        return sum(s.new_items for s in self.sources)
