"""The curators' rule language: terms and boolean expressions over an item's fields.

A **term** is a word or phrase, optionally scoped to a field and given options:

    cotton                      any field, case-insensitive, whole words, any word form
    title:cotton price          only in the title
    =parking                    this word form only (no stemming)
    place:asia                  any place in a region or country (see ``places``)
    re:\\bPSF\\b|polyester staple   a regular expression (run with a time limit)
    {term: China, case_sensitive: true, weight: 2}     the mapping form in YAML

Fields: ``title``, ``lead`` (the summary's first sentence), ``summary``, ``category``
(the source's own labels), and, only when a term names them, ``source`` (its id and
name) and ``language``. Latin terms match as whole words compared by their Snowball
stems (PyStemmer): "exports", "exporter" and "exporting" all find ``export``; a
derivation the stemmer also takes off stays apart ("designated" is not ``designer``,
"fabrication" not ``fabric``).
A hyphenated compound counts as its last word (its head) and as its capitalised
parts: "brand-new" is not ``brand``, "Xinjiang-linked" is ``Xinjiang``; the whole
compound is a word too (``brand-new``). Case-sensitive and ``=`` terms compare the
words as written. A term in capitals is an acronym and case-sensitive unless it says
otherwise: ``LEED`` finds "LEED" and "LEEDs" but not "Leeds"; from four letters also
the name form ("ASEAN" finds "Asean"). Terms with CJK characters match as substrings
(Chinese has no spaces).

An **expression** combines terms: ``cotton AND (price OR futures) AND NOT candy``,
with ``"quoted phrases"``, field prefixes (``title:cotton``) and parentheses. The
operators are upper-case; terms side by side are ANDed, as in search engines.

Pure; nothing here knows about configuration files. Errors are ``RuleError`` with the
1-based column where the problem was found.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import regex

if TYPE_CHECKING:
    from aggregator.places import PlaceIndex

FIELDS = ("title", "lead", "summary", "category", "source", "language")
#: Where a term without a field prefix is looked for: the item's own words. Source and
#: language are matched only when asked (``source:``), or every item of a source named
#: "中国纺织网" would be about China.
TEXT_FIELDS = ("title", "lead", "summary", "category")
#: How a term compares words: by stem (the default), as written in lower case
#: (``=word``), or as written (``case_sensitive``).
STEM, EXACT, CASE = "stem", "exact", "case"
#: How ``FieldText.joined`` writes a compound "a-b-c": as one word, or as its parts (for
#: phrases: "knitting machine" finds "knitting-machine").
WHOLE, SPLIT = "whole", "split"
#: A regular expression gets this long per field before it counts as not matching.
REGEX_TIMEOUT_SECONDS = 0.05

# Characters that continue a Latin word; \w would also swallow CJK text next to a term.
# Hyphens join the parts of a compound (see ``FieldText.tokens``).
_WORD = re.compile(r"[0-9A-Za-z\u00C0-\u024F]+(?:-[0-9A-Za-z\u00C0-\u024F]+)*")
_CJK = re.compile(r"[\u2E80-\u9FFF\uAC00-\uD7AF\uF900-\uFAFF]")
_FIELD_PREFIX = re.compile(rf"^({'|'.join(FIELDS)}):(?!//)")


class RuleError(ValueError):
    """A term or expression a curator wrote cannot be used."""

    def __init__(self, message: str, column: int | None = None) -> None:
        self.column = column
        super().__init__(f"column {column}: {message}" if column else message)


class FieldText:
    """One field of an item, indexed once for every term of every topic.

    Matching a term against the text is a set look-up of its first word and, for a
    phrase, one substring search in the joined words, not a regular-expression scan: 700
    terms against 12 topics cost 19 ms an item as regexes and ~0.2 ms this way (see the
    README design notes)."""

    __slots__ = ("_distinct", "_heads", "_joined", "_parts", "_places", "_tokens", "lower", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.lower = text.lower()
        self._tokens: dict[str, list[str]] = {}
        self._heads: dict[str, list[str]] = {}
        self._parts: dict[str, list[str]] = {}
        self._distinct: dict[str, set[str]] = {}
        self._joined: dict[tuple[str, str], str] = {}
        self._places: dict[str, list[str]] | None = None

    def tokens(self, mode: str) -> list[str]:
        """The field's words in order, a compound as one, as ``mode`` compares them
        (STEM, EXACT, CASE). Each form is made once, from the one before (as written ->
        lower case -> stems)."""
        found = self._tokens.get(mode)
        if found is None:
            if mode == CASE:
                found = _WORD.findall(self.text)
            elif mode == STEM:
                found = _stem(self.tokens(CASE))  # no lower-cased copy needed (see _stem)
            else:
                found = self.joined(mode).split()
            self._tokens[mode] = found
        return found

    def distinct(self, mode: str) -> set[str]:
        """Every word a one-word term may be: the words, and the parts of compounds
        that count on their own (see ``_head_parts``)."""
        found = self._distinct.get(mode)
        if found is None:
            found = self._distinct[mode] = set(self.tokens(mode))
            found.update(self.head_parts(mode))
        return found

    def joined(self, mode: str, compounds: str = WHOLE) -> str:
        """The words joined by single spaces, with a space at each end: a phrase is one
        substring search for " word word " (in C), whatever punctuation sat between
        the words in the text. SPLIT: compounds as their parts. One regex pass over the
        text; the other forms are made from it by string methods and maps (in C)."""
        if compounds == SPLIT and "-" not in self.text:
            compounds = WHOLE
        key = (mode, compounds)
        found = self._joined.get(key)
        if found is None:
            if compounds == SPLIT and mode == STEM:
                # Only the compounds are stemmed again, part by part.
                hyphenated = self.compounds(EXACT)
                parts = iter(self.compound_parts(STEM))
                stemmed = [" ".join(islice(parts, c.count("-") + 1)) for c in hyphenated]
                parts_of = dict(zip(hyphenated, stemmed, strict=True))
                words = map(parts_of.get, self.tokens(EXACT), self.tokens(STEM))
                found = f" {' '.join(words)} "
            elif mode == STEM:
                found = f" {' '.join(self.tokens(STEM))} "
            elif compounds == SPLIT:
                found = self.joined(mode).replace("-", " ")
            elif mode == EXACT:
                found = self.joined(CASE).lower()
            else:
                found = f" {' '.join(self.tokens(CASE))} "
            self._joined[key] = found
        return found

    def compounds(self, mode: str) -> list[str]:
        """The hyphenated words, as written (CASE) or in lower case: found from the
        hyphens, not by a pass over every word."""
        if mode == STEM:
            raise ValueError("compounds are found as written or in lower case")
        joined = self.joined(mode)
        found = []
        hyphen = joined.find("-")
        while hyphen != -1:
            start = joined.rfind(" ", 0, hyphen) + 1
            end = joined.find(" ", hyphen)
            found.append(joined[start:end])
            hyphen = joined.find("-", end)
        return found

    def compound_parts(self, mode: str) -> list[str]:
        """The parts of the field's compounds in order, as ``mode`` compares them."""
        found = self._parts.get(mode)
        if found is None:
            if mode == STEM:
                found = _stem(self.compound_parts(EXACT))
            else:
                found = [part for word in self.compounds(mode) for part in word.split("-")]
            self._parts[mode] = found
        return found

    def head_parts(self, mode: str) -> list[str]:
        """The parts of the field's compounds that count on their own (see
        ``_head_parts``), as ``mode`` compares them."""
        found = self._heads.get(mode)
        if found is None:
            if "-" not in self.text:
                found = []
            elif mode == CASE:
                found = _head_parts(self.compounds(CASE))
            else:
                found = [p.lower() for p in self.head_parts(CASE)]
                if mode == STEM:
                    found = _stem(found)
            self._heads[mode] = found
        return found

    def places(self) -> dict[str, list[str]]:
        """Region and country codes of the places named here -> the names."""
        if self._places is None:
            self._places = _place_index().find(self.text) if self.text else {}
        return self._places


