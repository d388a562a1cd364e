"""dedupe.decide: insert, add a source, apply an edit, or do nothing (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from aggregator.dedupe import Action, KnownItem, decide
from aggregator.models import Item

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def item(source: str, keys: tuple[str, ...], content_hash: str = "h1") -> Item:
    return Item(
        source_id=source, keys=keys, link=None, guid=None, title="t", summary_html="",
        summary_text="", published_at=NOW, updated_at=NOW, date_missing=False, author=None,
        categories=(), language=None, content_hash=content_hash,
    )  # fmt: skip


def known(
    item_id: int = 7, origin: str = "a", content_hash: str = "h1", *carriers: str
) -> KnownItem:
    return KnownItem(
        item_id=item_id,
        origin_source_id=origin,
        content_hash=content_hash,
        source_ids=frozenset({origin, *carriers}),
    )


def test_unknown_keys_insert() -> None:
    decision = decide(item("a", ("link:u", "guid:a:1")), {})
    assert decision.action is Action.INSERT
    assert decision.new_keys == ("link:u", "guid:a:1")


def test_same_link_from_another_source_adds_the_source() -> None:
    decision = decide(item("b", ("link:u", "guid:b:9")), {"link:u": known()})
    assert decision.action is Action.ADD_SOURCE
    assert decision.item_id == 7
    assert decision.new_keys == ("guid:b:9",)


def test_origin_source_edit_updates() -> None:
    decision = decide(item("a", ("link:u",), "h2"), {"link:u": known()})
    assert decision.action is Action.UPDATE


def test_non_origin_source_cannot_edit() -> None:
    decision = decide(item("b", ("link:u",), "h2"), {"link:u": known(7, "a", "h1", "b")})
    assert decision.action is Action.UNCHANGED


def test_seen_again_unchanged() -> None:
    decision = decide(item("a", ("link:u",)), {"link:u": known()})
    assert decision.action is Action.UNCHANGED
    assert decision.new_keys == ()


def test_strongest_key_wins_when_keys_disagree() -> None:
    decision = decide(item("a", ("link:u", "guid:a:1")), {"guid:a:1": known(3), "link:u": known(9)})
    assert decision.item_id == 9
