"""A real PostgreSQL server for the tests that run against both engines.

``TEXTILE_FEEDS_TEST_POSTGRES_URL`` names an existing server (its user must be allowed
to create databases); otherwise a throwaway cluster is started from the installed
server binaries (Debian: ``apt-get install postgresql``) in a temporary folder, on a
free port of 127.0.0.1, and removed afterwards. Each test gets a database of its own.

Without a server the PostgreSQL variants are skipped with the reason shown, unless
``TEXTILE_FEEDS_REQUIRE_POSTGRES=1`` (CI sets it): then they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

URL_VARIABLE = "TEXTILE_FEEDS_TEST_POSTGRES_URL"
REQUIRE_VARIABLE = "TEXTILE_FEEDS_REQUIRE_POSTGRES"


def unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"PostgreSQL is required here ({REQUIRE_VARIABLE}=1): {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}")


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Cluster:
    """A throwaway PostgreSQL cluster (initdb, pg_ctl start, pg_ctl stop)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="textile-feeds-pg-"))
        self.port = _free_port()
        # The server refuses to run as root: run it as the postgres user when we are root.
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        subprocess.run([*self.prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> str:
        data = self.folder / "data"
        self._run(str(self.bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                  "-U", "postgres", "-E", "UTF8", "--no-sync")  # fmt: skip
        # Durability is not what these tests are about: no fsync, fast commits.
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")  # fmt: skip
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
                  "-l", str(self.folder / "server.log"), "-w", "start")  # fmt: skip
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data"),
                      "-m", "immediate", "stop")  # fmt: skip
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@dataclass(frozen=True)
class Server:
    """A PostgreSQL server for the tests: its base URL, or why there is none."""

    url: str | None
    reason: str = ""

    def database(self) -> Iterator[str]:
        """A fresh database on it (or the skip/fail of ``unavailable``)."""
        if self.url is None:
            unavailable(self.reason)
        assert self.url is not None
        yield from fresh_database(self.url)


def server() -> Iterator[Server]:
    """The server named by the environment, or a throwaway cluster for the session."""
    if url := os.environ.get(URL_VARIABLE):
        yield Server(url)
        return
    bin_dir = _bin_dir()
    if bin_dir is None:
        yield Server(None, "PostgreSQL server binaries not found (apt-get install postgresql)")
        return
    cluster = Cluster(bin_dir)
    try:
        url = cluster.start()
    except (OSError, subprocess.SubprocessError) as exc:
        log = cluster.folder / "server.log"
        detail = log.read_text()[-2000:] if log.exists() else ""
        cluster.stop()
        yield Server(None, f"could not start a throwaway cluster: {exc} {detail}")
        return
    try:
        yield Server(url)
    finally:
        cluster.stop()


def fresh_database(base_url: str) -> Iterator[str]:
    """A new, empty database on the server for one test; dropped afterwards."""
    import psycopg

    name = f"textile_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{base_url}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base_url}/{name}"
    finally:
        with psycopg.connect(f"{base_url}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
