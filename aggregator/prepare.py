"""A fetched body -> items ready to store: parse, normalize, categorize, and the
near-duplicate index keys (MinHash LSH bands). These stages need neither the database
nor the network.

That makes them the part of a cycle that can leave the polling process: with many
sources a ``Preparer`` runs them in worker processes, so both cores parse while the
polling process keeps fetching and storing. Parsing, not the network, is where a cold
cycle's time goes (see the README's design notes). A small cycle prepares inline.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import multiprocessing
import os
import re
import select
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from aggregator import __version__
from aggregator.categorize import CompiledTopic, categorize, compile_topics, item_fields
from aggregator.config import AppConfig, RuleSet, SourceConfig, TopicConfig
from aggregator.errors import ParseError
from aggregator.models import FetchResult, Item, ParsedEntry, TopicMatch, compact_pickle
from aggregator.rules import index_fields

log = logging.getLogger(__name__)

# The stages themselves (parsing: lxml, feedparser; normalizing: nh3, w3lib, dateutil;
# MinHash: numpy) are imported where first used: a cycle in which every source answers
# 304 prepares nothing and starts ~0.3 s sooner without them. Worker processes load
# them up front (see Preparer).
_STAGES = ["aggregator.parse", "aggregator.normalize", "aggregator.minhash", "Stemmer"]


@compact_pickle
@dataclass(frozen=True, slots=True)
class ReadyItem:
    """A normalized item with its topics and LSH band keys (``minhash.band_blob``),
    ready to store. An item the source already delivered with the same content comes
    without them (empty ``bands``): storing it changes nothing, so nothing was computed."""

    item: Item
    topics: tuple[TopicMatch, ...]
    bands: bytes
    #: Its word pairs for the story stage (``stories.pair_hashes``), from the same
    #: tokens as its MinHash.
    pairs: bytes = b""
    #: The figures and title places the story stage compares (``cluster.ReportFacts``,
    #: encoded), so the polling process needs no gazetteer.
    facts: str = ""

    @property
    def complete(self) -> bool:
        return bool(self.bands)


def fingerprint(key: str, content_hash: str) -> int:
    """Identifies an item's content as a source delivered it (8 bytes, to ship cheaply)."""
    digest = hashlib.blake2b(f"{key}\n{content_hash}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


@compact_pickle
@dataclass(frozen=True, slots=True)
class PreparedSource:
    """What one source's fetch yielded, ready to store."""

    items: tuple[ReadyItem, ...] = ()
    entries_seen: int = 0
    #: Entries with nothing to show (no title, link or content), dropped.
    empty_entries: int = 0
    ttl_minutes: int | None = None
    #: Why the body could not be read, or a selector problem (items are still kept).
    problem: str | None = None
    problem_type: str = "parse"


def normalize_items(
    source: SourceConfig,
    base: str,
    entries: Sequence[ParsedEntry],
    now: datetime,
    seen: frozenset[int] = frozenset(),
) -> tuple[list[Item], int]:
    """The entries' items, and how many entries were empty (nothing to show, see
    ``normalize``) and so dropped. An entry whose ``entry_digest`` is in ``seen`` (the
    source delivered it before, exactly so) is not normalized and gives no item: storing
    it again would change nothing. Its dedupe keys still count within the feed."""
    from aggregator.normalize import entry_keys, normalize_entry

    normalized = functools.partial(
        normalize_entry, source_id=source.id, base_url=base, timezone=ZoneInfo(source.timezone),
        now=now, publisher_patterns=_publisher_patterns(source.publisher_patterns),
    )  # fmt: skip
    context = _digest_context(source, base)
    items: list[Item] = []
    seen_keys: set[str] = set()
    skipped: list[ParsedEntry] = []  # their keys, only once a later entry needs them
    empty = 0
    for entry in entries:
        digest = entry_digest(entry, context)
        if digest in seen:
            skipped.append(entry)
            continue
        for earlier in skipped:
            keys = entry_keys(earlier, source_id=source.id, base_url=base)
            if keys is None:  # no link or guid: its text makes them
                made = normalized(earlier)
                keys = made.keys if made is not None else ()
            seen_keys.update(keys)
        skipped.clear()
        item = normalized(entry)
        if item is None:
            empty += 1
        # A feed listing one story twice keeps its first (newest) version.
        elif seen_keys.isdisjoint(item.keys):
            seen_keys.update(item.keys)
            items.append(replace(item, entry_digest=digest))
    return items, empty


def entry_digest(entry: ParsedEntry, context: bytes) -> int:
    """A feed entry as its source delivered it, with what its normalizing depends on
    (``_digest_context``), as a signed 64-bit number (a database BIGINT)."""
    hasher = hashlib.blake2b(context, digest_size=8)
    for value in (
        entry.guid,
        entry.link,
        entry.title,
        entry.summary_html,
        entry.published_raw,
        entry.updated_raw,
        entry.author,
        entry.language,
        entry.original_publisher,
    ):
        hasher.update(b"\x1f" + (value or "").encode("utf-8", "surrogatepass"))
    hasher.update(b"\x1e" + "\x1f".join(entry.categories).encode("utf-8", "surrogatepass"))
    hasher.update(b"\x1d1" if entry.title_is_html else b"\x1d0")
    return int.from_bytes(hasher.digest(), "little", signed=True)


def _digest_context(source: SourceConfig, base: str) -> bytes:
    """What else an item's normalizing depends on: the program (its version and
    ``normalize.REVISION``), the source's settings and the address relative links
    resolve against. A change to any of them makes every entry new again, so it is
    normalized under the new rules."""
    from aggregator.normalize import REVISION

    return f"{__version__}\x1f{REVISION}\x1f{source.model_dump_json()}\x1f{base}".encode()


@functools.lru_cache(maxsize=256)
def _publisher_patterns(patterns: tuple[str, ...] | None) -> tuple[re.Pattern[str], ...] | None:
    """A source's own publisher patterns, compiled once (None: the defaults)."""
    return None if patterns is None else tuple(re.compile(p) for p in patterns)


def ready_items(
    source: SourceConfig,
    base: str,
    entries: Sequence[ParsedEntry],
    now: datetime,
    topics: Sequence[CompiledTopic],
    seen: frozenset[int] = frozenset(),
) -> tuple[tuple[ReadyItem, ...], int]:
    """Normalize, categorize and sign every entry of one source. ``seen``: what the
    source delivered before. An entry whose digest is there is skipped (see
    ``normalize_items``); an item whose ``fingerprint`` is there (the same item from an
    entry written differently) is only normalized. Also returns how many entries were
    empty and dropped."""
    items, empty = normalize_items(source, base, entries, now, seen)
    ready = tuple(
        ReadyItem(item=item, topics=(), bands=b"")
        if fingerprint(item.keys[0], item.content_hash) in seen
        else complete_item(item, topics, source.name)
        for item in items
    )
    return ready, empty


def complete_item(item: Item, topics: Sequence[CompiledTopic], source_name: str) -> ReadyItem:
    from aggregator.cluster import ReportFacts, tokens
    from aggregator.minhash import (
        band_blob,
        distinct_hashes,
        figure_blob,
        shingle_hashes,
        signature_of,
    )

    hashes = shingle_hashes(tokens(f"{item.title} . {item.summary_text}"))
    # The item's text indexed once: the topics and the story facts read the same places.
    fields = index_fields(item_fields(item, source_name))
    places = fields["title"].places(), fields["summary"].places()
    facts = ReportFacts.of(item.title, item.summary_text, places)
    return ReadyItem(
        item=item,
        topics=categorize(item, topics, source_name, fields),
        bands=band_blob(signature_of(hashes)) + figure_blob(facts.figures),
        pairs=distinct_hashes(hashes),
        facts=facts.encode(),
    )


def feed_base_url(source: SourceConfig, result: FetchResult) -> str:
    """What relative links in a feed resolve against."""
    return result.final_url if result.final_url.startswith("http") else (source.home or "")


def prepare_feed(
    source: SourceConfig,
    result: FetchResult,
    now: datetime,
    topics: Sequence[CompiledTopic],
    seen: frozenset[int] = frozenset(),
) -> PreparedSource:
    """Parse a feed body and prepare its items. Never raises for the feed's own faults:
    they come back as ``problem``."""
    from aggregator.parse import parse_feed

    try:
        parsed = parse_feed(result)
    except ParseError as exc:
        return PreparedSource(problem=exc.message, problem_type=exc.kind)
    if parsed.warning:
        log.debug("feed warning source=%s: %s", source.id, parsed.warning)
    items, empty = ready_items(
        source, feed_base_url(source, result), parsed.entries, now, topics, seen
    )
    return PreparedSource(
        items=items,
        entries_seen=len(parsed.entries),
        empty_entries=empty,
        ttl_minutes=parsed.ttl_minutes,
    )


# --- worker processes --------------------------------------------------------------

_worker_topics: tuple[CompiledTopic, ...] = ()


def _start_worker(
    topics: Sequence[TopicConfig],
    rule_sets: Mapping[str, RuleSet],
    trade_sources: frozenset[str],
    owner_pid: int,
) -> None:
    global _worker_topics
    exit_with(owner_pid)
    _worker_topics = compile_topics(topics, rule_sets, trade_sources)


def exit_with(owner_pid: int) -> None:
    """End this process as soon as process ``owner_pid`` has ended, however it ended.

    Pool workers are children of the fork server, not of the process that owns the
    pool, so they never learn of its ``kill -9``; and while they live they hold the
    pipe the fork server (and the resource tracker) watch for their owner's death, so
    all of them stayed alive for good. A thread waits on the owner's pidfd (Linux 5.3+;
    elsewhere it looks once a second)."""

    def watch() -> None:
        try:
            descriptor = os.pidfd_open(owner_pid)
        except (AttributeError, OSError):
            while _alive(owner_pid):
                time.sleep(1.0)
        else:
            select.select([descriptor], [], [])  # readable once the process has ended
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-owner", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _prepare_in_worker(
    source: SourceConfig, result: FetchResult, now: datetime, seen: frozenset[int]
) -> PreparedSource:
    return prepare_feed(source, result, now, _worker_topics, seen)


