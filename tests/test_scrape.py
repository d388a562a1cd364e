"""HTML sources: selectors, dates, relative links, listing and chain crawls, robots.txt,
drift, all from fixtures that reproduce the portals' structure (served on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest

from aggregator.config import AppConfig, HtmlRules, load_config
from aggregator.models import FetchOutcome, FetchResult
from aggregator.parse.html import (
    date_text,
    extract_article,
    extract_items,
    link_of,
    page,
    parse_scraped_date,
)
from aggregator.pipeline import run_cycle
from aggregator.scrape import ROBOTS, RobotsCache
from aggregator.storage import Storage
from tests.conftest import DATA, PROJECT, TEST_FETCH_SETTINGS, FeedServer, Route, write_config

HTML = DATA / "html"
#: The seed portal's pages: the offline example's snapshot doubles as the test fixture.
SJFZXM = PROJECT / "config" / "demo" / "snapshots" / "sjfzxm"
SHANGHAI = ZoneInfo("Asia/Shanghai")
SEED = SJFZXM / "global" / "en" / "591691.html"

SEED_RULES = {
    "site": "https://www.sjfzxm.com/global/en/",
    "canonical_host": "www.sjfzxm.com",
    "id_pattern": r"/global/en/(\d+)\.html$",
    "date_formats": ["%Y/%m/%d %H:%M:%S"],
    "date_pattern": r"\d{4}/\d{1,2}/\d{1,2} \d{1,2}:\d{2}:\d{2}",
    "article": {
        "title": "h1.title",
        "date": ".info",
        "body": ".content p",
        "category": ".tags a",
        "publisher_pattern": r"\(source:\s*([^)]+)\)",
        "related": {
            "item": ".related li",
            "title": "a",
            "link": "a::attr(href)",
            "date": ".date",
            "category": ".cat",
        },
        "follow": [".next-article a::attr(href)"],
    },
    "chain": {"url_pattern": r"^/global/en/\d+\.html$", "max_hops": 5, "max_pages": 10},
}


@pytest.fixture(autouse=True)
def fresh_robots_cache() -> Iterator[None]:
    ROBOTS._rules.clear()
    yield
    ROBOTS._rules.clear()


def rules(**overrides: object) -> HtmlRules:
    return HtmlRules.model_validate({**SEED_RULES, **overrides})


# --- pure extraction ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("/global/en/591703.html", "https://www.sjfzxm.com/global/en/591703.html"),
        ("591703.html", "https://www.sjfzxm.com/global/en/591703.html"),
        (
            "../en/591703.html?from=list#top",
            "https://www.sjfzxm.com/global/en/591703.html?from=list",
        ),
        # Mirror hosts of the portal collapse onto the canonical host.
        (
            "https://znyjcn.sjfzxm.com/global/en/591703.html",
            "https://www.sjfzxm.com/global/en/591703.html",
        ),
        ("https://other.example.com/x.html", "https://other.example.com/x.html"),
        ("javascript:void(0)", None),
        (None, None),
    ],
)
def test_links_resolve_and_move_to_the_canonical_host(
    href: str | None, expected: str | None
) -> None:
    page_url = "https://rwj02.sjfzxm.com/global/en/591691.html"
    assert link_of(href, page_url, rules()) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2022/11/24 18:25:00 35", datetime(2022, 11, 24, 10, 25, tzinfo=UTC)),
        ("2022/10/14 7:32:00", datetime(2022, 10, 13, 23, 32, tzinfo=UTC)),  # not zero-padded
        ("2023/9/25 19:51:00", datetime(2023, 9, 25, 11, 51, tzinfo=UTC)),
        ("Updated: nothing here", None),
    ],
)
def test_dates_without_padding_in_the_source_zone(raw: str, expected: datetime | None) -> None:
    parsed = parse_scraped_date(date_text(raw, rules()), rules(), SHANGHAI)
    assert (parsed.astimezone(UTC) if parsed else None) == expected


def test_seed_article_page() -> None:
    url = "https://www.sjfzxm.com/global/en/591691.html"
    article = extract_article(page(SEED.read_bytes(), url), url, rules().article, rules())  # type: ignore[arg-type]
    assert article.title == (
        "Qinghe Cashmere Town In Xingtai, Hebei Province Was Selected Into The National "
        "Textile And Clothing Creative Design Demonstration Park"
    )
    assert article.date_text == "2022/11/24 18:25:00"  # the view counter is cut off
    assert article.publisher == "Hebei Daily"
    assert article.categories == ("Qinghe Cashmere",)
    assert article.body_html.startswith("<p>Recently, the Ministry of industry")
    assert article.follow == ("https://www.sjfzxm.com/global/en/591703.html",)
    related = [(r.title[:20], r.categories, r.date_text, r.link[-11:]) for r in article.related]
    assert related == [
        ("Dalangmao: Building ", ("brand building",), "2022/10/14 7:32:00", "591402.html"),
        ("Local Hot Spot: Text", ("brand building",), "2022/10/9 20:03:00", "591377.html"),
        ("Qingshanhu, A Modern", ("brand building",), "2022/10/9 11:45:00", "591370.html"),
        ("Innovation And Coope", ("brand building",), "2022/8/25 14:35:00", "590988.html"),
        ("Local Release: Price", ("brand building",), "2022/8/22 17:05:00", "590940.html"),
    ]


def test_listing_items_with_three_kinds_of_relative_links() -> None:
    listing_rules = HtmlRules.model_validate(
        {
            "site": "https://www.texglobe.example/",
            "listing": {"item": "ul.newslist li", "title": "a.t", "link": "a.t::attr(href)",
                        "date": "em", "summary": ".brief"},
            "date_pattern": r"\d{4}[-/]\d{1,2}[-/]\d{1,2}( \d{1,2}:\d{2})?",
        }
    )  # fmt: skip
    url = "https://www.texglobe.example/news/list_1.html"
    body = (HTML / "texglobe" / "news" / "list_1.html").read_bytes()
    items = extract_items(page(body, url), url, listing_rules.listing, listing_rules)  # type: ignore[arg-type]
    assert [(i.link, i.date_text) for i in items] == [
        ("https://www.texglobe.example/content/2026-11/88231.html", "2026-11-24"),
        ("https://www.texglobe.example/content/2026-11/88219.html", "2026/11/23 9:15"),
        ("https://www.texglobe.example/news/content/2026-11/88210.html?from=list", None),
    ]
    assert (
        items[0].summary_html
        == "<p>Exports of textiles and garments grew for a second month, customs data show.</p>"
    )


# --- crawls through the pipeline, on a real local server ---------------------------


def serve_tree(server: FeedServer, folder: Path, prefix: str = "") -> None:
    for path in folder.rglob("*.html"):
        server.routes[f"{prefix}/{path.relative_to(folder).as_posix()}"] = Route(
            body=path.read_bytes(), content_type="text/html; charset=utf-8"
        )


def html_source(server: FeedServer, url: str, html_rules: dict[str, object], **extra: str) -> str:
    import yaml

    # The seed portal is textile trade press: its items pass the scope gate.
    source = {"id": "portal", "name": "Portal", "type": "html", "url": server.url(url),
              "scope": "textile", "timezone": "Asia/Shanghai", "html": html_rules,
              **extra}  # fmt: skip
    return yaml.safe_dump({"sources": [source]}, allow_unicode=True)


def setup(tmp_path: Path, sources: str) -> tuple[AppConfig, Storage]:
    settings = (
        "database: db.sqlite\noutput_dir: out\nbase_url: https://feeds.example.org/\n"
        + TEST_FETCH_SETTINGS
    )
    config = load_config(write_config(tmp_path / "cfg", sources=sources, settings=settings))
    return config, Storage.open_sqlite(config.database_path)


def seed_chain_rules(server: FeedServer, **chain: object) -> dict[str, object]:
    site = server.url("/global/en/")
    return {**SEED_RULES, "site": site, "canonical_host": f"127.0.0.1:{server.port}",
            "chain": {**SEED_RULES["chain"], **chain}}  # type: ignore[dict-item]  # fmt: skip


def test_seed_portal_chain_end_to_end(tmp_path: Path, feed_server: FeedServer) -> None:
    serve_tree(feed_server, SJFZXM)
    config, storage = setup(
        tmp_path, html_source(feed_server, "/global/en/591691.html", seed_chain_rules(feed_server))
    )
    report = run_cycle(config, storage)
    (source,) = report.sources
    assert source.outcome is FetchOutcome.OK, source.error
    # 3 chained articles (591691 -> 591703 -> 591710) + 5 related-reading items.
    assert source.new_items == 8
    fetched = sorted(h.path for h in feed_server.hits if h.path != "/robots.txt")
    assert fetched == ["/global/en/591691.html", "/global/en/591703.html", "/global/en/591710.html"]

    feed = feedparser.parse((config.output_dir / "cashmere-wool.atom").read_bytes())
    (seed,) = [e for e in feed.entries if e.link.endswith("/591691.html")]
    assert seed.published_parsed[:5] == (2022, 11, 24, 10, 25)
    assert "Source: Hebei Daily via <a" in seed.summary
    rss = feedparser.parse((config.output_dir / "clusters-parks.rss").read_bytes())
    titles = [e.title for e in rss.entries]
    assert (
        "Dalangmao: Building World Class Industrial Clusters Through Transformation And Upgrading"
        in titles
    )
    dalang = next(e for e in rss.entries if e.title.startswith("Dalangmao"))
    assert dalang.published_parsed[:5] == (2022, 10, 13, 23, 32)

    # Next poll: known articles are not fetched again; the walk restarts from the newest.
    feed_server.hits.clear()
    again = run_cycle(config, storage, now=datetime.now(UTC) + timedelta(days=2))
    assert again.new_items == 0
    assert again.sources[0].outcome is FetchOutcome.OK
    assert len([h for h in feed_server.hits if h.path != "/robots.txt"]) <= 4
    storage.close()


def test_chain_limits(tmp_path: Path, feed_server: FeedServer) -> None:
    serve_tree(feed_server, SJFZXM)
    config, storage = setup(
        tmp_path,
        html_source(
            feed_server, "/global/en/591691.html", seed_chain_rules(feed_server, max_hops=1)
        ),
    )
    report = run_cycle(config, storage)
    assert report.new_items == 7  # 591691, one hop to 591703, and the 5 related items
    assert "/global/en/591710.html" not in [h.path for h in feed_server.hits]
    storage.close()


TEXGLOBE = {
    "site": "https://www.texglobe.example/",
    "listing": {"item": "ul.newslist li", "title": "a.t", "link": "a.t::attr(href)",
                "date": "em", "summary": ".brief", "next_page": "a.next::attr(href)",
                "max_pages": 3},
    "article": {"date": ".art-info", "body": ".art-body p",
                "publisher": ".art-info", "publisher_pattern": r"Source:\s*(.+)$"},
    "date_formats": ["%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y/%m/%d %H:%M"],
    "date_pattern": r"\d{4}[-/]\d{1,2}[-/]\d{1,2}( \d{1,2}:\d{2})?",
}  # fmt: skip


def texglobe_rules(server: FeedServer, **overrides: object) -> dict[str, object]:
    return {**TEXGLOBE, "site": server.url("/"), **overrides}


def test_listing_pagination_article_step_and_undated_item(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    serve_tree(feed_server, HTML / "texglobe")
    config, storage = setup(
        tmp_path, html_source(feed_server, "/news/list_1.html", texglobe_rules(feed_server))
    )
    start = datetime.now(UTC)
    report = run_cycle(config, storage, now=start)
    (source,) = report.sources
    assert source.outcome is FetchOutcome.OK, source.error
    assert source.new_items == 4  # three on page 1, one on page 2
    paths = [h.path for h in feed_server.hits]
    assert paths.count("/news/list_2.html") == 1
    # The article step read the pages that exist; the missing one cost nothing else.
    assert {"/content/2026-11/88231.html", "/content/2026-11/88219.html"} <= set(paths)

    feed = feedparser.parse((config.output_dir / "trade-policy.atom").read_bytes())
    (exports,) = [e for e in feed.entries if "Exports" in e.title]
    assert exports.published_parsed[:5] == (2026, 11, 24, 2, 2)  # article date, China time
    assert "Source: China Customs News via" in exports.summary
    assert "according to customs data" in exports.summary  # the article body, not the brief
    undated = storage.items_for_topic("asian-markets", 10)  # Xinjiang
    (picking,) = [i for i in undated if i.title.startswith("Xinjiang Cotton")]
    assert picking.published_at == start  # no date anywhere: first-seen time

    # Second poll: nothing new, so no article page is fetched again.
    feed_server.hits.clear()
    run_cycle(config, storage, now=start + timedelta(days=2))
    assert not [h for h in feed_server.hits if h.path.startswith("/content/")]
    storage.close()


def test_robots_txt_is_honoured(tmp_path: Path, feed_server: FeedServer) -> None:
    serve_tree(feed_server, HTML / "texglobe")
    feed_server.routes["/robots.txt"] = Route(
        body=b"User-agent: *\nDisallow: /content/\n", content_type="text/plain"
    )
    config, storage = setup(
        tmp_path, html_source(feed_server, "/news/list_1.html", texglobe_rules(feed_server))
    )
    report = run_cycle(config, storage)
    assert report.sources[0].new_items == 4  # from the listing alone
    assert not [h for h in feed_server.hits if h.path.startswith("/content/")]
    assert [h.path for h in feed_server.hits].count("/robots.txt") == 1  # cached

    feed_server.routes["/robots.txt"] = Route(body=b"User-agent: textile-feeds\nDisallow: /\n")
    ROBOTS._rules.clear()
    refused = run_cycle(config, storage, now=datetime.now(UTC) + timedelta(days=2))
    assert refused.sources[0].outcome is FetchOutcome.FAILED
    assert refused.sources[0].error == "robots.txt disallows this page"
    storage.close()


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/news/textile/1", True),  # the longer Allow wins over the earlier Disallow
        ("/news/other/1", False),
        ("/news/textile.pdf", False),
        ("/archive/2024.html", True),
        ("/archive/2024.pdf", False),  # wildcard and end anchor
    ],
)
def test_robots_txt_longest_match_wins(path: str, allowed: bool) -> None:
    """RFC 9309 2.2.2: the most specific (longest) matching rule wins, whatever its
    order; urllib.robotparser took the first match and refused /news/textile/1."""
    robots = b"User-agent: *\nDisallow: /news/\nAllow: /news/textile/\nDisallow: /*.pdf$\n"

    def fetch(url: str) -> FetchResult:
        return FetchResult(source_id="r", url=url, outcome=FetchOutcome.OK, body=robots)

    assert RobotsCache().allowed(f"https://portal.example{path}", fetch) is allowed


def test_drift_is_flagged_and_stored_items_are_kept(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    serve_tree(feed_server, HTML / "texglobe")
    config, storage = setup(
        tmp_path, html_source(feed_server, "/news/list_1.html", texglobe_rules(feed_server))
    )
    run_cycle(config, storage)
    assert storage.item_count() == 4
    # The portal is redesigned: the list no longer matches.
    feed_server.routes["/news/list_1.html"] = Route(
        body=b"<html><body><div class='cards'><a href='/x.html'>New look</a></div></body></html>",
        content_type="text/html",
    )
    report = run_cycle(config, storage, now=datetime.now(UTC) + timedelta(days=2))
    (source,) = report.sources
    assert source.outcome is FetchOutcome.FAILED
    assert source.error is not None and source.error.startswith(
        "selector problem: listing item selector 'ul.newslist li' matched nothing"
    )
    state = storage.source_states()["portal"]
    assert state.last_error_type == "selector"
    assert storage.item_count() == 4


def test_dates_that_stop_parsing_are_flagged(tmp_path: Path, feed_server: FeedServer) -> None:
    serve_tree(feed_server, HTML / "texglobe")
    broken = texglobe_rules(feed_server, date_formats=["%d.%m.%Y"], fetch_articles=False)
    config, storage = setup(tmp_path, html_source(feed_server, "/news/list_1.html", broken))
    (source,) = run_cycle(config, storage).sources
    assert source.new_items == 4  # items are still taken, dated by first sight
    assert source.error is not None and "no date parsed with formats ['%d.%m.%Y']" in source.error
    storage.close()


def test_html_snapshot_source_reads_linked_pages_from_files(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "cfg"
    shutil.copytree(SJFZXM, folder / "snap")
    html_rules = {**SEED_RULES, "snapshot_root": "snap"}
    sources = (
        "sources:\n  - id: sjfzxm\n    name: Portal\n    type: html\n"
        "    url: snap/global/en/591691.html\n    timezone: Asia/Shanghai\n    html: "
        + __import__("json").dumps(html_rules)
        + "\n"
    )
    config, storage = setup(tmp_path, sources)
    (source,) = run_cycle(config, storage).sources
    assert source.outcome is FetchOutcome.OK, source.error
    assert source.new_items == 8
    links = {
        i.link for t in ("cashmere-wool", "asian-markets") for i in storage.items_for_topic(t, 50)
    }
    assert "https://www.sjfzxm.com/global/en/591703.html" in links  # real URLs, read offline
    storage.close()


def test_a_page_answering_retry_after_stops_the_rest_of_the_crawl(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    serve_tree(feed_server, HTML / "texglobe")
    feed_server.routes["/content/2026-11/88231.html"] = Route(
        status=429, validators=False, headers={"Retry-After": "3600"}
    )
    config, storage = setup(
        tmp_path, html_source(feed_server, "/news/list_1.html", texglobe_rules(feed_server))
    )
    (source,) = run_cycle(config, storage).sources
    assert source.new_items == 4  # the listing's items are kept
    articles = [h.path for h in feed_server.hits if h.path.startswith("/content/")]
    assert articles == ["/content/2026-11/88231.html"]  # nothing after the 429
    storage.close()
