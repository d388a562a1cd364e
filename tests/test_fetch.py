"""Fetcher against a real HTTP server on 127.0.0.1: validators, errors, limits."""

from __future__ import annotations

import gzip
import itertools
import socket
import time
import zlib
from pathlib import Path

import pytest

from aggregator.config import FetchSettings
from aggregator.fetch import Fetcher, FetchRequest
from aggregator.models import FetchOutcome, Validators
from tests.conftest import FeedServer, Route

BODY = b"<rss version='2.0'><channel><title>t</title></channel></rss>"


def fetcher(**settings: object) -> Fetcher:
    values = {"allow_private_addresses": True, "per_host_delay": 0, **settings}
    return Fetcher(FetchSettings.model_validate(values), "textile-feeds-test/1.0 (+https://x)")


def test_ok_then_conditional_get_gives_304(feed_server: FeedServer) -> None:
    feed_server.routes["/feed"] = Route(body=BODY)
    (first,) = fetcher().fetch_all([FetchRequest(source_id="s", url=feed_server.url("/feed"))])
    assert first.outcome is FetchOutcome.OK
    assert first.status == 200
    assert first.body == BODY
    assert first.validators.etag and first.validators.last_modified
    assert dict(first.headers)["content-type"].startswith("application/rss+xml")

    (second,) = fetcher().fetch_all(
        [FetchRequest(source_id="s", url=feed_server.url("/feed"), validators=first.validators)]
    )
    assert second.outcome is FetchOutcome.NOT_MODIFIED
    assert second.body == b""
    assert second.validators == first.validators
    sent = feed_server.hits[-1].headers
    assert sent["if-none-match"] == first.validators.etag
    assert sent["if-modified-since"] == first.validators.last_modified
    assert sent["user-agent"] == "textile-feeds-test/1.0 (+https://x)"


def test_http_errors_and_network_errors_are_results_not_exceptions(
    feed_server: FeedServer,
) -> None:
    feed_server.routes["/broken"] = Route(body=b"oops", status=500, validators=False)
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    results = fetcher(connect_timeout=2).fetch_all(
        [
            FetchRequest(source_id="a", url=feed_server.url("/broken")),
            FetchRequest(source_id="b", url=feed_server.url("/missing")),
            FetchRequest(source_id="c", url=f"http://127.0.0.1:{dead_port}/feed"),
        ]
    )
    assert [r.source_id for r in results] == ["a", "b", "c"]
    assert all(r.outcome is FetchOutcome.FAILED for r in results)
    assert results[0].error == "HTTP 500 Internal Server Error"
    assert results[1].status == 404
    assert "ConnectError" in (results[2].error or "")


def test_failed_fetch_keeps_previous_validators(feed_server: FeedServer) -> None:
    feed_server.routes["/down"] = Route(status=503, validators=False)
    old = Validators(etag='"abc"', last_modified="Tue, 14 Nov 2023 22:13:20 GMT")
    (result,) = fetcher().fetch_all(
        [FetchRequest(source_id="s", url=feed_server.url("/down"), validators=old)]
    )
    assert result.outcome is FetchOutcome.FAILED
    assert result.validators == old


def test_body_cap_counts_decompressed_bytes(feed_server: FeedServer) -> None:
    bomb = gzip.compress(b"<" * 2_000_000)
    feed_server.routes["/bomb"] = Route(
        body=bomb, validators=False, headers={"Content-Encoding": "gzip"}
    )
    (result,) = fetcher(max_body=100_000).fetch_all(
        [FetchRequest(source_id="s", url=feed_server.url("/bomb"))]
    )
    assert len(bomb) < 100_000  # small on the wire...
    assert result.outcome is FetchOutcome.FAILED  # ...but refused once inflated
    assert result.error == "body larger than 100000 bytes"


def test_total_deadline_cuts_a_dripping_server(feed_server: FeedServer) -> None:
    feed_server.routes["/slow"] = Route(body=b"x" * 200, drip_delay=0.05, validators=False)
    (result,) = fetcher(deadline=1, read_timeout=5).fetch_all(
        [FetchRequest(source_id="s", url=feed_server.url("/slow"))]
    )
    assert result.outcome is FetchOutcome.FAILED
    assert result.error == "no complete response within the 1s deadline"
    assert result.duration < 4


def test_redirects_are_followed(feed_server: FeedServer) -> None:
    feed_server.routes["/old"] = Route(status=301, validators=False, headers={"Location": "/new"})
    feed_server.routes["/new"] = Route(body=BODY)
    (result,) = fetcher().fetch_all([FetchRequest(source_id="s", url=feed_server.url("/old"))])
    assert result.outcome is FetchOutcome.OK
    assert result.final_url == feed_server.url("/new")