#: How often one pool starts its workers again after one died, before it gives up.
MAX_RESTARTS = 3


class Preparer:
    """A pool of worker processes preparing feed bodies, for one taxonomy.

    Workers fork from a clean server process (``forkserver``) with this module already
    imported: fast to start, and safe in a daemon whose other threads may hold locks."""

    def __init__(
        self,
        topics: Sequence[TopicConfig],
        rule_sets: Mapping[str, RuleSet],
        workers: int,
        trade_sources: frozenset[str] = frozenset(),
    ) -> None:
        self.rules = (tuple(topics), dict(rule_sets), trade_sources)
        self.workers = workers
        self.restarts = 0
        self._context = multiprocessing.get_context("forkserver")
        # The gazetteer too, when a topic uses place terms: built once, shared by all.
        places = ["aggregator.places_loaded"] if _uses_places(topics, rule_sets) else []
        self._context.set_forkserver_preload([__name__, *_STAGES, *places])
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._context,
            initializer=_start_worker,
            initargs=(*self.rules, os.getpid()),
        )

    def submit(
        self,
        source: SourceConfig,
        result: FetchResult,
        now: datetime,
        seen: frozenset[int] = frozenset(),
    ) -> Future[PreparedSource]:
        """``seen``: fingerprints of what the source delivered before (not redone).

        When a worker has died (killed, out of memory), the pool is unusable: a new one
        takes the rest of the cycle, up to ``MAX_RESTARTS`` times. Past that the future
        fails, so the source is retried next cycle and the cycle goes on."""
        try:
            return self._pool.submit(_prepare_in_worker, source, result, now, seen)
        except BrokenProcessPool as exc:
            if self.restarts >= MAX_RESTARTS:
                failed: Future[PreparedSource] = Future()
                failed.set_exception(exc)
                return failed
            log.warning("a parse worker died: starting the worker processes again")
            self.restarts += 1
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(_prepare_in_worker, source, result, now, seen)

    @property
    def broken(self) -> bool:
        """Whether this pool gave up restarting its workers (a new one is needed)."""
        return self.restarts >= MAX_RESTARTS

    def serves(
        self,
        topics: Sequence[TopicConfig],
        rule_sets: Mapping[str, RuleSet],
        trade_sources: frozenset[str] = frozenset(),
    ) -> bool:
        """Whether this pool categorizes with these rules (a reload may change them)."""
        return self.rules == (tuple(topics), dict(rule_sets), trade_sources)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _uses_places(topics: Sequence[TopicConfig], rule_sets: Mapping[str, RuleSet]) -> bool:
    return any(t.place is not None for topic in compile_topics(topics, rule_sets)
               for t in (*topic.include, *(topic.gate.include if topic.gate else ())))  # fmt: skip