def _place_index() -> PlaceIndex:
    """The gazetteer (imported on first use: only taxonomies with place terms need it)."""
    global _PLACES
    if _PLACES is None:
        from aggregator.places import place_index

        _PLACES = place_index()
    return _PLACES


_PLACES: PlaceIndex | None = None


def _head_parts(compounds: list[str]) -> list[str]:
    """The parts of ``compounds`` that count on their own (head parts): a compound's last
    part (the head of an English compound) and its capitalised parts: "brand-new" ->
    new; "Xinjiang-linked" -> Xinjiang, linked."""
    parts_found: list[str] = []
    for word in compounds:
        parts = word.split("-")
        # A capitalised modifier names what the compound is about ("Xinjiang-linked"),
        # unless every part is capitalised (Title Case: "Water-Jet Looms").
        if not parts[-1][:1].isupper():
            parts_found.extend(p for p in parts[:-1] if p[:1].isupper())
        parts_found.append(parts[-1])
    return parts_found


_STEMMER: Any = None
_stems: dict[str, str] = {}


def _stem(words: list[str]) -> list[str]:
    """How each word is compared in STEM mode (see ``_word_key``), from the words in any
    case: the look-up is by the word as written, so stemming a field's words needs no
    lower-cased copy of them (splitting one cost a tenth of finding its terms)."""
    global _STEMMER
    if _STEMMER is None:
        import Stemmer  # PyStemmer: the Snowball stemmers in C

        _STEMMER = Stemmer.Stemmer("english")
    try:
        return list(map(_stems.__getitem__, words))  # most words were seen before
    except KeyError:
        pass
    missing = list(set(words).difference(_stems))
    if missing:
        if len(_stems) > 200_000:  # a long-running daemon sees unbounded vocabulary
            _stems.clear()
        lowered = [word.lower() for word in missing]
        stems = _STEMMER.stemWords(lowered)
        _stems.update(zip(missing, map(_word_key, lowered, stems), strict=True))
    return list(map(_stems.__getitem__, words))


