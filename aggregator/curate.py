"""Curators' tools over stored items: re-categorize, preview a topic, explain an item.

``recategorize`` applies the current topic rules to the items within the feed window
(the pipeline calls it whenever the rules' fingerprint changes, so an edited
``topics.yaml`` takes effect without waiting for new items). ``preview`` runs one
topic's rules without changing anything; ``explain`` gives every topic's reasoning
about one item.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta

from aggregator.categorize import TopicVerdict, categorize, compile_topics, verdicts
from aggregator.config import AppConfig
from aggregator.models import Item, TermHit
from aggregator.storage import Storage

RULES_FINGERPRINT = "topic_rules_fingerprint"


def rules_fingerprint(config: AppConfig) -> str:
    """Changes whenever any topic rule or rule set does (not on comments or order of keys)."""
    rules = {
        "topics": [t.model_dump(mode="json") for t in config.topics],
        "rule_sets": {k: v.model_dump(mode="json") for k, v in config.rule_sets.items()},
    }
    return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Recategorized:
    examined: int
    changed: int
    #: slug -> items that joined / left it.
    joined: dict[str, int]
    left: dict[str, int]


def recategorize(config: AppConfig, storage: Storage, *, now: datetime) -> Recategorized:
    """Re-apply the topic rules to items within ``feed_window``; store the fingerprint."""
    topics = compile_topics(config.topics, config.rule_sets, config.trade_press)
    names = {s.id: s.name for s in config.sources}
    since = now - timedelta(seconds=config.settings.feed_window)
    joined: dict[str, int] = {}
    left: dict[str, int] = {}
    changed = 0
    stored = storage.items_since(since)
    with storage.transaction() as tx:
        for item_id, item, current in stored:
            matches = categorize(item, topics, names.get(item.source_id, ""))
            new = {m.slug for m in matches}
            if new == set(current):
                continue
            changed += 1
            for slug in new - set(current):
                joined[slug] = joined.get(slug, 0) + 1
            for slug in set(current) - new:
                left[slug] = left.get(slug, 0) + 1
            tx.set_topics(item_id, matches)
    storage.set_meta(RULES_FINGERPRINT, rules_fingerprint(config))
    return Recategorized(examined=len(stored), changed=changed, joined=joined, left=left)


def rules_changed(config: AppConfig, storage: Storage) -> bool:
    return storage.meta(RULES_FINGERPRINT) != rules_fingerprint(config)


@dataclass(frozen=True, slots=True, kw_only=True)
class Preview:
    #: Items the topic would hold, newest first, with the terms that put each there.
    members: tuple[tuple[Item, tuple[TermHit, ...]], ...]
    joining: tuple[Item, ...]
    leaving: tuple[Item, ...]


def preview(config: AppConfig, storage: Storage, slug: str, *, now: datetime) -> Preview:
    """What topic ``slug`` would hold under ``config``'s rules; changes nothing."""
    topics = [
        t
        for t in compile_topics(config.topics, config.rule_sets, config.trade_press)
        if t.slug == slug
    ]
    names = {s.id: s.name for s in config.sources}
    since = now - timedelta(seconds=config.settings.feed_window)
    members, joining, leaving = [], [], []
    for _item_id, item, current in storage.items_since(since):
        (verdict,) = verdicts(item, topics, names.get(item.source_id, ""))
        if verdict.belongs:
            members.append((item, verdict.hits))
            if slug not in current:
                joining.append(item)
        elif slug in current:
            leaving.append(item)

    def newest(item: Item) -> datetime:
        return item.published_at

    members.sort(key=lambda pair: pair[0].published_at, reverse=True)
    return Preview(
        members=tuple(members),
        joining=tuple(sorted(joining, key=newest, reverse=True)),
        leaving=tuple(sorted(leaving, key=newest, reverse=True)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class StoryMember:
    item_id: int
    item: Item
    #: Jaccard similarity it joined the story with, and through which member (None for
    #: the member that founded the story).
    similarity: float | None
    via: int | None
    #: The evidence it joined on ("words alike", "same figures, other words", ...).
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    item_id: int
    item: Item
    current_topics: tuple[str, ...]
    verdicts: tuple[TopicVerdict, ...]
    story_public_id: str | None = None
    story: tuple[StoryMember, ...] = ()


def explain(config: AppConfig, storage: Storage, url: str) -> Explanation | None:
    """Every topic's reasoning about the stored item at ``url`` (None if not stored)."""
    from aggregator.normalize import canonical_url  # w3lib, nh3: not for every cycle

    link = canonical_url(url)
    found = storage.item_by_link(link) if link else None
    if found is None:
        return None
    item_id, item, current = found
    names = {s.id: s.name for s in config.sources}
    topics = compile_topics(config.topics, config.rule_sets, config.trade_press)
    story = storage.story_of(item_id)
    members = storage.story_members(story[0]) if story else []
    return Explanation(
        item_id=item_id,
        item=item,
        current_topics=current,
        verdicts=verdicts(item, topics, names.get(item.source_id, "")),
        story_public_id=story[1] if story else None,
        story=tuple(
            StoryMember(item_id=i, item=member, similarity=similarity, via=via, reason=reason)
            for i, member, similarity, via, reason in members
        ),
    )
