"""Throughput benchmark (not a test): polling cycles over N synthetic textile feeds.

    python tests/benchmarks/bench_cycle.py --feeds 500 --latency 0.05

Generates N realistic feeds (RSS 2.0, Atom and JSON Feed; English and Chinese; HTML
descriptions; 20-150 KB; a share of stories reposted by a second source), serves them
from a separate process on 16 loopback addresses (127.0.0.1-16) with the given latency and ETag/Last-Modified
support, then runs each case in a fresh process and prints wall seconds, CPU seconds
(of the measured process only, not the server) and peak memory:

  textile-feeds  cold      a cycle into an empty database
  textile-feeds  steady    10% of feeds gained 2 items; the rest answer 304
  textile-feeds  all-304   nothing changed
  textile-feeds  publish   publishing every topic from the database
  reader         cold / all-304   lemon24/reader update_feeds(workers=16), if installed
  floor          cold / all-304   httpx.AsyncClient, 32 requests at once, no parsing

and the ratios of textile-feeds to reader and to the floor, measured in the same run.
The feeds share 16 hosts, so the per-host limit is raised to the global one (reader has
none); a real deployment spreads sources over many more hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing
import random
import resource
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parents[2]


def _vocabulary() -> tuple[dict[str, int], dict[str, int]]:
    """Word (English) and character (Chinese) frequencies of the project's hand-written
    textile news texts: sampled by frequency, the generated text has a realistic,
    Zipf-like vocabulary (common words common, most words rare). A few dozen words
    drawn uniformly would make every item look like every other one to the
    near-duplicate index and hit topic terms with every word."""
    import re
    from collections import Counter

    import yaml

    data = PROJECT / "tests" / "data"
    texts: list[str] = []
    for item in yaml.safe_load((data / "topics-eval.yaml").read_text())["items"]:
        texts += [str(item.get("title", "")), str(item.get("summary", ""))]
    for pair in yaml.safe_load((data / "dedupe-pairs.yaml").read_text())["pairs"]:
        texts += [str(pair[side][key]) for side in "ab" for key in ("title", "summary")]
    joined = " ".join(texts)
    words = Counter(w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'-]*", joined))
    characters = Counter(re.findall(r"[\u4e00-\u9fff]", joined))
    return dict(words), dict(characters)


EN_WORDS, ZH_WORDS = _vocabulary()
_EN = (list(EN_WORDS), list(EN_WORDS.values()))
_ZH = (list(ZH_WORDS), list(ZH_WORDS.values()))


# --- the feeds ----------------------------------------------------------------------------


def _words(rng: random.Random, zh: bool, count: int) -> str:
    population, weights = _ZH if zh else _EN
    return ("" if zh else " ").join(rng.choices(population, weights, k=count))


def make_items(rng: random.Random, feed: int, count: int, start: datetime) -> list[dict[str, Any]]:
    zh = feed % 5 == 0
    items = []
    for n in range(count):
        paragraphs = "".join(
            f"<p>{_words(rng, zh, rng.randint(30, 120))}</p>" for _ in range(rng.randint(1, 6))
        )
        items.append({
            "id": f"{feed}-{n}",
            "link": f"https://portal{feed}.example.com/news/{feed}-{n}.html",
            "title": _words(rng, zh, 10 if zh else 9).capitalize(),
            "html": paragraphs + '<p><img src="/img/x.jpg"> <a href="/more">more</a></p>',
            "published": start - timedelta(minutes=37 * n + feed),
        })  # fmt: skip
    return items


def render(feed: int, items: list[dict[str, Any]]) -> tuple[bytes, str]:
    kind = ("rss", "atom", "json")[feed % 3]
    if kind == "json":
        doc = {"version": "https://jsonfeed.org/version/1.1", "title": f"Portal {feed}",
               "items": [{"id": i["id"], "url": i["link"], "title": i["title"],
                          "content_html": i["html"], "date_published": i["published"].isoformat()}
                         for i in items]}  # fmt: skip
        return json.dumps(doc).encode(), "application/feed+json"
    esc = lambda t: t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # noqa: E731
    if kind == "rss":
        body = "".join(
            f"<item><title>{esc(i['title'])}</title><link>{i['link']}</link><guid>{i['id']}</guid>"
            f"<pubDate>{format_datetime(i['published'])}</pubDate>"
            f"<description><![CDATA[{i['html']}]]></description></item>"
            for i in items
        )
        doc = f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Portal {feed}</title><link>https://portal{feed}.example.com/</link><description>news</description>{body}</channel></rss>'
        return doc.encode(), "application/rss+xml"
    body = "".join(
        f'<entry><title>{esc(i["title"])}</title><link href="{i["link"]}"/><id>urn:x:{i["id"]}</id>'
        f'<updated>{i["published"].isoformat()}</updated><content type="html">{esc(i["html"])}</content></entry>'
        for i in items
    )
    doc = f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Portal {feed}</title><id>urn:portal:{feed}</id><updated>2026-11-26T00:00:00Z</updated>{body}</feed>'
    return doc.encode(), "application/atom+xml"


def build_feeds(count: int, steady: bool | int) -> dict[str, tuple[bytes, str]]:
    """Path -> (body, content type). ``steady`` (or a round number from 1): a tenth of
    the feeds have 2 new items on top, different ones and a different tenth each round."""
    rng = random.Random(1)
    start = datetime(2026, 11, 25, tzinfo=UTC)
    feeds: dict[int, list[dict[str, Any]]] = {
        feed: make_items(rng, feed, 45, start) for feed in range(count)
    }
    for feed in range(0, count, 7):  # a share of stories reposted by a neighbour portal
        neighbour = (feed + 1) % count
        feeds[neighbour][3] = dict(feeds[feed][2], id=f"{neighbour}-repost")
    round_ = int(steady)
    if round_:
        for feed in range((round_ - 1) % 10, count, 10):
            fresh = make_items(random.Random(feed + 10**6 * round_), feed, 2, start)
            for n, item in enumerate(fresh):
                item.update(id=f"{feed}-r{round_}-{n}", published=start + timedelta(hours=2 * round_),
                            link=f"https://portal{feed}.example.com/news/{feed}-r{round_}-{n}.html")  # fmt: skip
            feeds[feed] = fresh + feeds[feed]
    return {f"/feed/{feed}": render(feed, items) for feed, items in feeds.items()}


# --- the server (its own process, so its CPU is not counted) ------------------------------


#: Hosts the feeds are spread over: per-host politeness and worker leases are per host.
HOSTS = 16


#: The outside benchmark's generator of template-written trade news (issue 16).
GEN_FEEDS = PROJECT.parent / "shared" / "bench" / "gen_feeds.py"


def generate_template_feeds(count: int, out: Path) -> Path:
    """``GEN_FEEDS``'s feeds, in ``out/0`` (cold) and ``out/1`` (a tick later: a fifth
    of the feeds gained 1-3 items): daily quotes, press releases and reposts written
    from templates, where same-template reports are common."""
    import subprocess
    import sys

    # Recent items, inside the default retention and feed window.
    base = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0).isoformat()

    def generate(tick: int, into: Path) -> None:
        command = [sys.executable, str(GEN_FEEDS), "-n", str(count), "-o", str(into),
                   "--base-date", base]  # fmt: skip
        subprocess.run([*command, "--tick", str(tick)], check=True, stdout=subprocess.DEVNULL)

    generate(0, out / "0")
    shutil.copytree(out / "0", out / "1")
    generate(1, out / "1")  # rewrites the feeds that changed
    return out


def template_feeds(corpus: Path, round_: int) -> dict[str, tuple[bytes, str]]:
    folder = corpus / str(min(round_, 1)) / "feeds"
    feeds = {}
    for n, path in enumerate(sorted(folder.glob("feed-*.xml"))):
        body = path.read_bytes()
        atom = b"<feed" in body[:400]
        feeds[f"/feed/{n}"] = (body, "application/atom+xml" if atom else "application/rss+xml")
    return feeds


def serve(
    port_out: Any, count: int, latency: float, phase: Any, corpus: Path | None = None
) -> None:
    """``phase``: the round the feeds are in (0 cold, 1 steady, 2... further rounds).
    ``corpus``: template feeds made by ``generate_template_feeds`` instead of Zipf text."""

    def build(round_: int) -> dict[str, tuple[bytes, str]]:
        if corpus is not None:
            return template_feeds(corpus, round_)
        return build_feeds(count, steady=round_)

    bodies = {0: build(0), 1: build(1)}
    building = threading.Lock()

    def feeds_of(round_: int) -> dict[str, tuple[bytes, str]]:
        with building:
            if round_ not in bodies:
                bodies.clear()  # one later round at a time: memory stays bounded
                bodies[round_] = build(round_)
            return bodies[round_]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            time.sleep(latency)
            found = feeds_of(int(phase.value)).get(self.path)
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body, kind = found
            etag = '"' + hashlib.md5(body).hexdigest() + '"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", "Wed, 25 Nov 2026 00:00:00 GMT")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 512
        daemon_threads = True

    servers = [Server((f"127.0.0.{n + 1}", 0), Handler) for n in range(HOSTS)]
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    port_out.put([server.server_address[1] for server in servers])
    servers[0].serve_forever()


def start_server(
    count: int, latency: float, corpus: Path | None = None
) -> tuple[Any, list[int], Any]:
    """The feed server in its own process: (process, its ports, the shared round number
    its feeds are in; set it to change them)."""
    context = multiprocessing.get_context("spawn")
    port_queue: Any = context.Queue()
    phase: Any = context.Value("i", 0)
    server = context.Process(
        target=serve, args=(port_queue, count, latency, phase, corpus), daemon=True
    )
    server.start()
    return server, port_queue.get(), phase


def feed_url(ports: list[int], n: int) -> str:
    """Feed n lives on one of HOSTS loopback addresses (127.0.0.1 to 127.0.0.HOSTS)."""
    return f"http://127.0.0.{n % HOSTS + 1}:{ports[n % HOSTS]}/feed/{n}"


# --- the cases, each in a fresh process ----------------------------------------------------


def textile_feeds_config(root: Path, ports: list[int], count: int) -> Path:
    folder = root / "config"
    folder.mkdir(parents=True, exist_ok=True)
    sources = "sources:\n" + "".join(
        f"  - {{id: portal-{n}, name: Portal {n}, url: '{feed_url(ports, n)}'}}\n"
        for n in range(count)
    )
    (folder / "sources.yaml").write_text(sources)
    shutil.copy(PROJECT / "config" / "topics.yaml", folder / "topics.yaml")
    (folder / "settings.yaml").write_text(
        "database: state/db.sqlite\noutput_dir: out\npoll_interval: 1h\n"
        "fetch: {concurrency: 32, per_host: 32, per_host_delay: 0, allow_private_addresses: true,"
        " max_body: 5MB}\n"
    )
    return folder


def case_textile_feeds(folder: str, publish_only: bool) -> None:
    from aggregator.config import load_config
    from aggregator.pipeline import publish_stored, run_cycle
    from aggregator.storage import Storage

    config = load_config(folder)
    storage = Storage.open_sqlite(config.database_path)
    if publish_only:
        publish_stored(config, storage)
    else:
        run_cycle(config, storage)
    storage.close()


def case_workers(folder: str, server_url: str, database: str, count: int) -> None:
    """``count`` worker processes (``run --once`` on PostgreSQL) sharing one cold cycle."""
    import os
    import subprocess
    import sys

    import psycopg

    with psycopg.connect(f"{server_url}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
    env = dict(os.environ, TEXTILE_FEEDS_DATABASE_URL=f"{server_url}/{database}")
    command = [sys.executable, "-m", "aggregator", "--config", folder, "run", "--once"]
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL) for _ in range(count)]
    for run in runs:
        if run.wait() != 0:
            raise SystemExit(f"a worker failed with exit status {run.returncode}")


def case_reader(db: str, ports: list[int], count: int, add: bool) -> None:
    from reader import make_reader

    reader = make_reader(db)
    if add:
        for n in range(count):
            reader.add_feed(feed_url(ports, n), exist_ok=True)
    reader.update_feeds(workers=16, scheduled=False)
    reader.close()


def case_floor(ports: list[int], count: int, etags: str | None) -> None:
    import httpx

    known: dict[str, str] = (
        json.loads(Path(etags).read_text()) if etags and Path(etags).exists() else {}
    )

    async def run() -> dict[str, str]:
        slots = asyncio.Semaphore(32)
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=32)) as client:

            async def one(n: int) -> tuple[str, str]:
                url = feed_url(ports, n)
                headers = {"If-None-Match": known[url]} if url in known else {}
                async with slots:
                    response = await client.get(url, headers=headers)
                return url, response.headers.get("etag", "")

            return dict(await asyncio.gather(*(one(n) for n in range(count))))

    found = asyncio.run(run())
    if etags:
        Path(etags).write_text(json.dumps(found))


def _measured(target: Callable[..., None], args: tuple[Any, ...], out: Any) -> None:
    import multiprocessing.forkserver

    began_wall = time.perf_counter()
    began = resource.getrusage(resource.RUSAGE_SELF)
    target(*args)
    wall = time.perf_counter() - began_wall
    # Parse workers are children of multiprocessing's fork server, which reaps them:
    # once it stops, their CPU time and peak memory show up as our children's.
    multiprocessing.forkserver._forkserver._stop()  # type: ignore[attr-defined]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = usage.ru_utime - began.ru_utime + usage.ru_stime - began.ru_stime
    workers = children.ru_utime + children.ru_stime
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent through fork
    # and exec, so a spawned process would report at least the benchmark's own size.
    status = Path("/proc/self/status").read_text()
    peak_kib = int(
        next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
    )
    out.put((wall, cpu + workers, cpu, peak_kib / 1024))


def _tree_rss(root: int, exclude: frozenset[int] = frozenset()) -> int:
    """Memory of a process and all its descendants: the sum of their proportional set
    sizes (PSS), so pages that forked workers share are counted once, not per worker.
    Processes in ``exclude`` (and theirs) are not counted."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree - exclude
        tree |= found
        grew = bool(found)
    total_kib = 0
    for pid in tree:
        try:
            rollup = (Path("/proc") / str(pid) / "smaps_rollup").read_text()
        except OSError:
            continue
        total_kib += sum(
            int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")
        )
    return total_kib * 1024


