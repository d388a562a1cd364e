"""The curators' rule language: terms and boolean expressions over an item's fields.

A **term** is a word or phrase, optionally scoped to a field and given options:

    cotton                      any field, case-insensitive, whole words, plurals too
    title:cotton price          only in the title
    re:\\bPSF\\b|polyester staple   a regular expression (run with a time limit)
    {term: China, case_sensitive: true, weight: 2}     the mapping form in YAML

Fields: ``title``, ``summary``, ``category`` (the source's own labels), and, only when
a term names them, ``source`` (its id and name) and ``language``. Latin terms match as
whole words, tolerating a plural "s"/"es"; terms with CJK characters match as
substrings (Chinese has no spaces).

An **expression** combines terms: ``cotton AND (price OR futures) AND NOT candy``,
with ``"quoted phrases"``, field prefixes (``title:cotton``) and parentheses. The
operators are upper-case; terms side by side are ANDed, as in search engines.

Pure; nothing here knows about configuration files. Errors are ``RuleError`` with the
1-based column where the problem was found.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import regex

FIELDS = ("title", "summary", "category", "source", "language")
#: Where a term without a field prefix is looked for: the item's own words. Source and
#: language are matched only when asked (``source:``), or every item of a source named
#: "中国纺织网" would be about China.
TEXT_FIELDS = ("title", "summary", "category")
#: A regular expression gets this long per field before it counts as not matching.
REGEX_TIMEOUT_SECONDS = 0.05

# Characters that continue a Latin word; \w would also swallow CJK text next to a term.
_WORD = re.compile(r"[0-9A-Za-z\u00C0-\u024F]+")
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

    __slots__ = ("_joined", "_words", "lower", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.lower = text.lower()
        self._words: dict[bool, list[str]] = {}
        self._joined: dict[bool, str] = {}

    def words(self, case_sensitive: bool) -> list[str]:
        """The field's words in order (lower-cased unless ``case_sensitive``)."""
        found = self._words.get(case_sensitive)
        if found is None:
            found = _WORD.findall(self.text if case_sensitive else self.lower)
            self._words[case_sensitive] = found
        return found

    def joined(self, case_sensitive: bool) -> str:
        """The words joined by single spaces, with a space at each end: a phrase is one
        substring search for " word word " (in C), whatever punctuation sat between
        the words in the text."""
        found = self._joined.get(case_sensitive)
        if found is None:
            found = self._joined[case_sensitive] = f" {' '.join(self.words(case_sensitive))} "
        return found


@dataclass(frozen=True, slots=True)
class Term:
    """One compiled term."""

    text: str
    field: str | None
    weight: float
    #: Latin terms: their words (lower-cased unless case-sensitive).
    words: tuple[str, ...] = ()
    case_sensitive: bool = False
    #: Whether a plural "s"/"es" on the last word still matches.
    plural: bool = False
    #: Latin terms: " word word " for each accepted form (see FieldText.joined).
    needles: tuple[str, ...] = ()
    #: CJK terms: the substring to find (lower-cased).
    substring: str | None = None
    #: Regular-expression terms.
    pattern: regex.Pattern[str] | None = None

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
        return self._has_phrase(field)

    def _has_phrase(self, field: FieldText) -> bool:
        """Whether this Latin term occurs in the field's words."""
        joined = field.joined(self.case_sensitive)
        return any(needle in joined for needle in self.needles)


def _second(term: Term) -> frozenset[str]:
    """The forms a phrase's second word may take (a plural when it is the last)."""
    second = term.words[1]
    last = len(term.words) == 2
    return frozenset((second, second + "s", second + "es") if last and term.plural else (second,))


def _applies(term: Term, name: str) -> bool:
    """Whether ``term`` is looked for in the field called ``name``."""
    return name == term.field if term.field else name in TEXT_FIELDS


