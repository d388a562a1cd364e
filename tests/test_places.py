"""The gazetteer behind ``place:`` terms: names from GeoNames and ISO 3166, found in
one scan of a text (``places.PlaceIndex``)."""

from __future__ import annotations

import os

import pytest

from aggregator import places
from aggregator.places import place_index


@pytest.mark.parametrize(
    ("text", "code", "names"),
    [
        ("Knitters in Tiruppur raise prices", "asia", ["Tiruppur"]),  # a city
        ("Mills in Punjab's cotton belt", "in", ["Punjab"]),  # a possessive after it
        ("浙江绍兴柯桥的印染企业", "cn", ["浙江", "绍兴"]),  # a province, a city
        ("江苏苏州市的纺织", "cn", ["江苏", "苏州市"]),  # the longest name
        ("A New York showroom", "us", ["New York"]),
        ("Exports from Dhaka.", "bd", ["Dhaka"]),  # a full stop after it
        ("Buyers shift sourcing to Asia", "asia", ["Asia"]),  # a continent
        ("欧洲市场需求疲软", "europe", ["欧洲"]),
    ],
)
def test_places_are_found_by_country_and_region(text: str, code: str, names: list[str]) -> None:
    assert place_index().find(text).get(code) == names


@pytest.mark.parametrize(
    "text",
    [
        "Prices erode margins",  # a verb, not Erode (Tamil Nadu): names are capitalised
        "Yorkshire woollen mills",  # York inside a longer word
        "buyers from South-East Asia",  # not Botswana's South East district
    ],
)
def test_words_that_only_look_like_places_are_not_places(text: str) -> None:
    found = place_index().find(text)
    assert "bw" not in found and "York" not in str(found) and "Erode" not in str(found)


def test_a_continent_is_its_region_and_no_country() -> None:
    assert place_index().find("面向亚洲市场") == {"asia": ["亚洲"]}
    assert place_index().find("Sales in Africa") == {"africa": ["Africa"]}


def test_new_york_is_not_also_york() -> None:
    found = place_index().find("A New York showroom")
    assert "York" not in [name for names in found.values() for name in names]
    assert "gb" not in found


def test_the_names_gathered_in_a_child_are_the_names_gathered_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gazetteer's names are gathered in a child process (reading the datasets
    leaves ~60 MB of fragmented heap behind, which each forked parse worker would
    carry); without a child, in this process."""
    assert places._names_from_a_child() == places.gazetteer_names()

    def no_child() -> None:
        raise OSError("no child processes here")

    monkeypatch.setattr(places, "_names_from_a_child", no_child)
    built = places.place_index.__wrapped__()
    assert built.find("Knitters in Tiruppur")["asia"] == ["Tiruppur"]


def test_what_is_found_does_not_depend_on_string_hashing() -> None:
    """The story facts stored from the places found must be the same in every process
    (workers hash strings each with their own seed)."""
    import subprocess
    import sys

    code = (
        "from aggregator.cluster import ReportFacts; print(ReportFacts.of("
        "'Jiangsu and Sri Lanka mills meet 江苏 buyers', 'Cambodia, Egypt and Shaoxing').encode())"
    )
    outputs = set()
    for seed in range(1, 7):
        environment = {**os.environ, "PYTHONHASHSEED": str(seed)}
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=environment,
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1, outputs
