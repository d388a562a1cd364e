"""Storage: migrations, exact-dedupe keys, round trips of items and fetch state."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aggregator.config import SourceConfig
from aggregator.errors import ConflictError
from aggregator.models import FetchOutcome, Item, PollUpdate, TermHit, TopicMatch, Validators
from aggregator.storage import NewItem, Storage, Transaction
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
def storage(database_url: str | None) -> Iterator[Storage]:
    """An empty database with sources a and b: SQLite in memory, then PostgreSQL."""
    store = Storage.open_url(database_url) if database_url else Storage.open_sqlite(":memory:")
    with store.transaction() as tx:
        tx.sync_sources(sources("a", "b"))
    yield store
    store.close()


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
    with pytest.raises(ConflictError, match=r"(?i)unique"), storage.transaction() as tx:
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


def poll(**fields: object) -> PollUpdate:
    values: dict[str, object] = {
        "source_id": "a", "outcome": FetchOutcome.OK, "status": 200, "error": None,
        "error_type": None, "validators": Validators(etag='"e1"', last_modified="lm"),
        "body_hash": "b1", "error_count": 0, "interval": 1800.0,
        "next_check_at": NOW + timedelta(minutes=30), "redirect_target": None,
        "redirect_count": 0, "gone": False, "unconditional": True, "polled": True,
    }  # fmt: skip
    values.update(fields)
    return PollUpdate(**values)  # type: ignore[arg-type]


def test_record_poll_success_failure_and_not_modified(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.record_poll(poll(), NOW)
    state = storage.source_states()["a"]
    assert state.validators == Validators(etag='"e1"', last_modified="lm")
    assert state.last_success_at == NOW
    assert state.last_unconditional_at == NOW
    assert state.next_check_at == NOW + timedelta(minutes=30)
    assert (state.error_count, state.polls, state.body_hash) == (0, 1, "b1")

    later = NOW + timedelta(hours=1)
    failed = poll(
        outcome=FetchOutcome.FAILED, status=503, error="HTTP 503", error_type="http",
        validators=None, body_hash=None, error_count=1, unconditional=False,
    )  # fmt: skip
    with storage.transaction() as tx:
        tx.record_poll(failed, later)
    state = storage.source_states()["a"]
    assert (state.error_count, state.last_error, state.last_error_type) == (1, "HTTP 503", "http")
    assert state.last_outcome == "failed"
    assert state.last_success_at == NOW
    assert state.last_unconditional_at == NOW
    assert state.validators.etag == '"e1"'  # kept for the next conditional request
    assert state.body_hash == "b1"

    with storage.transaction() as tx:
        tx.record_poll(poll(outcome=FetchOutcome.NOT_MODIFIED, unconditional=False), later)
    state = storage.source_states()["a"]
    assert (state.polls, state.not_modified_polls, state.error_count) == (3, 1, 0)


def test_host_blocks_keep_the_latest_moment(storage: Storage) -> None:
    early, late = NOW + timedelta(minutes=5), NOW + timedelta(hours=2)
    with storage.transaction() as tx:
        tx.record_poll(poll(host="portal.example", host_blocked_until=late), NOW)
        tx.record_poll(poll(host="portal.example", host_blocked_until=early), NOW)
    assert storage.host_blocks(NOW) == {"portal.example": late}
    assert storage.host_blocks(late) == {}


def test_changing_a_source_url_forgets_what_the_old_server_taught(storage: Storage) -> None:
    with storage.transaction() as tx:
        tx.record_poll(poll(redirect_target="https://a.org/new", redirect_count=3, gone=True), NOW)
        tx.sync_sources(sources("a"))  # same URL: nothing forgotten
    assert storage.source_states()["a"].redirect_count == 3
    moved = SourceConfig.model_validate({"id": "a", "name": "A", "url": "https://a.org/new"})
    with storage.transaction() as tx:
        tx.sync_sources([moved])
    state = storage.source_states()["a"]
    assert state.url == "https://a.org/new"
    assert (state.redirect_target, state.redirect_count, state.gone) == (None, 0, False)
    assert state.validators == Validators()


def test_recent_item_counts_per_source(storage: Storage) -> None:
    with storage.transaction() as tx:
        for n, days in enumerate((1, 2, 10)):
            item_id = tx.insert_item(
                item(keys=(f"link:https://x.org/{n}",), published_at=NOW - timedelta(days=days)),
                NOW,
            )
            if n == 0:
                tx.add_source(item_id, item(source="b"), NOW)
    assert storage.recent_item_counts(NOW - timedelta(days=7)) == {"a": 2, "b": 1}


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


def test_prune_forgets_old_items_a_feed_no_longer_shows(storage: Storage) -> None:
    with storage.transaction() as tx:
        ids = []
        for n, days in enumerate((400, 380, 10)):
            item_id = tx.insert_item(
                item(keys=(f"link:https://x.org/{n}",), published_at=NOW - timedelta(days=days)),
                NOW,
            )
            tx.set_topics(item_id, [TopicMatch(slug="t", hits=())])
            ids.append(item_id)
    cutoff = NOW - timedelta(days=365)
    # The 380-day-old item is still in a published feed: it stays.
    assert storage.prune(cutoff, keep={ids[1]}) == 1
    assert [i.item_id for i in storage.items_for_topic("t", 10)] == [ids[2], ids[1]]
    assert storage.prune(cutoff, keep={ids[1]}) == 0  # idempotent
    # The tombstone keeps its keys: the story cannot come back as new.
    with storage.transaction() as tx:
        assert tx.known_items(["link:https://x.org/0"])["link:https://x.org/0"].item_id == ids[0]


def test_band_sets_are_stored_one_row_an_item_read_since_a_marker_and_pruned(
    storage: Storage,
) -> None:
    from aggregator.minhash import band_blob, signature

    blob = band_blob(signature("Cotton prices rise", "Spinners buy more yarn."))

    def insert(tx: Transaction, key: str, published_at: datetime = NOW) -> int:
        item_id = tx.reserve_id("items")
        new = NewItem(item_id=item_id, item=item(keys=(key,), published_at=published_at),
                      story_id=tx.reserve_id("stories"), new_story=True, bands=blob)  # fmt: skip
        tx.insert_items([new], NOW)
        return item_id

    with storage.transaction() as tx:
        tx.insert_items([], NOW)  # an empty batch writes nothing
        tx.insert_item(item(), NOW)  # no band keys: not indexed
        assert list(tx.band_sets()[0]) == []
        old = insert(tx, "link:https://x.org/b", NOW - timedelta(days=40))
    long_ago = int((NOW - timedelta(days=40)).timestamp())
    with storage.transaction() as tx:
        everything, marker = tx.band_sets()
        assert list(everything) == [(old, long_ago, blob)]
        assert list(tx.band_sets(marker)[0]) == []  # nothing written since
        new = insert(tx, "link:https://x.org/c")
        assert [row[0] for row in list(tx.band_sets(marker)[0])] == [new]
    with storage.transaction() as tx:
        assert tx.prune_bands(NOW - timedelta(days=28)) == 1
        assert [row[0] for row in list(tx.band_sets()[0])] == [new]


def _pairs(found: dict[int, Any]) -> dict[int, list[tuple[int, int]]]:
    """key -> [(item id, published)]; each key's holders come in publishing order."""
    for _, published in found.values():
        assert published == sorted(published)
    return {key: list(zip(ids, published, strict=True)) for key, (ids, published) in found.items()}


