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
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from aggregator.publish import is_published_name

CONTENT_TYPES = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    # Every .json file we publish is a JSON Feed (https://jsonfeed.org/version/1.1).
    ".json": "application/feed+json",
    ".opml": "text/x-opml",
}


class PublishedFiles(StaticFiles):
    """StaticFiles limited to the top-level files the publisher writes."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        name = "index.html" if path in ("", ".") else path
        if not is_published_name(name):
            return Response("Not Found", status_code=404, media_type="text/plain")
        return await super().get_response(name, scope)


def create_app(output_dir: Path) -> Starlette:
    """An ASGI app serving what the publisher wrote to ``output_dir`` (``/`` is
    index.html); every other path is 404."""
    for extension, kind in CONTENT_TYPES.items():
        mimetypes.add_type(kind, extension)
    return Starlette(
        routes=[Mount("/", app=PublishedFiles(directory=output_dir), name="feeds")],
        middleware=[Middleware(GZipMiddleware, minimum_size=500)],
    )
