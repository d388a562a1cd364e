"""All SQL of textile-feeds, written with SQLAlchemy Core so it stays portable.

``Storage`` owns the engine; ``Storage.transaction()`` yields a ``Transaction`` with
the writes one source's poll needs, committed together or not at all. Database errors
surface as ``StorageError``; nothing SQLAlchemy-specific leaves this package.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

from aggregator.config import AppConfig, SourceConfig
from aggregator.dedupe import KnownItem
from aggregator.errors import ConflictError, StorageError
from aggregator.models import (
    FetchOutcome,
    Item,
    PollUpdate,
    SourceRef,
    SourceState,
    StoredItem,
    TopicMatch,
    Validators,
)
from aggregator.storage.migrations import migrate


@dataclass(frozen=True, slots=True, kw_only=True)
class StoryJoin:
    """Where a new item goes: an existing story (and how similar it was), or a new one."""

    story_id: int | None = None
    similarity: float | None = None
    #: The member it matched.
    via: int | None = None
    #: Why it is one story with that member (``cluster.StoryEvidence.reason``).
    reason: str = ""
    #: Other stories the item proved the same one: their members move to ``story_id``.
    merged: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NewItem:
    """One row of a batch insert: an item with the ids reserved for it and its story."""

    item_id: int
    item: Item
    story_id: int
    #: The story is new (``story_id`` was reserved for it) rather than an existing one.
    new_story: bool
    similarity: float | None = None
    via: int | None = None
    reason: str = ""
    #: Its word pairs (``stories.Report.pairs``) and encoded ``cluster.ReportFacts``.
    pairs: bytes = b""
    facts: str = ""
    #: Its LSH band keys (``minhash.band_blob`` of the signature).
    bands: bytes = b""
    topics: tuple[TopicMatch, ...] = ()

    @property
    def public_id(self) -> str:
        return public_id(self.item)


def public_id(item: Item) -> str:
    return f"urn:uuid:{uuid.uuid5(_PUBLIC_ID_NAMESPACE, item.keys[0])}"


def _source_row(item_id: int, item: Item, now: datetime) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "source_id": item.source_id,
        "link": item.link,
        "first_seen_at": _to_db(now),
        "entry_digest": item.entry_digest,
    }


def _topic_row(item_id: int, match: TopicMatch) -> dict[str, Any]:
    hits = ", ".join([_hit_json(hit.term, hit.field, hit.weight) for hit in match.hits])
    return {"item_id": item_id, "topic_slug": match.slug, "hits": f"[{hits}]"}


@functools.lru_cache(maxsize=65_536)
def _hit_json(term: str, field: str, weight: float) -> str:
    # A taxonomy has a few hundred terms, so the same hits recur in every batch: a
    # cold cycle spent more time encoding them than storing them. (Keyed by plain
    # values: hashing the TermHit dataclass ran Python code per hit.)
    return json.dumps({"term": term, "field": field, "weight": weight}, ensure_ascii=False)


#: The host row of snapshot-file sources: one worker at a time reads them too.
LOCAL_HOST = "(local files)"

#: ``hosts.blocked_until`` of a host never blocked (the column predates leases and
#: cannot be NULL).
_NEVER_BLOCKED = datetime(1970, 1, 1, tzinfo=UTC)

#: Ids a PostgreSQL transaction takes from a sequence at once.
_ID_BLOCK = 64

# Namespace for public ids: uuid5 of an item's first key, so an id is reproducible
# from the data and never changes once the item is stored.
_PUBLIC_ID_NAMESPACE = uuid.UUID("6f1c1f8e-2d3b-5c7a-9e4f-7a1b2c3d4e5f")


def _to_db(value: datetime) -> datetime:
    # SQLite keeps no zone: store naive UTC everywhere and re-attach UTC on reading.
    return value.astimezone(UTC).replace(tzinfo=None)


def _from_db(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _from_db_required(value: datetime) -> datetime:
    result = _from_db(value)
    assert result is not None
    return result


_processors: dict[tuple[str, str, tuple[str, ...]], list[Any]] = {}


def _bind_processors(table: sa.Table, columns: Sequence[str], dialect: Any) -> list[Any]:
    """Each column's value converter for ``dialect`` (None where the driver takes the
    Python value as it is), as SQLAlchemy applies them on a normal insert."""
    key = (dialect.name, table.name, tuple(columns))
    found = _processors.get(key)
    if found is None:
        found = _processors[key] = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
        ]
    return found


def _converted(row: tuple[Any, ...], converters: list[tuple[int, Any]]) -> tuple[Any, ...]:
    values = list(row)
    for position, convert in converters:
        if values[position] is not None:
            values[position] = convert(values[position])
    return tuple(values)


@contextmanager
def _storage_errors(action: str) -> Iterator[None]:
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        kind = ConflictError if isinstance(exc, sa.exc.IntegrityError) else StorageError
        raise kind(f"{action}: {type(cause).__name__}: {cause}") from exc


class Storage:
    """The database: opened (and migrated) once per process."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        with _storage_errors("migrating the database"):
            self.schema_version = migrate(engine)
            metadata = sa.MetaData()
            metadata.reflect(engine)
        self._t = metadata.tables

    @classmethod
    def open_sqlite(cls, path: Path | str) -> Storage:
        """Open (creating if needed) a SQLite database file; ``":memory:"`` for tests."""
        if str(path) == ":memory:":
            engine = sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)
        else:
            path = Path(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create database folder {path.parent}: {exc}") from exc
            engine = sa.create_engine(f"sqlite:///{path}")

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            # WAL lets readers (status, publishing) work while a poll writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA cache_size=-16384")
            cursor.close()

        return cls(engine)

    @classmethod
    def open_url(cls, url: str) -> Storage:
        """Open (migrating if needed) a PostgreSQL database, through psycopg 3."""
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise StorageError(f"invalid database URL: {exc}") from None
        if parsed.get_backend_name() != "postgresql":
            raise StorageError(f"unsupported database {parsed.get_backend_name()!r}")
        engine = sa.create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            # Times go in and come out as UTC whatever the server's own zone is.
            connect_args={"options": "-c timezone=UTC"},
            pool_pre_ping=True,  # a restarted server must not fail the next cycle
        )
        return cls(engine)

    @classmethod
    def for_config(cls, config: AppConfig) -> Storage:
        """The configured database: PostgreSQL if a URL is set, else the SQLite file."""
        if config.database_url:
            return cls.open_url(config.database_url)
        return cls.open_sqlite(config.database_path)

    @property
    def engine_name(self) -> str:
        return self._engine.dialect.name

    def connect(self) -> sa.Connection:
        """A connection of this storage's engine (the PostgreSQL lock holds one)."""
        with _storage_errors("connecting to the database"):
            return self._engine.connect()

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic unit of work; rolled back entirely if anything inside fails."""
        with _storage_errors("writing to the database"), self._engine.begin() as connection:
            tx = Transaction(connection, self._t)
            yield tx
            tx.flush_polls()

    # --- reads ---------------------------------------------------------------------

    def source_states(self) -> dict[str, SourceState]:
        sources, item_sources = self._t["sources"], self._t["item_sources"]
        counts = (
            sa.select(item_sources.c.source_id, sa.func.count().label("n"))
            .group_by(item_sources.c.source_id)
            .subquery()
        )
        query = sa.select(sources, sa.func.coalesce(counts.c.n, 0).label("item_count")).join(
            counts, counts.c.source_id == sources.c.id, isouter=True
        )
        with _storage_errors("reading sources"), self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return {
            row["id"]: SourceState(
                source_id=row["id"],
                name=row["name"],
                url=row["url"],
                validators=Validators(etag=row["etag"], last_modified=row["last_modified"]),
                last_outcome=row["last_outcome"],
                last_status=row["last_status"],
                last_error=row["last_error"],
                last_error_type=row["last_error_type"],
                last_attempt_at=_from_db(row["last_attempt_at"]),
                last_success_at=_from_db(row["last_success_at"]),
                first_success_at=_from_db(row["first_success_at"]),
                error_count=row["error_count"],
                interval=row["interval_seconds"],
                next_check_at=_from_db(row["next_check_at"]),
                body_hash=row["body_hash"],
                redirect_target=row["redirect_target"],
                redirect_count=row["redirect_count"],
                gone=bool(row["gone"]),
                last_unconditional_at=_from_db(row["last_unconditional_at"]),
                polls=row["polls"],
                not_modified_polls=row["not_modified_polls"],
                item_count=row["item_count"],
            )
            for row in rows
        }

    def host_blocks(self, now: datetime) -> dict[str, datetime]:
        """Hosts that asked us (Retry-After) to stay away until a moment after ``now``."""
        hosts = self._t["hosts"]
        query = sa.select(hosts.c.host, hosts.c.blocked_until).where(
            hosts.c.blocked_until > _to_db(now)
        )
        with _storage_errors("reading hosts"), self._engine.connect() as connection:
            return {host: _from_db_required(until) for host, until in connection.execute(query)}

    def known_links(self, links: Sequence[str]) -> set[str]:
        """Those of ``links`` (canonical URLs) that belong to a stored item."""
        keys = self._t["item_keys"]
        wanted = {f"link:{link}": link for link in links}
        query = sa.select(keys.c.key).where(keys.c.key.in_(list(wanted)))
        with _storage_errors("reading items"), self._engine.connect() as connection:
            return {wanted[key] for key in connection.execute(query).scalars()}

    def latest_links(self, source_id: str, limit: int) -> list[str]:
        """Links of the source's newest stored items, newest first."""
        items, item_sources = self._t["items"], self._t["item_sources"]
        query = (
            sa.select(item_sources.c.link)
            .join(items, items.c.id == item_sources.c.item_id)
            .where(item_sources.c.source_id == source_id, item_sources.c.link.is_not(None))
            .order_by(items.c.published_at.desc(), items.c.id.desc())
            .limit(limit)
        )
        with _storage_errors("reading items"), self._engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def recent_item_counts(self, since: datetime) -> dict[str, int]:
        """Items each source carried that were published since ``since`` (posting rate)."""
        items, item_sources = self._t["items"], self._t["item_sources"]
        query = (
            sa.select(item_sources.c.source_id, sa.func.count())
            .join(items, items.c.id == item_sources.c.item_id)
            .where(items.c.published_at >= _to_db(since))
            .group_by(item_sources.c.source_id)
        )
        with _storage_errors("reading items"), self._engine.connect() as connection:
            return {source_id: count for source_id, count in connection.execute(query)}

    def items_for_topic(self, slug: str, limit: int) -> list[StoredItem]:
        """The newest ``limit`` items of a topic, newest first (ties: newest stored)."""
        items, item_topics = self._t["items"], self._t["item_topics"]
        query = (
            sa.select(items)
            .join(item_topics, item_topics.c.item_id == items.c.id)
            .where(item_topics.c.topic_slug == slug)
            .order_by(items.c.published_at.desc(), items.c.id.desc())
            .limit(limit)
        )
        with _storage_errors("reading items"), self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
            return self._stored_items(connection, rows)

    def story_groups(self, slug: str | None, limit: int) -> list[tuple[str, list[StoredItem]]]:
        """The newest stories with a member in topic ``slug`` (any topic when None): each
        story's public id and all its members, newest story first."""
        items, item_topics, stories = self._t["items"], self._t["item_topics"], self._t["stories"]
        # Walk the topic's items newest first and stop once ``limit`` stories are seen
        # (and the items sharing the last one's time): no GROUP BY over the whole topic.
        # EXISTS rather than a join: the database then walks the published_at index and
        # probes the topic per item (5 ms), instead of sorting the whole topic (70 ms).
        in_topic = sa.select(item_topics.c.item_id).where(item_topics.c.item_id == items.c.id)
        if slug is not None:
            in_topic = in_topic.where(item_topics.c.topic_slug == slug)
        walk = (
            sa.select(items.c.story_id, items.c.published_at)
            .where(in_topic.exists())
            .order_by(items.c.published_at.desc())
            .execution_options(yield_per=500)
        )
        with _storage_errors("reading stories"), self._engine.connect() as connection:
            newest: dict[int, datetime] = {}
            last_time = None
            for story_id, published in connection.execute(walk):
                if len(newest) >= limit and published != last_time:
                    break
                if story_id not in newest:
                    newest[story_id] = published
                    last_time = published
            ranked = sorted(newest.items(), key=lambda pair: (pair[1], pair[0]), reverse=True)
            story_ids = [story_id for story_id, _ in ranked[:limit]]
            if not story_ids:
                return []
            public = dict(
                connection.execute(
                    sa.select(stories.c.id, stories.c.public_id).where(stories.c.id.in_(story_ids))
                ).all()
            )
            rows = (
                connection.execute(
                    sa.select(items).where(items.c.story_id.in_(story_ids)).order_by(items.c.id)
                )
                .mappings()
                .all()
            )
            members: dict[int, list[StoredItem]] = {story_id: [] for story_id in story_ids}
            for stored in self._stored_items(connection, rows):
                members[stored.story_id or 0].append(stored)
        return [(public[story_id], members[story_id]) for story_id in story_ids]

    def delivered(
        self, source_ids: Sequence[str], since: datetime, digest: Callable[[str, str], int]
    ) -> dict[str, frozenset[int]]:
        """``digest(key, content hash)`` of every item each source carried, first carried
        since ``since``: what its feed will most likely list again, unchanged; and the
        digest of the entry it carried it as (``Item.entry_digest``), where recorded.
        Digested row by row, so 90,000 keys never sit in memory as strings."""
        items, item_keys, item_sources = (
            self._t["items"], self._t["item_keys"], self._t["item_sources"],
        )  # fmt: skip
        wanted = set(source_ids)
        query = (
            sa.select(
                item_sources.c.source_id,
                item_keys.c.key,
                items.c.content_hash,
                item_sources.c.entry_digest,
            )
            .join(items, items.c.id == item_sources.c.item_id)
            .join(item_keys, item_keys.c.item_id == items.c.id)
            .where(item_sources.c.first_seen_at >= _to_db(since))
        )
        if len(wanted) <= 50:  # a long IN list made SQLite probe it per row: 30x slower
            query = query.where(item_sources.c.source_id.in_(sorted(wanted)))
        found: dict[str, set[int]] = {}
        with _storage_errors("reading delivered items"), self._engine.connect() as connection:
            rows = connection.execute(query.execution_options(yield_per=2000))
            for source_id, key, content_hash, entry_digest in rows:
                if source_id in wanted:
                    digests = found.setdefault(source_id, set())
                    digests.add(digest(key, content_hash))
                    if entry_digest is not None:
                        digests.add(entry_digest)
            if connection.dialect.name == "sqlite":
                # This second connection (the cycle's transaction holds the first) would
                # keep up to cache_size (64 MB) of pages it read: a steady cycle's peak
                # memory rose by ~75 MB when it did.
                connection.exec_driver_sql("PRAGMA shrink_memory")
        return {source_id: frozenset(digests) for source_id, digests in found.items()}

    def story_of(self, item_id: int) -> tuple[int, str] | None:
        """The story an item belongs to: (story id, public id)."""
        items, stories = self._t["items"], self._t["stories"]
        query = (
            sa.select(stories.c.id, stories.c.public_id)
            .join(items, items.c.story_id == stories.c.id)
            .where(items.c.id == item_id)
        )
        with _storage_errors("reading stories"), self._engine.connect() as connection:
            row = connection.execute(query).first()
        return (row.id, row.public_id) if row else None

    def story_members(
        self, story_id: int
    ) -> list[tuple[int, Item, float | None, int | None, str | None]]:
        """A story's members: (item id, item, similarity it joined with, via which item,
        the evidence it joined on)."""
        items = self._t["items"]
        with _storage_errors("reading stories"), self._engine.connect() as connection:
            rows = (
                connection.execute(
                    sa.select(items).where(items.c.story_id == story_id).order_by(items.c.id)
                )
                .mappings()
                .all()
            )
            found = self._as_items(connection, rows)
        extra = {
            row["id"]: (row["story_similarity"], row["story_via"], row["story_reason"])
            for row in rows
        }
        return [(item_id, item, *extra[item_id]) for item_id, item, _topics in found]

    def prune(self, older_than: datetime, keep: set[int]) -> int:
        """Forget the text and topics of items published before ``older_than`` that no
        feed shows any more; return how many. The row and its dedupe keys stay behind
        as a tombstone, so a source still listing the story never brings it back as new.
        """
        items, item_topics = self._t["items"], self._t["item_topics"]
        with _storage_errors("pruning items"), self._engine.begin() as connection:
            old = (
                set(
                    connection.execute(
                        sa.select(items.c.id).where(
                            items.c.published_at < _to_db(older_than), items.c.summary_html != ""
                        )
                    ).scalars()
                )
                - keep
            )
            if not old:
                return 0
            connection.execute(item_topics.delete().where(item_topics.c.item_id.in_(old)))
            connection.execute(
                items.update()
                .where(items.c.id.in_(old))
                .values(summary_html="", summary_text="", categories="[]")
            )
        return len(old)

    def claim_hosts(
        self, owner: str, source_ids: Sequence[str], now: datetime, lease: float, limit: int
    ) -> list[str]:
        """Lease up to ``limit`` hosts that have a due source among ``source_ids`` and
        no live lease, for ``lease`` seconds; returns them. Hosts are leased whole, so
        one worker at a time talks to a host and its politeness rules hold.

        On PostgreSQL, ``FOR UPDATE SKIP LOCKED`` lets workers claim at once without
        waiting for or stealing each other's rows; an expired lease (a worker died) is
        free again."""
        hosts, sources = self._t["hosts"], self._t["sources"]
        due = (
            sa.select(sources.c.host)
            .where(
                sources.c.host == hosts.c.host,
                sources.c.id.in_(list(source_ids)),
                sa.or_(sources.c.next_check_at.is_(None), sources.c.next_check_at <= _to_db(now)),
            )
            .exists()
        )
        oldest_due = (
            sa.select(
                sa.func.min(sa.func.coalesce(sources.c.next_check_at, _to_db(_NEVER_BLOCKED)))
            )
            .where(sources.c.host == hosts.c.host)
            .scalar_subquery()
        )
        query = (
            sa.select(hosts.c.host)
            .where(
                due,
                sa.or_(hosts.c.lease_until.is_(None), hosts.c.lease_until < _to_db(now)),
                hosts.c.blocked_until <= _to_db(now),
            )
            .order_by(oldest_due, hosts.c.host)
            .limit(limit)
        )
        if self._engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True, of=hosts)
        with _storage_errors("claiming hosts"), self._engine.begin() as connection:
            claimed = list(connection.execute(query).scalars())
            if claimed:
                connection.execute(
                    hosts.update()
                    .where(hosts.c.host.in_(claimed))
                    .values(lease_owner=owner, lease_until=_to_db(now + timedelta(seconds=lease)))
                )
        return claimed

    def release_hosts(
        self, owner: str, claimed: Sequence[str], *, free_from: datetime | None = None
    ) -> None:
        """End this owner's leases on ``claimed`` (a lease taken over after expiry is
        left to its new owner). ``free_from``: no worker may claim them before then,
        so the per-host gap holds across workers too."""
        hosts = self._t["hosts"]
        until = _to_db(free_from) if free_from is not None else None
        with _storage_errors("releasing hosts"), self._engine.begin() as connection:
            connection.execute(
                hosts.update()
                .where(hosts.c.host.in_(list(claimed)), hosts.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=until)
            )

    @contextmanager
    def advisory_lock(self, key: int, *, shared: bool = False) -> Iterator[bool]:
        """A PostgreSQL session advisory lock, held on a connection of its own for the
        ``with`` block and never waited for: yields whether it was taken. The server
        drops it if this process dies."""
        kind = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        release = "pg_advisory_unlock_shared" if shared else "pg_advisory_unlock"
        with self.connect() as connection:
            with _storage_errors("taking a lock"):
                taken = bool(
                    connection.execute(sa.text(f"SELECT {kind}(:key)"), {"key": key}).scalar()
                )
                connection.commit()
            try:
                yield taken
            finally:
                if taken:
                    with _storage_errors("releasing a lock"):
                        connection.execute(sa.text(f"SELECT {release}(:key)"), {"key": key})
                        connection.commit()

    def meta(self, key: str) -> str | None:
        meta = self._t["meta"]
        with _storage_errors("reading meta"), self._engine.connect() as connection:
            return connection.execute(
                sa.select(meta.c.value).where(meta.c.key == key)
            ).scalar_one_or_none()

    def set_meta(self, key: str, value: str) -> None:
        meta = self._t["meta"]
        with _storage_errors("writing meta"), self._engine.begin() as connection:
            if (
                connection.execute(
                    meta.update().where(meta.c.key == key).values(value=value)
                ).rowcount
                == 0
            ):
                connection.execute(meta.insert().values(key=key, value=value))

    def items_since(self, since: datetime) -> list[tuple[int, Item, tuple[str, ...]]]:
        """Items published since ``since`` as categorize sees them, with their topics."""
        items = self._t["items"]
        query = sa.select(items).where(items.c.published_at >= _to_db(since))
        with _storage_errors("reading items"), self._engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
            return self._as_items(connection, rows)

    def item_by_link(self, link: str) -> tuple[int, Item, tuple[str, ...]] | None:
        """The stored item a canonical link points to (whichever source carried it)."""
        items, item_keys = self._t["items"], self._t["item_keys"]
        with _storage_errors("reading items"), self._engine.connect() as connection:
            rows = (
                connection.execute(
                    sa.select(items)
                    .join(item_keys, item_keys.c.item_id == items.c.id)
                    .where(item_keys.c.key == f"link:{link}")
                )
                .mappings()
                .all()
            )
            found = self._as_items(connection, rows)
        return found[0] if found else None

    def _as_items(
        self, connection: sa.Connection, rows: Sequence[sa.RowMapping]
    ) -> list[tuple[int, Item, tuple[str, ...]]]:
        item_topics = self._t["item_topics"]
        topics: dict[int, list[str]] = {row["id"]: [] for row in rows}
        for item_id, slug in connection.execute(
            sa.select(item_topics.c.item_id, item_topics.c.topic_slug)
            .where(item_topics.c.item_id.in_(list(topics)))
            .order_by(item_topics.c.topic_slug)
        ):
            topics[item_id].append(slug)
        return [
            (
                row["id"],
                Item(
                    source_id=row["origin_source_id"], keys=(), link=row["link"], guid=row["guid"],
                    title=row["title"], summary_html=row["summary_html"],
                    summary_text=row["summary_text"],
                    published_at=_from_db_required(row["published_at"]),
                    updated_at=_from_db_required(row["updated_at"]),
                    date_missing=bool(row["date_missing"]), author=row["author"],
                    categories=tuple(json.loads(row["categories"])), language=row["language"],
                    content_hash=row["content_hash"], original_publisher=row["original_publisher"],
                ),
                tuple(topics[row["id"]]),
            )
            for row in rows
        ]  # fmt: skip

    def topic_counts(self) -> dict[str, int]:
        item_topics = self._t["item_topics"]
        query = sa.select(item_topics.c.topic_slug, sa.func.count()).group_by(
            item_topics.c.topic_slug
        )
        with _storage_errors("reading topics"), self._engine.connect() as connection:
            return {slug: count for slug, count in connection.execute(query).all()}

    def item_count(self) -> int:
        with _storage_errors("reading items"), self._engine.connect() as connection:
            query = sa.select(sa.func.count()).select_from(self._t["items"])
            return connection.execute(query).scalar_one()

    def _stored_items(
        self, connection: sa.Connection, rows: Sequence[sa.RowMapping]
    ) -> list[StoredItem]:
        ids = [row["id"] for row in rows]
        item_sources, sources, item_topics = (
            self._t["item_sources"],
            self._t["sources"],
            self._t["item_topics"],
        )
        source_rows = connection.execute(
            sa.select(
                item_sources.c.item_id,
                item_sources.c.source_id,
                item_sources.c.link,
                sources.c.name,
                sources.c.url,
                sources.c.home,
            )
            .join(sources, sources.c.id == item_sources.c.source_id, isouter=True)
            .where(item_sources.c.item_id.in_(ids))
            .order_by(item_sources.c.first_seen_at, item_sources.c.source_id)
        ).mappings()
        refs: dict[int, list[SourceRef]] = {i: [] for i in ids}
        for row in source_rows:
            refs[row["item_id"]].append(
                SourceRef(
                    source_id=row["source_id"],
                    name=row["name"] or row["source_id"],
                    home_url=row["home"],
                    feed_url=row["url"] or "",
                    link=row["link"],
                )
            )
        topic_rows = connection.execute(
            sa.select(item_topics.c.item_id, item_topics.c.topic_slug)
            .where(item_topics.c.item_id.in_(ids))
            .order_by(item_topics.c.topic_slug)
        )
        topics: dict[int, list[str]] = {i: [] for i in ids}
        for item_id, slug in topic_rows:
            topics[item_id].append(slug)
        return [
            StoredItem(
                item_id=row["id"],
                public_id=row["public_id"],
                link=row["link"],
                title=row["title"],
                summary_html=row["summary_html"],
                summary_text=row["summary_text"],
                published_at=_from_db_required(row["published_at"]),
                updated_at=_from_db_required(row["updated_at"]),
                author=row["author"],
                categories=tuple(json.loads(row["categories"])),
                sources=tuple(refs[row["id"]]),
                topics=tuple(topics[row["id"]]),
                original_publisher=row["original_publisher"],
                story_id=row["story_id"],
            )
            for row in rows
        ]


