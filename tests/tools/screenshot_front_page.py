"""Render the offline example's front page in headless Chromium, phone and desktop size.

Not a test (a browser is a heavy dependency for CI): a script for checking the page by
eye. It runs the offline example into a temporary folder and writes PNG screenshots.

    apt-get install chromium          # Debian's package
    python tests/tools/screenshot_front_page.py /tmp/shots
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
SIZES = {"phone": "390,844", "desktop": "1280,1000"}


def main(out: Path) -> None:
    from aggregator.config import load_config
    from aggregator.pipeline import run_cycle
    from aggregator.storage import Storage

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(PROJECT / "config" / "demo", root / "config" / "demo")
        shutil.copy(PROJECT / "config" / "topics.yaml", root / "config" / "topics.yaml")
        config = load_config(root / "config" / "demo")
        storage = Storage.open_sqlite(config.database_path)
        run_cycle(config, storage)
        storage.close()
        page = (config.output_dir / "index.html").as_uri()
        for name, size in SIZES.items():
            target = out / f"front-page-{name}.png"
            subprocess.run(
                [
                    chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    f"--user-data-dir={root / 'chrome'}", f"--window-size={size}",
                    f"--screenshot={target}", page,
                ],
                check=True,
                capture_output=True,
                timeout=120,
            )  # fmt: skip
            print(target)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "front-page-screenshots"))