#: What Snowball may take off a word and still leave the same word: inflections and the
#: agent noun ("exporters" is ``export``).
_INFLECTION = re.compile(r"(?:e|y|i)?(?:s|es|d|ed|ing|ings|er|ers)?")
#: The inflection of a derivation, taken off so that each derivation has one form
#: ("designated", "designates", "designate" -> "at"; "authorities" -> "iti").
_DERIVATION_INFLECTION = re.compile(r"(?:e|es|s|d|ed|ing)$")


def _word_key(word: str, stem: str) -> str:
    """How a word is compared: its Snowball stem, unless the stemmer took off a
    derivation that changes the sense ("designated" is not "designer", "fabrication"
    not "fabric", "production" not "products", "fairly" not "fair"): then the stem and
    the derivation, so "designations" still finds "designation"."""
    shared = 0
    for a, b in zip(word, stem, strict=False):
        if a != b:
            break
        shared += 1
    rest = word[shared:]
    if shared and len(rest) > 1 and rest[0] == word[shared - 1]:  # doubled: "spinning"
        rest = rest[1:]
    if _INFLECTION.fullmatch(rest):
        return stem
    derivation = _DERIVATION_INFLECTION.sub("", rest)
    if derivation.endswith("y"):
        derivation = derivation[:-1] + "i"
    return f"{stem}~{derivation}"


