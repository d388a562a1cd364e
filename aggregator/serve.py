"""``textile-feeds serve``: the output folder over HTTP, for trying things out and for
small installations (production sites usually put nginx in front; see the README).

Starlette's StaticFiles does the careful parts: ETag and Last-Modified with 304
answers, HEAD, and refusing any path outside the folder; GZipMiddleware compresses
for clients that ask. We only add the feed content types Python's mimetypes lacks.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

CONTENT_TYPES = {
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    # Every .json file we publish is a JSON Feed (https://jsonfeed.org/version/1.1).
    ".json": "application/feed+json",
    ".opml": "text/x-opml",
}


def create_app(output_dir: Path) -> Starlette:
    """An ASGI app serving ``output_dir`` (``/`` is index.html)."""
    for extension, kind in CONTENT_TYPES.items():
        mimetypes.add_type(kind, extension)
    return Starlette(
        routes=[Mount("/", app=StaticFiles(directory=output_dir, html=True), name="feeds")],
        middleware=[Middleware(GZipMiddleware, minimum_size=500)],
    )
