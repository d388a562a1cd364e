"""Hostile and broken servers on 127.0.0.1: each source ends in the right state, the
cycle completes, the healthy source is unaffected, and nothing leaks into any output."""

from __future__ import annotations

import gzip
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import AppConfig, load_config
from aggregator.models import FetchOutcome, SourceReport, SourceState
from aggregator.pipeline import run_cycle
from aggregator.storage import Storage
from tests.conftest import DATA, FeedServer, Route, write_config

SECRET = "TOPSECRET-5f2c9a"
HEALTHY = (DATA / "e2e" / "mills.rss").read_bytes()
ITEM = (
    b"<item><title>{title}</title><link>https://h.example/{n}</link>"
    b"<guid>{n}</guid><description>{body}</description></item>"
)


def rss(*items: bytes, prolog: bytes = b'<?xml version="1.0" encoding="utf-8"?>') -> bytes:
    return (
        prolog
        + b'<rss version="2.0"><channel><title>t</title>'
        + b"".join(items)
        + (b"</channel></rss>")
    )


def item(n: int, title: bytes = b"Cotton news", body: bytes = b"text") -> bytes:
    return ITEM.replace(b"{title}", title).replace(b"{n}", str(n).encode()).replace(b"{body}", body)


ENTITY_BOMB = (
    b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n <!ENTITY a "cottoncottoncottoncotton">\n'
    + b"".join(
        f' <!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n'.encode() for i in range(8)
    )
    + b']>\n<rss version="2.0"><channel><title>t</title>'
    + item(1, title=b"&i;")
    + b"</channel></rss>"
)


def routes(secret_file: Path) -> dict[str, Route]:
    xxe = (
        b'<?xml version="1.0"?>\n<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://'
        + str(secret_file).encode()
        + b'">]>\n<rss version="2.0"><channel><title>t</title>'
        + item(2, title=b"Leak &xxe; here", body=b"&xxe;")
        + b"</channel></rss>"
    )
    return {
        "/healthy.rss": Route(body=HEALTHY),
        "/drip.rss": Route(body=HEALTHY, drip_delay=0.02, validators=False),
        "/endless.rss": Route(body=b"<item>" * 1000, endless=True, validators=False),
        "/bomb.rss": Route(
            body=gzip.compress(b" " * 30_000_000),
            validators=False,
            headers={"Content-Encoding": "gzip"},
        ),
        "/loop.rss": Route(status=301, validators=False, headers={"Location": "/loop.rss"}),
        "/gone.rss": Route(status=410, validators=False),
        "/ratelimit.rss": Route(status=429, validators=False, headers={"Retry-After": "7200"}),
        "/unavailable.rss": Route(
            status=503, validators=False, headers={"Retry-After": "Fri, 01 Jan 2100 00:00:00 GMT"}
        ),
        "/error.rss": Route(status=500, validators=False),
        "/empty.rss": Route(body=b"", validators=False),
        "/truncated.rss": Route(body=rss(item(3))[:90], validators=False),
        "/page.html": Route(
            body=b'<!DOCTYPE html><html><head><link rel="alternate" type="application/rss+xml" '
            b'href="/real-feed.xml"></head><body>News</body></html>',
            content_type="text/html",
            validators=False,
        ),
        # Declares UTF-8 but is Latin-1: the entry must still come through.
        "/charset.rss": Route(
            body=rss(item(4, title="Öko-Tex cotton".encode("latin-1"))),
            content_type="application/rss+xml; charset=utf-8",
            validators=False,
        ),
        "/entities.rss": Route(body=ENTITY_BOMB, validators=False),
        "/xxe.rss": Route(body=xxe, validators=False),
    }


EXPECTED = {
    # source: (outcome, error starts with, error type)
    "healthy": (FetchOutcome.OK, None, None),
    "drip": (FetchOutcome.FAILED, "no complete response within the 1s deadline", "timeout"),
    "endless": (FetchOutcome.FAILED, "body larger than 200000 bytes", "too_large"),
    "bomb": (FetchOutcome.FAILED, "body larger than 200000 bytes", "too_large"),
    "loop": (FetchOutcome.FAILED, "more than 5 redirects", "redirects"),
    "gone": (FetchOutcome.FAILED, "HTTP 410 Gone", "http"),
    "ratelimit": (FetchOutcome.FAILED, "HTTP 429 Too Many Requests", "http"),
    "unavailable": (FetchOutcome.FAILED, "HTTP 503 Service Unavailable", "http"),
    "error": (FetchOutcome.FAILED, "HTTP 500 Internal Server Error", "http"),
    "empty": (FetchOutcome.FAILED, "empty response body", "parse"),
    "truncated": (FetchOutcome.FAILED, "truncated document", "parse"),
    "page": (FetchOutcome.FAILED, "not a feed: the server returned an HTML page", "parse"),
    "charset": (FetchOutcome.OK, None, None),
    "entities": (FetchOutcome.OK, None, None),
    "xxe": (FetchOutcome.OK, None, None),
}


