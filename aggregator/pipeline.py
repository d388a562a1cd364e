"""One polling cycle, end to end. Reads like the diagram; the stages do the work.

    sources due ──fetch──> FetchResult ──parse──> ParsedFeed ──normalize──> Item
        ──dedupe──> Decision ──categorize──> TopicMatch ──storage──> (per source, one
        transaction) ──publish──> <slug>.rss / <slug>.atom

The daemon and ``run --once`` both call ``run_cycle``. A failing source is recorded on
its row and the cycle goes on; only storage failures end it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from aggregator.categorize import CompiledTopic, categorize, compile_topics
from aggregator.config import AppConfig, SourceConfig
from aggregator.dedupe import Action, decide
from aggregator.errors import ParseError, PublishError
from aggregator.fetch import Fetcher, FetchRequest
from aggregator.models import (
    CycleReport,
    FetchOutcome,
    FetchResult,
    Item,
    SourceReport,
    Validators,
)
from aggregator.normalize import normalize_entry
from aggregator.parse import parse_feed
from aggregator.publish import publish_topic
from aggregator.storage import SourceState, Storage, Transaction

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
) -> CycleReport:
    """Poll the enabled sources (only those due, if ``due_only``), store what is new,
    and republish every topic. ``stop`` ends the cycle after the current source."""
    now = now or datetime.now(UTC)
    fetcher = fetcher or Fetcher(config.settings.fetch, config.settings.user_agent)
    topics = compile_topics(config.topics)

    with storage.transaction() as tx:
        tx.sync_sources(config.sources)
    states = storage.source_states()
    sources = [
        s for s in config.sources if s.enabled and (not due_only or _is_due(states.get(s.id), now))
    ]
    requests = [
        FetchRequest(
            source_id=s.id,
            url=str(config.resolve(s.url)) if s.is_local else s.url,
            validators=states[s.id].validators if s.id in states else Validators(),
        )
        for s in sources
    ]
    results = fetcher.fetch_all(requests) if requests else []

    reports: list[SourceReport] = []
    for source, result in zip(sources, results, strict=True):
        if stop is not None and stop.is_set():
            log.info(
                "stop requested; %d sources left for the next cycle", len(sources) - len(reports)
            )
            break
        reports.append(_ingest(config, storage, topics, source, result, now))

    changed = any(r.new_items or r.updated_items for r in reports)
    # The daemon looks for due sources every minute; re-render only when something
    # changed (or an output file went missing), a one-shot run always re-renders.
    publish = not due_only or changed or _output_missing(config)
    return _report(config, storage, tuple(reports), publish=publish)


def _output_missing(config: AppConfig) -> bool:
    return any(
        not (config.output_dir / f"{topic.slug}.{ext}").is_file()
        for topic in config.topics
        for ext in ("rss", "atom")
    )


def _is_due(state: SourceState | None, now: datetime) -> bool:
    return state is None or state.next_check_at is None or state.next_check_at <= now


def _ingest(
    config: AppConfig,
    storage: Storage,
    topics: Sequence[CompiledTopic],
    source: SourceConfig,
    result: FetchResult,
    now: datetime,
) -> SourceReport:
    """Parse, normalize and store one source's fetch result (one transaction)."""
    error = result.error
    items: list[Item] = []
    entries_seen = 0
    if result.outcome is FetchOutcome.OK:
        try:
            parsed = parse_feed(result)
        except ParseError as exc:
            error = exc.message
        else:
            entries_seen = len(parsed.entries)
            if parsed.warning:
                log.debug("feed warning source=%s: %s", source.id, parsed.warning)
            base = result.final_url if result.final_url.startswith("http") else (source.home or "")
            zone = ZoneInfo(source.timezone)
            seen_keys: set[str] = set()
            for entry in parsed.entries:
                item = normalize_entry(
                    entry, source_id=source.id, base_url=base, timezone=zone, now=now
                )
                # A feed listing one story twice keeps its first (newest) version.
                if item is not None and seen_keys.isdisjoint(item.keys):
                    seen_keys.update(item.keys)
                    items.append(item)

    next_check = now + timedelta(seconds=config.interval_of(source))
    with storage.transaction() as tx:
        stored = _store_items(tx, topics, items, now)
        tx.record_fetch(result, error=error, next_check=next_check, now=now)

    outcome = FetchOutcome.FAILED if error else result.outcome
    log.info(
        "polled source=%s url=%s outcome=%s status=%s seconds=%.2f bytes=%d entries=%d "
        "new=%d updated=%d%s",
        source.id, source.url, outcome.value, result.status, result.duration, len(result.body),
        entries_seen, stored.new, stored.updated, f" error={error!r}" if error else "",
    )  # fmt: skip
    return SourceReport(
        source_id=source.id,
        outcome=outcome,
        error=error,
        entries_seen=entries_seen,
        new_items=stored.new,
        updated_items=stored.updated,
    )


def _store_items(
    tx: Transaction, topics: Sequence[CompiledTopic], items: Sequence[Item], now: datetime
) -> _Stored:
    new = updated = 0
    for item in items:
        decision = decide(item, tx.known_items(item.keys))
        if decision.action is Action.INSERT:
            item_id = tx.insert_item(item, now)
            tx.set_topics(item_id, categorize(item, topics))
            new += 1
            continue
        assert decision.item_id is not None
        tx.add_keys(decision.item_id, decision.new_keys)
        if decision.action is Action.ADD_SOURCE:
            tx.add_source(decision.item_id, item, now)
        elif decision.action is Action.UPDATE:
            tx.update_item(decision.item_id, item)
            tx.set_topics(decision.item_id, categorize(item, topics))
            updated += 1
    return _Stored(new=new, updated=updated)


def _report(
    config: AppConfig, storage: Storage, reports: tuple[SourceReport, ...], *, publish: bool
) -> CycleReport:
    """Publish every topic (if ``publish``) and sum the cycle up."""
    titles = {t.slug: t.title for t in config.topics}
    written: list[str] = []
    unchanged = 0
    errors: list[str] = []
    for topic in config.topics if publish else ():
        items = storage.items_for_topic(topic.slug, config.settings.items_per_feed)
        try:
            result = publish_topic(
                topic, items, settings=config.settings, titles=titles, output_dir=config.output_dir
            )
        except PublishError as exc:
            log.error("publish failed topic=%s: %s", topic.slug, exc)
            errors.append(str(exc))
            continue
        written.extend(str(p) for p in result.written)
        unchanged += len(result.unchanged)
    counts = storage.topic_counts()
    return CycleReport(
        sources=reports,
        topic_counts=tuple((t.slug, counts.get(t.slug, 0)) for t in config.topics),
        files_written=tuple(written),
        files_unchanged=unchanged,
        publish_errors=tuple(errors),
    )