@dataclass(frozen=True, slots=True)
class Term:
    """One compiled term."""

    text: str
    field: str | None
    weight: float
    #: Latin terms: their words as ``mode`` compares them.
    words: tuple[str, ...] = ()
    mode: str = STEM
    #: Latin terms: " word word " (see FieldText.joined).
    needles: tuple[str, ...] = ()
    #: CJK terms: the substring to find (lower-cased).
    substring: str | None = None
    #: Regular-expression terms.
    pattern: regex.Pattern[str] | None = None
    #: ``place:`` terms: the region or country code.
    place: str | None = None
    #: Latin terms with compounds: the parts of them that count on their own, as
    #: ``mode`` compares them (what an ignore phrase "heavy-duty" hides: "duty").
    heads: tuple[str, ...] = ()

    @property
    def case_sensitive(self) -> bool:
        return self.mode == CASE

    def fields_hit(self, fields: Mapping[str, FieldText]) -> list[str]:
        names = (self.field,) if self.field else TEXT_FIELDS
        return [name for name in names if name in fields and self.search(fields[name])]

    def search(self, field: FieldText) -> bool:
        if not field.text:
            return False
        if self.pattern is not None:
            try:
                found = self.pattern.search(field.text, timeout=REGEX_TIMEOUT_SECONDS)
                return found is not None
            except TimeoutError:
                return False  # a runaway pattern never hangs a poll
        if self.substring is not None:
            return self.substring in field.lower
        if self.place is not None:
            return self.place in field.places()
        return self._has_phrase(field)

    def places_in(self, field: FieldText) -> list[str]:
        """``place:`` terms: the names in ``field`` that put it in the region."""
        return field.places().get(self.place or "", [])

    def _has_phrase(self, field: FieldText) -> bool:
        """Whether this Latin term occurs in the field's words."""
        if len(self.words) == 1:
            distinct = field.distinct(self.mode)
            return any(needle[1:-1] in distinct for needle in self.needles)
        joined = field.joined(self.mode)
        if any(needle in joined for needle in self.needles):
            return True
        if "-" not in field.text:
            return False
        split = field.joined(self.mode, SPLIT)
        return any(needle in split for needle in self.needles)


def _applies(term: Term, name: str) -> bool:
    """Whether ``term`` is looked for in the field called ``name``."""
    return name == term.field if term.field else name in TEXT_FIELDS


