"""Exact dedupe across sources: decide what a freshly normalized item means.

Pure: given the item and what storage already knows about its keys, say whether it is
a new story, another source carrying a known story, or an edit of a known story. The
unique index on ``item_keys.key`` stays the last line of defence (see storage).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from aggregator.models import Item


@dataclass(frozen=True, slots=True, kw_only=True)
class KnownItem:
    """What storage knows about an item one of the new item's keys points to."""

    item_id: int
    #: Source that first carried the item; only it may edit the stored text.
    origin_source_id: str
    content_hash: str
    #: Sources already linked to the item.
    source_ids: frozenset[str]


class Action(enum.StrEnum):
    INSERT = "insert"  # a story never seen before
    ADD_SOURCE = "add_source"  # a known story, newly carried by this source
    UPDATE = "update"  # the origin source edited the story
    UNCHANGED = "unchanged"  # seen before, nothing to do


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    action: Action
    #: The stored item the new one merges into (None for INSERT).
    item_id: int | None
    #: Keys of the item not yet recorded for ``item_id`` (all keys for INSERT).
    new_keys: tuple[str, ...]


def decide(item: Item, known: Mapping[str, KnownItem]) -> Decision:
    """Match ``item`` against ``known`` (key -> stored item) by its keys, strongest first.

    When keys point to different stored items (two stories once thought distinct), the
    item joins the one its strongest key names; merging stored stories is left to the
    near-duplicate clustering stage."""
    match = next((known[key] for key in item.keys if key in known), None)
    if match is None:
        return Decision(action=Action.INSERT, item_id=None, new_keys=item.keys)
    new_keys = tuple(key for key in item.keys if key not in known)
    if item.source_id not in match.source_ids:
        action = Action.ADD_SOURCE
    elif item.source_id == match.origin_source_id and item.content_hash != match.content_hash:
        action = Action.UPDATE
    else:
        action = Action.UNCHANGED
    return Decision(action=action, item_id=match.item_id, new_keys=new_keys)
