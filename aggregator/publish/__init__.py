"""Publishing: every feed in three formats, a front page, OPML lists, WebSub pings.

``publish_site`` takes the feeds to publish (the pipeline reads their items from
storage) and writes ``<slug>.rss``, ``<slug>.atom``, ``<slug>.json`` for each, then
``index.html``, ``topics.opml``, ``all.opml`` and ``sources.opml``. A file is written only when its
bytes change (atomically: temporary file, fsync, rename), so web servers keep their
ETag and a failed run never leaves a half-written or emptied feed behind.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aggregator.config import FEED_FORMATS, SITE_FILES, AppConfig
from aggregator.errors import PublishError
from aggregator.models import StoredItem
from aggregator.publish.feeds import FAVICON, FORMATS, ICON, FeedSpec, feed_url, render
from aggregator.publish.site import (
    render_all_opml,
    render_index,
    render_sources_opml,
    render_topics_opml,
)

__all__ = [
    "FeedSpec",
    "PublishResult",
    "fair_selection",
    "is_published_name",
    "publish_site",
    "write_if_changed",
]

log = logging.getLogger(__name__)

#: The files the publisher writes: ``serve`` answers for these names and no others.
_FEED_FILE_RE = re.compile(
    rf"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.(?:{'|'.join(map(re.escape, FEED_FORMATS))})"
)
#: A temporary file of ``write_if_changed``: ".<name>.<mkstemp's 8 characters>", with
#: ".tmp" since this version. One is left behind only when the process was killed.
_TEMPORARY_RE = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}(?:\.tmp)?")
#: A temporary file younger than this may belong to a publisher still writing it.
STALE_TEMPORARY_SECONDS = 60.0


def is_published_name(name: str) -> bool:
    """Whether ``name`` is one the publisher writes (feeds, front page, OPML lists)."""
    return name in SITE_FILES or _FEED_FILE_RE.fullmatch(name) is not None


def remove_stale_temporaries(output_dir: Path, *, now: float | None = None) -> int:
    """Delete temporary files that a killed publish left in ``output_dir`` (they were
    never renamed into place, so nothing refers to them). Returns how many went."""
    now = time.time() if now is None else now
    removed = 0
    try:
        candidates = list(output_dir.iterdir())
    except OSError:
        return 0  # no folder yet: nothing left behind
    for path in candidates:
        found = _TEMPORARY_RE.fullmatch(path.name)
        if found is None or not is_published_name(found["name"]):
            continue
        try:
            if now - path.stat().st_mtime >= STALE_TEMPORARY_SECONDS:
                path.unlink()
                removed += 1
        except OSError as exc:
            log.warning("cannot remove a stale temporary file path=%s: %s", path, exc)
    if removed:
        log.info("removed stale temporary files count=%d dir=%s", removed, output_dir)
    return removed


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishResult:
    written: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    errors: tuple[str, ...] = ()
    #: Public URLs of the feeds whose files changed (for WebSub pings).
    changed_feed_urls: tuple[str, ...] = ()


def fair_selection(
    candidates: Iterable[StoredItem], *, limit: int, per_source_cap: int
) -> tuple[StoredItem, ...]:
    """The newest ``limit`` items, at most ``per_source_cap`` from any one source.

    ``candidates`` come newest first; the cap counts an item against the source that
    first carried it."""
    chosen: list[StoredItem] = []
    per_source: dict[str, int] = {}
    for item in candidates:
        source = item.sources[0].source_id if item.sources else ""
        if per_source_cap and per_source.get(source, 0) >= per_source_cap:
            continue
        per_source[source] = per_source.get(source, 0) + 1
        chosen.append(item)
        if len(chosen) >= limit:
            break
    return tuple(chosen)


def publish_site(config: AppConfig, feeds: Sequence[FeedSpec]) -> PublishResult:
    """Write every feed in every format, then the front page and the OPML lists.
    First removes the temporary files of a publish that was killed half-way."""
    settings = config.settings
    remove_stale_temporaries(config.output_dir)
    titles = {t.slug: t.title for t in config.topics}
    outputs: list[tuple[Path, bytes, str | None]] = []
    for spec in feeds:
        for extension in FORMATS:
            path = config.output_dir / f"{spec.slug}.{extension}"
            data = render(spec, extension, settings, titles)
            outputs.append((path, data, feed_url(settings, spec.slug, extension)))
    outputs.append((config.output_dir / "index.html", render_index(config, feeds), None))
    outputs.append((config.output_dir / "topics.opml", render_topics_opml(config, feeds), None))
    outputs.append((config.output_dir / "all.opml", render_all_opml(config, feeds), None))
    outputs.append((config.output_dir / "sources.opml", render_sources_opml(config), None))
    for name in (ICON, FAVICON):
        image = resources.files("aggregator.publish").joinpath("static", name).read_bytes()
        outputs.append((config.output_dir / name, image, None))

    written: list[Path] = []
    unchanged: list[Path] = []
    errors: list[str] = []
    changed: list[str] = []
    for path, data, url in outputs:
        try:
            if write_if_changed(path, data):
                written.append(path)
                if url:
                    changed.append(url)
            else:
                unchanged.append(path)
        except PublishError as exc:  # e.g. a full disk: the old file stays as it was
            errors.append(str(exc))
    return PublishResult(
        written=tuple(written),
        unchanged=tuple(unchanged),
        errors=tuple(errors),
        changed_feed_urls=tuple(changed),
    )


def write_if_changed(path: Path, data: bytes, *, mode: int = 0o644) -> bool:
    """Atomically replace ``path`` with ``data`` unless it already holds exactly that.

    Returns True when the file was written. On any error the old file is intact and
    the temporary file is removed. ``mode``: the new file's permissions (published
    files are world-readable: web servers must read them)."""
    try:
        if path.is_file() and path.read_bytes() == data:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
        )
    except OSError as exc:
        raise PublishError(f"cannot write {path}: {exc}") from exc
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)  # mkstemp makes 0600
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise PublishError(f"cannot write {path}: {exc}") from exc
    return True