def test_a_version_5_database_keeps_its_stories_findable_through_both_band_schemes(
    tmp_path: Path,
) -> None:
    """Migration 6 moved the LSH index into the database, its bands taken from the
    signatures stored since issue 5; migration 9 changed how signatures are computed,
    rebuilt the bands of the indexed items from their text, and dropped the stored
    signatures. An item stored before both must still be found by a repost."""
    import hashlib

    from aggregator.cluster import shingles
    from aggregator.minhash import BandIndex, band_keys, keys_of, signature
    from aggregator.storage import migrations

    # _sha1_signature is the old scheme: the digest datasketch's output gave in issue 8.
    old_cases = [
        ("Lenzing expands lyocell capacity in Thailand", "A second lyocell line at Prachinburi."),
        ("棉花价格上涨", "新疆棉花采摘进度落后"),
        ("", ""),
    ]
    joined = b"".join(_sha1_signature(shingles(title, text)) for title, text in old_cases)
    assert hashlib.sha256(joined).hexdigest() == (
        "2d368b2f3cdba78957afa11f0c7166473461d8d444561fc9fe4986fee80090bb"
    )
    path = tmp_path / "v5.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        migrations._VERSIONS.create(connection)
        for number, migration in enumerate(migrations.MIGRATIONS[:5], start=1):
            migration(connection)
            connection.execute(migrations._VERSIONS.insert().values(version=number, applied_at=NOW))
        title, text = "Cotton prices rise", "Spinners in Jiangsu buy more yarn."
        data = _sha1_signature(shingles(title, text))  # as issue 5 stored it
        connection.execute(sa.text(
            "INSERT INTO items (id, public_id, origin_source_id, title, summary_html, "
            "summary_text, published_at, updated_at, first_seen_at, date_missing, categories, "
            "content_hash, story_id) VALUES (7, 'urn:x', 'a', :title, '', :text, :at, :at, :at, "
            "0, '[]', 'h', 1)"
        ), {"at": NOW.replace(tzinfo=None), "title": title, "text": text})  # fmt: skip
        connection.execute(
            sa.text("INSERT INTO item_signatures (item_id, signature) VALUES (7, :s)"), {"s": data}
        )
        for number in (6, 7, 8):
            migrations.MIGRATIONS[number - 1](connection)
            connection.execute(migrations._VERSIONS.insert().values(version=number, applied_at=NOW))
        version_8_bands = connection.execute(
            sa.text("SELECT band_key FROM item_bands WHERE item_id = 7")
        ).scalars()
        assert sorted(version_8_bands) == sorted(band_keys(data))
    engine.dispose()
    storage = Storage.open_sqlite(path)
    assert storage.schema_version == len(MIGRATIONS)
    index = BandIndex()
    with storage.transaction() as tx:
        rows = list(tx.band_sets()[0])
    index.add(rows)
    [(_, _, stored_keys)] = rows  # migration 10 packed the rebuilt keys into one row
    assert sorted(keys_of(stored_keys)) == sorted(band_keys(signature(title, text)))
    repost = band_keys(signature(title, text + " (source: Reuters)"))
    at = int(NOW.timestamp())
    found = _pairs(index.matches(repost, at - 86400, at + 86400))
    assert found and all(hits == [(7, at)] for hits in found.values())
    assert len(_pairs(index.matches(band_keys(signature(title, text)), at, at))) == 32
    tables = sa.inspect(storage._engine).get_table_names()
    assert "item_signatures" not in tables and "item_bands" not in tables
    storage.close()


