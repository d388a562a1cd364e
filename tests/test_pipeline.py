"""End to end: fixture feeds on a real 127.0.0.1 server -> database -> published feeds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import httpx
import pytest

from aggregator.config import AppConfig, load_config
from aggregator.fetch import Fetcher
from aggregator.models import FetchOutcome
from aggregator.pipeline import run_cycle
from aggregator.storage import Storage
from tests.conftest import DATA, FeedServer, Route, write_config

TOPICS = """\
topics:
  - slug: cashmere-wool
    title: Cashmere & Wool
    include: [cashmere, wool]
  - slug: cotton
    title: Cotton
    include: [cotton]
  - slug: parks
    title: Parks
    include: [demonstration park]
  - slug: technical
    title: Technical
    include: [spunbond]
"""


@pytest.fixture
def setup(
    tmp_path: Path, feed_server: FeedServer, database_url: str | None
) -> tuple[AppConfig, Storage, FeedServer]:
    feed_server.routes["/mills.rss"] = Route(body=(DATA / "e2e" / "mills.rss").read_bytes())
    feed_server.routes["/wire.atom"] = Route(
        body=(DATA / "e2e" / "wire.atom").read_bytes(), content_type="application/atom+xml"
    )
    feed_server.routes["/down.rss"] = Route(status=500, validators=False)
    sources = f"""\
sources:
  - id: mills
    name: Mill News
    url: {feed_server.url("/mills.rss")}
    home: https://mills.example.com/
  - id: wire
    name: Textile Wire
    url: {feed_server.url("/wire.atom")}
    home: https://wire.example.net/
  - id: down
    name: Down Portal
    url: {feed_server.url("/down.rss")}
