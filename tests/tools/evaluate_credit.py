"""How many reports that name their original publisher are credited to it in every
published format, and how well the stored stories agree with the labelled pairs, on
the story pairs written outside the project (../shared/eval).

    python tests/tools/evaluate_credit.py [STORIES.jsonl]

The pairs' items are served as RSS snapshot feeds, one feed per portal, the way the
set's README says: a publisher named in the text stays in the summary; one named as
``dc:source`` or RSS ``<source>`` becomes that element. One ``run --once`` cycle
stores and publishes them. An item is credited in a format when the entry of its story
(the entry whose link, or whose "Also reported by" links, is the item's) says
"<publisher> via" in RSS, Atom, JSON Feed and on the front page.
"""

from __future__ import annotations

import html
import json
import random
import sys
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

PROJECT = Path(__file__).resolve().parents[2]
STORIES = PROJECT.parent / "shared" / "eval" / "stories.jsonl"
FORMATS = ("rss", "atom", "json", "html")
_TAG = __import__("re").compile(r"<[^>]+>")


@dataclass(frozen=True)
class CreditScores:
    named: int
    #: format -> items credited in it
    credited: dict[str, int]
    #: format -> items whose story's entry it shows (the front page shows the newest)
    present: dict[str, int]
    credited_everywhere: int
    misses: tuple[str, ...]
    #: Pairs in one language: (true positives, false positives, false negatives), and
    #: zh<->en pairs found of those labelled one story.
    pairs: tuple[int, int, int] = (0, 0, 0)
    cross_lingual: tuple[int, int] = (0, 0)
    #: The stored stories: each a set of item links.
    stories: frozenset[frozenset[str]] = frozenset()


