"""One polling cycle, end to end. Reads like the diagram; the stages do the work.

    sources due ──fetch──> FetchResult ──parse──> ParsedFeed ──normalize──> Item
        ──dedupe──> Decision ──categorize──> TopicMatch ──storage──> (per source, one
        transaction) ──publish──> <slug>.rss / <slug>.atom

The daemon and ``run --once`` both call ``run_cycle``. A failing source is recorded on
its row and the cycle goes on; only storage failures end it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from aggregator import __version__
from aggregator.categorize import CompiledTopic, compile_topics
from aggregator.cluster import ClusterSettings
from aggregator.config import FEED_FORMATS, SITE_FILES, AppConfig, SourceConfig
from aggregator.curate import recategorize, rules_changed
from aggregator.dedupe import Action, decide
from aggregator.errors import ConflictError, ParseError
from aggregator.fetch import Backlog, Fetcher, FetchRequest, host_of
from aggregator.models import (
    CycleReport,
    FetchOutcome,
    FetchResult,
    Item,
    ParsedEntry,
    SourceReport,
    SourceState,
    StoredItem,
    Validators,
)
from aggregator.prepare import (
    PreparedSource,
    Preparer,
    ReadyItem,
    Workers,
    complete_item,
    feed_base_url,
    fingerprint,
    prepare_feed,
    ready_items,
    worker_count,
)
from aggregator.schedule import (
    base_interval,
    has_history,
    needs_unconditional,
    plan_poll,
    polled_url,
)
from aggregator.storage import Storage, Transaction
from aggregator.stories import StoryStage, story_entry

# Parsing, scraping, MinHash and publishing are imported where first needed (lxml,
# feedparser, parsel, numpy, feedgen, jinja2): a cycle of 304s needs none of them and
# starts ~0.3 s sooner, which is most of what it costs beyond the fetching itself.
if TYPE_CHECKING:
    from aggregator.publish import FeedSpec, PublishResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Stored:
    new: int = 0
    updated: int = 0


def run_cycle(
    config: AppConfig,
    storage: Storage,
    *,
    fetcher: Fetcher | None = None,
    now: datetime | None = None,
    due_only: bool = False,
    stop: threading.Event | None = None,
    rng: random.Random | None = None,
    workers: Workers | None = None,
    only: Callable[[SourceConfig], bool] | None = None,
    publish: bool = True,
    progress: Callable[[int, SourceReport | None], None] | None = None,
) -> CycleReport:
    """Poll the enabled sources (only those due, if ``due_only``), store what is new,
    and republish every topic. ``stop`` ends the cycle after the current source.
    ``workers``: parse worker processes to use when the cycle is big enough (the
    daemon keeps them across cycles); without, a big cycle starts and stops its own.
    ``only``: poll just the sources it accepts (a worker's leased hosts). ``publish``
    False leaves publishing to the caller (``report.publish_due`` says whether it is).
    ``progress(total, report)``: called once with the number of sources to poll and no
    report, then with each source's report as it is stored."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    rng = rng or random.Random()
    fetcher = fetcher or Fetcher(config.settings.fetch, config.user_agent)
    topics = compile_topics(config.topics, config.rule_sets, config.trade_press)
    cluster_settings = config.settings.cluster.settings()
    shared = _Shared(topics=topics, settings=cluster_settings, now=now)

    with storage.transaction() as tx:
        tx.sync_sources(config.sources)
    recategorized = None
    if rules_changed(config, storage):
        # Edited topic rules apply to stored items too, not only to new ones.
        recategorized = recategorize(config, storage, now=now)
        log.info(
            "topic rules changed: re-categorized items=%d changed=%d",
            recategorized.examined, recategorized.changed,
        )  # fmt: skip
    states = storage.source_states()
    blocked = storage.host_blocks(now)
    recent = storage.recent_item_counts(now - timedelta(days=7))
    polls = []
    for source in config.sources:
        state = states.get(source.id) or SourceState(
            source_id=source.id, name=source.name, url=source.url
        )
        wanted = source.enabled and (only is None or only(source))
        if wanted and (not due_only or _is_due(state, now)):
            polls.append(_plan(config, source, state, recent.get(source.id, 0), now))
    on_report = None
    if progress is not None:
        progress(len(polls), None)
        on_report = partial(progress, len(polls))
    own_workers = workers is None
    workers = workers or Workers()
    preparer = workers.preparer(config) if _wants_workers(config, len(polls)) else None
    try:
        poll_sources = _poll_in_parallel if preparer is not None else _poll_in_turn
        writes = _GroupCommit(storage)
        delivered = _Delivered(config, storage, polls, now) if preparer is not None else None
        cycle = _Cycle(config=config, storage=storage, fetcher=fetcher, shared=shared,
                       now=now, rng=rng, stop=stop, preparer=preparer, writes=writes,
                       delivered=delivered, progress=on_report)  # fmt: skip
        try:
            reports = poll_sources(cycle, polls, blocked)
            if shared.stories.counted:
                shared.stories.save(writes.transaction())
        except BaseException as exc:
            writes.rollback(exc)
            raise
        writes.commit()
    finally:
        shared.stories.release()  # the peak is then the larger of storing and publishing
        if own_workers:
            workers.close()
    changed = any(r.new_items or r.updated_items for r in reports) or bool(
        recategorized and recategorized.changed
    )
    # Re-render only when items changed, an output file went missing, or what the feeds
    # show besides items (titles, URLs, sources) changed: rendering 45 files costs more
    # than a whole all-304 cycle.
    publish_due = (
        changed
        or _output_missing(config)
        or storage.meta(PUBLISH_FINGERPRINT) != publish_fingerprint(config)
    )
    report = _report(config, storage, tuple(reports), publish=publish and publish_due)
    report = replace(
        report, publish_due=publish_due and not publish, seconds=time.monotonic() - started
    )
    _record_cycle(storage, report, datetime.now(UTC))
    return report


#: Meta key of the last cycle's facts (``/healthz``, ``/metrics``).
LAST_CYCLE = "last_cycle"


def _record_cycle(storage: Storage, report: CycleReport, finished: datetime) -> None:
    """When the last cycle ended and what it did, for health checks in any process."""
    storage.set_meta(LAST_CYCLE, json.dumps({
        "finished_at": finished.isoformat(), "seconds": round(report.seconds, 3),
        "publish_seconds": round(report.publish_seconds, 3), "sources": len(report.sources),
        "new_items": report.new_items,
    }))  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Poll:
    source: SourceConfig
    state: SourceState
    request: FetchRequest
    #: Interval before hints and backoff (configured, adaptive or default).
    base: float


def _plan(
    config: AppConfig, source: SourceConfig, state: SourceState, recent_items: int, now: datetime
) -> _Poll:
    """Which URL to request, with which validators, and the source's base interval."""
    settings = config.settings.schedule
    if source.is_local:
        url = str(config.resolve(source.url))
    else:
        url = polled_url(state, source.url, settings)
    # A chain crawl starts from old, unchanging pages: a 304 there says nothing about
    # the articles further along, so those sources always fetch in full.
    crawls = source.html is not None and source.html.chain is not None
    unconditional = crawls or needs_unconditional(state, now, settings)
    request = FetchRequest(
        source_id=source.id,
        url=url,
        validators=Validators() if unconditional else state.validators,
    )
    base = base_interval(
        source.interval, config.settings.poll_interval, recent_items, settings,
        history=has_history(state, now),
    )  # fmt: skip
    return _Poll(source=source, state=state, request=request, base=base)


def _fetch_first_pages(
    polls: Sequence[_Poll],
    fetcher: Fetcher,
    blocked: dict[str, datetime],
    *,
    on_result: Callable[[int, FetchResult], FetchResult] | None = None,
    backlog: Backlog | None = None,
) -> list[FetchResult]:
    """One batch request per source; a scraped page robots.txt forbids is not requested."""

    def fetch_robots(url: str) -> FetchResult:
        request = FetchRequest(source_id="robots.txt", url=url)
        return fetcher.fetch_all([request], blocked_hosts=blocked)[0]

    refused: dict[int, FetchResult] = {}
    for index, poll in enumerate(polls):
        request = poll.request
        if poll.source.html is None or request.is_local:
            continue
        from aggregator.scrape import ROBOTS

        if not ROBOTS.allowed(request.url, fetch_robots):
            refused[index] = FetchResult(
                source_id=request.source_id, url=request.url, outcome=FetchOutcome.FAILED,
                error="robots.txt disallows this page", error_type="robots",
                validators=request.validators,
            )  # fmt: skip
    for index, result in refused.items():
        if on_result is not None:
            refused[index] = on_result(index, result)
    positions = [i for i in range(len(polls)) if i not in refused]
    wanted = [polls[i].request for i in positions]

    def arrived(index: int, result: FetchResult) -> FetchResult:
        assert on_result is not None
        return on_result(positions[index], result)

    fetched = iter(
        fetcher.fetch_all(
            wanted, blocked_hosts=blocked, on_result=arrived if on_result else None, backlog=backlog
        )
        if wanted
        else []
    )
    return [refused[i] if i in refused else next(fetched) for i in range(len(polls))]


PUBLISH_FINGERPRINT = "publish_fingerprint"


def _outputs(config: AppConfig) -> list[Path]:
    slugs = [t.slug for t in config.topics] + ["all"]
    names = [f"{slug}.{ext}" for slug in slugs for ext in FEED_FORMATS]
    return [config.output_dir / n for n in [*names, *sorted(SITE_FILES)]]


def _output_missing(config: AppConfig) -> bool:
    return any(not path.is_file() for path in _outputs(config))


def publish_fingerprint(config: AppConfig) -> str:
    """Changes whenever the published files would change for reasons other than items."""
    shown = {
        "settings": config.settings.model_dump(
            mode="json",
            include={
                "base_url",
                "site_title",
                "items_per_feed",
                "per_source_cap",
                "websub_hub",
                "poll_interval",
                "output_dir",
            },
        ),
        "topics": [(t.slug, t.title, t.description) for t in config.topics],
        "sources": [(s.id, s.name, s.url, s.home, s.priority, s.enabled) for s in config.sources],
        "version": __version__,
    }
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()


def _is_due(state: SourceState, now: datetime) -> bool:
    return state.next_check_at is None or state.next_check_at <= now


class _Delivered:
    """Fingerprints of the items each polled feed delivered within ``feed_window``: a
    changed feed mostly lists them again, and workers need not categorize and sign
    those again (most of a steady cycle's work otherwise). Read once, on first need
    (from the fetching thread): a cycle where nothing changed never reads them."""

    def __init__(
        self, config: AppConfig, storage: Storage, polls: Sequence[_Poll], now: datetime
    ) -> None:
        self._storage = storage
        self._since = now - timedelta(seconds=config.settings.feed_window)
        self._feeds = [p.source.id for p in polls if p.source.html is None]
        self._lock = threading.Lock()
        self._by_source: dict[str, frozenset[int]] | None = None

    def of(self, source_id: str) -> frozenset[int]:
        with self._lock:
            if self._by_source is None:
                self._by_source = self._storage.delivered(self._feeds, self._since, fingerprint)
        return self._by_source.get(source_id, frozenset())


def _wants_workers(config: AppConfig, polls: int) -> bool:
    settings = config.settings
    return polls >= settings.parallel_from and worker_count(settings.parse_workers) > 1


@dataclass(frozen=True, slots=True)
class _Cycle:
    """What every source's poll in one cycle works with."""

    config: AppConfig
    storage: Storage
    fetcher: Fetcher
    shared: _Shared
    now: datetime
    rng: random.Random
    stop: threading.Event | None
    preparer: Preparer | None
    writes: _GroupCommit
    #: What each source delivered lately (workers skip those entries).
    delivered: _Delivered | None = None
    #: Told each source's report as soon as it is stored (a progress line).
    progress: Callable[[SourceReport], None] | None = None

    def stopping(self, left: int) -> bool:
        if self.stop is None or not self.stop.is_set():
            return False
        log.info("stop requested; %d sources left for the next cycle", left)
        return True


class _GroupCommit:
    """Several sources' writes in one transaction, committed once enough items or time
    went in, and at the end. Every source's items commit together with its polling
    state, so a crash loses whole polls, which are simply polled again.

    Why not one transaction per source: each new item adds rows at random places of
    the keys' and topics' indexes; committing those per source rewrote the same index
    pages hundreds of times (20 ms a commit at 300 sources, half the cycle, when the
    band index still had 32 rows an item)."""

    def __init__(self, storage: Storage, *, max_items: int = 5000, max_seconds: float = 2.0):
        self._storage = storage
        self._max_items, self._max_seconds = max_items, max_seconds
        self._open: contextlib.ExitStack | None = None
        self._tx: Transaction | None = None
        self._items = 0
        self._since = 0.0

    def transaction(self) -> Transaction:
        if self._tx is None:
            self._open = contextlib.ExitStack()
            self._tx = self._open.enter_context(self._storage.transaction())
            self._items, self._since = 0, time.monotonic()
        return self._tx

    def stored(self, items: int) -> None:
        """One source's writes are in; commit if the group is big or old enough."""
        self._items += items
        if self._items >= self._max_items or time.monotonic() - self._since >= self._max_seconds:
            self.commit()

    def commit(self) -> None:
        if self._open is not None:
            open_, self._open, self._tx = self._open, None, None
            open_.close()

    def rollback(self, exc: BaseException) -> None:
        if self._open is not None:
            open_, self._open, self._tx = self._open, None, None
            open_.__exit__(type(exc), exc, exc.__traceback__)


@dataclass(frozen=True, slots=True)
class _Fetched:
    """One source's fetch result, its body's hash, and its items once prepared."""

    result: FetchResult
    body_hash: str | None = None
    body_size: int = 0
    #: Not modified: a 304, or the same bytes as last time (nothing to parse).
    unchanged: bool = False
    #: Being prepared in a worker process (the result's body was handed over).
    prepared: Future[PreparedSource] | None = None


def _fetched(cycle: _Cycle, poll: _Poll, result: FetchResult) -> _Fetched:
    """Hash the body; hand a changed feed to the worker processes, if there are any."""
    if result.outcome is not FetchOutcome.OK:
        return _Fetched(result=result)
    body_hash = hashlib.sha256(result.body).hexdigest()
    crawls = poll.source.html is not None and poll.source.html.chain is not None
    fetched = _Fetched(result=result, body_hash=body_hash, body_size=len(result.body))
    if body_hash == poll.state.body_hash and not crawls:
        # The server ignored our validators but sent the same bytes: nothing to parse.
        return replace(fetched, unchanged=True)
    if cycle.preparer is not None and poll.source.html is None:
        seen = cycle.delivered.of(poll.source.id) if cycle.delivered else frozenset()
        prepared = cycle.preparer.submit(poll.source, result, cycle.now, seen)
        return replace(fetched, result=replace(result, body=b""), prepared=prepared)
    return fetched


def _poll_in_turn(
    cycle: _Cycle, polls: Sequence[_Poll], blocked: dict[str, datetime]
) -> list[SourceReport]:
    """Fetch everything, then prepare and store source by source, in config order."""
    results = _fetch_first_pages(polls, cycle.fetcher, blocked)
    reports: list[SourceReport] = []
    for poll, result in zip(polls, results, strict=True):
        if cycle.stopping(len(polls) - len(reports)):
            break
        reports.append(_ingest(cycle, poll, _fetched(cycle, poll, result)))
    return reports


#: Fetched bodies waiting for a worker or for storage, at most (bounds memory).
BACKLOG = 64


def _poll_in_parallel(
    cycle: _Cycle, polls: Sequence[_Poll], blocked: dict[str, datetime]
) -> list[SourceReport]:
    """Fetch in a thread, prepare in worker processes, store here as results come in:
    the network, both cores and the database all work at once."""
    arrived: queue.Queue[tuple[int, _Fetched] | BaseException] = queue.Queue()
    backlog = Backlog(BACKLOG)

    def on_result(index: int, result: FetchResult) -> FetchResult:
        fetched = _fetched(cycle, polls[index], result)
        arrived.put((index, fetched))
        return fetched.result

    def fetch() -> None:
        try:
            _fetch_first_pages(polls, cycle.fetcher, blocked, on_result=on_result, backlog=backlog)
        except BaseException as exc:  # handed to the storing thread, which raises it
            arrived.put(exc)

    fetching = threading.Thread(target=fetch, name="fetch", daemon=True)
    fetching.start()
    reports: dict[int, SourceReport] = {}
    try:
        while len(reports) < len(polls):
            if cycle.stopping(len(polls) - len(reports)):
                break
            got = arrived.get()
            if isinstance(got, BaseException):
                raise got
            index, fetched = got
            reports[index] = _ingest(cycle, polls[index], fetched)
            backlog.release()
    finally:
        backlog.release(len(polls))  # let the fetching thread finish whatever happened
        fetching.join()
    return [reports[i] for i in sorted(reports)]


def _prepared(cycle: _Cycle, poll: _Poll, fetched: _Fetched) -> PreparedSource:
    """The source's items: from its worker process, or prepared here."""
    if fetched.prepared is not None:
        try:
            return fetched.prepared.result()
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the body went with it, so this
            # source is read again next time; the cycle goes on.
            log.error("a parse worker died; source=%s is retried next cycle", poll.source.id)
            return PreparedSource(problem="parse worker died", problem_type="internal")
    source, result, storage = poll.source, fetched.result, cycle.storage
    if source.html is None:
        return prepare_feed(source, result, cycle.now, cycle.shared.topics)
    crawls = source.html.chain is not None
    read = read_source(
        cycle.config, source, result, cycle.fetcher,
        is_known=lambda link: bool(storage.known_links([link])),
        latest_links=storage.latest_links(source.id, 10) if crawls else (),
    )  # fmt: skip
    items, empty = ready_items(source, read.base_url, read.entries, cycle.now, cycle.shared.topics)
    return PreparedSource(
        items=items,
        entries_seen=len(read.entries),
        empty_entries=empty,
        ttl_minutes=read.ttl_minutes,
        problem=read.problem,
        problem_type=read.problem_type,
    )


def _ingest(cycle: _Cycle, poll: _Poll, fetched: _Fetched) -> SourceReport:
    """Store one source's prepared items and its polling state (one transaction)."""
    config, source, state, now = cycle.config, poll.source, poll.state, cycle.now
    result = fetched.result
    prepared = PreparedSource()
    if fetched.unchanged:
        result = replace(result, outcome=FetchOutcome.NOT_MODIFIED)
    elif result.outcome is FetchOutcome.OK:
        prepared = _prepared(cycle, poll, fetched)

    update = plan_poll(
        state=state, result=result, base=poll.base, settings=config.settings.schedule,
        now=now, rng=cycle.rng, parse_error=prepared.problem,
        problem_type=prepared.problem_type, ttl_minutes=prepared.ttl_minutes,
        body_hash=fetched.body_hash,
    )  # fmt: skip
    if not poll.request.is_local:
        update = replace(update, host=host_of(poll.request.url))
    tx = cycle.writes.transaction()
    stored = _store_racing(tx, cycle.shared, prepared.items, now, source)
    tx.record_poll(update, now)
    cycle.writes.stored(stored.new + stored.updated)

    log.log(
        logging.WARNING if update.outcome is FetchOutcome.FAILED else logging.INFO,
        "polled source=%s url=%s outcome=%s status=%s seconds=%.2f bytes=%d entries=%d "
        "empty=%d new=%d updated=%d next_check=%s%s",
        source.id, poll.request.url, update.outcome.value, result.status, result.duration,
        fetched.body_size, prepared.entries_seen, prepared.empty_entries, stored.new,
        stored.updated,
        update.next_check_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        f" error={update.error!r}" if update.error else "",
        extra={"source_id": source.id, "url": poll.request.url, "outcome": update.outcome.value,
               "status": result.status, "duration": round(result.duration, 3),
               "bytes": fetched.body_size, "new": stored.new, "updated": stored.updated},
    )  # fmt: skip
    report = SourceReport(
        source_id=source.id,
        outcome=update.outcome,
        error=update.error,
        entries_seen=prepared.entries_seen,
        empty_entries=prepared.empty_entries,
        new_items=stored.new,
        updated_items=stored.updated,
        next_check_at=update.next_check_at,
        fetch_seconds=result.duration,
        error_type=update.error_type if update.outcome is FetchOutcome.FAILED else None,
    )
    if cycle.progress is not None:
        cycle.progress(report)
    return report


@dataclass(frozen=True, slots=True)
class SourceRead:
    """What one source's fetched body (and, for html sources, its further pages) held."""

    entries: tuple[ParsedEntry, ...] = ()
    ttl_minutes: int | None = None
    #: Why the body could not be read, or a selector problem (entries are still kept).
    problem: str | None = None
    problem_type: str = "parse"
    #: Base for relative links left in the entries.
    base_url: str = ""


def read_source(
    config: AppConfig,
    source: SourceConfig,
    result: FetchResult,
    fetcher: Fetcher,
    *,
    is_known: Callable[[str], bool],
    latest_links: Sequence[str] = (),
) -> SourceRead:
    """Parse a feed, or scrape an html source from its first page on. Never raises for
    the source's own faults: they come back as ``problem``."""
    from aggregator.parse import parse_feed
    from aggregator.scrape import PageFetcher, scrape

    base = feed_base_url(source, result)
    try:
        if source.html is not None:
            pages = PageFetcher(config=config, source=source, fetcher=fetcher)
            scraped = scrape(pages, result, is_known=is_known, latest_links=latest_links)
            return SourceRead(
                entries=scraped.entries,
                problem=scraped.problem,
                problem_type="selector",
                base_url=pages.real_url(result),
            )
        parsed = parse_feed(result)
    except ParseError as exc:
        return SourceRead(problem=exc.message, problem_type=exc.kind, base_url=base)
    if parsed.warning:
        log.debug("feed warning source=%s: %s", source.id, parsed.warning)
    return SourceRead(entries=parsed.entries, ttl_minutes=parsed.ttl_minutes, base_url=base)


@dataclass(slots=True)
class _Shared:
    """What every source's ingest in one cycle works with."""

    topics: tuple[CompiledTopic, ...]
    settings: ClusterSettings
    now: datetime
    stories: StoryStage = field(init=False)

    def __post_init__(self) -> None:
        self.stories = StoryStage(self.settings, self.now)


#: Times one source's items are stored again after losing a race on a unique key.
MAX_STORE_RETRIES = 3


def _store_racing(
    tx: Transaction,
    shared: _Shared,
    ready: Sequence[ReadyItem],
    now: datetime,
    source: SourceConfig,
) -> _Stored:
    """``_store_items`` in a savepoint: when another worker committed an item with one
    of the same keys meanwhile (the same link carried by feeds on two hosts), only
    this source's writes roll back, and deciding again finds that item stored. The
    batch's other sources, and everything already fetched, are kept (the whole batch
    used to be rolled back and downloaded again)."""
    for attempt in range(MAX_STORE_RETRIES + 1):
        try:
            with tx.savepoint():
                return _store_items(tx, shared, ready, now, source.name)
        except ConflictError as exc:
            shared.stories.forget()  # it cached reports of ids now rolled back
            if attempt == MAX_STORE_RETRIES:
                raise
            log.info("source=%s lost a race on a stored key; deciding again: %s", source.id, exc)
    raise AssertionError("unreachable")


def _store_items(
    tx: Transaction,
    shared: _Shared,
    ready: Sequence[ReadyItem],
    now: datetime,
    source_name: str = "",
) -> _Stored:
    if not ready:  # a 304, a failure: no look-up at all
        return _Stored()
    updated = 0
    # One look-up for the whole batch: the feed's items never share keys (see
    # normalize_items).
    known = tx.known_items([key for r in ready for key in r.item.keys])
    decisions = [decide(r.item, known) for r in ready]
    # An item skipped as delivered before that turns out to need storing after all (its
    # stored copy went meanwhile) gets its topics and band keys here.
    ready = [
        r if r.complete or d.action not in (Action.INSERT, Action.UPDATE)
        else complete_item(r.item, shared.topics, source_name)
        for r, d in zip(ready, decisions, strict=True)
    ]  # fmt: skip
    fresh = [r for r, d in zip(ready, decisions, strict=True) if d.action is Action.INSERT]
    batch = shared.stories.assign(tx, fresh) if fresh else []
    digests: list[tuple[int, str, int]] = []
    for r, decision in zip(ready, decisions, strict=True):
        if decision.action is Action.INSERT:
            continue
        assert decision.item_id is not None
        tx.add_keys(decision.item_id, decision.new_keys)
        if decision.action is Action.ADD_SOURCE:
            tx.add_source(decision.item_id, r.item, now)
            continue
        if decision.action is Action.UPDATE:
            tx.update_item(decision.item_id, r.item)
            tx.set_topics(decision.item_id, r.topics)
            updated += 1
        if r.item.entry_digest is not None:
            # The source's entry for a stored item is new to us (edited, written
            # differently, or stored before digests were kept): next time it is skipped.
            digests.append((decision.item_id, r.item.source_id, r.item.entry_digest))
    tx.set_entry_digests(digests)
    tx.insert_items(batch, now)
    return _Stored(new=len(batch), updated=updated)


def _report(
    config: AppConfig, storage: Storage, reports: tuple[SourceReport, ...], *, publish: bool
) -> CycleReport:
    """Publish every feed (if ``publish``), prune old items, and sum the cycle up."""
    written: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    unchanged = len(_outputs(config))
    publish_seconds = 0.0
    if publish:
        publishing = time.monotonic()
        result = publish_all(config, storage)
        publish_seconds = time.monotonic() - publishing
        written = tuple(str(p) for p in result.written)
        unchanged, errors = len(result.unchanged), result.errors
    counts = storage.topic_counts()
    return CycleReport(
        sources=reports,
        topic_counts=tuple((t.slug, counts.get(t.slug, 0)) for t in config.topics),
        files_written=written,
        files_unchanged=unchanged,
        publish_errors=errors,
        publish_seconds=publish_seconds,
    )


def publish_all(config: AppConfig, storage: Storage) -> PublishResult:
    """Write every feed from what is stored, ping the hub, then prune old items."""
    from aggregator.publish import publish_site
    from aggregator.publish.websub import ping_hub

    feeds = _feeds(config, storage)
    result = publish_site(config, feeds)
    for error in result.errors:
        log.error("publish failed: %s", error)
    if not result.errors:
        storage.set_meta(PUBLISH_FINGERPRINT, publish_fingerprint(config))
    hub = config.settings.websub_hub
    if hub and result.changed_feed_urls:
        ping_hub(hub, result.changed_feed_urls, user_agent=config.user_agent)
    # Only what no feed shows any more may go; a failed publish prunes nothing.
    if not result.errors:
        shown = {item.item_id for spec in feeds for item in spec.items}
        cutoff = datetime.now(UTC) - timedelta(seconds=config.settings.retention)
        if pruned := storage.prune(cutoff, shown):
            log.info("pruned old items count=%d", pruned)
    return result


def publish_stored(config: AppConfig, storage: Storage) -> PublishResult:
    """Publish every feed from what is stored now (after ``recategorize``, say)."""
    from aggregator.publish import publish_site

    return publish_site(config, _feeds(config, storage))


def _feeds(config: AppConfig, storage: Storage) -> list[FeedSpec]:
    """Every topic feed and the ``all`` feed: one entry per story, fairly capped."""
    from aggregator.publish import FeedSpec, fair_selection

    settings = config.settings
    # Read more than a feed shows, so the per-source cap still leaves a full feed.
    depth = settings.items_per_feed * 5
    priorities = {s.id: s.priority for s in config.sources}

    def fair(slug: str | None) -> tuple[StoredItem, ...]:
        entries = [
            story_entry(pid, members, priorities)
            for pid, members in storage.story_groups(slug, depth)
        ]
        entries.sort(key=lambda e: (e.published_at, e.item_id), reverse=True)
        return fair_selection(
            entries, limit=settings.items_per_feed, per_source_cap=settings.per_source_cap
        )

    feeds = [
        FeedSpec(
            slug=topic.slug,
            title=topic.title,
            description=topic.description or f"{topic.title}: textile-industry news",
            items=fair(topic.slug),
        )
        for topic in config.topics
    ]
    # First: feed readers' autodiscovery takes the page's first <link rel="alternate">.
    everything = FeedSpec(
        slug="all",
        title="All topics",
        description="Every item of every topic, newest first.",
        items=fair(None),
    )
    return [everything, *feeds]


@dataclass(frozen=True, slots=True)
class Trial:
    """What one source would yield now, computed without touching the database."""

    fetched: FetchResult
    read: SourceRead
    #: Each normalized item with the slugs of the topics it would join.
    items: tuple[tuple[Item, tuple[str, ...]], ...]


def try_source(config: AppConfig, source: SourceConfig, *, fetcher: Fetcher | None = None) -> Trial:
    """Fetch and read one source as a poll would, store nothing (``textile-feeds try``)."""
    now = datetime.now(UTC)
    fetcher = fetcher or Fetcher(config.settings.fetch, config.user_agent)
    url = str(config.resolve(source.url)) if source.is_local else source.url
    request = FetchRequest(source_id=source.id, url=url)
    poll = _Poll(source=source, state=SourceState(source_id=source.id, name=source.name, url=url),
                 request=request, base=0.0)  # fmt: skip
    (fetched,) = _fetch_first_pages([poll], fetcher, {})
    read = SourceRead(problem=fetched.error, problem_type=fetched.error_type or "fetch")
    if fetched.outcome is FetchOutcome.OK:
        read = read_source(config, source, fetched, fetcher, is_known=lambda _link: False)
    topics = compile_topics(config.topics, config.rule_sets, config.trade_press)
    ready, _ = ready_items(source, read.base_url, read.entries, now, topics)
    return Trial(
        fetched=fetched,
        read=read,
        items=tuple((r.item, tuple(m.slug for m in r.topics)) for r in ready),
    )
