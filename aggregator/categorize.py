"""Topic rules -> which topics an item belongs to, and why (pure).

For each topic, in this order:
  1. ``sources``: only items from the listed sources can enter;
  2. ``exclude`` terms are looked for first: any exclude hit vetoes, so 棉花糖 (candy
     floss) never counts as 棉花 (cotton);
  3. ``include`` terms score: each term counts once, in its best field, as field
     weight x term weight (a title hit counts more than a body hit); the item needs
     ``threshold``;
  4. every ``all_of`` element must occur, and the ``match`` expression must hold.

A topic's ``use`` rule sets add their terms to its own. ``judge`` returns the whole
reasoning (``TopicVerdict``) for ``explain`` and ``preview``; ``categorize`` keeps the
topics an item belongs to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aggregator.config import RuleSet, TermSpec, TopicConfig
from aggregator.models import Item, TermHit, TopicMatch, term_hit
from aggregator.rules import (
    Node,
    Term,
    TermIndex,
    evaluate,
    index_fields,
    parse_expression,
    parse_term,
)


def _compile(spec: TermSpec) -> Term:
    return parse_term(spec if isinstance(spec, str) else dict(spec))


@dataclass(frozen=True, slots=True)
class CompiledTopic:
    """A topic's rules, compiled once per configuration."""

    slug: str
    include: tuple[Term, ...]
    all_of: tuple[tuple[Term, ...], ...]
    exclude: tuple[Term, ...]
    expression: Node | None
    threshold: float
    weights: Mapping[str, float]
    sources: frozenset[str]
    #: id() of each include term: an item none of them occurs in cannot score.
    include_ids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "include_ids", frozenset(id(t) for t in self.include))

    @classmethod
    def from_config(cls, topic: TopicConfig, rule_sets: Mapping[str, RuleSet]) -> CompiledTopic:
        sets = [rule_sets[name] for name in topic.use if name in rule_sets]
        include = [*topic.include, *(t for s in sets for t in s.include)]
        exclude = [*topic.exclude, *(t for s in sets for t in s.exclude)]
        all_of = [*topic.all_of, *(g for s in sets for g in s.all_of)]
        return cls(
            slug=topic.slug,
            include=tuple(_compile(t) for t in dict.fromkeys(include)),
            all_of=tuple(tuple(_compile(t) for t in group) for group in all_of),
            exclude=tuple(_compile(t) for t in dict.fromkeys(exclude)),
            expression=parse_expression(topic.match) if topic.match else None,
            threshold=topic.threshold,
            weights=topic.weights.model_dump(),
            sources=frozenset(topic.sources),
        )


def compile_topics(
    topics: Iterable[TopicConfig], rule_sets: Mapping[str, RuleSet] | None = None
) -> tuple[CompiledTopic, ...]:
    return tuple(CompiledTopic.from_config(t, rule_sets or {}) for t in topics)


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicVerdict:
    """Whether an item belongs to a topic, and every reason."""

    slug: str
    belongs: bool
    score: float
    threshold: float
    #: Include terms found (field, and the points each scored).
    hits: tuple[TermHit, ...]
    #: Exclude terms found: any one vetoes.
    vetoes: tuple[TermHit, ...]
    #: all_of elements none of whose terms occurred.
    missing_all_of: tuple[str, ...]
    #: The match expression's result (None when the topic has none).
    expression: bool | None
    #: The item's source is not among the topic's sources.
    source_excluded: bool


def item_fields(item: Item, source_name: str = "") -> dict[str, str]:
    return {
        "title": item.title,
        "summary": item.summary_text,
        "category": " | ".join(item.categories),
        "source": f"{item.source_id} {source_name}".strip(),
        "language": item.language or "",
    }


