"""Fetcher against a real HTTP server on 127.0.0.1: validators, errors, limits."""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

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