def _sha1_signature(shingle_set: frozenset[str]) -> bytes:
    """A signature as issues 5-8 computed it (SHA-1 of every shingle, affine32)."""
    import hashlib

    import numpy as np

    from aggregator.minhash import _A, _B

    digests = b"".join(hashlib.sha1(s.encode()).digest()[:4] for s in shingle_set)
    if not digests:
        return b"\xff" * 512
    hashes = np.frombuffer(digests, dtype="<u4").astype(np.uint32)
    hashes ^= hashes >> np.uint32(16)
    hashes *= np.uint32(0x85EBCA6B)
    hashes ^= hashes >> np.uint32(13)
    hashes *= np.uint32(0xC2B2AE35)
    hashes ^= hashes >> np.uint32(16)
    return (hashes.reshape(-1, 1) * _A + _B).min(axis=0).astype("<u4").tobytes()


def test_migration_11_dates_the_first_success_of_existing_sources(tmp_path: Path) -> None:
    """Sources polled before migration 11 get the first sighting of their earliest
    item, so an old, known source keeps its adaptive interval after upgrading."""
    from aggregator.storage import migrations

    path = tmp_path / "v10.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    naive = NOW.replace(tzinfo=None)
    with engine.begin() as connection:
        migrations._VERSIONS.create(connection)
        for number, migration in enumerate(migrations.MIGRATIONS[:10], start=1):
            migration(connection)
            connection.execute(migrations._VERSIONS.insert().values(version=number, applied_at=NOW))
        for source, success in (("read", naive), ("empty", naive), ("never", None)):
            connection.execute(
                sa.text(
                    "INSERT INTO sources (id, name, url, last_success_at) VALUES (:i, :i, 'u', :s)"
                ),
                {"i": source, "s": success},
            )
        connection.execute(sa.text(
            "INSERT INTO items (id, public_id, origin_source_id, title, summary_html, "
            "summary_text, published_at, updated_at, first_seen_at, date_missing, categories, "
            "content_hash, story_id) VALUES (1, 'urn:x', 'read', 't', '', '', :at, :at, :at, "
            "0, '[]', 'h', 1)"
        ), {"at": naive})  # fmt: skip
        connection.execute(
            sa.text(
                "INSERT INTO item_sources (item_id, source_id, first_seen_at) "
                "VALUES (1, 'read', :at)"
            ),
            {"at": naive - timedelta(days=40)},
        )
    engine.dispose()
    storage = Storage.open_sqlite(path)
    states = storage.source_states()
    storage.close()
    assert states["read"].first_success_at == NOW - timedelta(days=40)
    assert states["empty"].first_success_at == NOW
    assert states["never"].first_success_at is None
