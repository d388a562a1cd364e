"""Storage: migrations, exact-dedupe keys, round trips of items and fetch state."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from aggregator.config import SourceConfig
from aggregator.errors import StorageError
from aggregator.models import FetchOutcome, FetchResult, Item, TermHit, TopicMatch, Validators
from aggregator.storage import Storage
from aggregator.storage.migrations import MIGRATIONS

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def item(source: str = "a", keys: tuple[str, ...] = ("link:https://x.org/1",), **kw: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {
        "source_id": source, "keys": keys, "link": "https://x.org/1", "guid": "1",
        "title": "Cotton up", "summary_html": "<p>s</p>", "summary_text": "s",
        "published_at": NOW - timedelta(hours=1), "updated_at": NOW, "date_missing": False,
        "author": None, "categories": ("Markets", "棉花"), "language": "en", "content_hash": "h",
    }  # fmt: skip
    values.update(kw)
    return Item(**values)  # type: ignore[arg-type]


def sources(*ids: str) -> list[SourceConfig]:
    return [
        SourceConfig.model_validate({"id": i, "name": i.upper(), "url": f"https://{i}.org/f"})
        for i in ids
    ]


@pytest.fixture
def storage() -> Storage:
    store = Storage.open_sqlite(":memory:")
    with store.transaction() as tx:
        tx.sync_sources(sources("a", "b"))
    return store


def test_file_database_uses_wal_and_migrates_once(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "db.sqlite"
    first = Storage.open_sqlite(path)
    assert first.schema_version == len(MIGRATIONS)
    first.close()
    Storage.open_sqlite(path).close()  # reopening applies nothing twice
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(
            MIGRATIONS
        )


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    Storage.open_sqlite(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO schema_migrations VALUES (99, '2030-01-01')")
    with pytest.raises(RuntimeError, match="newer than this program knows"):
        Storage.open_sqlite(path)


def test_item_round_trip_with_sources_and_topics(storage: Storage) -> None:
    with storage.transaction() as tx:
        item_id = tx.insert_item(item(), NOW)
        tx.add_source(item_id, item(source="b", link="https://x.org/1?b"), NOW + timedelta(1))
        hit = TermHit(term="cotton", field="title")
        tx.set_topics(item_id, [TopicMatch(slug="cotton", hits=(hit,))])
    (stored,) = storage.items_for_topic("cotton", 10)
    assert stored.title == "Cotton up"
    assert stored.published_at == NOW - timedelta(hours=1)
    assert stored.published_at.tzinfo is UTC
    assert stored.categories == ("Markets", "棉花")
    assert [s.source_id for s in stored.sources] == ["a", "b"]
    assert stored.sources[0].name == "A"
    assert stored.topics == ("cotton",)
    assert stored.public_id.startswith("urn:uuid:")
    assert storage.topic_counts() == {"cotton": 1}


def test_unique_keys_are_the_last_line_of_dedupe(storage: Storage) -> None:
    with storage.transaction() as tx:
        first = tx.insert_item(item(), NOW)
        # Adding a key that already exists is silently ignored, never a second row.
        tx.add_keys(first, ["link:https://x.org/1", "guid:a:1"])
        known = tx.known_items(["link:https://x.org/1", "guid:a:1", "link:other"])
    assert set(known) == {"link:https://x.org/1", "guid:a:1"}
    assert known["guid:a:1"].item_id == first
    assert known["guid:a:1"].source_ids == frozenset({"a"})
    with pytest.raises(StorageError, match="UNIQUE"), storage.transaction() as tx:
        tx.insert_item(item(), NOW)  # same public id: the unique index refuses
    assert storage.item_count() == 1


def test_failed_transaction_leaves_nothing_behind(storage: Storage) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), storage.transaction() as tx:
        tx.insert_item(item(), NOW)
        raise Boom
    assert storage.item_count() == 0


def test_update_keeps_published_date_and_public_id(storage: Storage) -> None:
    with storage.transaction() as tx:
        item_id = tx.insert_item(item(), NOW)
        tx.set_topics(item_id, [TopicMatch(slug="t", hits=())])
        tx.update_item(item_id, item(title="Cotton up 3%", published_at=NOW, content_hash="h2"))
    (stored,) = storage.items_for_topic("t", 5)
    assert stored.title == "Cotton up 3%"
    assert stored.published_at == NOW - timedelta(hours=1)


def test_record_fetch_success_and_failure(storage: Storage) -> None:
    ok = FetchResult(
        source_id="a", url="u", outcome=FetchOutcome.OK, status=200,
        validators=Validators(etag='"e1"', last_modified="lm"),
    )  # fmt: skip
    with storage.transaction() as tx:
        tx.record_fetch(ok, error=None, next_check=NOW + timedelta(minutes=30), now=NOW)
    state = storage.source_states()["a"]
    assert state.validators == Validators(etag='"e1"', last_modified="lm")
    assert state.last_success_at == NOW
    assert state.next_check_at == NOW + timedelta(minutes=30)
    assert state.error_count == 0

    failed = FetchResult(source_id="a", url="u", outcome=FetchOutcome.FAILED, status=503)
    later = NOW + timedelta(hours=1)
    for _ in range(2):
        with storage.transaction() as tx:
            tx.record_fetch(failed, error="HTTP 503", next_check=later, now=later)
    state = storage.source_states()["a"]
    assert state.error_count == 2
    assert state.last_error == "HTTP 503"
    assert state.last_outcome == "failed"
    assert state.last_success_at == NOW
    assert state.validators.etag == '"e1"'  # kept for the next conditional request


def test_items_for_topic_newest_first_and_limited(storage: Storage) -> None:
    with storage.transaction() as tx:
        for n in range(5):
            item_id = tx.insert_item(
                item(keys=(f"link:https://x.org/{n}",), published_at=NOW - timedelta(days=n)), NOW
            )
            tx.set_topics(item_id, [TopicMatch(slug="t", hits=())])
    stored = storage.items_for_topic("t", 3)
    assert [s.published_at for s in stored] == [NOW - timedelta(days=n) for n in range(3)]


def test_migrations_compile_for_postgresql() -> None:
    """The migrations must build a PostgreSQL schema too (the later multi-worker engine)."""
    statements: list[str] = []

    def capture(sql: sa.schema.ExecutableDDLElement, *_: object, **__: object) -> None:
        statements.append(str(sql.compile(dialect=engine.dialect)))

    engine = sa.create_mock_engine("postgresql+psycopg2://", capture)  # type: ignore[arg-type]
    for migration in MIGRATIONS:
        migration(engine)  # type: ignore[arg-type]
    created = " ".join(statements)
    for table in ("sources", "items", "item_keys", "item_sources", "item_topics"):
        assert f"CREATE TABLE {table}" in created
    assert "SERIAL" in created  # items.id autoincrements on PostgreSQL
