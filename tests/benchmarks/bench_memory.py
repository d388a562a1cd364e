"""Memory over repeated cycles (not a test): one long-lived process, as the daemon runs.

    python tests/benchmarks/bench_memory.py --feeds 500 --cycles 20

Serves the feeds of ``bench_cycle`` and runs a cold cycle, then CYCLES steady cycles in
the same process with the same parse workers (as the daemon keeps them): each round a
different tenth of the feeds gains 2 new items, so every cycle parses, stores and
publishes. After each cycle it prints the resident memory (VmRSS) of the process and
the summed PSS of the process and its workers (not the feed server), and at the end the
growth between the first and last five steady cycles.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import mean

sys.path.insert(0, str(Path(__file__).parent))

from bench_cycle import _tree_rss, feed_url, start_server, textile_feeds_config


def _rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS"))
    return int(kib) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=500)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--latency", type=float, default=0.05)
    options = parser.parse_args()

    import os

    from aggregator.config import load_config
    from aggregator.pipeline import run_cycle
    from aggregator.prepare import Workers
    from aggregator.storage import Storage

    server, ports, phase = start_server(options.feeds, options.latency)
    rows: list[tuple[int, int, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(textile_feeds_config(Path(tmp), ports, options.feeds))
        storage = Storage.for_config(config)
        workers = Workers()
        print(f"{'cycle':>5} {'new items':>9} {'wall s':>7} {'RSS MiB':>8} {'all procs MiB':>14}")
        for round_ in range(options.cycles + 1):
            phase.value = round_
            # The server builds a round's feeds on its first request: not our time.
            urllib.request.urlopen(feed_url(ports, 0)).read()
            began = time.perf_counter()
            report = run_cycle(config, storage, workers=workers)
            wall = time.perf_counter() - began
            new = sum(s.new_items for s in report.sources)
            tree = _tree_rss(os.getpid(), exclude=frozenset({server.pid})) / 2**20
            row = (round_, new, wall, _rss_mib(), tree)
            rows.append(row)
            print(f"{row[0]:>5} {row[1]:>9} {row[2]:>7.2f} {row[3]:>8.0f} {row[4]:>14.0f}")
        workers.close()
        storage.close()
    server.terminate()
    steady = rows[1:]
    if len(steady) >= 10:
        first, last = steady[:5], steady[-5:]
        for label, column in (("RSS", 3), ("all procs", 4)):
            before, after = mean(r[column] for r in first), mean(r[column] for r in last)
            print(f"{label}: first 5 steady cycles {before:.0f} MiB, last 5 {after:.0f} MiB, "
                  f"growth {after - before:+.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