def judge(
    item: Item,
    topic: CompiledTopic,
    source_name: str = "",
    found: Mapping[int, list[str]] | None = None,
) -> TopicVerdict:
    """The full reasoning of one topic about one item. ``found`` (id(term) -> fields it
    occurs in) is computed once per item when several topics judge it."""
    if found is None:
        found = TermIndex(_terms(topic)).hits(index_fields(item_fields(item, source_name)))
    source_excluded = bool(topic.sources) and item.source_id not in topic.sources
    vetoes = _hits(topic.exclude, found, topic.weights)
    if vetoes:
        # Excludes come first: the item is out, and nothing inside an exclude phrase (棉花
        # inside 棉花糖) is reported as a hit.
        return TopicVerdict(
            slug=topic.slug, belongs=False, score=0.0, threshold=topic.threshold, hits=(),
            vetoes=vetoes, missing_all_of=(), expression=None, source_excluded=source_excluded,
        )  # fmt: skip
    hits = _hits(topic.include, found, topic.weights)
    best: dict[str, float] = {}
    for hit in hits:
        best[hit.term] = max(best.get(hit.term, 0.0), hit.weight)
    score = sum(best.values())
    missing = tuple(
        " | ".join(t.text for t in group)
        for group in topic.all_of
        if not _hits(group, found, topic.weights)
    )
    group_hits = [h for group in topic.all_of for h in _hits(group, found, topic.weights)]
    expression = None
    expression_hits: list[TermHit] = []
    if topic.expression is not None:
        matched: list[tuple[Term, str]] = []
        fields = index_fields(item_fields(item, source_name))
        expression = evaluate(topic.expression, fields, matched)
        expression_hits = [_hit(term, name, topic.weights) for term, name in matched]
    scored = score >= topic.threshold if topic.include else True
    belongs = (
        not source_excluded
        and not vetoes
        and scored
        and not missing
        and expression is not False
        and bool(topic.include or topic.expression is not None or topic.all_of)
    )
    return TopicVerdict(
        slug=topic.slug,
        belongs=belongs,
        score=score,
        threshold=topic.threshold,
        hits=tuple(dict.fromkeys([*hits, *group_hits, *expression_hits])),
        vetoes=vetoes,
        missing_all_of=missing,
        expression=expression,
        source_excluded=source_excluded,
    )


def verdicts(
    item: Item, topics: Sequence[CompiledTopic], source_name: str = ""
) -> tuple[TopicVerdict, ...]:
    """Every topic's reasoning about ``item``, its words looked up once for all topics."""
    found = _index(topics).hits(index_fields(item_fields(item, source_name)))
    return tuple(judge(item, topic, source_name, found) for topic in topics)


def categorize(
    item: Item, topics: Sequence[CompiledTopic], source_name: str = ""
) -> tuple[TopicMatch, ...]:
    """Every topic ``item`` belongs to, with the terms that put it there."""
    found = _index(topics).hits(index_fields(item_fields(item, source_name)))
    matches = []
    for topic in topics:
        # Most topics have none of their include terms in a given item: it cannot reach
        # the threshold (always above zero), so the full reasoning is not needed.
        if topic.include and found.keys().isdisjoint(topic.include_ids):
            continue
        verdict = judge(item, topic, source_name, found)
        if verdict.belongs:
            matches.append(TopicMatch(slug=verdict.slug, hits=verdict.hits))
    return tuple(matches)


def _hit(term: Term, field: str, weights: Mapping[str, float]) -> TermHit:
    return term_hit(term.text, field, weights.get(field, 1.0) * term.weight)


def _hits(
    terms: Sequence[Term], found: Mapping[int, list[str]], weights: Mapping[str, float]
) -> tuple[TermHit, ...]:
    order = _positions(terms)
    present = sorted(order[term_id] for term_id in found.keys() & order.keys())
    return tuple(_hit(terms[i], name, weights) for i in present for name in found[id(terms[i])])


# id(term) -> position, per term list (compiled topics live as long as their config).
_position_cache: dict[int, tuple[Sequence[Term], dict[int, int]]] = {}


def _positions(terms: Sequence[Term]) -> dict[int, int]:
    """Where each term sits in ``terms``, so hits come out in the curator's order
    while only the terms an item contains are visited."""
    cached = _position_cache.get(id(terms))
    if cached is None or cached[0] is not terms:
        if len(_position_cache) > 10_000:  # configurations reloaded many times over
            _position_cache.clear()
        order: dict[int, int] = {}
        for position, term in enumerate(terms):
            order.setdefault(id(term), position)
        cached = _position_cache[id(terms)] = (terms, order)
    return cached[1]


def _terms(topic: CompiledTopic) -> list[Term]:
    return [*topic.include, *topic.exclude, *(t for group in topic.all_of for t in group)]


# The term index of the topics last categorized with (one taxonomy at a time in practice).
_last_index: tuple[Sequence[CompiledTopic], TermIndex] | None = None


def _index(topics: Sequence[CompiledTopic]) -> TermIndex:
    global _last_index
    if _last_index is None or _last_index[0] is not topics:
        _last_index = (topics, TermIndex(t for topic in topics for t in _terms(topic)))
    return _last_index[1]
