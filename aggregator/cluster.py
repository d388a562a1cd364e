"""The evidence that two reports are one story: word pairs and figures.

Exact dedupe (same canonical link or permalink guid, ``dedupe.py``) stays the first and
cheapest test. An item that is new by those keys is compared with the items of the
last ``cluster.window`` days: its normalized title and text become shingles (word
pairs for Latin text, character pairs for Chinese) and the figures it states;
``story_evidence``/``judge`` apply the editorial guide's test to two reports. Short
texts need stronger evidence: below ``short_text`` shingles the threshold rises by
``short_text_margin``.

The MinHash and the band index are in ``minhash.py``; the story stage (candidates,
the decision against stories, merges, the primary) in ``stories.py``. Pure.
"""

from __future__ import annotations

import itertools
import re
import sys
import unicodedata
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import timedelta

_CJK = "\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+", re.UNICODE)
#: Words portals add around a repost; they say nothing about the story.
BOILERPLATE = frozenset(
    [
        "source",
        "via",
        "reporter",
        "editor",
        "editors",
        "copyright",
        "all",
        "rights",
        "reserved",
        "click",
        "subscribe",
        "read",
        "more",
        "disclaimer",
        "reprint",
        "translated",
        "news",
        "the",
        "a",
        "an",
        "of",
        "in",
        "on",
        "to",
        "and",
        "for",
        "with",
        "at",
        "by",
        "from",
        "is",
        "are",
        "was",
        "were",
        "be",
        "has",
        "have",
        "had",
        "it",
        "its",
        "this",
        "that",
        "as",
    ]
)


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    #: Jaccard similarity of the shingle sets from which two items are one story.
    threshold: float = 0.45
    #: Only items published this close together can be one story.
    window: timedelta = timedelta(days=14)
    #: Texts with fewer shingles than this need threshold + short_text_margin.
    short_text: int = 12
    short_text_margin: float = 0.2


def tokens(text: str) -> list[str]:
    """Lower-cased words (Latin) and single characters (CJK), boilerplate dropped."""
    normalized = unicodedata.normalize("NFKC", text).lower()
    return [t for t in _TOKEN.findall(normalized) if t not in BOILERPLATE]


def shingles(title: str, text: str) -> frozenset[str]:
    """Adjacent token pairs of title and text: word pairs, or character pairs in Chinese."""
    words = tokens(f"{title} . {text}")
    pairs = {f"{a} {b}" for a, b in itertools.pairwise(words)}
    return frozenset(pairs or words)