class Transaction:
    """Writes inside one database transaction (see ``Storage.transaction``)."""

    def __init__(self, connection: sa.Connection, tables: Any) -> None:
        self._c = connection
        self._t = tables
        self._next_ids: dict[str, int] = {}
        self._polls: list[dict[str, Any]] = []
        self._id_pools: dict[str, list[int]] = {}

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Writes that roll back alone, leaving the rest of the transaction intact.

        Only PostgreSQL needs them: there another worker may commit an item with the
        same key between our look-up and our insert (a ``ConflictError``), and only
        that source's writes should be retried, not the whole batch. A SQLite database
        has one writer, so nothing there can conflict (and a savepoint per source
        would cost two statements for nothing)."""
        if self._c.dialect.name != "postgresql":
            yield
            return
        with _storage_errors("writing to the database"):
            nested = self._c.begin_nested()
            try:
                yield
            except BaseException:
                nested.rollback()
                raise
            nested.commit()

    def _insert_ignoring_conflicts(self, table: sa.Table) -> Any:
        return self._dialect_insert(table).on_conflict_do_nothing()

    def _dialect_insert(self, table: sa.Table) -> Any:
        """An INSERT with the engine's ON CONFLICT clauses."""
        # Each engine's own dialect module (importing PostgreSQL's takes 0.05 s).
        dialect = self._c.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects import sqlite

            return sqlite.insert(table)
        if dialect == "postgresql":
            from sqlalchemy.dialects import postgresql

            return postgresql.insert(table)
        raise StorageError(f"unsupported database dialect {dialect!r}")

    def sync_sources(self, configs: Iterable[SourceConfig]) -> None:
        """Create or update source rows from the config (names and URLs may change),
        and a host row for every source's host (workers lease hosts)."""
        sources, hosts = self._t["sources"], self._t["hosts"]
        existing = {
            row.id: {"name": row.name, "url": row.url, "home": row.home, "host": row.host}
            for row in self._c.execute(
                sa.select(sources.c.id, sources.c.name, sources.c.url, sources.c.home,
                          sources.c.host)
            )
        }  # fmt: skip
        wanted_hosts: set[str] = set()
        for config in configs:
            host = LOCAL_HOST if config.is_local else (urlsplit(config.url).hostname or "").lower()
            if host:
                wanted_hosts.add(host)
            values: dict[str, Any] = {
                "name": config.name, "url": config.url, "home": config.home, "host": host,
            }  # fmt: skip
            if config.id not in existing:  # another worker may be adding it right now
                self._c.execute(
                    self._insert_ignoring_conflicts(sources), [{"id": config.id, **values}]
                )
            elif existing[config.id] != values:
                if existing[config.id]["url"] != config.url:
                    # A new URL is a new server: forget what the old one taught us.
                    values |= {
                        "etag": None, "last_modified": None, "body_hash": None,
                        "redirect_target": None, "redirect_count": 0, "gone": False,
                    }  # fmt: skip
                self._c.execute(sources.update().where(sources.c.id == config.id).values(values))
        known_hosts = set(self._c.execute(sa.select(hosts.c.host)).scalars())
        if missing := sorted(wanted_hosts - known_hosts):
            self._c.execute(
                self._insert_ignoring_conflicts(hosts),
                [{"host": h, "blocked_until": _to_db(_NEVER_BLOCKED)} for h in missing],
            )

    def record_poll(self, update: PollUpdate, now: datetime) -> None:
        """Store what one poll taught us about its source (and its host). Source rows
        are written together when the transaction ends (``flush_polls``): one
        statement for all the polls of a cycle, not one per source."""
        polled = update.polled
        validators = update.validators
        self._polls.append({
            "b_id": update.source_id,
            "b_outcome": update.outcome.value,
            "b_interval": update.interval,
            "b_next": _to_db(update.next_check_at),
            "b_errors": update.error_count,
            "b_redirect_target": update.redirect_target,
            "b_redirect_count": update.redirect_count,
            "b_gone": update.gone,
            "b_polled": polled,
            "b_status": update.status,
            "b_error": update.error,
            "b_error_type": update.error_type,
            "b_now": _to_db(now),
            "b_polls": 1 if polled else 0,
            "b_not_modified": 1 if polled and update.outcome is FetchOutcome.NOT_MODIFIED else 0,
            "b_unconditional": polled and update.unconditional,
            "b_success": polled and update.outcome is not FetchOutcome.FAILED,
            "b_validators": validators is not None,
            "b_etag": validators.etag if validators is not None else None,
            "b_last_modified": validators.last_modified if validators is not None else None,
            "b_hash_known": update.body_hash is not None,
            "b_hash": update.body_hash,
        })  # fmt: skip
        if update.host and update.host_blocked_until:
            hosts = self._t["hosts"]
            until = _to_db(update.host_blocked_until)
            updated = self._c.execute(
                hosts.update()
                .where(hosts.c.host == update.host)
                .values(
                    blocked_until=sa.case(
                        (hosts.c.blocked_until > until, hosts.c.blocked_until), else_=until
                    )
                )
            )
            if updated.rowcount == 0:
                self._c.execute(hosts.insert().values(host=update.host, blocked_until=until))

    def flush_polls(self) -> None:
        """Write the polls recorded so far, with one multi-row statement."""
        if not self._polls:
            return
        sources = self._t["sources"]
        column = sources.c

        def param(name: str, like: sa.Column[Any]) -> Any:
            return sa.bindparam(name, type_=like.type)

        def when(flag: str, name: str, target: sa.Column[Any]) -> Any:
            """``target`` takes the value only if ``flag`` (a poll that got that far)."""
            chosen = sa.bindparam(flag, type_=sa.Boolean())
            return sa.case((chosen, param(name, target)), else_=target)

        statement = (
            sources.update()
            .where(column.id == sa.bindparam("b_id"))
            .values(
                last_outcome=param("b_outcome", column.last_outcome),
                interval_seconds=param("b_interval", column.interval_seconds),
                next_check_at=param("b_next", column.next_check_at),
                error_count=param("b_errors", column.error_count),
                redirect_target=param("b_redirect_target", column.redirect_target),
                redirect_count=param("b_redirect_count", column.redirect_count),
                gone=param("b_gone", column.gone),
                last_status=when("b_polled", "b_status", column.last_status),
                last_error=when("b_polled", "b_error", column.last_error),
                last_error_type=when("b_polled", "b_error_type", column.last_error_type),
                last_attempt_at=when("b_polled", "b_now", column.last_attempt_at),
                polls=column.polls + param("b_polls", column.polls),
                not_modified_polls=column.not_modified_polls
                + param("b_not_modified", column.not_modified_polls),
                last_unconditional_at=when(
                    "b_unconditional", "b_now", column.last_unconditional_at
                ),
                last_success_at=when("b_success", "b_now", column.last_success_at),
                first_success_at=sa.func.coalesce(
                    column.first_success_at, when("b_success", "b_now", column.first_success_at)
                ),
                etag=when("b_validators", "b_etag", column.etag),
                last_modified=when("b_validators", "b_last_modified", column.last_modified),
                body_hash=when("b_hash_known", "b_hash", column.body_hash),
            )
        )
        polls, self._polls = self._polls, []
        self._c.execute(statement, polls)

    def known_items(self, keys: Sequence[str]) -> dict[str, KnownItem]:
        """Stored items that any of ``keys`` points to, by key."""
        keys = list(keys)
        if not keys:
            return {}
        rows = self._driver(
            "SELECT item_keys.key, items.id, items.origin_source_id, items.content_hash"
            " FROM item_keys JOIN items ON items.id = item_keys.item_id"
            f" WHERE item_keys.key IN ({self._marks(len(keys))})",
            keys,
        )
        if not rows:
            return {}
        ids = list({item_id for _, item_id, _, _ in rows})
        carried: dict[int, set[str]] = {i: set() for i in ids}
        for item_id, source_id in self._driver(
            "SELECT item_id, source_id FROM item_sources"
            f" WHERE item_id IN ({self._marks(len(ids))})",
            ids,
        ):
            carried[item_id].add(source_id)
        return {
            key: KnownItem(
                item_id=item_id,
                origin_source_id=origin,
                content_hash=content_hash,
                source_ids=frozenset(carried[item_id]),
            )
            for key, item_id, origin, content_hash in rows
        }

    def reserve_id(self, table: str) -> int:
        """The id the next row of ``table`` will get, taken now so a batch can refer to
        rows it has not written yet (items join stories of the same batch)."""
        if self._c.dialect.name == "postgresql":
            # Other workers take ids from the same sequence: take a block at a time (one
            # round trip), leaving harmless gaps.
            pool = self._id_pools.setdefault(table, [])
            if not pool:
                sequence = sa.func.pg_get_serial_sequence(table, "id")
                block = sa.select(sa.func.nextval(sequence)).select_from(
                    sa.func.generate_series(1, _ID_BLOCK)
                )
                pool.extend(reversed(self._c.execute(block).scalars().all()))
            return int(pool.pop())
        if table not in self._next_ids:  # one writer at a time (the database lock)
            found = self._c.execute(sa.select(sa.func.max(self._t[table].c.id))).scalar_one()
            self._next_ids[table] = (found or 0) + 1
        reserved = self._next_ids[table]
        self._next_ids[table] = reserved + 1
        return reserved

    def insert_items(self, batch: Sequence[NewItem], now: datetime) -> None:
        """Store new items (their keys, sources, LSH bands, topics and new stories) with
        one multi-row statement per table, not several statements per item."""
        if not batch:
            return
        seen = _to_db(now)
        stories = [
            {"id": new.story_id, "public_id": new.public_id, "created_at": seen}
            for new in batch
            if new.new_story
        ]
        self._insert_rows("stories", stories)
        self._insert_rows(
            "items",
            [
                {
                    "id": new.item_id,
                    "public_id": new.public_id,
                    "origin_source_id": new.item.source_id,
                    "first_seen_at": seen,
                    "date_missing": new.item.date_missing,
                    "story_id": new.story_id,
                    "story_similarity": new.similarity,
                    "story_via": new.via,
                    "story_reason": new.reason or None,
                    **self._content_values(new.item),
                }
                for new in batch
            ],
        )
        keys = [{"key": k, "item_id": new.item_id} for new in batch for k in new.item.keys]
        self._insert_rows("item_keys", keys, ignore_conflicts=True)
        self._insert_rows(
            "item_sources",
            [_source_row(new.item_id, new.item, now) for new in batch],
            ignore_conflicts=True,
        )
        self._insert_tuples(
            "item_lsh",
            ("item_id", "published_ts", "band_keys", "pairs", "facts"),
            [
                (n.item_id, int(n.item.published_at.timestamp()), n.bands, n.pairs or None, n.facts)
                for n in batch
                if n.bands
            ],
        )
        topics = [_topic_row(new.item_id, match) for new in batch for match in new.topics]
        self._insert_rows("item_topics", topics)

    def insert_item(self, item: Item, now: datetime, story: StoryJoin | None = None) -> int:
        """Store one new item in ``story``'s story, or in a new story of its own when
        ``story`` names none (``insert_items`` for a batch)."""
        story = story or StoryJoin()
        item_id = self.reserve_id("items")
        story_id = story.story_id
        new_story = story_id is None
        if story_id is None:
            story_id = self.reserve_id("stories")
        self.insert_items(
            [
                NewItem(
                    item_id=item_id,
                    item=item,
                    story_id=story_id,
                    new_story=new_story,
                    similarity=story.similarity,
                    via=story.via,
                )
            ],
            now,
        )
        return item_id

    def _insert_rows(
        self, table: str, rows: Sequence[Mapping[str, Any]], *, ignore_conflicts: bool = False
    ) -> None:
        """A multi-row insert of dicts with the same keys (see ``_insert_tuples``)."""
        if rows:
            columns = tuple(rows[0])
            self._insert_tuples(
                table, columns, [tuple(row.values()) for row in rows], ignore_conflicts
            )

    def _insert_tuples(
        self,
        table: str,
        columns: Sequence[str],
        rows: list[tuple[Any, ...]],
        ignore_conflicts: bool = False,
    ) -> None:
        """A multi-row insert straight to the driver, values converted by their column's
        type as SQLAlchemy would: its per-row statement handling cost more than the
        database's own insert (a third of a cold cycle's storing time)."""
        if not rows:
            return
        dialect = self._c.dialect
        converters = [
            (position, convert)
            for position, convert in enumerate(_bind_processors(self._t[table], columns, dialect))
            if convert is not None
        ]
        if converters:
            rows = [_converted(row, converters) for row in rows]
        names = ", ".join(columns)
        if dialect.name == "postgresql":
            # One statement with one array per column, not one statement per row.
            kinds = [self._t[table].c[name].type.compile(dialect=dialect) for name in columns]
            arrays = ", ".join(f"%s::{kind}[]" for kind in kinds)
            sql = f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays})"
            if ignore_conflicts:
                sql += " ON CONFLICT DO NOTHING"
            self._driver(sql, tuple(list(column) for column in zip(*rows, strict=True)))
            return
        marks = self._marks(len(columns))
        verb = "INSERT OR IGNORE" if ignore_conflicts else "INSERT"
        self._driver_many(f"{verb} INTO {table} ({names}) VALUES ({marks})", rows)

    def prune_bands(self, older_than: datetime) -> int:
        """Drop the LSH band keys of items published before ``older_than``: nothing new
        can join their stories any more. Returns how many items' keys went."""
        bands = self._t["item_lsh"]
        cutoff = int(older_than.timestamp())
        result = self._c.execute(bands.delete().where(bands.c.published_ts < cutoff))
        return int(result.rowcount or 0)

    def band_sets(self, marker: int | None = None) -> tuple[Iterator[tuple[int, int, bytes]], int]:
        """(item id, published Unix seconds, ``band_blob``) of the stored items: all of
        them (``marker`` None), or at least those written since the call that returned
        ``marker``; and the marker to pass next time (see minhash.BandIndex). The rows
        are read as they are consumed (90,000 items' keys are 23 MB)."""
        select = "SELECT item_id, published_ts, band_keys FROM item_lsh"
        parameters: tuple[int, ...]
        if self._c.dialect.name == "postgresql":
            # Every row carries the id of the transaction that wrote it. Any transaction
            # still running when the marker is taken has an id >= the snapshot's xmin,
            # so rows committed after this read are found next time, whatever order
            # several workers' transactions commit in (row ids do not tell).
            next_marker = self._c.exec_driver_sql(
                "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
            ).scalar_one()
            where, parameters = "", ()
            if marker is not None:
                where, parameters = " WHERE written_xid >= %s", (marker,)
        else:
            # One writer at a time, taking ids in order: newer rows have larger ids.
            next_marker = self._c.exec_driver_sql("SELECT max(item_id) FROM item_lsh").scalar()
            next_marker = next_marker or 0
            where, parameters = " WHERE item_id > ? AND item_id <= ?", (marker or 0, next_marker)
        rows = self._c.exec_driver_sql(
            select + where, parameters, execution_options={"yield_per": 2048}
        )
        return ((item_id, at, bytes(keys)) for item_id, at, keys in rows), int(next_marker)

    def release_cache(self) -> None:
        """Give back the pages SQLite cached for this connection (a full read of the
        band keys leaves them all over its cache: 16 MB no later statement needs)."""
        if self._c.dialect.name == "sqlite":
            self._c.exec_driver_sql("PRAGMA shrink_memory")

    def item_reports(
        self, item_ids: Iterable[int]
    ) -> dict[int, tuple[int, bytes | None, str | None]]:
        """Story, word pairs and encoded report facts (None if not stored) of each
        item, for the near-duplicate check. Its text is not read: reading every
        candidate's summary was most of what a cold cycle's story stage read."""
        item_ids = list(item_ids)
        if not item_ids:
            return {}
        # Straight to the driver: this runs for most new items of a cold cycle, and
        # building the statement each time was most of its cost.
        rows = self._driver(
            "SELECT items.id, items.story_id, item_lsh.pairs, item_lsh.facts FROM items"
            " LEFT JOIN item_lsh ON item_lsh.item_id = items.id"
            f" WHERE items.id IN ({self._marks(len(item_ids))})",
            tuple(item_ids),
        )
        return {
            item_id: (story_id, None if pairs is None else bytes(pairs), facts)
            for item_id, story_id, pairs, facts in rows
        }

    def item_texts(self, item_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        """Title and summary text of each item (to compare one whose pairs or facts
        were not stored, or were stored in another layout)."""
        item_ids = list(item_ids)
        if not item_ids:
            return {}
        rows = self._driver(
            f"SELECT id, title, summary_text FROM items WHERE id IN ({self._marks(len(item_ids))})",
            tuple(item_ids),
        )
        return {item_id: (title, text) for item_id, title, text in rows}

    def _driver(self, sql: str, parameters: Sequence[Any] = ()) -> Sequence[Any]:
        """The rows of a statement run on the driver's own cursor, in this transaction.
        For the reads a cold cycle makes once per new item, SQLAlchemy's result set-up
        (column metadata and row objects each call) cost more than the database's own
        look-up. The driver's errors are raised as SQLAlchemy's would be."""
        with self._driver_cursor(sql, parameters) as cursor:
            cursor.execute(sql, parameters)
            return cursor.fetchall() if cursor.description else []

    def _driver_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows on the driver's own cursor (see ``_driver``)."""
        with self._driver_cursor(sql, rows) as cursor:
            cursor.executemany(sql, rows)

    @contextmanager
    def _driver_cursor(self, sql: str, parameters: Any) -> Iterator[Any]:
        dialect = self._c.dialect
        driver_error = dialect.loaded_dbapi.Error
        cursor = self._c.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            yield cursor
        except driver_error as exc:
            wrapped = sa.exc.DBAPIError.instance(
                sql, parameters, exc, driver_error, dialect=dialect
            )
            raise wrapped from exc
        finally:
            cursor.close()

    def _marks(self, count: int) -> str:
        """``count`` parameter placeholders for a statement sent straight to the driver."""
        return ", ".join(["?" if self._c.dialect.paramstyle == "qmark" else "%s"] * count)

    @property
    def others_write(self) -> bool:
        """Whether other processes may write meanwhile (PostgreSQL workers)."""
        return self._c.dialect.name != "sqlite"

    def story_ids(self, item_ids: Iterable[int]) -> dict[int, int]:
        """The story of each item."""
        item_ids = list(item_ids)
        if not item_ids:
            return {}
        rows = self._driver(
            f"SELECT id, story_id FROM items WHERE id IN ({self._marks(len(item_ids))})",
            tuple(item_ids),
        )
        return dict(rows)

    def merge_stories(self, into: int, others: Iterable[int]) -> None:
        """Move the members of ``others`` into story ``into`` (a later report proved
        them one story). The emptied stories' rows stay: their ids are never reused."""
        others = [o for o in others if o != into]
        if others:
            items = self._t["items"]
            self._c.execute(
                items.update().where(items.c.story_id.in_(others)).values(story_id=into)
            )

    def word_pair_counts(self) -> tuple[int, bytes] | None:
        """The stored word-pair counts (``stories.WordPairCounts``): (reports, counts)."""
        table = self._t["word_pair_counts"]
        row = self._c.execute(sa.select(table.c.reports, table.c.counts)).first()
        return (row.reports, row.counts) if row else None

    def set_word_pair_counts(self, reports: int, counts: bytes) -> None:
        # One statement: with delete-then-insert, two workers saving at once both
        # inserted row 1 and one lost its whole batch (polled and downloaded again).
        table = self._t["word_pair_counts"]
        insert = self._dialect_insert(table).values(id=1, reports=reports, counts=counts)
        self._c.execute(
            insert.on_conflict_do_update(
                index_elements=[table.c.id],
                set_={"reports": insert.excluded.reports, "counts": insert.excluded.counts},
            )
        )

    def update_item(self, item_id: int, item: Item) -> None:
        """Apply an edit by the origin source; the public id and first-seen time stay."""
        items = self._t["items"]
        values = self._content_values(item)
        del values["published_at"]  # a republished date must not resurface an old story
        self._c.execute(items.update().where(items.c.id == item_id).values(values))

    def set_entry_digests(self, rows: Sequence[tuple[int, str, int]]) -> None:
        """Record (item id, source id, entry digest): the entry each source now lists
        the item as (``Item.entry_digest``)."""
        if not rows:
            return
        item_sources = self._t["item_sources"]
        statement = (
            item_sources.update()
            .where(item_sources.c.item_id == sa.bindparam("b_item"))
            .where(item_sources.c.source_id == sa.bindparam("b_source"))
            .values(entry_digest=sa.bindparam("b_digest"))
        )
        self._c.execute(
            statement, [{"b_item": i, "b_source": s, "b_digest": d} for i, s, d in rows]
        )

    def add_keys(self, item_id: int, keys: Iterable[str]) -> None:
        rows = [{"key": key, "item_id": item_id} for key in keys]
        if rows:
            self._c.execute(self._insert_ignoring_conflicts(self._t["item_keys"]), rows)

    def add_source(self, item_id: int, item: Item, now: datetime) -> None:
        self._c.execute(
            self._insert_ignoring_conflicts(self._t["item_sources"]),
            [_source_row(item_id, item, now)],
        )

    def set_topics(
        self, item_id: int, matches: Iterable[TopicMatch], *, fresh: bool = False
    ) -> None:
        """Replace the item's topics with ``matches`` (and why each matched); ``fresh``:
        the item was just inserted and has none to replace."""
        item_topics = self._t["item_topics"]
        if not fresh:
            self._c.execute(item_topics.delete().where(item_topics.c.item_id == item_id))
        rows = [_topic_row(item_id, match) for match in matches]
        if rows:
            self._c.execute(item_topics.insert(), rows)

    @staticmethod
    def _content_values(item: Item) -> dict[str, Any]:
        return {
            "link": item.link,
            "guid": item.guid,
            "title": item.title,
            "summary_html": item.summary_html,
            "summary_text": item.summary_text,
            "published_at": _to_db(item.published_at),
            "updated_at": _to_db(item.updated_at),
            "author": item.author,
            "categories": json.dumps(list(item.categories), ensure_ascii=False),
            "language": item.language,
            "content_hash": item.content_hash,
            "original_publisher": item.original_publisher,
        }