"""
    folder = write_config(
        tmp_path / "cfg", sources=sources, topics=TOPICS, database_url=database_url
    )
    config = load_config(folder)
    storage = Storage.for_config(config)
    yield config, storage, feed_server
    storage.close()


def read(config: AppConfig, name: str) -> feedparser.FeedParserDict:
    feed = feedparser.parse((config.output_dir / name).read_bytes())
    assert not feed.bozo, feed.get("bozo_exception")
    return feed


def test_cycle_end_to_end(setup: tuple[AppConfig, Storage, FeedServer]) -> None:
    config, storage, server = setup
    report = run_cycle(config, storage)

    outcomes = {r.source_id: r for r in report.sources}
    assert outcomes["mills"].outcome is FetchOutcome.OK
    assert outcomes["wire"].outcome is FetchOutcome.OK
    assert outcomes["down"].outcome is FetchOutcome.FAILED
    assert outcomes["down"].error == "HTTP 500 Internal Server Error"
    assert report.new_items == 4  # five entries, one story carried by both sources
    assert dict(report.topic_counts) == {
        "cashmere-wool": 2,
        "cotton": 1,
        "parks": 1,
        "technical": 1,
    }
    # 4 topics and the all feed, 3 formats each, plus index.html and two OPML files.
    assert len(report.files_written) == 21

    # The shared story: one entry, attributed to the first source, naming the second.
    for name in ("cotton.rss", "cotton.atom"):
        (entry,) = read(config, name).entries
        assert entry.title == "Cotton futures climb in Zhengzhou"
        assert entry.link == "https://mills.example.com/news/cotton-futures-zhengzhou-502.html"
        assert entry.source.title == "Mill News"
        assert "Source: <a" in entry.summary and ">Mill News</a>" in entry.summary
        assert "Also carried by: <a" in entry.summary and ">Textile Wire</a>" in entry.summary

    rss, atom = read(config, "cashmere-wool.rss"), read(config, "cashmere-wool.atom")
    assert [e.title for e in rss.entries] == [
        "Merino wool auction firm",
        "Qinghe cashmere town named national demonstration park",
    ]
    assert [e.id for e in rss.entries] == [e.id for e in atom.entries]
    assert len({e.id for e in rss.entries}) == len(rss.entries)
    assert [e.source.title for e in atom.entries] == ["Textile Wire", "Mill News"]
    assert rss.entries[1].link in (read(config, "parks.rss").entries[0].link,)
    assert {t.term for t in atom.entries[1].tags} == {"cashmere-wool", "parks"}

    states = storage.source_states()
    assert states["down"].error_count == 1
    agent = server.hits[0].headers["user-agent"]
    assert agent == "textile-feeds/0.1.0 (+https://github.com/textile-feeds/textile-feeds)"
    assert states["mills"].validators.etag


def test_second_cycle_is_304_and_rewrites_nothing(
    setup: tuple[AppConfig, Storage, FeedServer],
) -> None:
    config, storage, server = setup
    run_cycle(config, storage)
    written = {p: p.stat().st_mtime_ns for p in config.output_dir.iterdir()}
    server.hits.clear()

    report = run_cycle(config, storage)

    assert {r.source_id: r.outcome for r in report.sources} == {
        "mills": FetchOutcome.NOT_MODIFIED,
        "wire": FetchOutcome.NOT_MODIFIED,
        "down": FetchOutcome.FAILED,
    }
    conditional = [h for h in server.hits if h.path in ("/mills.rss", "/wire.atom")]
    assert [h.status for h in conditional] == [304, 304]
    assert all("if-none-match" in h.headers for h in conditional)
    assert report.new_items == 0
    assert report.files_written == ()
    assert {p: p.stat().st_mtime_ns for p in config.output_dir.iterdir()} == written
    assert storage.item_count() == 4
    assert storage.source_states()["down"].error_count == 2


def test_changed_feed_adds_only_the_new_item(
    setup: tuple[AppConfig, Storage, FeedServer],
) -> None:
    config, storage, server = setup
    run_cycle(config, storage)
    body = server.routes["/mills.rss"].body.replace(
        b"<item>",
        b"<item><title>Wool top prices ease</title><link>https://mills.example.com/504</link>"
        b"<guid>504</guid><pubDate>Thu, 26 Nov 2026 01:00:00 GMT</pubDate></item><item>",
        1,
    )
    server.routes["/mills.rss"] = Route(body=body)
    report = run_cycle(config, storage)
    assert report.new_items == 1
    assert sorted(Path(p).name for p in report.files_written) == [
        "all.atom", "all.json", "all.rss",
        "cashmere-wool.atom", "cashmere-wool.json", "cashmere-wool.rss",
        "index.html",  # the OPML lists change only with the config files
    ]  # fmt: skip
    assert read(config, "cashmere-wool.rss").entries[0].title == "Wool top prices ease"


def test_unparseable_feed_is_recorded_and_keeps_validators_fresh(
    setup: tuple[AppConfig, Storage, FeedServer],
) -> None:
    config, storage, server = setup
    server.routes["/wire.atom"] = Route(body=b"<html><body>Maintenance</body></html>")
    report = run_cycle(config, storage)
    wire = next(r for r in report.sources if r.source_id == "wire")
    assert wire.outcome is FetchOutcome.FAILED
    assert wire.error == "not a feed: the server returned an HTML page"
    state = storage.source_states()["wire"]
    assert state.validators.etag is None  # next poll downloads in full, no 304 trap
    assert storage.source_states()["mills"].error_count == 0


def test_stop_event_ends_the_cycle_after_the_current_source(
    setup: tuple[AppConfig, Storage, FeedServer],
) -> None:
    import threading

    config, storage, _ = setup
    stop = threading.Event()
    stop.set()
    report = run_cycle(config, storage, stop=stop)
    assert report.sources == ()
    assert storage.item_count() == 0


def test_due_only_polls_sources_whose_time_has_come(
    setup: tuple[AppConfig, Storage, FeedServer],
) -> None:
    config, storage, server = setup
    start = datetime.now(UTC)
    run_cycle(config, storage, now=start)
    server.hits.clear()
    (config.output_dir / "cotton.rss").unlink()

    early = run_cycle(config, storage, now=start + timedelta(minutes=5), due_only=True)
    assert early.sources == ()
    assert server.hits == []
    # Nothing was polled, but a missing output file is still rebuilt.
    assert [Path(p).name for p in early.files_written] == ["cotton.rss"]

    quiet = run_cycle(config, storage, now=start + timedelta(minutes=5), due_only=True)
    assert quiet.files_written == ()  # nothing changed: nothing re-rendered

    # Adaptive: a source with a few items a week waits the maximum (1 day, +10% jitter).
    due = run_cycle(config, storage, now=start + timedelta(days=1, hours=3), due_only=True)
    assert {r.source_id for r in due.sources} == {"mills", "wire", "down"}


def test_story_listed_twice_in_one_feed_is_stored_once(
    setup: tuple[AppConfig, Storage, FeedServer],
) -> None:
    config, storage, server = setup
    body = server.routes["/mills.rss"].body
    first_item = body[body.index(b"<item>") : body.index(b"</item>") + len(b"</item>")]
    edited = first_item.replace(b"joins the list", b"was added to the list")
    server.routes["/mills.rss"] = Route(body=body.replace(b"</channel>", edited + b"</channel>"))
    report = run_cycle(config, storage)
    mills = next(r for r in report.sources if r.source_id == "mills")
    assert mills.entries_seen == 4
    assert mills.new_items == 3
    (entry,) = read(config, "parks.rss").entries
    assert "joins the list" in entry.summary


class ScriptedServer:
    """An httpx MockTransport answering from a script, recording request headers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.respond: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(500)

    def transport(self) -> httpx.MockTransport:
        def handler(request: httpx.Request) -> httpx.Response:
            self.requests.append(dict(request.headers))
            return self.respond(request)

        return httpx.MockTransport(handler)