class TermIndex:
    """All terms of a taxonomy, found in one pass over each field instead of tried one
    by one. Latin terms are needles " word word " of an Aho-Corasick automaton
    (ahocorasick-rs) per mode, run over the field's joined words (``FieldText.joined``);
    CJK terms are substrings of one automaton run over the lower-cased text. A field
    costs one scan per automaton whatever the size of the taxonomy; only regular
    expressions and ``place:`` terms are tried one by one. Tried term by term, 1,850
    terms cost ~1.3 ms an item (issue 15); see the README design notes."""

    def __init__(self, terms: Iterable[Term], masks: Iterable[Term] = ()) -> None:
        """``masks``: phrases whose words are not evidence ("steel mill" hides "mill"):
        a term found only inside them is not found. They mask the terms of their own
        kind (stems, exact words, as-written words, CJK); a compound mask also the
        parts it counts as ("heavy-duty": "duty"). An item where one occurs is found to
        contain it."""
        import ahocorasick_rs

        masks = list(masks)
        unique = list({id(t): t for t in [*terms, *masks]}.values())
        mask_ids = {id(t) for t in masks}
        #: mode -> (automaton, field -> the ids of each needle's terms that apply there:
        #: all, the one-word ones, the phrases), for Latin terms.
        self._latin: dict[str, tuple[Any, dict[str, _NeedleIds]]] = {}
        self._masks: dict[str, _Masks | None] = {}
        #: mode -> one-word needle's word -> its index (compound head parts are looked
        #: up here, not scanned), and the words of the phrases (the split compounds are
        #: scanned only when a part is one of them: nothing else can be new there).
        self._one_word: dict[str, dict[str, int]] = {}
        self._phrase_words: dict[str, frozenset[str]] = {}
        for mode in (STEM, EXACT, CASE):
            needles: dict[str, list[Term]] = {}
            for term in (t for t in unique if t.words and t.mode == mode):
                for needle in term.needles:
                    needles.setdefault(needle, []).append(term)
            if needles:
                by_field = {
                    name: _NeedleIds.of(list(needles.values()), name)
                    for name in FIELDS
                    if any(_applies(t, name) for ts in needles.values() for t in ts)
                }
                self._latin[mode] = (ahocorasick_rs.AhoCorasick(list(needles)), by_field)
                self._masks[mode] = _Masks.of(needles, mask_ids)
                words = [needle.split() for needle in needles]
                self._one_word[mode] = {w[0]: i for i, w in enumerate(words) if len(w) == 1}
                self._phrase_words[mode] = frozenset(p for w in words if len(w) > 1 for p in w)
        substrings: dict[str, list[Term]] = {}
        for term in (t for t in unique if t.substring is not None):
            substrings.setdefault(term.substring or "", []).append(term)
        self._cjk = ahocorasick_rs.AhoCorasick(list(substrings)) if substrings else None
        self._cjk_masks = _Masks.of(substrings, mask_ids)
        self._cjk_ids = {
            name: _NeedleIds.of(list(substrings.values()), name).all for name in FIELDS
        }
        #: Fields any term is looked for in (``source`` and ``language`` only when named).
        self._fields = frozenset(name for name in FIELDS if any(_applies(t, name) for t in unique))
        self._regex: dict[str, list[Term]] = {}
        self._places: dict[str, list[Term]] = {}
        for name in FIELDS:
            for term in (t for t in unique if _applies(t, name)):
                if term.pattern is not None:
                    self._regex.setdefault(name, []).append(term)
                elif term.place is not None:
                    self._places.setdefault(name, []).append(term)

    def hits(self, fields: Mapping[str, FieldText]) -> dict[int, list[str]]:
        """id(term) -> the fields it occurs in (respecting each term's field scope)."""
        found: dict[int, list[str]] = {}
        for name, field in fields.items():
            if not field.text or name not in self._fields:
                continue
            hit: set[int] = set()
            for mode, (automaton, by_field) in self._latin.items():
                ids = by_field.get(name)
                if ids is None:
                    continue
                matches = automaton.find_matches_as_indexes(field.joined(mode), overlapping=True)
                masks = self._masks[mode]
                needles = masks.unmasked(matches) if masks else map(_first, matches)
                hit.update(*map(ids.all.__getitem__, needles))  # one call, in C
                if "-" in field.text:
                    # A one-word term is also one of a compound's head parts, a phrase
                    # also the words of compounds split ("knitting-machine").
                    one_word = self._one_word[mode]
                    found_heads = map(one_word.get, field.head_parts(mode))
                    heads = [(i, 0, 0) for i in found_heads if i is not None]
                    if heads:
                        hidden = masks.hidden_heads(matches) if masks else None
                        needles = _unhidden(heads, hidden) if hidden else map(_first, heads)
                        hit.update(*map(ids.words.__getitem__, needles))
                    if not self._phrase_words[mode].isdisjoint(field.compound_parts(mode)):
                        split = automaton.find_matches_as_indexes(
                            field.joined(mode, SPLIT), overlapping=True
                        )
                        # An ignore phrase hides the phrases inside it here too
                        # ("carbon fibre bike" hides the carbon fibre of "carbon-fibre bike").
                        needles = masks.unmasked(split) if masks else map(_first, split)
                        hit.update(*map(ids.phrases.__getitem__, needles))
            if self._cjk is not None and not field.text.isascii() and _CJK.search(field.text):
                ids_cjk = self._cjk_ids[name]
                matches = self._cjk.find_matches_as_indexes(field.lower, overlapping=True)
                masks = self._cjk_masks
                needles = masks.unmasked(matches) if masks else map(_first, matches)
                hit.update(*map(ids_cjk.__getitem__, needles))
            for term in self._regex.get(name, ()):
                if term.search(field):
                    hit.add(id(term))
            for term in self._places.get(name, ()):
                if term.search(field):
                    hit.add(id(term))
            for term_id in hit:
                found.setdefault(term_id, []).append(name)
        # The lead is the summary's first sentence: a lead hit is that summary hit.
        for names in found.values():
            if "lead" in names and "summary" in names:
                names.remove("summary")
        return found


_first = itemgetter(0)


