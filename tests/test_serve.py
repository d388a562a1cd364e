"""``serve`` on a real 127.0.0.1 socket: content types, ETag/304, gzip, HEAD, traversal;
and a real feed reader (lemon24/reader) subscribing to it end to end."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from aggregator.config import load_config
from aggregator.pipeline import run_cycle
from aggregator.serve import create_app
from aggregator.storage import Storage
from tests.conftest import PROJECT


class StatusLog:
    """ASGI middleware remembering (path, status) of every response."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, int]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def record(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, record)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, StatusLog, Path]]:
    root = tmp_path_factory.mktemp("serve")
    shutil.copytree(PROJECT / "config" / "demo", root / "config" / "demo")
    shutil.copy(PROJECT / "config" / "topics.yaml", root / "config" / "topics.yaml")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}/"
    settings = root / "config" / "demo" / "settings.yaml"
    settings.write_text(settings.read_text().replace("http://localhost:8000/", base))
    config = load_config(root / "config" / "demo")
    storage = Storage.open_sqlite(config.database_path)
    run_cycle(config, storage)
    storage.close()
    (root / "secret.txt").write_text("outside the output folder")

    app = StatusLog(create_app(config.output_dir))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield base, app, config.output_dir
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("cashmere-wool.rss", "application/rss+xml"),
        ("cashmere-wool.atom", "application/atom+xml"),
        ("cashmere-wool.json", "application/feed+json"),
        ("topics.opml", "text/x-opml"),
        ("", "text/html"),
    ],
)
def test_content_types(site: tuple[str, StatusLog, Path], path: str, kind: str) -> None:
    base, _, _ = site
    response = httpx.get(base + path)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == kind


def test_etag_and_last_modified_give_304(site: tuple[str, StatusLog, Path]) -> None:
    base, _, _ = site
    first = httpx.get(base + "all.atom")
    assert first.headers["etag"] and first.headers["last-modified"]
    by_etag = httpx.get(base + "all.atom", headers={"If-None-Match": first.headers["etag"]})
    assert by_etag.status_code == 304 and by_etag.content == b""
    by_date = httpx.get(
        base + "all.atom", headers={"If-Modified-Since": first.headers["last-modified"]}
    )
    assert by_date.status_code == 304


def test_gzip_when_asked_and_head(site: tuple[str, StatusLog, Path]) -> None:
    base, _, output = site
    with httpx.Client() as client:
        raw = client.get(base + "all.rss", headers={"Accept-Encoding": "gzip"})
        assert raw.headers["content-encoding"] == "gzip"
        assert raw.content == (output / "all.rss").read_bytes()  # httpx inflated it
        plain = client.get(base + "all.rss", headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        head = client.head(base + "all.rss")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == (output / "all.rss").stat().st_size


@pytest.mark.parametrize(
    "path", ["../secret.txt", "..%2Fsecret.txt", "%2e%2e/secret.txt", "nope.rss"]
)
def test_nothing_outside_the_output_folder(site: tuple[str, StatusLog, Path], path: str) -> None:
    base, _, _ = site
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1].strip("/")))) as s:
        s.sendall(f"GET /{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"404"
    assert b"outside the output folder" not in answer


@pytest.mark.parametrize(
    "name", [".all.rss.k2j4h5g6", ".all.rss.k2j4h5g6.tmp", "README.md", "notes.txt", ".hidden"]
)
def test_only_what_the_publisher_wrote_is_served(
    site: tuple[str, StatusLog, Path], name: str
) -> None:
    """A killed publish's temporary file (a truncated RSS) and anything else put in the
    folder were served with 200; only feeds, the front page and OPML lists are."""
    base, _, output = site
    (output / name).write_text("<rss>truncated")
    try:
        response = httpx.get(base + name)
        assert response.status_code == 404
        assert b"truncated" not in response.content
    finally:
        (output / name).unlink()


def test_a_real_feed_reader_subscribes(site: tuple[str, StatusLog, Path]) -> None:
    """lemon24/reader, a feed-reader library, reads our served Atom and RSS feeds."""
    from reader import make_reader

    base, log, output = site
    reader = make_reader(":memory:")
    for url in (base + "cashmere-wool.atom", base + "clusters-parks.rss"):
        reader.add_feed(url)
    reader.update_feeds()
    entries = list(reader.get_entries())
    published = {
        f.stem: len(re.findall(r"<entry[ >]|<item>", f.read_text(encoding="utf-8")))
        for f in (output / "cashmere-wool.atom", output / "clusters-parks.rss")
    }
    assert len(entries) == sum(published.values()) > 0
    for entry in entries:
        assert entry.title and entry.link and entry.link.startswith("http")
        assert entry.published is not None
    assert any("Qinghe Cashmere Town" in e.title for e in entries)

    log.seen.clear()
    reader.update_feeds(scheduled=False)  # now, not at its schedule: both answer 304
    statuses = [status for path, status in log.seen if path.endswith((".atom", ".rss"))]
    assert statuses == [304, 304]


def test_feeds_say_utf_8_and_how_long_caches_may_keep_them(
    site: tuple[str, StatusLog, Path],
) -> None:
    """Issue 18: application/* types carry no default charset, so say it."""
    base, _, _ = site
    for name in ("all.rss", "all.atom", "all.json", "topics.opml"):
        response = httpx.get(base + name)
        assert response.headers["content-type"].endswith("; charset=utf-8"), name
        assert response.headers["cache-control"] == "public, max-age=300"


def test_gzip_and_identity_representations_have_different_etags(
    site: tuple[str, StatusLog, Path],
) -> None:
    """RFC 9110 8.8.3: a strong ETag names one representation; both shared one."""
    base, _, _ = site
    with httpx.Client() as client:
        gzipped = client.get(base + "all.rss", headers={"Accept-Encoding": "gzip"})
        plain = client.get(base + "all.rss", headers={"Accept-Encoding": "identity"})
        assert gzipped.headers["content-encoding"] == "gzip"
        assert gzipped.headers["etag"] != plain.headers["etag"]
        for answer, encoding in ((gzipped, "gzip"), (plain, "identity")):
            again = client.get(base + "all.rss", headers={
                "Accept-Encoding": encoding, "If-None-Match": answer.headers["etag"]})  # fmt: skip
            assert again.status_code == 304, encoding
            assert again.headers["etag"] == answer.headers["etag"]
