"""Shared fixtures: a real HTTP server on 127.0.0.1 and config folders in tmp_path."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests import postgres

DATA = Path(__file__).parent / "data"
#: Tests talk to 127.0.0.1, which production settings refuse; and need no politeness gap.
TEST_FETCH_SETTINGS = "fetch:\n  allow_private_addresses: true\n  per_host_delay: 0\n"
PROJECT = Path(__file__).parent.parent


@dataclass
class Route:
    """What the test server answers on one path."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    #: Send ETag/Last-Modified and answer conditional requests with 304.
    validators: bool = True
    #: Seconds to sleep between body chunks (a slow server).
    drip_delay: float = 0.0
    #: Repeat ``body`` forever with no Content-Length (an endless response).
    endless: bool = False
    #: Seconds before answering (network latency).
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    status: int
    at: float = field(default_factory=time.monotonic)


class FeedServer:
    """A threaded HTTP server on 127.0.0.1 (or another loopback address, so tests can
    have several hosts) serving ``routes``; records every request."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.address = address
        self.routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = server.routes.get(self.path.split("?")[0])
                if route and route.delay:
                    time.sleep(route.delay)
                status = route.status if route else 404
                headers = {k.lower(): v for k, v in self.headers.items()}
                if route and route.validators and status == 200:
                    etag = '"' + hashlib.sha1(route.body).hexdigest()[:16] + '"'
                    modified = formatdate(1_700_000_000, usegmt=True)
                    if headers.get("if-none-match") == etag:
                        status = 304
                server.hits.append(Hit(self.path, headers, status))
                self.send_response(status)
                if route is None:
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if route.validators and route.status == 200:
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", modified)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if status == 304:
                    self.end_headers()
                    return
                self.send_header("Content-Type", route.content_type)
                if route.endless:
                    self.end_headers()
                    try:
                        for _ in range(100_000):  # bounded: ~100 MB at most
                            self.wfile.write(route.body)
                    except OSError:
                        pass  # the client hung up, as it should
                    return
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                if route.drip_delay:
                    try:
                        for i in range(len(route.body)):
                            self.wfile.write(route.body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(route.drip_delay)
                    except OSError:
                        pass
                else:
                    self.wfile.write(route.body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        class Server(ThreadingHTTPServer):
            # The default backlog of 5 drops concurrent connects (then retried after 1 s).
            request_queue_size = 128

        self._httpd = Server((address, 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://{self.address}:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    yield server
    server.stop()


def write_config(
    folder: Path,
    *,
    sources: str,
    topics: str | None = None,
    settings: str | None = None,
    database_url: str | None = None,
) -> Path:
    """A config folder in ``folder``: given YAML texts, defaults for the rest;
    ``database_url`` puts the database on PostgreSQL."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sources.yaml").write_text(sources, encoding="utf-8")
    if topics is None:
        shutil.copy(PROJECT / "config" / "topics.yaml", folder / "topics.yaml")
    else:
        (folder / "topics.yaml").write_text(topics, encoding="utf-8")
    (folder / "settings.yaml").write_text(
        settings
        or "database: state/test.sqlite\noutput_dir: out\nbase_url: https://feeds.example.org/t/\n"
        "poll_interval: 10m\n"
        + TEST_FETCH_SETTINGS
        + (f"database_url: '{database_url}'\n" if database_url else ""),
        encoding="utf-8",
    )
    return folder


@pytest.fixture
def data_dir() -> Path:
    return DATA


# --- PostgreSQL (tests/postgres.py) ------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.Server]:
    yield from postgres.server()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Each test using it runs twice: on SQLite (None: the config's file) and on a
    fresh PostgreSQL database (its URL)."""
    if request.param == "sqlite":
        yield None
        return
    yield from request.getfixturevalue("postgres_server").database()


def skip_without(reason: str) -> None:
    """Skip a test whose outside tool is missing, with the reason; fail instead when
    TEXTILE_FEEDS_REQUIRE_TOOLS is set (CI installs them: a skip there would hide it)."""
    import os

    if os.environ.get("TEXTILE_FEEDS_REQUIRE_TOOLS"):
        pytest.fail(f"required tool missing: {reason}")
    pytest.skip(reason)