@dataclass(frozen=True, slots=True)
class _Masks:
    """The mask needles of one automaton, and the needles each one contains."""

    #: mask needle index -> (index of a needle inside it, how many times it is there).
    contains: dict[int, tuple[tuple[int, int], ...]]
    #: compound mask needle index -> (index of the needle of one of its head parts, how
    #: many times): "heavy-duty" hides a "duty" among the field's compound parts.
    heads: dict[int, tuple[tuple[int, int], ...]]

    @classmethod
    def of(cls, needles: Mapping[str, list[Term]], mask_ids: set[int]) -> _Masks | None:
        order = list(needles)
        position = {needle: i for i, needle in enumerate(order)}
        masking = [i for i, n in enumerate(order) if any(id(t) in mask_ids for t in needles[n])]
        if not masking:
            return None
        inside = {
            m: tuple(
                (i, order[m].count(n)) for i, n in enumerate(order) if i != m and n in order[m]
            )
            for m in masking
        }
        heads: dict[int, tuple[tuple[int, int], ...]] = {}
        for m in masking:
            parts = [f" {h} " for t in needles[order[m]] if id(t) in mask_ids for h in t.heads]
            found = {position[p]: parts.count(p) for p in parts if p in position}
            if found:
                heads[m] = tuple(found.items())
        return cls(inside, heads)

    def unmasked(self, matches: list[tuple[int, int, int]]) -> Iterable[int]:
        """The needle indexes of ``matches`` with an occurrence outside every mask (the
        masks themselves included: explain says what they hid)."""
        if self.contains.keys().isdisjoint(map(_first, matches)):
            return map(_first, matches)  # no mask here: the common case (in C)
        return _unhidden(matches, self._hidden(matches, self.contains))

    def hidden_heads(self, matches: list[tuple[int, int, int]]) -> Counter[int] | None:
        """How many occurrences of each needle among the field's compound parts the
        compound masks in ``matches`` (of the field's words) hide; None for none."""
        if not self.heads or self.heads.keys().isdisjoint(map(_first, matches)):
            return None
        return self._hidden(matches, self.heads)

    @staticmethod
    def _hidden(
        matches: list[tuple[int, int, int]], hiding: Mapping[int, tuple[tuple[int, int], ...]]
    ) -> Counter[int]:
        counts = Counter(map(_first, matches))
        hidden: Counter[int] = Counter()
        for mask in hiding.keys() & counts.keys():
            for inside, times in hiding[mask]:
                hidden[inside] += times * counts[mask]
        return hidden


def _unhidden(matches: list[tuple[int, int, int]], hidden: Mapping[int, int]) -> list[int]:
    """The needle indexes of ``matches`` that occur more often than ``hidden`` hides."""
    return [i for i, n in Counter(map(_first, matches)).items() if n > hidden.get(i, 0)]


@dataclass(frozen=True, slots=True)
class _NeedleIds:
    """For each needle of an automaton, the ids of its terms that apply in one field."""

    all: list[tuple[int, ...]]
    #: One-word terms only (looked for in compounds' head parts too).
    words: list[tuple[int, ...]]
    #: Phrases only (looked for in compounds split too).
    phrases: list[tuple[int, ...]]

    @classmethod
    def of(cls, needles: list[list[Term]], name: str) -> _NeedleIds:
        applying = [[t for t in terms if _applies(t, name)] for terms in needles]
        return cls(
            [tuple(id(t) for t in terms) for terms in applying],
            [tuple(id(t) for t in terms if len(t.words) == 1) for terms in applying],
            [tuple(id(t) for t in terms if len(t.words) > 1) for terms in applying],
        )


