"""``textile-feeds serve``: the output folder over HTTP, for trying things out and for
small installations (production sites usually put nginx in front; see the README).

Starlette's StaticFiles does the careful parts: ETag and Last-Modified with 304
answers, HEAD, and refusing any path outside the folder; GZipMiddleware compresses
for clients that ask. We add the feed content types Python's mimetypes lacks, and
answer only for the files the publisher writes (``publish.is_published_name``): never
a dotfile (a killed publish's temporary file), a README or anything else put there.
"""

from __future__ import annotations

import mimetypes
from datetime import UTC, datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator.config import AppConfig
from aggregator.publish import is_published_name

CONTENT_TYPES = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    # Every .json file we publish is a JSON Feed (https://jsonfeed.org/version/1.1).
    ".json": "application/feed+json",
    ".opml": "text/x-opml",
}


#: The media types that are text without saying so: they get "; charset=utf-8".
_UTF8 = frozenset({".rss", ".atom", ".json", ".opml"})
#: What a gzip representation's ETag ends with (RFC 9110 8.8.3: another
#: representation, another strong validator).
GZIP_ETAG_SUFFIX = '-gzip"'


class PublishedFiles(StaticFiles):
    """StaticFiles limited to the top-level files the publisher writes, with the
    charset and caching headers feed readers and caches look for."""

    def __init__(self, *, directory: Path, max_age: int) -> None:
        super().__init__(directory=directory)
        self.cache_control = f"public, max-age={max_age}"

    async def get_response(self, path: str, scope: Scope) -> Response:
        name = "index.html" if path in ("", ".") else path
        if not is_published_name(name):
            return Response("Not Found", status_code=404, media_type="text/plain")
        response = await super().get_response(name, scope)
        suffix = Path(name).suffix
        if suffix in _UTF8 and response.status_code == 200:
            response.headers["content-type"] = f"{CONTENT_TYPES[suffix]}; charset=utf-8"
        response.headers["cache-control"] = self.cache_control
        return response


class GzipETags:
    """Outside GZipMiddleware: a gzipped answer's ETag gets GZIP_ETAG_SUFFIX, and an
    If-None-Match naming it is checked against the file's own ETag, so a client that
    stored the gzip representation still gets its 304 (with the gzip ETag)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asked_gzip = False
        headers = []
        for key, value in scope["headers"]:
            if key == b"if-none-match" and GZIP_ETAG_SUFFIX.encode() in value:
                asked_gzip = True
                value = value.replace(GZIP_ETAG_SUFFIX.encode(), b'"')
            headers.append((key, value))
        scope = dict(scope, headers=headers)

        async def send_tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                found = MutableHeaders(raw=message["headers"])
                gzipped = found.get("content-encoding") == "gzip"
                not_modified = message["status"] == 304 and asked_gzip
                etag = found.get("etag")
                if etag and etag.endswith('"') and (gzipped or not_modified):
                    found["etag"] = etag[:-1] + GZIP_ETAG_SUFFIX
            await send(message)

        await self.app(scope, receive, send_tagged)


def create_app(
    output_dir: Path, *, max_age: int = 300, config: AppConfig | None = None
) -> Starlette:
    """An ASGI app serving what the publisher wrote to ``output_dir`` (``/`` is
    index.html); every other path is 404. Caches may keep an answer ``max_age``
    seconds (the CLI passes half the poll interval: feeds change once a cycle). With a
    ``config``, also ``/healthz`` and ``/metrics`` (``operations``) from its database."""
    for extension, kind in CONTENT_TYPES.items():
        mimetypes.add_type(kind, extension)
    files = PublishedFiles(directory=output_dir, max_age=max_age)
    routes: list[BaseRoute] = []
    if config is not None:
        routes += _operations_routes(config)
    routes.append(Mount("/", app=files, name="feeds"))
    return Starlette(
        routes=routes,
        middleware=[Middleware(GzipETags), Middleware(GZipMiddleware, minimum_size=500)],
    )


def _operations_routes(config: AppConfig) -> list[BaseRoute]:
    from aggregator.operations import CONTENT_TYPE, Metrics, check_health
    from aggregator.storage import Storage

    def storage() -> Storage | None:
        """The database, opened on first use; never created (a config that never ran
        has none: health says so)."""
        if metrics.storage is None and (
            config.database_url is not None or config.database_path.exists()
        ):
            metrics.storage = Storage.for_config(config)
        return metrics.storage

    metrics = Metrics(config)

    def healthz(_request: Request) -> Response:
        health = check_health(config, storage(), datetime.now(UTC))
        headers = {"cache-control": "no-store"}
        return JSONResponse(health.facts, status_code=200 if health.ok else 503, headers=headers)

    def metrics_page(_request: Request) -> Response:
        storage()
        return Response(metrics.exposition(), media_type=CONTENT_TYPE,
                        headers={"cache-control": "no-store"})  # fmt: skip

    return [Route("/healthz", healthz), Route("/metrics", metrics_page)]