@pytest.fixture
def hostile(tmp_path: Path, feed_server: FeedServer) -> Iterator[tuple[AppConfig, Storage]]:
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    feed_server.routes.update(routes(secret_file))
    sources = "sources:\n" + "".join(
        f"  - id: {name}\n    name: {name.title()}\n"
        f"    url: {feed_server.url('/page.html' if name == 'page' else f'/{name}.rss')}\n"
        for name in EXPECTED
    )
    settings = (
        "database: state/db.sqlite\noutput_dir: out\npoll_interval: 10m\n"
        "schedule:\n  jitter: 0\n  adaptive: false\n"
        "fetch:\n  allow_private_addresses: true\n  per_host_delay: 0\n  concurrency: 16\n"
        "  per_host: 16\n  deadline: 1s\n  read_timeout: 1s\n  max_body: 200000\n"
    )
    config = load_config(write_config(tmp_path / "cfg", sources=sources, settings=settings))
    storage = Storage.open_sqlite(config.database_path)
    yield config, storage
    storage.close()


def test_every_hostile_case_ends_in_the_right_state(hostile: tuple[AppConfig, Storage]) -> None:
    config, storage = hostile
    now = datetime.now(UTC)
    report = run_cycle(config, storage, now=now)
    by_id: dict[str, SourceReport] = {r.source_id: r for r in report.sources}
    states = storage.source_states()
    for source_id, (outcome, error, error_type) in EXPECTED.items():
        assert by_id[source_id].outcome is outcome, (source_id, by_id[source_id].error)
        assert (by_id[source_id].error or "").startswith(error or ""), by_id[source_id].error
        assert states[source_id].last_error_type == error_type, source_id

    # The healthy source is unaffected; so are the two odd-but-readable ones.
    assert by_id["healthy"].new_items == 3
    assert by_id["charset"].new_items == 1
    # 410 marks the source gone and waits a week; 429/503 honour Retry-After.
    assert states["gone"].gone
    assert states["gone"].next_check_at == now + timedelta(days=7)
    # Retry-After counts from the response, a moment after the cycle started.
    ratelimit_wait = states["ratelimit"].next_check_at - now  # type: ignore[operator]
    assert timedelta(hours=2) <= ratelimit_wait < timedelta(hours=2, seconds=30)
    assert states["unavailable"].next_check_at == now + timedelta(days=1)  # clamped to max
    assert storage.host_blocks(now)["127.0.0.1"] == datetime(2100, 1, 1, tzinfo=UTC)
    assert "advertises a feed at http://127.0.0.1" in (by_id["page"].error or "")

    # Nothing leaked, and the entity bomb did not expand.
    with sqlite3.connect(config.database_path) as db:
        dump = "\n".join(db.iterdump())
    outputs = "".join(
        p.read_text(encoding="utf-8") for p in config.output_dir.iterdir() if p.suffix != ".png"
    )
    assert SECRET not in dump and SECRET not in outputs
    assert "cotton" * 100 not in dump
    assert max(len(title) for (title,) in sqlite3.connect(config.database_path).execute(
        "SELECT title FROM items"
    )) < 400  # fmt: skip


def test_a_host_asking_to_wait_holds_back_its_other_sources(
    hostile: tuple[AppConfig, Storage], feed_server: FeedServer
) -> None:
    """All hostile routes live on 127.0.0.1: after a 503 Retry-After, none is requested."""
    config, storage = hostile
    run_cycle(config, storage)
    feed_server.hits.clear()
    later = datetime.now(UTC) + timedelta(days=30)  # every source is due again
    report = run_cycle(config, storage, now=later)
    assert feed_server.hits == []
    assert {r.outcome for r in report.sources} == {FetchOutcome.DEFERRED}
    assert storage.source_states()["healthy"].error_count == 0
    # The summary says so, with when (it printed "0 entries, 0 new" and left them out
    # of the totals).
    from aggregator.cli import format_report

    summary = format_report(report, config).splitlines()
    assert summary[0] == f"Sources: 0 ok, 0 not modified, 0 failed, {len(EXPECTED)} deferred"
    assert "  healthy      deferred: its host asked to wait; next try 2100-01-01 00:00 UTC" in (
        summary
    )