def test_local_snapshot_file_and_its_not_modified(tmp_path: Path) -> None:
    snapshot = tmp_path / "feed.xml"
    snapshot.write_bytes(BODY)
    (first,) = fetcher().fetch_all([FetchRequest(source_id="s", url=str(snapshot))])
    assert first.outcome is FetchOutcome.OK
    assert first.body == BODY
    (second,) = fetcher().fetch_all(
        [FetchRequest(source_id="s", url=str(snapshot), validators=first.validators)]
    )
    assert second.outcome is FetchOutcome.NOT_MODIFIED
    (missing,) = fetcher().fetch_all([FetchRequest(source_id="s", url=str(tmp_path / "no"))])
    assert missing.outcome is FetchOutcome.FAILED
    assert "cannot read snapshot" in (missing.error or "")


def test_gzip_bomb_is_never_inflated_past_the_cap() -> None:
    from aggregator.fetch import _BoundedDecoder

    bomb = gzip.compress(b"\0" * 50_000_000)  # 50 MB inflated, ~50 KB on the wire
    decoder = _BoundedDecoder("gzip", 100_000)
    decoder.feed(bomb)  # one chunk holding the whole bomb
    assert decoder.exceeded
    assert len(decoder._body) == 100_001  # stopped one byte past the cap, not at 50 MB


def test_compressed_feeds_are_inflated(feed_server: FeedServer) -> None:
    feed_server.routes["/gz"] = Route(
        body=gzip.compress(BODY), validators=False, headers={"Content-Encoding": "gzip"}
    )
    feed_server.routes["/zlib"] = Route(
        body=zlib.compress(BODY), validators=False, headers={"Content-Encoding": "deflate"}
    )
    feed_server.routes["/br"] = Route(
        body=b"\x0b\x02\x80hello\x03", validators=False, headers={"Content-Encoding": "br"}
    )
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    feed_server.routes["/raw"] = Route(  # deflate without the zlib header, as some servers send
        body=raw.compress(BODY) + raw.flush(),
        validators=False,
        headers={"Content-Encoding": "deflate"},
    )
    gz, deflated, brotli, raw_deflated = fetcher().fetch_all(
        [
            FetchRequest(source_id=p, url=feed_server.url(f"/{p}"))
            for p in ("gz", "zlib", "br", "raw")
        ]
    )
    assert gz.body == BODY and deflated.body == BODY
    assert raw_deflated.outcome is FetchOutcome.OK, raw_deflated.error
    assert raw_deflated.body == BODY
    assert feed_server.hits[0].headers["accept-encoding"] == "gzip, deflate"
    assert brotli.outcome is FetchOutcome.FAILED
    assert brotli.error_type == "decoding"


def test_private_addresses_are_refused_unless_allowed(feed_server: FeedServer) -> None:
    feed_server.routes["/feed"] = Route(body=BODY)
    guarded = Fetcher(FetchSettings(per_host_delay=0), "ua")
    (refused,) = guarded.fetch_all([FetchRequest(source_id="s", url=feed_server.url("/feed"))])
    assert refused.outcome is FetchOutcome.FAILED
    assert refused.error_type == "forbidden_address"
    assert "127.0.0.1" in (refused.error or "")
    assert feed_server.hits == []  # nothing was sent
    (local,) = guarded.fetch_all([FetchRequest(source_id="s", url="http://localhost:1/feed")])
    assert local.error_type == "forbidden_address"


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
        ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
        ("64:ff9b::5db8:d70e", True),  # NAT64 of a public address
        ("64:ff9b:1::7f00:1", False),  # local-use NAT64 prefix
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("2002:5db8:d70e::1", True),  # 6to4 of a public address
        ("::ffff:127.0.0.1", False),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", False),  # Teredo, client 127.0.0.1
        ("2606:4700::1111", True),
        ("93.184.215.14", True),
        ("169.254.169.254", False),
    ],
)
def test_addresses_embedding_a_private_ipv4_are_not_public(address: str, public: bool) -> None:
    """NAT64 and 6to4 addresses that embed a loopback or private IPv4 pass Python's
    ``is_global``; the guard checks the embedded address (found by an outside test)."""
    import asyncio

    import httpx

    from aggregator.fetch import ForbiddenAddressError, _GuardedTransport

    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=BODY)

    transport = _GuardedTransport(httpx.MockTransport(answer))
    host = f"[{address}]" if ":" in address else address

    async def status() -> int | None:
        async with httpx.AsyncClient(transport=transport) as client:
            try:
                return (await client.get(f"http://{host}/feed")).status_code
            except ForbiddenAddressError:
                return None

    assert (asyncio.run(status()) == 200) is public