def _items(path: Path) -> list[dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        pair = json.loads(line)
        for side in ("a", "b"):
            seen.setdefault(pair[side]["link"], pair[side])
    return list(seen.values())


def _feed(items: list[dict[str, str]]) -> bytes:
    entries = []
    for item in items:
        extra = ""
        if item.get("origin_in") == "dc:source":
            extra = f"<dc:source>{escape(item['origin'])}</dc:source>"
        elif item.get("origin_in") == "rss-source":
            extra = f'<source url="https://publisher.example/rss">{escape(item["origin"])}</source>'
        published = format_datetime(datetime.fromisoformat(item["published"]).astimezone(UTC))
        entries.append(
            f"<item><title>{escape(item['title'])}</title><link>{escape(item['link'])}</link>"
            f"<description>{escape(item['summary'])}</description>"
            f"<pubDate>{published}</pubDate>{extra}</item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>portal</title>'
        "<link>https://portal.example/</link><description>d</description>"
        + "".join(entries)
        + "</channel></rss>"
    ).encode()


def measure(root: Path, stories: Path = STORIES, *, seed: int | None = None) -> CreditScores:
    """Build the feeds under ``root``, run one cycle, and count the credits. With a
    ``seed``, the sources are polled, and each feed lists its items, in a shuffled
    order (the stories must not depend on it)."""
    stories_path = stories
    import feedparser

    from aggregator.config import load_config
    from aggregator.pipeline import run_cycle
    from aggregator.storage import Storage

    items = _items(stories)
    by_source: dict[str, list[dict[str, str]]] = defaultdict(list)
    for item in items:
        by_source[item["source"]].append(item)
    folder = root / "config"
    (folder / "snapshots").mkdir(parents=True, exist_ok=True)
    sources = ["sources:"]
    portals = sorted(by_source.items())
    if seed is not None:
        shuffled = random.Random(seed)
        shuffled.shuffle(portals)
        for _, members in portals:
            shuffled.shuffle(members)
    for number, (name, members) in enumerate(portals):
        (folder / "snapshots" / f"s{number}.rss").write_bytes(_feed(members))
        sources.append(f"  - {{id: s{number}, name: {json.dumps(name)}, "
                       f"url: snapshots/s{number}.rss, scope: textile}}")  # fmt: skip
    (folder / "sources.yaml").write_text("\n".join(sources) + "\n", encoding="utf-8")
    (folder / "topics.yaml").write_text(
        (PROJECT / "config" / "topics.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    (folder / "settings.yaml").write_text(
        "database: state/db.sqlite\noutput_dir: out\nitems_per_feed: 1000\n"
        "per_source_cap: 0\nretention: 3650d\nfeed_window: 3650d\ncluster:\n  window: 3650d\n",
        encoding="utf-8",
    )
    config = load_config(folder)
    storage = Storage.open_sqlite(config.database_path)
    try:
        run_cycle(config, storage, now=datetime(2026, 12, 1, tzinfo=UTC))
        stories = _stories_of(config.database_path)
    finally:
        storage.close()
    pairs, cross = _pair_scores(stories_file=stories_path, story_of=stories)
    out = config.output_dir
    texts: dict[str, list[tuple[set[str], str]]] = {f: [] for f in FORMATS}
    for kind in ("rss", "atom"):
        for entry in feedparser.parse((out / f"all.{kind}").read_bytes()).entries:
            links = {entry.get("link", "")} | {
                link.get("href", "") for link in entry.get("links", ())
            }
            body = html.unescape(entry.get("summary", ""))
            texts[kind].append((links, body))
    for entry in json.loads((out / "all.json").read_text(encoding="utf-8"))["items"]:
        text = (
            html.unescape(entry.get("content_html", ""))
            + " "
            + json.dumps(entry.get("authors", []), ensure_ascii=False)
        )
        texts["json"].append(({entry.get("url", "")} | _links_in(text), text))
    page = html.unescape((out / "index.html").read_text(encoding="utf-8"))
    texts["html"] = [({link}, chunk) for link, chunk in _page_entries(page)]
    credited = dict.fromkeys(FORMATS, 0)
    present = dict.fromkeys(FORMATS, 0)
    everywhere = 0
    misses = []
    named = [item for item in items if item.get("origin")]
    for item in named:
        # Credited: "X via Portal", or the story's entry is X's own report.
        credits = (f"{item['origin']} via", f"Source: {item['origin']}")
        ok = []
        for kind in FORMATS:
            entries = [body for links, body in texts[kind]
                       if item["link"] in links or item["link"] in body]  # fmt: skip
            if not entries:
                # The front page shows the newest few a topic; the feeds show all.
                ok.append(kind == "html")
                continue
            present[kind] += 1
            shown = [_TAG.sub("", body) for body in entries]  # the text a reader sees
            found = any(c in body for body in shown for c in credits) or (
                kind == "html" and any(item["origin"] in body for body in entries)
            )
            credited[kind] += found
            ok.append(found)
        if all(ok):
            everywhere += 1
        else:
            missing = [k for k, good in zip(FORMATS, ok, strict=True) if not good]
            misses.append(f"{item['origin']!r} ({item['origin_in']}) {item['title'][:60]}: "
                          f"not in {', '.join(missing)}")  # fmt: skip
    grouped: dict[int, set[str]] = defaultdict(set)
    for link, story_id in stories.items():
        grouped[story_id].add(link)
    return CreditScores(
        len(named), credited, present, everywhere, tuple(misses), pairs=pairs,
        cross_lingual=cross, stories=frozenset(frozenset(g) for g in grouped.values()),
    )  # fmt: skip


def _stories_of(database: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(database) as db:
        return dict(db.execute("SELECT link, story_id FROM items WHERE link IS NOT NULL"))


def _pair_scores(
    stories_file: Path, story_of: dict[str, int]
) -> tuple[tuple[int, int, int], tuple[int, int]]:
    """Same-story decisions of the pipeline (one story id) against the pairs' labels."""
    from aggregator.cluster import chinese
    from aggregator.normalize import canonical_url

    tp = fp = fn = 0
    cross_found = cross_labelled = 0
    for line in stories_file.read_text(encoding="utf-8").splitlines():
        pair = json.loads(line)
        a, b = (story_of.get(canonical_url(pair[s]["link"]) or "") for s in ("a", "b"))
        together = a is not None and a == b
        if chinese(pair["a"]["title"]) != chinese(pair["b"]["title"]):
            if pair["duplicate"]:
                cross_labelled += 1
                cross_found += together
            continue
        if together and pair["duplicate"]:
            tp += 1
        elif together:
            fp += 1
        elif pair["duplicate"]:
            fn += 1
    return (tp, fp, fn), (cross_found, cross_labelled)


def _links_in(text: str) -> set[str]:
    import re

    return set(re.findall(r'href="([^"]+)"', text))


def _page_entries(page: str) -> list[tuple[str, str]]:
    """(link, text) of each entry on the front page."""
    import re

    return [
        (m.group(1), m.group(0))
        for m in re.finditer(r'<a href="([^"]+)"[^>]*>.*?</li>', page, re.S)
    ]


def main() -> None:
    import tempfile

    stories = Path(sys.argv[1]) if len(sys.argv) > 1 else STORIES
    with tempfile.TemporaryDirectory() as root:
        scores = measure(Path(root), stories)
    print(f"items naming their original publisher: {scores.named}")
    for kind in FORMATS:
        shown = scores.present[kind]
        print(f"  credited in {kind:<5} {scores.credited[kind]:4d} of {shown} shown "
              f"({scores.credited[kind] / max(shown, 1):.0%})")  # fmt: skip
    print(f"credited in every format: {scores.credited_everywhere} "
          f"({scores.credited_everywhere / max(scores.named, 1):.0%})")  # fmt: skip
    for miss in scores.misses:
        print("  miss:", miss)
    tp, fp, fn = scores.pairs
    print(f"stories, pairs in one language: precision {tp / max(tp + fp, 1):.3f} "
          f"recall {tp / max(tp + fn, 1):.3f} (tp {tp}, fp {fp}, fn {fn})")  # fmt: skip
    print(f"stories, zh<->en pairs found: {scores.cross_lingual[0]} of {scores.cross_lingual[1]}")


if __name__ == "__main__":
    main()
