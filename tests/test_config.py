"""Config validation: every mistake is reported as file:line: field: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.errors import ConfigError
from tests.conftest import PROJECT, write_config

GOOD_SOURCES = """\
sources:
  - id: alpha
    name: Alpha News
    url: https://alpha.example.com/feed
  - id: beta
    name: Beta
    url: https://beta.example.com/rss
"""

GOOD_TOPICS = """\
topics:
  - slug: cotton
    title: Cotton
    include: [cotton]
"""


def problems(folder: Path) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_config(folder)
    return [str(p) for p in raised.value.problems]


@pytest.mark.parametrize("folder", ["config", "config/demo"])
def test_shipped_configs_are_valid(folder: str) -> None:
    config = load_config(PROJECT / folder)
    assert len(config.topics) >= 8
    assert len(config.sources) >= (15 if folder == "config" else 6)


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    folder = write_config(tmp_path / "cfg", sources=GOOD_SOURCES, topics=GOOD_TOPICS)
    config = load_config(folder)
    assert config.database_path == (folder / "state" / "test.sqlite").resolve()
    assert config.settings.poll_interval == 600
    assert config.settings.fetch.max_body == 10 * 1024 * 1024
    assert config.interval_of(config.sources[0]) == 600


def test_wrong_type_names_file_line_and_field(tmp_path: Path) -> None:
    topics = """\
topics:
  - slug: cotton
    title: Cotton
    include: [cotton]
  - slug: wool
    title: Wool
    include: [wool]
  - slug: parks
    title: Parks
    include: industrial park
"""
    folder = write_config(tmp_path / "cfg", sources=GOOD_SOURCES, topics=topics)
    assert problems(folder) == [
        f"{folder / 'topics.yaml'}:10: topics[2].include: expected a list of strings"
    ]


def test_every_problem_in_every_file_is_listed(tmp_path: Path) -> None:
    sources = """\
sources:
  - id: alpha
    name: Alpha
    url: htp://alpha.example.com/feed
  - id: alpha
    name: Alpha again
    url: https://alpha.example.com/other
    intervall: 5m
  - id: gamma
    url: snapshots/missing.xml
    name: Gamma
"""
    topics = """\
topics:
  - slug: cotton
    title: Cotton
    include: []
  - slug: Cotton Prices
    title: Prices
    include: [price]
    sources: [alpah]
  - slug: cotton
    title: Cotton again
    include: [cotton, ""]
"""
    settings = "poll_interval: often\nitems_per_feed: many\nbase_url: feeds.example.org\n"
    folder = write_config(tmp_path / "cfg", sources=sources, topics=topics, settings=settings)
    found = problems(folder)
    s, t, st = (str(folder / name) for name in ("sources.yaml", "topics.yaml", "settings.yaml"))
    assert f"{st}:1: poll_interval: expected a duration such as 90, 30s, 15m, 2h or 1d" in found
    assert f"{st}:2: items_per_feed: expected a whole number" in found
    assert f"{st}:3: base_url: expected an http(s) URL, got 'feeds.example.org'" in found
    assert (
        f"{s}:4: sources[0].url: expected an http(s) URL, got 'htp://alpha.example.com/feed'"
        in found
    )
    assert f"{s}:8: sources[1].intervall: unknown key (did you mean 'interval'?)" in found
    empty = "empty topic: give it include terms, a match expression or rule sets"
    assert f"{t}:2: topics[0]: {empty}" in found
    assert any(p.startswith(f"{t}:5: topics[1].slug: expected lower-case letters") for p in found)
    assert f"{t}:11: topics[2].include[1]: terms must not be empty strings" in found
    assert len(found) == 8, found


def test_cross_file_and_duplicate_checks(tmp_path: Path) -> None:
    sources = (
        GOOD_SOURCES
        + """\
  - id: alpha
    name: Alpha twice
    url: snapshots/missing.xml
"""
    )
    topics = (
        GOOD_TOPICS
        + """\
    sources: [alpah]
  - slug: cotton
    title: Cotton again
    include: [cotton]