class TermIndex:
    """All terms of a taxonomy, looked up from an item's words instead of scanned one by
    one. Built once per taxonomy, per field: the words that may start a term there
    (plural forms included), each with the ids of the one-word terms it proves and the
    phrases starting with it. A field's distinct words are intersected with those
    starts (in C), so only the few words that matter are looked at one by one. CJK
    terms are tried only on fields holding their first character, regex terms always."""

    def __init__(self, terms: Iterable[Term]) -> None:
        unique = list({id(t): t for t in terms}.values())
        self._cases = (
            (False, True) if any(t.case_sensitive and t.words for t in unique) else (False,)
        )
        #: (field, case-sensitive) -> word -> ids of the terms the word alone proves.
        self._proven: dict[tuple[str, bool], dict[str, set[int]]] = {}
        #: (field, case-sensitive) -> first word -> [(phrase, forms of its second word)].
        self._phrases: dict[tuple[str, bool], dict[str, list[tuple[Term, frozenset[str]]]]] = {}
        self._cjk: dict[str, dict[str, list[Term]]] = {}
        self._regex: dict[str, list[Term]] = {}
        for name in FIELDS:
            for term in (t for t in unique if _applies(t, name)):
                if term.pattern is not None:
                    self._regex.setdefault(name, []).append(term)
                elif term.substring is not None:
                    chars = self._cjk.setdefault(name, {})
                    chars.setdefault(term.substring[0], []).append(term)
                elif len(term.words) == 1:
                    proven = self._proven.setdefault((name, term.case_sensitive), {})
                    word = term.words[0]
                    for form in (word, word + "s", word + "es") if term.plural else (word,):
                        proven.setdefault(form, set()).add(id(term))
                else:
                    phrases = self._phrases.setdefault((name, term.case_sensitive), {})
                    phrases.setdefault(term.words[0], []).append((term, _second(term)))
        self._starts = {
            key: frozenset(self._proven.get(key, {})) | frozenset(self._phrases.get(key, {}))
            for key in {*self._proven, *self._phrases}
        }

    def hits(self, fields: Mapping[str, FieldText]) -> dict[int, list[str]]:
        """id(term) -> the fields it occurs in (respecting each term's field scope)."""
        found: dict[int, list[str]] = {}
        for name, field in fields.items():
            if not field.text:
                continue
            hit: set[int] = set()
            for case_sensitive in self._cases:
                starts = self._starts.get((name, case_sensitive))
                if not starts:
                    continue
                distinct = set(field.words(case_sensitive))
                proven = self._proven.get((name, case_sensitive), {})
                phrases = self._phrases.get((name, case_sensitive), {})
                for word in distinct & starts:
                    if ids := proven.get(word):
                        hit |= ids
                    for term, second in phrases.get(word, ()):
                        # A phrase whose second word is missing cannot be there.
                        if (
                            id(term) not in hit
                            and not distinct.isdisjoint(second)
                            and term._has_phrase(field)
                        ):
                            hit.add(id(term))
            chars = self._cjk.get(name)
            if chars and _CJK.search(field.text):
                for char in chars.keys() & set(field.lower):
                    for term in chars[char]:
                        if id(term) not in hit and term.search(field):
                            hit.add(id(term))
            for term in self._regex.get(name, ()):
                if term.search(field):
                    hit.add(id(term))
            for term_id in hit:
                found.setdefault(term_id, []).append(name)
        return found


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
    if not text:
        raise RuleError("empty term")
    case_sensitive = bool(options.get("case_sensitive", False))
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
    # Words of Latin text; "knitting machine" also finds "knitting-machine".
    words = tuple(_WORD.findall(text if case_sensitive else text.lower()))
    if not words:
        raise RuleError(f"term {text!r} has no letters or digits")
    plural = text[-1:].isalpha()
    endings = ("", "s", "es") if plural else ("",)
    return Term(
        text=label, field=field, weight=weight, words=words, case_sensitive=case_sensitive,
        plural=plural, needles=tuple(f" {' '.join(words)}{ending} " for ending in endings),
    )  # fmt: skip


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


def evaluate(node: Node, fields: Mapping[str, FieldText], hits: list[tuple[Term, str]]) -> bool:
    """Whether ``node`` holds for ``fields``; terms that matched are appended to ``hits``
    (only those that count: a NOT's terms never do)."""
    if isinstance(node, Leaf):
        found = node.term.fields_hit(fields)
        hits.extend((node.term, name) for name in found)
        return bool(found)
    if isinstance(node, Not):
        return not evaluate(node.child, fields, [])
    if isinstance(node, All):
        return all([evaluate(child, fields, hits) for child in node.children])
    return any([evaluate(child, fields, hits) for child in node.children])