def test_redirect_into_a_private_address_is_refused(feed_server: FeedServer) -> None:
    """A public URL redirecting to 127.0.0.1 is caught on the hop (checked per request)."""
    import httpx

    from aggregator.fetch import _GuardedTransport

    async def public_then_private(request: httpx.Request) -> httpx.Response:
        return httpx.Response(301, headers={"Location": feed_server.url("/feed")})

    transport = _GuardedTransport(httpx.MockTransport(public_then_private))

    async def run() -> Exception | None:
        async with httpx.AsyncClient(transport=transport, follow_redirects=True) as client:
            try:
                await client.get("http://93.184.215.14/feed")
            except httpx.TransportError as exc:
                return exc
        return None

    import asyncio

    error = asyncio.run(run())
    assert error is not None and "127.0.0.1" in str(error)
    assert feed_server.hits == []


def test_per_host_gap_between_requests(feed_server: FeedServer) -> None:
    for n in range(3):
        feed_server.routes[f"/f{n}"] = Route(body=BODY, validators=False)
    polite = fetcher(per_host_delay=0.3, per_host=4)
    results = polite.fetch_all(
        [FetchRequest(source_id=str(n), url=feed_server.url(f"/f{n}")) for n in range(3)]
    )
    assert all(r.outcome is FetchOutcome.OK for r in results)
    starts = sorted(h.at for h in feed_server.hits)
    assert len(starts) == 3
    # A lower bound only: a busy machine can make gaps longer, never shorter.
    assert all(later - earlier >= 0.25 for earlier, later in itertools.pairwise(starts))


def test_retry_after_defers_the_rest_of_the_host(feed_server: FeedServer) -> None:
    feed_server.routes["/busy"] = Route(status=503, validators=False, headers={"Retry-After": "60"})
    feed_server.routes["/other"] = Route(body=BODY)
    first, second = fetcher(per_host=1).fetch_all(
        [
            FetchRequest(source_id="busy", url=feed_server.url("/busy")),
            FetchRequest(source_id="other", url=feed_server.url("/other")),
        ]
    )
    assert first.host_blocked_until is not None
    assert second.outcome is FetchOutcome.DEFERRED
    assert [h.path for h in feed_server.hits] == ["/busy"]


def test_permanent_and_temporary_redirect_chains(feed_server: FeedServer) -> None:
    feed_server.routes["/a"] = Route(status=301, validators=False, headers={"Location": "/b"})
    feed_server.routes["/b"] = Route(status=308, validators=False, headers={"Location": "/feed"})
    feed_server.routes["/t"] = Route(status=302, validators=False, headers={"Location": "/b"})
    feed_server.routes["/feed"] = Route(body=BODY)
    permanent, temporary = fetcher().fetch_all(
        [
            FetchRequest(source_id="p", url=feed_server.url("/a")),
            FetchRequest(source_id="t", url=feed_server.url("/t")),
        ]
    )
    assert permanent.redirected_to == feed_server.url("/feed")
    assert permanent.redirect_permanent
    assert temporary.redirected_to == feed_server.url("/feed")
    assert not temporary.redirect_permanent


def test_not_modified_and_error_responses_keep_their_connection() -> None:
    """A 304 (or an error page) left unread made httpx close its connection: every
    304 of a cycle opened a new one (2,001 connections for 2,000 feeds in the outside
    benchmark's all-304 cycle, against 34 cold)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    peers: set[tuple[str, int]] = set()

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            peers.add(self.client_address)
            if self.path.startswith("/gone"):
                page = b"<html>not here</html>"
                self.send_response(404)
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            time.sleep(0.02)  # long enough for the requests in flight to overlap
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        requests = [
            FetchRequest(source_id=f"s{n}", url=f"{base}/{'gone' if n % 5 == 0 else 'feed'}/{n}",
                         validators=Validators(etag='"v1"'))
            for n in range(20)
        ]  # fmt: skip
        results = fetcher(concurrency=1).fetch_all(requests)
        one_at_a_time = len(peers)
        # 24 at once, twice over: httpx kept only 20 idle connections by default and
        # opened new ones for the rest of each round.
        peers.clear()
        many = [FetchRequest(source_id=f"m{n}", url=f"{base}/feed/m{n}",
                             validators=Validators(etag='"v1"')) for n in range(96)]  # fmt: skip
        fetcher(concurrency=24, per_host=24).fetch_all(many)
    finally:
        server.shutdown()
        server.server_close()
    outcomes = {r.outcome for r in results}
    assert outcomes == {FetchOutcome.NOT_MODIFIED, FetchOutcome.FAILED}
    assert one_at_a_time == 1, f"{one_at_a_time} connections for 20 requests"
    assert len(peers) <= 24, f"{len(peers)} connections for 96 requests, 24 at a time"