class Workers:
    """The parse workers of a process: started on the first cycle big enough to need
    them, kept for the next ones (the daemon), restarted when the topic rules or the
    worker count change, stopped by ``close``."""

    def __init__(self) -> None:
        self._preparer: Preparer | None = None

    def preparer(self, config: AppConfig) -> Preparer:
        count = worker_count(config.settings.parse_workers)
        current = self._preparer
        if (
            current is None
            or current.broken
            or current.workers != count
            or not current.serves(config.topics, config.rule_sets, config.trade_press)
        ):
            self.close()
            current = self._preparer = Preparer(
                config.topics, config.rule_sets, count, config.trade_press
            )
        return current

    def close(self) -> None:
        if self._preparer is not None:
            self._preparer.close()
            self._preparer = None
            _stop_fork_server()


def _stop_fork_server() -> None:
    """Stop multiprocessing's fork server once the workers it forked are gone. It reaps
    them, and only once it is reaped in turn does their CPU time count among this
    process's children: ``time textile-feeds run --once`` and cron's accounting showed
    the polling process alone (half a cold cycle's CPU). A later pool starts a new one."""
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:  # CPython's; absent elsewhere, where nothing else changes
        stop()


def worker_count(configured: int) -> int:
    """``parse_workers`` as a number: 0 means one per CPU this process may use."""
    if configured:
        return configured
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
