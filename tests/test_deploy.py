"""The packaging files (issue 18): the systemd unit and the Dockerfile in config/deploy/
say what the daemon does (notify, watchdog, health on the port they name)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aggregator.config import load_config
from tests.conftest import skip_without

PROJECT = Path(__file__).resolve().parents[1]
DEPLOY = PROJECT / "config" / "deploy"


def _unit() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / "textile-feeds.service").read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_unit_file_asks_for_readiness_and_a_watchdog() -> None:
    unit = _unit()
    assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]
    assert unit["WatchdogSec"] and unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    (start,) = unit["ExecStart"]
    assert re.search(r"textile-feeds --config \S+ run --listen 127\.0\.0\.1:\d+$", start)
    assert unit["KillSignal"] == ["SIGTERM"]


def test_the_unit_file_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        skip_without("systemd-analyze is not installed here (Debian: systemd)")
    # verify checks that ExecStart's program exists and that User names a user: point
    # them at this machine's.
    program = Path(sys.executable).with_name("textile-feeds")
    text = (DEPLOY / "textile-feeds.service").read_text()
    text = text.replace("/srv/textile-feeds/.venv/bin/textile-feeds", str(program))
    text = re.sub(r"^(User|Group)=.*$", r"\1=root", text, flags=re.MULTILINE)
    unit = tmp_path / "textile-feeds.service"
    unit.write_text(text)
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "textile-feeds.service" not in result.stderr, result.stderr  # no warning about it


def test_the_dockerfile_runs_the_daemon_as_a_user_with_volumes_and_a_healthcheck() -> None:
    docker = (DEPLOY / "Dockerfile").read_text()
    instructions = [
        line for line in re.sub(r"\\\n\s*", " ", docker).splitlines()
        if line and not line.startswith("#")
    ]  # fmt: skip
    kinds = {line.split()[0] for line in instructions}
    assert {"FROM", "USER", "VOLUME", "HEALTHCHECK", "ENTRYPOINT", "CMD"} <= kinds
    assert re.match(r"FROM python:3\.\d+-slim$", instructions[0])
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    (volume,) = [line for line in instructions if line.startswith("VOLUME")]
    for folder in ("config", "var", "feeds_out"):
        assert f'"/srv/textile-feeds/{folder}"' in volume
    (health,) = [line for line in instructions if line.startswith("HEALTHCHECK")]
    (cmd,) = [line for line in instructions if line.startswith("CMD")]
    port = re.search(r"0\.0\.0\.0:(\d+)", cmd)
    assert port and f"127.0.0.1:{port.group(1)}/healthz" in health
    assert f"EXPOSE {port.group(1)}" in instructions
    assert '"textile-feeds", "--config", "/srv/textile-feeds/config"' in docker
    for line in instructions:  # every file it copies is in the repository
        if line.startswith("COPY"):
            for source in line.split()[1:-1]:
                if not source.startswith("--"):
                    assert (PROJECT / source).exists(), source
    # The shipped settings put the database and the feeds in the volumes.
    settings = load_config(PROJECT / "config").settings
    assert settings.database.startswith("../var/") and settings.output_dir == "../feeds_out"


def test_the_image_builds() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "info"], capture_output=True).returncode:
        pytest.skip("no Docker daemon here to build the image with")
    result = subprocess.run(
        [docker, "build", "-q", "-f", str(DEPLOY / "Dockerfile"), str(PROJECT)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
