"""Several workers on one PostgreSQL database: host leases, exactly-once polling,
no duplicate items, one publisher, and a worker killed with SIGKILL mid-cycle."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aggregator.config import SourceConfig
from aggregator.storage import Storage
from tests import postgres
from tests.conftest import FeedServer, Route, write_config

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)
TOPICS = """\
topics:
  - {slug: cotton, title: Cotton, include: [cotton]}
  - {slug: wool, title: Wool, include: [wool]}
  - {slug: looms, title: Looms, include: [loom]}
"""
WORDS = ("cotton", "wool", "loom")


@pytest.fixture
def pg_url(postgres_server: postgres.Server) -> Iterator[str]:
    """A fresh PostgreSQL database (workers exist only on PostgreSQL)."""
    yield from postgres_server.database()


def source(n: int, host: str = "feeds.example.com") -> SourceConfig:
    return SourceConfig(id=f"s{n}", name=f"S{n}", url=f"https://{host}/{n}.rss")


def someone_waits_for_a_lock(storage: Storage, seconds: float = 20) -> bool:
    """Whether a connection to the database came to wait on a lock within ``seconds``."""
    deadline = time.monotonic() + seconds
    with storage.connect() as watcher:
        while time.monotonic() < deadline:
            waiting = watcher.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )).scalar_one()  # fmt: skip
            watcher.rollback()
            if waiting:
                return True
            time.sleep(0.02)
    return False


def test_hosts_are_leased_to_one_worker_until_released_or_expired(pg_url: str) -> None:
    storage = Storage.open_url(pg_url)
    try:
        configs = [source(n, f"h{n % 4}.example.com") for n in range(8)]
        with storage.transaction() as tx:
            tx.sync_sources(configs)
        ids = [c.id for c in configs]
        first = storage.claim_hosts("w1", ids, NOW, lease=60, limit=3)
        second = storage.claim_hosts("w2", ids, NOW, lease=60, limit=3)
        assert len(first) == 3 and len(second) == 1  # four hosts in all
        assert not set(first) & set(second)
        assert storage.claim_hosts("w3", ids, NOW, lease=60, limit=3) == []
        storage.release_hosts("w3", first)  # not its lease: nothing happens
        assert storage.claim_hosts("w3", ids, NOW, lease=60, limit=3) == []
        storage.release_hosts("w1", first, free_from=NOW + timedelta(seconds=1))
        assert storage.claim_hosts("w3", ids, NOW, lease=60, limit=9) == []  # the gap
        soon = NOW + timedelta(seconds=2)
        assert sorted(storage.claim_hosts("w3", ids, soon, lease=60, limit=9)) == sorted(first)
        # w2 and w3 died: their leases run out and every host is free again.
        later = NOW + timedelta(seconds=63)
        assert set(storage.claim_hosts("w4", ids, later, lease=60, limit=9)) == {*first, *second}
    finally:
        storage.close()


def test_a_race_on_a_shared_link_retries_only_that_source(pg_url: str) -> None:
    """Worker B stores an item whose link worker A has stored but not committed: B's
    insert waits for A, then fails on the unique key. Only B's source is decided
    again (A's item is now visible: B adds itself as a source); B's other work in the
    same transaction stays. It used to roll back and re-download the whole batch."""

    from aggregator.categorize import compile_topics
    from aggregator.config import ClusterSettings
    from aggregator.models import ParsedEntry
    from aggregator.normalize import normalize_entry
    from aggregator.pipeline import _Shared, _store_racing
    from aggregator.prepare import complete_item

    def ready(source_id: str, link: str) -> Any:
        entry = ParsedEntry(
            guid=None, link=link, title=f"Cotton report {link[-1]}", title_is_html=False,
            summary_html="<p>Spinners buy cotton yarn.</p>", published_raw=None,
            updated_raw=None, author=None, categories=(), language="en",
        )  # fmt: skip
        item = normalize_entry(entry, source_id=source_id, base_url="", timezone=UTC, now=NOW)
        assert item is not None
        return complete_item(item, (), source_id)

    sources = [source(1, "a.example.com"), source(2, "b.example.com")]
    storage_a, storage_b = Storage.open_url(pg_url), Storage.open_url(pg_url)
    topics = compile_topics((), {})
    shared_a = _Shared(topics=topics, settings=ClusterSettings(), now=NOW)
    shared_b = _Shared(topics=topics, settings=ClusterSettings(), now=NOW)
    outcome: dict[str, Any] = {}
    try:
        with storage_a.transaction() as tx:
            tx.sync_sources(sources)

        def worker_b() -> None:
            try:
                with storage_b.transaction() as tx_b:
                    own = _store_racing(
                        tx_b, shared_b, [ready("s2", "https://b.example.com/own")], NOW, sources[1]
                    )
                    shared = _store_racing(
                        tx_b, shared_b, [ready("s2", "https://x.example.com/1")], NOW, sources[1]
                    )
                outcome["b"] = (own.new, shared.new)
            except Exception as exc:  # reported by the assertion below
                outcome["b"] = exc

        with storage_a.transaction() as tx_a:
            stored = _store_racing(
                tx_a, shared_a, [ready("s1", "https://x.example.com/1")], NOW, sources[0]
            )
            assert stored.new == 1
            thread = threading.Thread(target=worker_b)
            thread.start()
            # Commit only once B is waiting on A's row lock (the unique index entry).
            assert someone_waits_for_a_lock(storage_a), "worker B never waited for A"
        thread.join(timeout=30)
        assert outcome["b"] == (1, 0), outcome["b"]
        with storage_a.connect() as connection:
            items = connection.execute(sa.text("SELECT link FROM items ORDER BY link")).scalars()
            carried = connection.execute(sa.text(
                "SELECT source_id FROM item_sources JOIN items ON items.id = item_id "
                "WHERE items.link = 'https://x.example.com/1' ORDER BY source_id"
            )).scalars()  # fmt: skip
            assert list(items) == ["https://b.example.com/own", "https://x.example.com/1"]
            assert list(carried) == ["s1", "s2"]
    finally:
        storage_a.close()
        storage_b.close()


def test_two_workers_saving_word_pair_counts_at_once_both_commit(pg_url: str) -> None:
    """Each worker saves the story stage's word-pair counts at the end of its batch.
    Saved as delete-then-insert, the second of two concurrent saves inserted row 1
    again once the first committed: a unique violation that rolled its whole batch
    back, so its feeds were downloaded again (seen 1 run in about 20 of the racing
    test above)."""
    storage_a, storage_b = Storage.open_url(pg_url), Storage.open_url(pg_url)
    outcome: dict[str, Any] = {}
    try:

        def worker_b() -> None:
            try:
                with storage_b.transaction() as tx_b:
                    tx_b.set_word_pair_counts(7, b"from b")
                outcome["b"] = "committed"
            except Exception as exc:  # reported by the assertion below
                outcome["b"] = exc

        with storage_a.transaction() as tx_a:
            tx_a.set_word_pair_counts(5, b"from a")
            thread = threading.Thread(target=worker_b)
            thread.start()
            # Commit only once B is waiting on A's row.
            assert someone_waits_for_a_lock(storage_a), "worker B never waited for A"
        thread.join(timeout=30)
        assert outcome["b"] == "committed", outcome["b"]
        with storage_a.transaction() as tx:
            assert tx.word_pair_counts() == (7, b"from b")  # the later save wins
    finally:
        storage_a.close()
        storage_b.close()


def test_a_workers_band_index_catches_up_whatever_order_others_commit_in(pg_url: str) -> None:
    """Workers take item ids in blocks, so a transaction holding lower ids can commit
    after one holding higher ids: catching up by "ids above the last seen" would miss
    its items for good. The transaction-id marker must not."""
    from aggregator.minhash import band_blob, signature
    from aggregator.models import Item
    from aggregator.storage import NewItem

    storage = Storage.open_url(pg_url)
    blob = band_blob(signature("Cotton prices rise", "Spinners buy more yarn."))

    def insert(tx: Any, n: int) -> int:
        item_id = tx.reserve_id("items")
        item = Item(
            source_id="s0", keys=(f"link:https://x.org/{n}",), link=f"https://x.org/{n}", guid=None,
            title="t", summary_html="", summary_text="", published_at=NOW, updated_at=NOW,
            date_missing=False, author=None, categories=(), language="en", content_hash="h",
        )  # fmt: skip
        tx.insert_items([NewItem(item_id=item_id, item=item, story_id=tx.reserve_id("stories"),
                                 new_story=True, bands=blob)], NOW)  # fmt: skip
        return item_id

    try:
        with storage.transaction() as tx:
            tx.sync_sources([source(0)])
        with contextlib.ExitStack() as slow:
            early = insert(slow.enter_context(storage.transaction()), 1)  # lower ids, open
            with storage.transaction() as tx:
                rows, marker = tx.band_sets()
                assert list(rows) == []
            with storage.transaction() as tx:
                late = insert(tx, 2)
            assert late > early
            with storage.transaction() as tx:
                rows, marker = tx.band_sets(marker)
                assert [row[0] for row in rows] == [late]
        # The slow transaction has committed now, after the one with the higher ids.
        with storage.transaction() as tx:
            rows, marker = tx.band_sets(marker)
            assert early in [row[0] for row in rows]
        with storage.transaction() as tx:
            assert list(tx.band_sets(marker)[0]) == []
    finally:
        storage.close()


def test_only_hosts_with_a_due_source_are_claimed(pg_url: str) -> None:
    storage = Storage.open_url(pg_url)
    try:
        configs = [source(1, "due.example.com"), source(2, "later.example.com")]
        with storage.transaction() as tx:
            tx.sync_sources(configs)
        sources = sa.table("sources", sa.column("id"), sa.column("next_check_at"))
        with storage.connect() as connection:
            connection.execute(
                sources.update()
                .where(sources.c.id == "s2")
                .values(next_check_at=NOW + timedelta(hours=1))
            )
            connection.commit()
        claimed = storage.claim_hosts("w", ["s1", "s2"], NOW, lease=60, limit=9)
        assert claimed == ["due.example.com"]
        assert storage.claim_hosts("w", ["s2"], NOW + timedelta(hours=2), 60, 9) == [
            "later.example.com"
        ]
    finally:
        storage.close()


# --- real worker processes ---------------------------------------------------------


def rss(n: int, items: int) -> bytes:
    entries = "".join(
        f"<item><title>Mill {n} report {i} on {WORDS[(n + i) % 3]}</title>"
        f"<link>https://portal{n}.example.com/news/{i}</link>"
        f"<description>Portal {n} writes about {WORDS[(n + i) % 3]} number {i}: "
        f"{' '.join(f'w{n}x{i}x{k}' for k in range(12))}</description>"
        f"<pubDate>{format_datetime(NOW - timedelta(hours=n % 50 + i))}</pubDate></item>"
        for i in range(items)
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>P{n}</title>'
        f"<link>https://portal{n}.example.com/</link><description>d</description>"
        f"{entries}</channel></rss>"
    ).encode()


@pytest.fixture
def network() -> Iterator[list[FeedServer]]:
    """30 hosts (127.0.0.2 to 127.0.0.31, each its own server)."""
    servers = [FeedServer(f"127.0.0.{n}") for n in range(2, 32)]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()


def worker_config(
    root: Path, servers: list[FeedServer], count: int, pg_url: str, delay: float, extra: str = ""
) -> Path:
    lines = ["sources:"]
    for n in range(count):
        server = servers[n % len(servers)]
        server.routes[f"/{n}.rss"] = Route(body=rss(n, 3), delay=delay)
        lines.append(f"  - {{id: s{n}, name: Portal {n}, url: '{server.url(f'/{n}.rss')}'}}")
    settings = (
        "database: state/unused.sqlite\noutput_dir: out\nbase_url: https://f.example.org/\n"
        "poll_interval: 1h\nschedule: {jitter: 0}\n"
        "fetch: {allow_private_addresses: true, per_host_delay: 0, concurrency: 16}\n"
        f"database_url: '{pg_url}'\nparse_workers: 1\n" + extra
    )
    return write_config(root / "cfg", sources="\n".join(lines) + "\n", topics=TOPICS,
                        settings=settings)  # fmt: skip


def textile_feeds(*args: str) -> list[str]:
    return [sys.executable, "-m", "aggregator", *args]


def run_once_workers(folder: Path, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` ``run --once`` processes at the same time; their (stdout, stderr),
    each checked to have exited 0."""
    runs = [
        subprocess.Popen(
            textile_feeds("-v", "--config", str(folder), "run", "--once"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(count)
    ]
    outputs = [run.communicate(timeout=240) for run in runs]
    for run, (_out, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err.decode()[-2000:]
    return outputs


def stored_links(pg_url: str) -> Counter[str]:
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        links = Counter(connection.execute(sa.text("SELECT link FROM items")).scalars())
    engine.dispose()
    return links


def test_three_workers_poll_every_source_once_and_store_nothing_twice(
    pg_url: str, network: list[FeedServer], tmp_path: Path
) -> None:
    folder = worker_config(tmp_path, network, 300, pg_url, delay=0.05)
    outputs = run_once_workers(folder, 3)
    hits = Counter(hit.path for server in network for hit in server.hits)
    assert len(hits) == 300 and set(hits.values()) == {1}, "every source polled exactly once"
    links = stored_links(pg_url)
    assert len(links) == 900 and set(links.values()) == {1}, "every item stored exactly once"
    out = folder / "out"
    for slug in ("cotton", "wool", "looms", "all"):
        text = (out / f"{slug}.atom").read_text()
        assert text.count("<entry>") >= 1, slug
    # Work was shared: more than one worker polled (each logs its rounds).
    working = [err for _out, err in outputs if b"worker round hosts=" in err]
    assert len(working) >= 2, [err.decode()[-600:] for _out, err in outputs]


def test_two_workers_racing_on_shared_links_download_every_feed_once(
    pg_url: str, network: list[FeedServer], tmp_path: Path
) -> None:
    """Feeds on different hosts carry the same link (as portals repost one wire
    story): a worker that lost the race on it used to throw its batch away and poll
    it again as full 200s (451-601 downloads for 300 feeds, one feed 6 times)."""
    folder = worker_config(
        tmp_path, network, 120, pg_url, delay=0.3, extra="workers: {batch: 4}\n"
    )  # fmt: skip
    common = (  # the same wire story in every feed, first seen by both workers at once
        "<item><title>Wire: cotton futures rise</title><link>https://wire.example.com/1</link>"
        "<description>Cotton futures rose on mill demand.</description></item>"
    )
    for n in range(120):
        body = rss(n, 3).replace(b"</channel>", common.encode() + b"</channel>")
        network[n % len(network)].routes[f"/{n}.rss"] = Route(body=body, delay=0.3)
    outputs = run_once_workers(folder, 2)
    hits = Counter(hit.path for server in network for hit in server.hits)
    # Why a feed was downloaded again: a batch rolled back (a race, a deadlock) is
    # polled again by the next claim.
    again = [line for _out, err in outputs for line in err.decode().splitlines()
             if "race" in line or "rolled back" in line or "lease" in line]  # fmt: skip
    assert len(hits) == 120 and set(hits.values()) == {1}, (hits.most_common(3), again[-10:])
    links = stored_links(pg_url)
    assert len(links) == 361 and set(links.values()) == {1}, "every item stored exactly once"


def test_a_killed_workers_hosts_are_polled_by_the_others_after_its_lease(
    pg_url: str, network: list[FeedServer], tmp_path: Path
) -> None:
    folder = worker_config(
        tmp_path, network, 60, pg_url, delay=0.4,
        extra="workers: {lease: 4s, batch: 4, idle: 0.5s}\n",
    )  # fmt: skip
    engine = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    first = subprocess.Popen(textile_feeds("--config", str(folder), "worker"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    others: list[subprocess.Popen[bytes]] = []
    try:
        # Wait until the first worker holds leases, then kill it without warning.
        leased: list[str] = []
        deadline = time.monotonic() + 60
        while not leased and time.monotonic() < deadline:
            time.sleep(0.05)
            try:
                with engine.connect() as connection:
                    leased = list(connection.execute(sa.text(
                        "SELECT host FROM hosts WHERE lease_owner LIKE :me"
                    ), {"me": f"%:{first.pid}:%"}).scalars())  # fmt: skip
            except sa.exc.ProgrammingError:
                continue  # the worker is still creating the schema
        assert leased, "the first worker never claimed a host"
        os.kill(first.pid, signal.SIGKILL)
        killed_at = datetime.now(UTC)
        first.wait(timeout=10)
        others = [
            subprocess.Popen(
                textile_feeds("--config", str(folder), "worker"),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(0.5)
            with engine.connect() as connection:
                never = connection.execute(
                    sa.text("SELECT count(*) FROM sources WHERE last_success_at IS NULL")
                ).scalar_one()
            if never == 0:
                break
        assert never == 0, "some sources were never polled"
        links = stored_links(pg_url)
        assert len(links) == 180 and set(links.values()) == {1}
        # The dead worker's hosts were polled again, by the others, after its death.
        with engine.connect() as connection:
            after = connection.execute(
                sa.text("SELECT max(last_success_at) FROM sources WHERE host = ANY(:hosts)"),
                {"hosts": leased},
            ).scalar_one()
        assert after is not None and after > killed_at
    finally:
        for worker in others:
            worker.send_signal(signal.SIGTERM)
        for worker in others:
            _out, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err.decode()[-2000:]
        if first.poll() is None:
            first.kill()
        engine.dispose()


def test_a_batch_lost_to_a_race_is_claimed_again_and_a_failing_database_ends_the_round(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from aggregator import worker
    from aggregator.config import load_config
    from aggregator.errors import ConflictError, StorageError

    sources = "sources:\n  - {id: a, name: A, url: 'https://a.example.com/rss'}\n"
    config = load_config(write_config(tmp_path / "cfg", sources=sources))
    storage = Storage.open_sqlite(":memory:")
    outcomes: list[object] = [ConflictError("UniqueViolation: lost the race")] * 5 + [None]
    calls: list[str] = []

    def poll_claimed(*_args: object, **_kwargs: object) -> None:
        calls.append("claim")
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome

    monkeypatch.setattr(worker, "poll_claimed", poll_claimed)
    monkeypatch.setattr(worker, "publish_if_requested", lambda *_a: None)
    assert worker.work(config, storage, "w") == 0
    assert len(calls) == 6  # claimed again after each lost race, more than 3 in a row
    outcomes[:] = [StorageError("disk full")] * worker.MAX_FAILED_BATCHES
    with pytest.raises(StorageError, match="disk full"):
        worker.work(config, storage, "w")
    storage.close()