def measure(target: Callable[..., None], *args: Any) -> tuple[float, float, float, float, float]:
    """Wall seconds, CPU seconds (all processes, and the measured one alone), peak MiB of
    the measured process, and the peak MiB of it and every process it started (worker
    processes, fork server) together, sampled every 0.1 s, of ``target(*args)`` in a
    fresh process."""
    queue: Any = multiprocessing.get_context("spawn").Queue()
    process = multiprocessing.get_context("spawn").Process(
        target=_measured, args=(target, args, queue)
    )
    process.start()
    assert process.pid is not None
    peak_tree = 0
    while queue.empty() and process.is_alive():
        peak_tree = max(peak_tree, _tree_rss(process.pid))
        time.sleep(0.1)
    wall, cpu, main_cpu, peak = queue.get()
    process.join()
    return wall, cpu, main_cpu, peak, peak_tree / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--skip-reader", action="store_true")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="also run the cold cycle with 1 and 3 workers on this PostgreSQL server "
        "(postgresql://user@host:port, allowed to create databases)",
    )
    parser.add_argument(
        "--corpus",
        choices=("zipf", "template"),
        default="zipf",
        help="zipf: word soup from the project's texts; template: ../shared/bench/"
        "gen_feeds.py's template-written trade news (reposts and same-template reports), "
        "with the stories scored against its truth.jsonl",
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = None
        if options.corpus == "template":
            corpus = generate_template_feeds(options.feeds, root / "corpus")
        server, ports, phase = start_server(options.feeds, options.latency, corpus)
        sizes = [len(b) for b, _ in (
            template_feeds(corpus, 0) if corpus else build_feeds(options.feeds, steady=False)
        ).values()]  # fmt: skip
        print(f"{options.feeds} {options.corpus} feeds, {sum(sizes) / len(sizes) / 1024:.0f} KB on average "
              f"({min(sizes) // 1024}-{max(sizes) // 1024} KB), latency {options.latency * 1000:.0f} ms")  # fmt: skip
        rows = _run_cases(options, root, ports, phase, corpus)
        server.terminate()
    _print_rows(rows)


def _run_cases(
    options: argparse.Namespace, root: Path, ports: list[int], phase: Any, corpus: Path | None
) -> dict[str, tuple[float, float, float, float, float]]:
    rows: dict[str, tuple[float, float, float, float, float]] = {}
    folder = str(textile_feeds_config(root, ports, options.feeds))
    etags = str(root / "etags.json")
    rows["floor cold"] = measure(case_floor, ports, options.feeds, etags)
    rows["floor all-304"] = measure(case_floor, ports, options.feeds, etags)
    rows["textile-feeds cold"] = measure(case_textile_feeds, folder, False)
    if corpus is not None:
        print(stories_against_truth(Path(folder) / "state" / "db.sqlite", corpus / "0"))
    phase.value = 1  # 10% of the feeds gain two items
    rows["textile-feeds steady"] = measure(case_textile_feeds, folder, False)
    rows["textile-feeds all-304"] = measure(case_textile_feeds, folder, False)
    rows["textile-feeds publish"] = measure(case_textile_feeds, folder, True)
    phase.value = 0
    if options.postgres:
        # Parsing inline in each worker: what scales here is the workers themselves.
        settings = Path(folder) / "settings.yaml"
        # Small batches: 16 hosts must spread over the workers (a real network has
        # thousands of hosts for the default batch of 16).
        settings.write_text(settings.read_text() + "parse_workers: 1\nworkers: {batch: 2}\n")
        for count in (1, 3):
            rows[f"{count} worker(s) cold"] = measure(
                case_workers, folder, options.postgres, f"bench_workers_{count}", count
            )
    if not options.skip_reader:
        try:
            import reader  # noqa: F401
        except ImportError:
            print("lemon24/reader is not installed: pip install reader")
        else:
            db = str(root / "reader.sqlite")
            rows["reader cold"] = measure(case_reader, db, ports, options.feeds, True)
            phase.value = 1
            rows["reader steady"] = measure(case_reader, db, ports, options.feeds, False)
            rows["reader all-304"] = measure(case_reader, db, ports, options.feeds, False)
    return rows


def stories_against_truth(database: Path, corpus: Path) -> str:
    """Pairs of items stored as one story against the generator's clusters."""
    import itertools
    import sqlite3
    from collections import defaultdict

    from aggregator.normalize import canonical_url

    with sqlite3.connect(database) as db:
        story_of = dict(db.execute("SELECT link, story_id FROM items WHERE link IS NOT NULL"))
    truth = [json.loads(line) for line in (corpus / "truth.jsonl").read_text().splitlines()]
    cluster_of = {canonical_url(t["link"]): t["cluster"] for t in truth}
    clusters: dict[int, set[str]] = defaultdict(set)
    for link, cluster in cluster_of.items():
        if cluster is not None and link:
            clusters[cluster].add(link)
    found = missed = 0
    for links in clusters.values():
        for a, b in itertools.combinations(sorted(links), 2):
            together = story_of.get(a) is not None and story_of.get(a) == story_of.get(b)
            found, missed = found + together, missed + (not together)
    stories: dict[int, list[str]] = defaultdict(list)
    for link, story in story_of.items():
        stories[story].append(link)
    pairs = wrong = 0
    for links in stories.values():
        for a, b in itertools.combinations(links, 2):
            pairs += 1
            wrong += cluster_of.get(a) is None or cluster_of.get(a) != cluster_of.get(b)
    return (
        f"stories against the generator's truth: precision {(pairs - wrong) / max(pairs, 1):.3f}"
        f" recall {found / max(found + missed, 1):.3f} (pairs stored together {pairs}, "
        f"largest story {max(map(len, stories.values()), default=0)} reports)"
    )


def _print_rows(rows: dict[str, tuple[float, float, float, float, float]]) -> None:
    print(f"{'case':<22} {'wall s':>7} {'CPU s':>7} {'main CPU':>9} {'peak MiB':>9} {'all procs MiB':>14}")  # fmt: skip
    for name, (wall, cpu, main_cpu, peak, tree) in rows.items():
        print(f"{name:<22} {wall:>7.2f} {cpu:>7.2f} {main_cpu:>9.2f} {peak:>9.0f} {tree:>14.0f}")  # fmt: skip

    def ratio(a: str, b: str, column: int, label: str) -> None:
        if a in rows and b in rows:
            print(f"{label}: {rows[b][column] / rows[a][column]:.2f}x")

    ratio("textile-feeds cold", "reader cold", 0, "cold wall, reader / textile-feeds")
    ratio("textile-feeds cold", "reader cold", 1, "cold CPU, reader / textile-feeds")
    ratio("textile-feeds steady", "reader steady", 1, "steady CPU, reader / textile-feeds")
    ratio("textile-feeds all-304", "reader all-304", 0, "all-304 wall, reader / textile-feeds")
    ratio("floor all-304", "textile-feeds all-304", 0, "all-304 wall, textile-feeds / floor")
    ratio("floor cold", "textile-feeds cold", 0, "cold wall, textile-feeds / floor")


if __name__ == "__main__":
    main()