def parse_term(spec: str | Mapping[str, object]) -> Term:
    """A Term from its YAML form: a string, or a mapping with ``term`` and options."""
    if isinstance(spec, str):
        text, options = spec, {}
    else:
        text, options = str(spec.get("term", "")), dict(spec)
    text = text.strip()
    field = options.get("field")
    if match := _FIELD_PREFIX.match(text):
        field, text = match.group(1), text[match.end() :].strip()
    if field is not None and field not in FIELDS:
        raise RuleError(f"unknown field {field!r} (use one of {', '.join(FIELDS)})")
    is_regex = text.startswith("re:")
    if is_regex:
        text = text[3:]
    exact = bool(options.get("exact", False)) or (text.startswith("=") and not is_regex)
    if text.startswith("=") and not is_regex:
        text = text[1:].strip()
    if not text:
        raise RuleError("empty term")
    if text.startswith("place:") and not is_regex:
        return _place_term(text, field, options)
    # An acronym means itself: LEED is not "Leeds" (both stem to "leed").
    acronym = "case_sensitive" not in options and not is_regex and _is_acronym(text)
    case_sensitive = acronym or bool(options.get("case_sensitive", False))
    weight = float(options.get("weight", 1.0))  # type: ignore[arg-type]
    if weight <= 0:
        raise RuleError("weight must be greater than zero")
    label = f"{field}:{text}" if field else text
    if is_regex:
        try:
            pattern = regex.compile(text, 0 if case_sensitive else regex.IGNORECASE)
        except regex.error as exc:
            raise RuleError(f"invalid regular expression {text!r}: {exc}") from None
        return Term(text=label, field=field, weight=weight, pattern=pattern)
    if _CJK.search(text):
        return Term(text=label, field=field, weight=weight, substring=text.lower())
    mode = CASE if case_sensitive else EXACT if exact else STEM
    words = tuple(FieldText(text).tokens(mode))  # the words as a field gives them
    if not words:
        raise RuleError(f"term {text!r} has no letters or digits")
    if exact and not case_sensitive:
        label = f"{field}:={text}" if field else f"={text}"
    phrase = " ".join(words)
    forms = _acronym_forms(phrase) if acronym else (phrase,)
    return Term(
        text=label, field=field, weight=weight, words=words, mode=mode,
        needles=tuple(f" {form} " for form in forms),
        heads=tuple(FieldText(text).head_parts(mode)) if "-" in text else (),
    )  # fmt: skip


_ACRONYM = re.compile(r"[A-Z][A-Z0-9]*[A-Z][A-Z0-9]*(?:[ -][A-Z][A-Z0-9]*[A-Z][A-Z0-9]*)*")


def _is_acronym(text: str) -> bool:
    """Whether every word of a Latin term is written in capitals ("LEED", "PM MITRA")."""
    return _ACRONYM.fullmatch(text) is not None


def _acronym_forms(phrase: str) -> tuple[str, ...]:
    """How the press writes an acronym: as itself, in the plural ("IPOs") and, from four
    letters, as a name ("Asean", "Oeko-Tex"; a shorter one would be a word: "Vat")."""
    forms = [phrase, phrase + "s"]
    if " " not in phrase and len(phrase.replace("-", "")) >= 4:
        forms.append("-".join(part.capitalize() for part in phrase.split("-")))
    return tuple(forms)


def _place_term(text: str, field: str | None, options: Mapping[str, object]) -> Term:
    from aggregator.places import REGIONS

    code = text.removeprefix("place:").strip().lower()
    if code not in REGIONS and not (len(code) == 2 and code.isalpha()):
        raise RuleError(
            f"unknown place {code!r}: use a region ({', '.join(sorted(REGIONS))}) "
            "or a two-letter country code"
        )
    weight = float(options.get("weight", 1.0))  # type: ignore[arg-type]
    if weight <= 0:
        raise RuleError("weight must be greater than zero")
    label = f"{field}:place:{code}" if field else f"place:{code}"
    return Term(text=label, field=field, weight=weight, place=code)


# --- expressions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leaf:
    term: Term


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class All:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    children: tuple[Node, ...]


Node = Leaf | Not | All | Any_

_TOKEN = re.compile(
    r'\s*(?:(?P<open>\()|(?P<close>\))|(?P<quoted>(?:[a-z]+:)?"[^"]*"?)|(?P<word>[^\s()"]+))'
)