"""
    )
    folder = write_config(tmp_path / "cfg", sources=sources, topics=topics)
    found = problems(folder)
    s, t = str(folder / "sources.yaml"), str(folder / "topics.yaml")
    assert f"{s}:8: sources[2].id: duplicate id 'alpha' (first used at line 2)" in found
    assert any(p.startswith(f"{s}:10: sources[2].url: snapshot file not found") for p in found)
    assert (
        f"{t}:5: topics[0].sources[0]: unknown source id 'alpah' (did you mean 'alpha'?)" in found
    )
    assert f"{t}:6: topics[1].slug: duplicate slug 'cotton' (first used at line 2)" in found


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    folder = write_config(
        tmp_path / "cfg", sources=GOOD_SOURCES, topics="topics:\n  - slug: a\n    include: [x\n"
    )
    (found,) = problems(folder)
    assert found.startswith(f"{folder / 'topics.yaml'}:")
    assert "YAML syntax error" in found


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    topics = "topics:\n  - slug: a\n    title: A\n    include: [x]\n    include: [y]\n"
    folder = write_config(tmp_path / "cfg", sources=GOOD_SOURCES, topics=topics)
    assert problems(folder) == [f"{folder / 'topics.yaml'}:5: topics[0].include: duplicate key"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "file is empty"),
        ("- just\n- a list\n", "expected a mapping at the top of the file"),
        ("sources: []\n", "sources: must not be empty"),
        ("sources:\n  - id: a\n", "sources[0].name: required field is missing"),
    ],
)
def test_shape_errors(tmp_path: Path, text: str, message: str) -> None:
    folder = write_config(tmp_path / "cfg", sources=text, topics=GOOD_TOPICS)
    found = problems(folder)
    assert any(message in p for p in found), found
    assert all(p.startswith(str(folder / "sources.yaml")) for p in found)


def test_missing_folder_and_files(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope") == [f"{tmp_path / 'nope'}: config folder not found"]
    (tmp_path / "empty").mkdir()
    assert sorted(problems(tmp_path / "empty")) == [
        f"{tmp_path / 'empty' / 'sources.yaml'}: file not found",
        f"{tmp_path / 'empty' / 'topics.yaml'}: file not found",
    ]


def test_local_snapshot_sources_resolve_against_the_config_folder(tmp_path: Path) -> None:
    sources = "sources:\n  - id: snap\n    name: Snap\n    url: snaps/feed.xml\n"
    folder = write_config(tmp_path / "cfg", sources=sources, topics=GOOD_TOPICS)
    (folder / "snaps").mkdir()
    (folder / "snaps" / "feed.xml").write_text("<rss/>")
    config = load_config(folder)
    assert config.sources[0].is_local
    assert config.resolve(config.sources[0].url) == (folder / "snaps" / "feed.xml").resolve()


def test_unknown_timezone(tmp_path: Path) -> None:
    sources = GOOD_SOURCES + "    timezone: China/Beijing\n"
    folder = write_config(tmp_path / "cfg", sources=sources, topics=GOOD_TOPICS)
    (found,) = problems(folder)
    assert found.startswith(f"{folder / 'sources.yaml'}:8: sources[1].timezone: unknown time zone")


def alias_bomb(levels: int) -> str:
    """Nested anchors, each level nine aliases of the one before: 9**levels values."""
    lines = ['a0: &a0 ["lol"]']
    for n in range(1, levels + 1):
        lines.append(f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]")
    return "\n".join([*lines, f"sources: *a{levels}", ""])


@pytest.mark.parametrize("levels", [7, 9])
def test_alias_bomb_is_refused_in_bounded_time_and_memory(tmp_path: Path, levels: int) -> None:
    """A 284-byte sources.yaml of 7 nested alias levels took 25 s and 2.4 GB to check;
    9 levels ran out of a 23 GB machine. Now: file:line, exit 2, at once, in a process
    capped at 1 GB of address space."""
    import resource
    import subprocess
    import sys

    folder = write_config(tmp_path / "cfg", sources=alias_bomb(levels), topics=GOOD_TOPICS)

    def cap_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    done = subprocess.run(
        [sys.executable, "-m", "aggregator", "--config", str(folder), "check"],
        capture_output=True, text=True, timeout=60, preexec_fn=cap_memory,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    # The first anchor over budget: a5 (line 6) expands to 125,479 values.
    assert f"{folder / 'sources.yaml'}:6: aliases here expand to more than" in done.stderr


def test_deep_nesting_is_refused_with_a_line(tmp_path: Path) -> None:
    """900 nested lists passed LibYAML's own limit and crashed the reader with a
    RecursionError (a traceback, exit 0)."""
    sources = "sources:\n  " + "[" * 900 + "]" * 900 + "\n"
    folder = write_config(tmp_path / "cfg", sources=sources, topics=GOOD_TOPICS)
    (found,) = problems(folder)
    assert found.startswith(f"{folder / 'sources.yaml'}:2: values nested more than 64 levels")


def test_a_few_shared_blocks_are_still_fine(tmp_path: Path) -> None:
    sources = (
        "defaults: &defaults {language: en, interval: 1h}\n"
        "sources:\n"
        "  - {<<: *defaults, id: alpha, name: Alpha, url: https://alpha.example.com/feed}\n"
        "  - {<<: *defaults, id: beta, name: Beta, url: https://beta.example.com/feed}\n"
    )
    folder = write_config(tmp_path / "cfg", sources=sources, topics=GOOD_TOPICS)
    with pytest.raises(ConfigError) as raised:  # "defaults" is no key of sources.yaml...
        load_config(folder)
    assert all("alias" not in str(p) for p in raised.value.problems)  # ...but no bomb