def jaccard(a: frozenset[Hashable], b: frozenset[Hashable]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def threshold_for(
    a: frozenset[Hashable], b: frozenset[Hashable], settings: ClusterSettings
) -> float:
    """Short texts share shingles by chance more easily: ask them for more."""
    if min(len(a), len(b)) < settings.short_text:
        return min(0.95, settings.threshold + settings.short_text_margin)
    return settings.threshold


def same_story(
    a: frozenset[Hashable], b: frozenset[Hashable], settings: ClusterSettings
) -> tuple[bool, float]:
    similarity = jaccard(a, b)
    return similarity >= threshold_for(a, b, settings), similarity


#: Figures: amounts, prices, percentages, counts, years ("13,985", "2.4", "2025").
_FIGURE = re.compile(r"(?<![A-Za-z0-9.])\d+(?:,\d{3})*(?:\.\d+)?")
#: Figures two reports must share, and the share of the smaller set, to be one story
#: by their figures when their words differ (machine translation, a rewrite).
FIGURES_AGREE_MIN = 3
FIGURES_AGREE_SHARE = 0.75
#: Below this share of the smaller figure set in common, word overlap is not enough:
#: another day's quote or another year's edition in the same template.
FIGURES_DISAGREE_SHARE = 0.5
#: Word overlap the figures still need to make two reports one story.
FIGURES_MIN_SIMILARITY = 0.05
#: Figures a Chinese and an English report must share to be one story (units and
#: scales change in translation: 亿 against billion, so some figures always differ).
FIGURES_CROSS_LINGUAL_MIN = 4


def chinese(text: str) -> bool:
    """Whether a text is mostly Chinese (more CJK characters than Latin letters)."""
    cjk = sum(1 for c in text if "\u4e00" <= c <= "\u9fff")
    return cjk > sum(1 for c in text if c.isascii() and c.isalpha())


def significant_digits(figure: str) -> str:
    """A figure without its decimal point and outer zeros: "117.8", "11.78" and "1178"
    -> "1178"; "12,000" -> "12" (what survives a change of unit or scale)."""
    return figure.replace(".", "").strip("0") or "0"


def scale_free(found: frozenset[str]) -> frozenset[str]:
    """The significant digits of figures with two or more of them (single digits match
    by chance)."""
    return frozenset(d for f in found if len(d := significant_digits(f)) >= 2)


def figures(title: str, text: str) -> frozenset[str]:
    """The numbers a report states, normalized ("13,985" -> "13985"), single digits
    left out (they are counts in passing: "two mills")."""
    found = _FIGURE.findall(unicodedata.normalize("NFKC", f"{title} {text}"))
    return frozenset(f.replace(",", "") for f in found if len(f.replace(",", "")) > 1)


FIGURES_DIFFER = "words alike, figures differ"


@dataclass(frozen=True, slots=True)
class StoryEvidence:
    """Why two reports are, or are not, one story."""

    same: bool
    similarity: float
    #: Figures both state / figures of the report stating fewer.
    shared_figures: int = 0
    fewer_figures: int = 0
    reason: str = ""


def story_evidence(
    a: frozenset[Hashable],
    b: frozenset[Hashable],
    figures_a: frozenset[str],
    figures_b: frozenset[str],
    settings: ClusterSettings,
    *,
    cross_lingual: bool = False,
) -> StoryEvidence:
    """The editorial guide's test of one story, from word pairs (``shingles``) and the
    figures each report states (``figures``): reports in one template with other
    figures or dates are different stories, however alike their words; the same
    figures in other words (a rewrite, machine-translated English) are one story."""
    return judge(
        jaccard(a, b), threshold_for(a, b, settings), figures_a, figures_b,
        cross_lingual=cross_lingual,
    )  # fmt: skip


def judge(
    similarity: float,
    threshold: float,
    figures_a: frozenset[str],
    figures_b: frozenset[str],
    *,
    cross_lingual: bool = False,
) -> StoryEvidence:
    """``story_evidence`` from a word similarity already measured (plain Jaccard, or
    weighted so boilerplate counts little: ``stories.decide_story``)."""
    alike = similarity >= threshold
    shared = len(figures_a & figures_b)
    fewer = min(len(figures_a), len(figures_b))
    share = shared / fewer if fewer else 0.0

    def evidence(same: bool, reason: str) -> StoryEvidence:
        return StoryEvidence(same=same, similarity=similarity, shared_figures=shared,
                             fewer_figures=fewer, reason=reason)  # fmt: skip

    if alike:
        if fewer and share < FIGURES_DISAGREE_SHARE:
            return evidence(False, FIGURES_DIFFER)
        return evidence(True, "words alike")
    if cross_lingual:
        # A zh and an en version share no word pairs at all; their figures survive, but
        # in other units (117.8 亿 yuan, 11.78 billion): compared by significant digits.
        digits_a, digits_b = scale_free(figures_a), scale_free(figures_b)
        in_both = len(digits_a & digits_b)
        fewest = min(len(digits_a), len(digits_b))
        if in_both >= FIGURES_CROSS_LINGUAL_MIN and in_both >= FIGURES_AGREE_SHARE * fewest:
            return evidence(True, "same figures, other language")
    if (
        shared >= FIGURES_AGREE_MIN
        and share >= FIGURES_AGREE_SHARE
        and similarity >= FIGURES_MIN_SIMILARITY
    ):
        return evidence(True, "same figures, other words")
    return evidence(False, "words differ")


def same_story_texts(
    title_a: str, text_a: str, title_b: str, text_b: str, settings: ClusterSettings
) -> StoryEvidence:
    """``story_evidence`` of two reports given as title and text."""
    return story_evidence(
        shingles(title_a, text_a), shingles(title_b, text_b),
        figures(title_a, text_a), figures(title_b, text_b), settings,
        cross_lingual=chinese(title_a) != chinese(title_b),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReportFacts:
    """What the story stage compares of a report besides its word pairs. Computed
    where items are prepared (worker processes) and stored beside the band keys, so
    the polling process neither builds the gazetteer (~70 MB, ~1 s) nor reads
    figures again for each candidate, and keeps no text in its cache of reports."""

    figures: frozenset[str]
    chinese: bool
    #: The figures and the places its title names: a template's reports differ there.
    #: Sorted tuples, like ``places``: only looked through.
    title_figures: tuple[str, ...] = ()
    title_places: tuple[str, ...] = ()
    #: Every place its title and text name, sorted: a tuple, as it is only looked
    #: through (a frozenset of three names takes 216 bytes, the tuple 64: ~9 MB over a
    #: cycle's cached reports).
    places: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        title: str,
        text: str,
        places: tuple[Mapping[str, list[str]], Mapping[str, list[str]]] | None = None,
    ) -> ReportFacts:
        """``places``: the places the title and the text name (``PlaceIndex.find``),
        when already found (categorizing finds them)."""
        if places is None:
            from aggregator.places import place_index

            index = place_index()
            places = index.find(title), index.find(text)
        in_title = {n: None for names in places[0].values() for n in names}
        in_text = {n for names in places[1].values() for n in names}
        return cls(
            figures(title, text), chinese(title), title_figures=tuple(sorted(figures(title, ""))),
            title_places=tuple(in_title), places=tuple(sorted(in_text.union(in_title))),
        )  # fmt: skip

    def names(self, place: str) -> bool:
        """Whether the report names ``place``, or a longer or shorter form of it
        (苏州 and 苏州市)."""
        return any(place in other or other in place for other in self.places)

    def encode(self) -> str:
        """One line of text to store: fields apart by RS, values by US."""
        fields = (
            "zh" if self.chinese else "",
            "\x1f".join(sorted(self.figures)),
            "\x1f".join(self.title_figures),
            "\x1f".join(self.title_places),
            "\x1f".join(self.places),
        )
        return "\x1e".join(fields)

    @classmethod
    def decode(cls, stored: str) -> ReportFacts | None:
        """The facts ``encode`` wrote, or None for a value in another layout."""
        fields = stored.split("\x1e")
        if len(fields) != 5:
            return None
        flag, found, in_title, places, named = fields

        def values(field: str) -> list[str]:
            # Interned: the same figures and places recur in thousands of cached
            # reports (a template's); one string each instead of one a report (15 MB
            # of the 46 MB that 32,768 cached reports' facts took).
            return list(map(sys.intern, field.split("\x1f"))) if field else []

        return cls(
            frozenset(values(found)), flag == "zh", tuple(values(in_title)),
            tuple(values(places)), tuple(values(named)),  # encode wrote them sorted
        )  # fmt: skip