def poll_one(
    tmp_path: Path, feed_server: FeedServer, body: bytes
) -> tuple[AppConfig, SourceReport, SourceState]:
    """One cycle over one source serving ``body`` as RSS labelled UTF-8."""
    feed_server.routes["/one.rss"] = Route(
        body=body, content_type="application/rss+xml; charset=utf-8", validators=False
    )
    sources = f"sources:\n  - id: one\n    name: One\n    url: {feed_server.url('/one.rss')}\n"
    settings = (
        "database: state/db.sqlite\noutput_dir: out\n"
        "fetch:\n  allow_private_addresses: true\n  per_host_delay: 0\n"
    )
    config = load_config(write_config(tmp_path / "cfg", sources=sources, settings=settings))
    storage = Storage.open_sqlite(config.database_path)
    try:
        (report,) = run_cycle(config, storage).sources
        state = storage.source_states()["one"]
    finally:
        storage.close()
    return config, report, state


ZH_PARAGRAPH = "河北省纺织服装产业集群转型升级，羊绒企业产量增长百分之十二，出口订单明显回暖。"


def zh_rss(title: str, body: str, language: str | None) -> bytes:
    channel_language = f"<language>{language}</language>" if language else ""
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>纺织</title>'
        f"{channel_language}<item><title>{title}</title><link>https://h.example/zh/{len(body)}"
        f"</link><description>{body}</description></item></channel></rss>"
    ).encode("gb2312")


@pytest.mark.parametrize(
    ("body", "outcome", "error_type", "stored_title"),
    [
        # Enough text for the detector to be sure: transcoded from GB18030.
        (zh_rss("北京今天天气晴朗", ZH_PARAGRAPH, None), FetchOutcome.OK, None, "北京今天天气晴朗"),
        # A headline alone reads as Korean cp949 just as well; the feed's language decides.
        (zh_rss("北京今天天气晴朗", "", "zh-cn"), FetchOutcome.OK, None, "北京今天天气晴朗"),
        # No way to tell: an encoding problem, and nothing garbled stored.
        (zh_rss("北京今天天气晴朗", "", None), FetchOutcome.FAILED, "encoding", None),
    ],
    ids=["detected", "by-language", "unclear"],
)
def test_a_mislabelled_charset_is_repaired_or_refused_never_garbled(
    tmp_path: Path,
    feed_server: FeedServer,
    body: bytes,
    outcome: FetchOutcome,
    error_type: str | None,
    stored_title: str | None,
) -> None:
    """GB2312 bytes behind a UTF-8 header and declaration were stored and published as
    ``±±¾©½ñÌìÌìÆøÇçÀÊ`` with state ok (an outside test of Chinese portals)."""
    config, report, state = poll_one(tmp_path, feed_server, body)
    assert report.outcome is outcome, report.error
    assert state.last_error_type == error_type
    titles = [
        t for (t,) in sqlite3.connect(config.database_path).execute("SELECT title FROM items")
    ]
    assert titles == ([stored_title] if stored_title else [])
    if error_type:
        assert "not valid utf-8 as declared" in (report.error or "")
        assert "gb18030" in (report.error or "")  # the candidates are named


def test_markup_only_entries_are_kept_when_they_show_something_and_counted_when_not(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    """Entries with no title and no link were dropped silently; an image-only one is
    now kept, and one that shows nothing (an SVG the sanitizer removes) is counted."""
    from aggregator.cli import format_report
    from aggregator.models import CycleReport

    guid = b"<item><guid isPermaLink='false'>%s</guid><description>%s</description></item>"
    image = guid % (b"img-1", b"&lt;img src='https://h.example/loom.png' alt='Loom'&gt;")
    svg = guid % (b"svg-1", b"&lt;svg&gt;&lt;circle r='4'/&gt;&lt;/svg&gt;")
    config, report, _ = poll_one(tmp_path, feed_server, rss(item(1), image, svg))
    assert (report.entries_seen, report.new_items, report.empty_entries) == (3, 2, 1)
    titles = {
        t for (t,) in sqlite3.connect(config.database_path).execute("SELECT title FROM items")
    }
    assert titles == {"Cotton news", "Loom"}
    summary = format_report(
        CycleReport(sources=(report,), topic_counts=(), files_written=(), files_unchanged=0),
        config,
    )
    assert "3 entries, 2 new, 0 updated, 1 empty dropped" in summary