@pytest.fixture
def scripted(
    tmp_path: Path, database_url: str | None
) -> Iterator[tuple[AppConfig, Storage, ScriptedServer, Fetcher]]:
    sources = "sources:\n  - id: mills\n    name: Mills\n    url: https://mills.example.com/rss\n"
    folder = write_config(
        tmp_path / "cfg", sources=sources, topics=TOPICS, database_url=database_url
    )
    config = load_config(folder)
    storage = Storage.for_config(config)
    server = ScriptedServer()
    fetcher = Fetcher(config.settings.fetch, "test", transport=server.transport())
    yield config, storage, server, fetcher
    storage.close()


def mills_response(**headers: str) -> httpx.Response:
    body = (DATA / "e2e" / "mills.rss").read_bytes()
    return httpx.Response(200, stream=httpx.ByteStream(body), headers=headers)


def test_a_304_with_new_validators_updates_them(
    scripted: tuple[AppConfig, Storage, ScriptedServer, Fetcher],
) -> None:
    config, storage, server, fetcher = scripted
    server.respond = lambda r: mills_response(ETag='"v1"')
    start = datetime.now(UTC)
    run_cycle(config, storage, fetcher=fetcher, now=start)
    server.respond = lambda r: httpx.Response(304, headers={"ETag": '"v2"'})
    report = run_cycle(config, storage, fetcher=fetcher, now=start + timedelta(hours=1))
    assert server.requests[-1]["if-none-match"] == '"v1"'
    assert report.sources[0].outcome is FetchOutcome.NOT_MODIFIED
    assert storage.source_states()["mills"].validators.etag == '"v2"'


def test_server_ignoring_validators_is_not_parsed_twice(
    scripted: tuple[AppConfig, Storage, ScriptedServer, Fetcher],
) -> None:
    config, storage, server, fetcher = scripted
    server.respond = lambda r: mills_response()  # never a 304
    start = datetime.now(UTC)
    run_cycle(config, storage, fetcher=fetcher, now=start)
    report = run_cycle(config, storage, fetcher=fetcher, now=start + timedelta(hours=1))
    (source,) = report.sources
    assert source.outcome is FetchOutcome.NOT_MODIFIED
    assert source.entries_seen == 0  # the body hash matched: no parse
    state = storage.source_states()["mills"]
    assert (state.polls, state.not_modified_polls) == (2, 1)


def test_unconditional_fetch_at_most_every_n_hours(
    scripted: tuple[AppConfig, Storage, ScriptedServer, Fetcher],
) -> None:
    config, storage, server, fetcher = scripted
    server.respond = lambda r: mills_response(ETag='"v1"')
    start = datetime.now(UTC)
    for hours in (0, 1, 2, 25, 26):
        run_cycle(config, storage, fetcher=fetcher, now=start + timedelta(hours=hours))
    conditional = ["if-none-match" in headers for headers in server.requests]
    # The first fetch has nothing to send; after 24 h one goes out without validators.
    assert conditional == [False, True, True, False, True]


