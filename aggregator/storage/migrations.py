"""Append-only schema migrations. The schema version is the number of migrations applied.

Never edit or reorder a migration once it has shipped: add a new one at the end. Each
runs in its own transaction with its version row, so a crash leaves the database at
the previous version, never half-migrated. Tables are declared with SQLAlchemy Core
types so the same migrations build SQLite and (later) PostgreSQL schemas.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

Migration = Callable[[sa.Connection], None]


def _v1_initial(connection: sa.Connection) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "sources",
        metadata,
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("home", sa.Text),
        sa.Column("etag", sa.Text),
        sa.Column("last_modified", sa.Text),
        sa.Column("last_outcome", sa.String(20)),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("last_success_at", sa.DateTime(timezone=True)),
        sa.Column("error_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_check_at", sa.DateTime(timezone=True)),
    )
    sa.Table(
        "items",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("public_id", sa.String(64), nullable=False, unique=True),
        sa.Column("origin_source_id", sa.String(100), nullable=False),
        sa.Column("link", sa.Text),
        sa.Column("guid", sa.Text),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("summary_html", sa.Text, nullable=False),
        sa.Column("summary_text", sa.Text, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("date_missing", sa.Boolean, nullable=False),
        sa.Column("author", sa.Text),
        sa.Column("categories", sa.Text, nullable=False),  # JSON list of strings
        sa.Column("language", sa.String(35)),
        sa.Column("content_hash", sa.String(64), nullable=False),
    )
    sa.Table(
        "item_keys",
        metadata,
        # The unique key is the last line of exact dedupe (INSERT .. ON CONFLICT DO NOTHING).
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False, index=True),
    )
    sa.Table(
        "item_sources",
        metadata,
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), primary_key=True),
        sa.Column("source_id", sa.String(100), primary_key=True),
        sa.Column("link", sa.Text),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "item_topics",
        metadata,
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), primary_key=True),
        sa.Column("topic_slug", sa.String(100), primary_key=True, index=True),
        sa.Column("hits", sa.Text, nullable=False),  # JSON list of {"term", "field"}
    )
    metadata.create_all(connection)


def _add_columns(connection: sa.Connection, table: str, *columns: sa.Column[Any]) -> None:
    """ALTER TABLE ... ADD COLUMN, with types compiled for the connected database."""
    for column in columns:
        kind = column.type.compile(dialect=connection.dialect)
        default = f" DEFAULT {column.server_default.arg}" if column.server_default else ""  # type: ignore[attr-defined]
        null = "" if column.nullable else " NOT NULL"
        connection.execute(
            sa.text(f"ALTER TABLE {table} ADD COLUMN {column.name} {kind}{default}{null}")
        )


def _v2_polling_state(connection: sa.Connection) -> None:
    """Issue 3: what a polite, resilient poller must remember per source and host."""
    _add_columns(
        connection,
        "sources",
        sa.Column("last_error_type", sa.String(40)),
        sa.Column("interval_seconds", sa.Float),
        sa.Column("body_hash", sa.String(64)),
        sa.Column("redirect_target", sa.Text),
        sa.Column("redirect_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("gone", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("last_unconditional_at", sa.DateTime(timezone=True)),
        sa.Column("polls", sa.Integer, nullable=False, server_default="0"),
        sa.Column("not_modified_polls", sa.Integer, nullable=False, server_default="0"),
    )
    metadata = sa.MetaData()
    sa.Table(
        "hosts",
        metadata,
        sa.Column("host", sa.String(255), primary_key=True),
        # Retry-After from a 429/503: no request to this host before this moment.
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=False),
    )
    metadata.create_all(connection)


def _v3_original_publisher(connection: sa.Connection) -> None:
    """Issue 4: the publisher a scraped page names ("(source: Hebei Daily)")."""
    _add_columns(connection, "items", sa.Column("original_publisher", sa.Text))


def _v4_meta(connection: sa.Connection) -> None:
    """Issue 7: small facts about the whole database (the topic rules' fingerprint)."""
    metadata = sa.MetaData()
    sa.Table(
        "meta",
        metadata,
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    metadata.create_all(connection)


def _v5_stories(connection: sa.Connection) -> None:
    """Issue 5: near-duplicate items form stories; signatures persist the LSH index."""
    metadata = sa.MetaData()
    sa.Table(
        "stories",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        # The public id of the story's first item: entries keep their id when clustering
        # starts, and a story's id never changes as members join.
        sa.Column("public_id", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "item_signatures",
        metadata,
        sa.Column("item_id", sa.Integer, primary_key=True),  # items.id
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    metadata.create_all(connection)
    _add_columns(
        connection,
        "items",
        sa.Column("story_id", sa.Integer),
        # Jaccard similarity with the member it joined through (None: founded the story).
        sa.Column("story_similarity", sa.Float),
        sa.Column("story_via", sa.Integer),
    )
    # Every existing item becomes a story of its own (plain SQL, valid on both engines).
    connection.execute(
        sa.text(
            "INSERT INTO stories (public_id, created_at) SELECT public_id, first_seen_at FROM items"
        )
    )
    connection.execute(
        sa.text(
            "UPDATE items SET story_id = "
            "(SELECT stories.id FROM stories WHERE stories.public_id = items.public_id)"
        )
    )


def _v6_item_bands(connection: sa.Connection) -> None:
    """Issue 8: the LSH index moves from memory into the database (see cluster.py)."""
    from aggregator.minhash import band_keys  # the band scheme of this migration's time

    metadata = sa.MetaData()
    bands = sa.Table(
        "item_bands",
        metadata,
        sa.Column("band_key", sa.BigInteger, primary_key=True),
        sa.Column("item_id", sa.Integer, primary_key=True),  # items.id
        # The item's publication time in Unix seconds: candidates are looked up within
        # a time window, and a plain integer compares the same on every engine.
        sa.Column("published_ts", sa.BigInteger, nullable=False),
        # One B-tree keyed by band, no rowid and no second index: 32 rows an item go
        # in at a fraction of the cost (SQLite; other engines ignore the option).
        sqlite_with_rowid=False,
    )
    metadata.create_all(connection)
    items = sa.table("items", sa.column("id"), sa.column("published_at", sa.DateTime(True)))
    signatures = sa.table("item_signatures", sa.column("item_id"), sa.column("signature"))
    found = connection.execute(
        sa.select(signatures.c.item_id, signatures.c.signature, items.c.published_at).join(
            items, items.c.id == signatures.c.item_id
        )
    )
    rows = found.all() if found is not None else []  # None: a mock engine compiling SQL
    for start in range(0, len(rows), 500):
        connection.execute(
            bands.insert(),
            [
                {"band_key": key, "item_id": item_id, "published_ts": _unix(published_at)}
                for item_id, data, published_at in rows[start : start + 500]
                for key in band_keys(data)
            ],
        )


def _unix(value: datetime) -> int:
    """Unix seconds of a stored (naive UTC, on SQLite) or aware time."""
    return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())


def _v7_worker_leases(connection: sa.Connection) -> None:
    """Issue 9: workers sharing one PostgreSQL database lease whole hosts, so every
    host's politeness holds across workers (see storage.database.claim_hosts)."""
    from urllib.parse import urlsplit

    _add_columns(connection, "sources", sa.Column("host", sa.String(255)))
    _add_columns(
        connection,
        "hosts",
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
    )
    connection.execute(sa.text("CREATE INDEX ix_sources_host ON sources (host)"))
    sources = sa.table("sources", sa.column("id"), sa.column("url"), sa.column("host"))
    found = connection.execute(sa.select(sources.c.id, sources.c.url))
    for source_id, url in found.all() if found is not None else []:
        host = (urlsplit(url).hostname or "").lower() if "://" in url else None
        connection.execute(sources.update().where(sources.c.id == source_id).values(host=host))


def _v8_story_index(connection: sa.Connection) -> None:
    """Issue 8: publishing reads every member of the newest stories by story id."""
    connection.execute(sa.text("CREATE INDEX ix_items_story_id ON items (story_id)"))


def _v9_token_hash_bands(connection: sa.Connection) -> None:
    """Issue 8: MinHash signatures come from cached token hashes instead of a SHA-1 of
    every shingle string (see minhash.signature), so the band index is rebuilt for the
    items it holds. The stored signatures go: nothing reads them since migration 6."""
    from aggregator.minhash import band_keys, signature  # the scheme of this migration

    bands = sa.table(
        "item_bands", sa.column("band_key"), sa.column("item_id"), sa.column("published_ts")
    )
    items = sa.table(
        "items", sa.column("id"), sa.column("title"), sa.column("summary_text"),
        sa.column("published_at", sa.DateTime(True)),
    )  # fmt: skip
    found = connection.execute(sa.select(bands.c.item_id).distinct())
    indexed = sorted(found.scalars()) if found is not None else []  # None: a mock engine
    connection.execute(bands.delete())
    for start in range(0, len(indexed), 500):
        rows = connection.execute(
            sa.select(items.c.id, items.c.title, items.c.summary_text, items.c.published_at)
            .where(items.c.id.in_(indexed[start : start + 500]))
        ).all()  # fmt: skip
        connection.execute(
            bands.insert(),
            [
                {"band_key": key, "item_id": item_id, "published_ts": _unix(published_at)}
                for item_id, title, text, published_at in rows
                for key in band_keys(signature(title, text))
            ],
        )
    connection.execute(sa.text("DROP TABLE item_signatures"))


def _v10_band_sets(connection: sa.Connection) -> None:
    """Issue 8: one row of LSH band keys an item (``item_lsh``) instead of one row a
    band (``item_bands``); the index is built in memory for each cycle that stores
    something (see minhash.BandIndex). On PostgreSQL each row also records the
    transaction that wrote it, so a worker can read what the others committed since
    its last look (see Transaction.band_sets)."""
    metadata = sa.MetaData()
    columns: list[sa.Column[Any]] = [
        sa.Column("item_id", sa.Integer, primary_key=True, autoincrement=False),  # items.id
        sa.Column("published_ts", sa.BigInteger, nullable=False),
        sa.Column("band_keys", sa.LargeBinary, nullable=False),  # minhash.band_blob
    ]
    if connection.dialect.name == "postgresql":
        columns.append(
            sa.Column(
                "written_xid",
                sa.BigInteger,
                nullable=False,
                server_default=sa.text("(pg_current_xact_id()::text::bigint)"),
                index=True,
            )
        )
    sets = sa.Table("item_lsh", metadata, *columns)
    metadata.create_all(connection)
    bands = sa.table(
        "item_bands", sa.column("band_key"), sa.column("item_id"), sa.column("published_ts")
    )
    found = connection.execute(
        sa.select(bands.c.item_id, bands.c.published_ts, bands.c.band_key).order_by(bands.c.item_id)
    )
    rows = found.all() if found is not None else []  # None: a mock engine compiling SQL
    packed = [
        {
            "item_id": item_id,
            "published_ts": group[0][1],
            "band_keys": b"".join(key.to_bytes(8, "little", signed=True) for *_, key in group),
        }
        for item_id, grouped in itertools.groupby(rows, key=lambda row: row[0])
        for group in [list(grouped)]
    ]
    for start in range(0, len(packed), 1000):
        connection.execute(sets.insert(), packed[start : start + 1000])
    connection.execute(sa.text("DROP TABLE item_bands"))


def _v11_first_success(connection: sa.Connection) -> None:
    """Issue 17: when a source was first read, so the adaptive interval waits for a
    week of history. Existing sources: the first sighting of the earliest item they
    carry (a success stored it), if they ever succeeded."""
    _add_columns(connection, "sources", sa.Column("first_success_at", sa.DateTime(timezone=True)))
    connection.execute(
        sa.text(
            "UPDATE sources SET first_success_at = (SELECT min(first_seen_at) FROM item_sources"
            " WHERE item_sources.source_id = sources.id) WHERE last_success_at IS NOT NULL"
        )
    )
    connection.execute(
        sa.text(
            "UPDATE sources SET first_success_at = last_success_at"
            " WHERE first_success_at IS NULL AND last_success_at IS NOT NULL"
        )
    )


def _v12_story_evidence(connection: sa.Connection) -> None:
    """Issue 16: why each item joined its story (for explain), each report's word
    pairs, and how many recent reports carry each pair (boilerplate tells no story
    apart)."""
    _add_columns(connection, "items", sa.Column("story_reason", sa.String(80)))
    # Each report's word pairs (``stories.Report.pairs``), so a candidate read back
    # is not tokenized again; NULL for items stored before.
    _add_columns(connection, "item_lsh", sa.Column("pairs", sa.LargeBinary))
    metadata = sa.MetaData()
    sa.Table(
        "word_pair_counts",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),  # one row
        sa.Column("reports", sa.Integer, nullable=False),
        sa.Column("counts", sa.LargeBinary, nullable=False),
    )
    metadata.create_all(connection)


def _v13_report_facts(connection: sa.Connection) -> None:
    """Issue 16: each report's figures and title places (``cluster.ReportFacts``),
    computed where items are prepared, so the polling process builds no gazetteer;
    NULL for items stored before (computed again when read)."""
    _add_columns(connection, "item_lsh", sa.Column("facts", sa.Text))


def _v14_entry_digests(connection: sa.Connection) -> None:
    """Issue 19: a digest of the feed entry each source delivered an item as, so a
    changed feed's unchanged entries are not normalized again (a steady cycle's largest
    cost in the workers); NULL for deliveries stored before (recorded when next seen)."""
    _add_columns(connection, "item_sources", sa.Column("entry_digest", sa.BigInteger))


#: Every migration ever shipped, in order. Append only.
MIGRATIONS: tuple[Migration, ...] = (
    _v1_initial,
    _v2_polling_state,
    _v3_original_publisher,
    _v4_meta,
    _v5_stories,
    _v6_item_bands,
    _v7_worker_leases,
    _v8_story_index,
    _v9_token_hash_bands,
    _v10_band_sets,
    _v11_first_success,
    _v12_story_evidence,
    _v13_report_facts,
    _v14_entry_digests,
)

_VERSIONS = sa.Table(
    "schema_migrations",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)


def current_version(connection: sa.Connection) -> int:
    if not sa.inspect(connection).has_table(_VERSIONS.name):
        return 0
    return connection.execute(sa.select(sa.func.count()).select_from(_VERSIONS)).scalar_one()


#: PostgreSQL advisory lock key held while migrating (any fixed number).
_MIGRATION_LOCK = 0x6D69677261  # "migra"


def migrate(engine: sa.Engine) -> int:
    """Apply pending migrations; return the schema version. Refuses a newer database.

    On PostgreSQL several workers may start at once: an advisory lock makes them
    migrate one after the other (the later ones then find nothing to do)."""
    if engine.dialect.name != "postgresql":
        return _migrate(engine)
    with engine.connect() as holder:
        holder.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
        holder.commit()
        try:
            return _migrate(engine)
        finally:
            holder.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
            holder.commit()


def _migrate(engine: sa.Engine) -> int:
    with engine.begin() as connection:
        _VERSIONS.create(connection, checkfirst=True)
    with engine.connect() as connection:
        version = current_version(connection)
    if version > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {version} is newer than this program knows "
            f"({len(MIGRATIONS)}); upgrade textile-feeds"
        )
    for number, migration in enumerate(MIGRATIONS[version:], start=version + 1):
        with engine.begin() as connection:
            migration(connection)
            connection.execute(
                _VERSIONS.insert().values(version=number, applied_at=datetime.now(UTC))
            )
    return len(MIGRATIONS)
