"""Topic rules -> which topics an item belongs to, and which terms put it there.

Pure. A topic matches an item when
  * the item comes from one of the topic's ``sources`` (if the topic restricts them),
  * no ``exclude`` term occurs (an exclude vetoes, whatever else matched),
  * at least one ``include`` term occurs, and
  * every ``all_of`` element occurs (an element that is a list: any of its terms).

Terms are looked for in the title, the plain-text summary and the feed's categories.
Latin terms match case-insensitively as whole words, tolerating a plural "s"/"es"
("park" finds "parks", never "parking"). Terms with CJK characters match as
substrings, since Chinese has no word boundaries; exclude phrases are masked out
first, so 棉花糖 (candy floss) never counts as 棉花 (cotton).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aggregator.config import TopicConfig
from aggregator.models import Item, TermHit, TopicMatch

# Characters that continue a Latin word; \w would also swallow CJK text next to a term.
_WORD_CHAR = r"0-9A-Za-z\u00C0-\u024F"
_CJK = re.compile(r"[\u2E80-\u9FFF\uAC00-\uD7AF\uF900-\uFAFF]")
_FIELDS = ("title", "summary", "category")


@dataclass(frozen=True, slots=True)
class _Term:
    text: str
    pattern: re.Pattern[str]


def _compile_term(term: str) -> _Term:
    if _CJK.search(term):
        return _Term(term, re.compile(re.escape(term)))
    words = [re.escape(w) for w in term.split()]
    body = r"[\s\-]+".join(words)  # "knitting machine" also finds "knitting-machine"
    plural = "(?:e?s)?" if term[-1:].isalpha() else ""
    return _Term(term, re.compile(rf"(?<![{_WORD_CHAR}]){body}{plural}(?![{_WORD_CHAR}])", re.I))


@dataclass(frozen=True, slots=True)
class CompiledTopic:
    """A topic's rules, compiled once per configuration."""

    slug: str
    include: tuple[_Term, ...]
    all_of: tuple[tuple[_Term, ...], ...]
    exclude: tuple[_Term, ...]
    sources: frozenset[str]

    @classmethod
    def from_config(cls, topic: TopicConfig) -> CompiledTopic:
        return cls(
            slug=topic.slug,
            include=tuple(map(_compile_term, topic.include)),
            all_of=tuple(tuple(map(_compile_term, group)) for group in topic.all_of),
            exclude=tuple(map(_compile_term, topic.exclude)),
            sources=frozenset(topic.sources),
        )


def compile_topics(topics: Iterable[TopicConfig]) -> tuple[CompiledTopic, ...]:
    return tuple(CompiledTopic.from_config(t) for t in topics)


def categorize(item: Item, topics: Sequence[CompiledTopic]) -> tuple[TopicMatch, ...]:
    """Every topic ``item`` belongs to, with the include/all-of terms that matched."""
    fields = _fields(item)
    matches = []
    for topic in topics:
        if topic.sources and item.source_id not in topic.sources:
            continue
        masked = {name: _mask(text, topic.exclude) for name, text in fields.items()}
        if any(masked[name] != fields[name] for name in fields):
            continue  # an exclude term occurred: veto
        hits = _hits(topic.include, masked)
        if not hits:
            continue
        group_hits = [_hits(group, masked) for group in topic.all_of]
        if not all(group_hits):
            continue
        matches.append(
            TopicMatch(
                slug=topic.slug,
                hits=tuple(dict.fromkeys([*hits, *(h for g in group_hits for h in g)])),
            )
        )
    return tuple(matches)


def _fields(item: Item) -> dict[str, str]:
    return {
        "title": item.title,
        "summary": item.summary_text,
        "category": " | ".join(item.categories),
    }


def _mask(text: str, terms: Sequence[_Term]) -> str:
    for term in terms:
        text = term.pattern.sub(lambda m: "\x00" * len(m.group()), text)
    return text


def _hits(terms: Sequence[_Term], fields: dict[str, str]) -> list[TermHit]:
    return [
        TermHit(term=term.text, field=name)
        for term in terms
        for name in _FIELDS
        if term.pattern.search(fields[name])
    ]