def test_retry_after_holds_back_only_its_own_host(
    setup: tuple[AppConfig, Storage, FeedServer],
) -> None:
    """127.0.0.1 and localhost are the same server but different hosts to us."""
    config, storage, server = setup
    server.routes["/mills.rss"] = Route(
        status=503, validators=False, headers={"Retry-After": str(10 * 86400)}
    )
    localhost = config.sources[1].url.replace("127.0.0.1", "localhost")
    other_host = config.sources[1].model_copy(update={"url": localhost})
    config = replace(config, sources=(config.sources[0], other_host, config.sources[2]))
    start = datetime.now(UTC)
    run_cycle(config, storage, now=start)
    server.hits.clear()
    report = run_cycle(config, storage, now=start + timedelta(days=2))
    outcomes = {r.source_id: r.outcome for r in report.sources}
    assert outcomes["mills"] is FetchOutcome.DEFERRED  # same host as the 503
    assert outcomes["down"] is FetchOutcome.DEFERRED  # also 127.0.0.1
    assert outcomes["wire"] is FetchOutcome.NOT_MODIFIED  # localhost: polled as usual
    assert [h.path for h in server.hits] == ["/wire.atom"]


REPOST = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Repost Portal</title>
<link>https://repost.example.cn/</link><description>x</description>
<item><title>Local Hot Spot: Qinghe Cashmere Town Named National Demonstration Park</title>
<link>https://repost.example.cn/global/en/77{n}.html</link><guid>77{n}</guid>
<description>The cashmere cluster in Hebei joins the list of creative design
demonstration parks. (source: Hebei Daily)</description>
<pubDate>Thu, 26 Nov 2026 0{n}:00:00 GMT</pubDate></item></channel></rss>"""


def test_reposts_join_one_story_with_a_stable_entry(
    setup: tuple[AppConfig, Storage, FeedServer],
) -> None:
    config, storage, server = setup
    run_cycle(config, storage)
    (before,) = read(config, "parks.atom").entries
    # A portal reposts the story under a new headline; the daemon restarts in between,
    # and the story index in the database finds the original.
    server.routes["/repost.rss"] = Route(body=REPOST.replace(b"{n}", b"1"))
    sources = (config.config_dir / "sources.yaml").read_text() + (
        f"  - id: repost\n    name: Repost Portal\n    url: {server.url('/repost.rss')}\n"
    )
    (config.config_dir / "sources.yaml").write_text(sources)
    config = load_config(config.config_dir)
    reopened = Storage.for_config(config)
    report = run_cycle(config, reopened)
    assert report.new_items == 1
    for name in ("parks.atom", "parks.rss"):
        (entry,) = read(config, name).entries  # still one entry for the story
        assert entry.id == before.id  # the story keeps the first report's id
        assert entry.published_parsed == before.published_parsed  # no resurfacing
        repost = '<a href="https://repost.example.cn/global/en/771.html">Repost Portal</a>'
        assert f"Also reported by: {repost}" in entry.summary
    atom = read(config, "parks.atom").entries[0]
    assert [link.href for link in atom.links if link.rel == "related"] == [
        "https://repost.example.cn/global/en/771.html"
    ]
    feed = json.loads((config.output_dir / "parks.json").read_text(encoding="utf-8"))
    assert feed["items"][0]["_textile_feeds"]["also_reported_by"][0]["name"] == "Repost Portal"
    reopened.close()


def test_candidates_are_bounded_and_the_repost_comes_first() -> None:
    """Every earlier report of a template shares band keys with a new one: they were
    all checked exactly, so the story stage grew with the corpus (issue 16: 9.8 s CPU
    per 1,000 items at 2,000 outside feeds against 1.4 s at 125)."""
    from aggregator.stories import MAX_CANDIDATES, _best_candidates

    template = {item_id: 3 for item_id in range(1, 301)}  # 300 siblings, 3 bands each
    repost = {999: 1}  # one band key in common, but the same figures
    chosen = _best_candidates({**template, **repost}, {999: 5, 7: 1})
    assert len(chosen) == MAX_CANDIDATES and 999 in chosen
    # A rewrite sharing no band key is a candidate through its figures alone.
    assert _best_candidates({}, {42: 3, 43: 1}) == {42}
