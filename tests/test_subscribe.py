"""Adding sources the way people have them (issue 18): ``add`` a feed or a home page
URL, ``import`` an OPML list, ``export`` the sources as OPML."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from lxml import etree

from aggregator.cli import cli
from aggregator.config import load_config
from tests.conftest import FeedServer, Route, write_config

FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Loom Weekly</title>
<link>https://loom.example/</link><description>d</description>
<item><title>Mill expands</title><link>https://loom.example/1</link></item>
</channel></rss>"""
SOURCES = """# Our sources: a comment that must survive.
sources:
  - id: first       # the first one
    name: First
    url: {url}
"""


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _config(tmp_path: Path, server: FeedServer) -> Path:
    server.routes["/first.rss"] = Route(body=FEED.replace(b"Loom Weekly", b"First"))
    return write_config(tmp_path / "cfg", sources=SOURCES.format(url=server.url("/first.rss")))


def test_add_a_home_page_finds_its_advertised_feed_and_keeps_comments(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    folder = _config(tmp_path, feed_server)
    feed_server.routes["/loom.rss"] = Route(body=FEED)
    page = '<html><head><link rel="alternate" type="application/rss+xml" href="/loom.rss">'
    feed_server.routes["/"] = Route(body=page.encode(), content_type="text/html")
    before = (folder / "sources.yaml").read_text()

    code, out, err = _invoke("--config", str(folder), "add", feed_server.url("/"), "--dry-run")
    assert code == 0 and "id: loom-weekly" in out and "1 entries" in err
    assert (folder / "sources.yaml").read_text() == before  # a dry run writes nothing

    code, out, err = _invoke("--config", str(folder), "add", feed_server.url("/"))
    assert code == 0, err
    after = (folder / "sources.yaml").read_text()
    assert after.startswith(before)  # comments and layout kept; the entry appended
    assert "  - id: loom-weekly\n    name: Loom Weekly\n" in after
    config = load_config(folder)
    added = config.sources[-1]
    assert added.url == feed_server.url("/loom.rss") and added.home == "https://loom.example/"

    code, _, err = _invoke("--config", str(folder), "add", feed_server.url("/loom.rss"))
    assert code == 1 and "already source 'loom-weekly'" in err


def test_add_tries_common_feed_paths_and_says_why_when_there_is_none(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    folder = _config(tmp_path, feed_server)
    feed_server.routes["/blog"] = Route(body=b"<html><p>no links</p></html>",
                                        content_type="text/html")  # fmt: skip
    feed_server.routes["/feed.xml"] = Route(body=FEED)
    code, out, _ = _invoke("--config", str(folder), "add", feed_server.url("/blog"), "--dry-run")
    assert code == 0 and f"url: {feed_server.url('/feed.xml')}" in out
    del feed_server.routes["/feed.xml"]
    before = (folder / "sources.yaml").read_text()
    code, _, err = _invoke("--config", str(folder), "add", feed_server.url("/blog"))
    assert code == 1 and "no feed found" in err
    assert (folder / "sources.yaml").read_text() == before


def test_import_an_opml_list_reports_duplicates_and_failures(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    folder = _config(tmp_path, feed_server)
    feed_server.routes["/loom.rss"] = Route(body=FEED)
    feed_server.routes["/zh.rss"] = Route(body=FEED.replace(b"Loom Weekly", "纺织快讯".encode()))
    opml = tmp_path / "subscriptions.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head><title>mine</title></head><body>'
        '<outline text="Textiles">'
        f'<outline type="rss" text="Loom" xmlUrl="{feed_server.url("/loom.rss")}"/>'
        f'<outline type="rss" text="Chinese" xmlUrl="{feed_server.url("/zh.rss")}"/>'
        "</outline>"
        f'<outline type="rss" text="Known" xmlUrl="{feed_server.url("/first.rss")}"/>'
        f'<outline type="rss" text="Dead" xmlUrl="{feed_server.url("/gone.rss")}"/>'
        "</body></opml>"
    )
    code, _, err = _invoke("--config", str(folder), "import", str(opml))
    assert code == 1  # one failed
    assert "4 feeds in subscriptions.opml: 2 added, 1 duplicates, 1 failed" in err
    assert "already source 'first'" in err and "HTTP 404" in err
    config = load_config(folder)
    assert [s.id for s in config.sources] == ["first", "loom-weekly", "127-0-0-1"]
    assert config.sources[2].name == "纺织快讯"

    # Export writes them back as OPML that the import reads again.
    exported = tmp_path / "out.opml"
    code, _, _ = _invoke("--config", str(folder), "export", "-o", str(exported))
    assert code == 0
    urls = [o.get("xmlUrl") for o in etree.parse(str(exported)).iter("outline")]
    assert urls == [s.url for s in config.sources]
    code, _, err = _invoke("--config", str(folder), "import", str(exported), "--dry-run")
    assert code == 0 and "0 to add, 3 duplicates, 0 failed" in err


def test_an_entry_the_configuration_refuses_leaves_the_file_as_it_was(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    folder = _config(tmp_path, feed_server)
    feed_server.routes["/loom.rss"] = Route(body=FEED)
    before = (folder / "sources.yaml").read_text()
    code, _, err = _invoke("--config", str(folder), "add", feed_server.url("/loom.rss"),
                           "--id", "Not An Id")  # fmt: skip
    assert code == 1 and "would not load" in err
    assert (folder / "sources.yaml").read_text() == before
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