def _tokens(text: str) -> Iterator[tuple[str, str, int]]:
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            if text[position:].strip():
                raise RuleError("unexpected character", position + 1)
            return
        kind = match.lastgroup or ""
        value = match.group(kind)
        column = match.start(kind) + 1
        if kind == "quoted" and (len(value) < 2 or not value.endswith('"') or value.endswith(':"')):
            raise RuleError("unclosed quote", column)
        if kind == "word" and value in ("AND", "OR", "NOT"):
            kind = value
        yield kind, value, column
        position = match.end()


def parse_expression(text: str) -> Node:
    """Parse ``cotton AND (price OR "cotton futures") AND NOT title:candy``."""
    tokens = list(_tokens(text))
    if not tokens:
        raise RuleError("empty expression", 1)
    node, position = _or(tokens, 0, text)
    if position < len(tokens):
        kind, value, column = tokens[position]
        raise RuleError(
            f"unexpected {value!r}" + (" (no matching '(')" if kind == "close" else ""),
            column,
        )
    return node


def _or(tokens: list[tuple[str, str, int]], position: int, text: str) -> tuple[Node, int]:
    node, position = _and(tokens, position, text)
    children = [node]
    while position < len(tokens) and tokens[position][0] == "OR":
        node, position = _and(tokens, position + 1, text)
        children.append(node)
    return (children[0] if len(children) == 1 else Any_(tuple(children))), position


def _and(tokens: list[tuple[str, str, int]], position: int, text: str) -> tuple[Node, int]:
    node, position = _not(tokens, position, text)
    children = [node]
    while position < len(tokens) and tokens[position][0] not in ("OR", "close"):
        if tokens[position][0] == "AND":
            position += 1
        node, position = _not(tokens, position, text)
        children.append(node)
    return (children[0] if len(children) == 1 else All(tuple(children))), position


def _not(tokens: list[tuple[str, str, int]], position: int, text: str) -> tuple[Node, int]:
    if position >= len(tokens):
        raise RuleError("expression ends where a term was expected", len(text) + 1)
    kind, value, column = tokens[position]
    if kind == "NOT":
        child, position = _not(tokens, position + 1, text)
        return Not(child), position
    if kind == "open":
        node, position = _or(tokens, position + 1, text)
        if position >= len(tokens) or tokens[position][0] != "close":
            raise RuleError("missing ')' for the '(' here", column)
        return node, position + 1
    if kind in ("word", "quoted"):
        phrase = value.replace('"', "") if kind == "quoted" else value
        try:
            return Leaf(parse_term(phrase)), position + 1
        except RuleError as exc:
            raise RuleError(str(exc), column) from None
    raise RuleError(f"expected a term, found {value!r}", column)


def index_fields(fields: Mapping[str, str]) -> dict[str, FieldText]:
    return {name: FieldText(text) for name, text in fields.items()}


def leaves(node: Node) -> Iterator[Term]:
    """The terms of an expression."""
    if isinstance(node, Leaf):
        yield node.term
    elif isinstance(node, Not):
        yield from leaves(node.child)
    else:
        for child in node.children:
            yield from leaves(child)


def evaluate(
    node: Node,
    fields: Mapping[str, FieldText],
    hits: list[tuple[Term, str]],
    found: Mapping[int, list[str]] | None = None,
) -> bool:
    """Whether ``node`` holds for ``fields``; terms that matched are appended to ``hits``
    (only those that count: a NOT's terms never do). ``found``: what a TermIndex holding
    the expression's terms found in ``fields`` (id(term) -> fields), looked up instead
    of searching each term again (that search was a tenth of categorizing)."""
    if isinstance(node, Leaf):
        names = found.get(id(node.term), ()) if found is not None else node.term.fields_hit(fields)
        hits.extend((node.term, name) for name in names)
        return bool(names)
    if isinstance(node, Not):
        return not evaluate(node.child, fields, [], found)
    if isinstance(node, All):
        return all([evaluate(child, fields, hits, found) for child in node.children])
    return any([evaluate(child, fields, hits, found) for child in node.children])
