"""Topic rules -> which topics an item belongs to, and why (pure).

First the textile-scope gate (the rule set named ``scope``), once per item: any of its
exclude terms vetoes every topic (a seafood ban, a sports strike); otherwise the item
must score the gate's threshold with its include terms, unless its source is textile
trade press (``scope: textile``). A topic with ``scope: false`` skips the gate. The
gate's ``ignore`` phrases ("steel mill") hide the words inside them from every topic.

Then, for each topic, in this order:
  1. ``sources``: only items from the listed sources can enter;
  2. ``exclude`` terms are looked for first: any exclude hit vetoes, so 棉花糖 (candy
     floss) never counts as 棉花 (cotton);
  3. ``include`` terms score: each term counts once, in its best field, as field
     weight x term weight (a title hit counts more than a body hit); the item needs
     ``threshold``, and ``min_terms`` distinct terms unless one is in its title;
  4. every ``all_of`` element must occur, and the ``match`` expression must hold.

A topic's ``use`` rule sets add their terms to its own. ``judge`` returns the whole
reasoning (``TopicVerdict``) for ``explain`` and ``preview``; ``categorize`` keeps the
topics an item belongs to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from aggregator.config import RuleSet, TermSpec, TopicConfig
from aggregator.models import Item, TermHit, TopicMatch, term_hit
from aggregator.rules import (
    FIELDS,
    FieldText,
    Node,
    Term,
    TermIndex,
    evaluate,
    index_fields,
    leaves,
    parse_expression,
    parse_term,
)


def _compile(spec: TermSpec) -> Term:
    return parse_term(spec if isinstance(spec, str) else dict(spec))


@dataclass(frozen=True, slots=True)
class ScopeGate:
    """The ``scope`` rule set, compiled: shared by every topic that uses it."""

    include: tuple[Term, ...]
    exclude: tuple[Term, ...]
    threshold: float
    #: Sources whose items pass the include terms (textile trade press).
    trade_sources: frozenset[str] = frozenset()
    #: Phrases whose words count for no topic ("steel mill" hides "mill").
    ignore: tuple[Term, ...] = ()
    ignore_ids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "ignore_ids", frozenset(id(t) for t in self.ignore))


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeVerdict:
    """Whether an item is about the textile business, and why."""

    in_scope: bool
    score: float
    threshold: float
    hits: tuple[TermHit, ...]
    #: Shared vetoes found: any one keeps the item out of every topic.
    vetoes: tuple[TermHit, ...]
    trade_source: bool = False
    #: The gate's ``ignore`` phrases found: the words inside them counted nowhere.
    ignored: tuple[TermHit, ...] = ()

    def reason(self) -> str:
        if self.vetoes:
            return "vetoed for every topic by " + ", ".join(h.term for h in self.vetoes)
        if self.trade_source:
            found = "in textile scope: a textile trade-press source"
        else:
            state = "in" if self.in_scope else "out of"
            found = (
                f"{state} textile scope: score {self.score:g}/{self.threshold:g}, "
                f"hits {format_hits(self.hits)}"
            )
        if self.ignored:
            found += "; not counted, inside " + ", ".join(
                dict.fromkeys(h.term for h in self.ignored)
            )
        return found


def format_hits(hits: Sequence[TermHit]) -> str:
    """Term hits as explain, preview and evaluate print them: "cotton (title, 2)"."""
    return ", ".join(f"{h.term} ({h.field}, {h.weight:g})" for h in hits) or "-"


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
    #: Distinct include terms needed unless one is in the title.
    min_terms: int = 1
    #: The textile-scope gate the topic requires (None: it has none, or opted out).
    gate: ScopeGate | None = None
    #: id() of each include term: an item none of them occurs in cannot score.
    include_ids: frozenset[int] = frozenset()
    #: id() of each exclude term: an item one of them occurs in is out.
    exclude_ids: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "include_ids", frozenset(id(t) for t in self.include))
        object.__setattr__(self, "exclude_ids", frozenset(id(t) for t in self.exclude))

    @classmethod
    def from_config(
        cls, topic: TopicConfig, rule_sets: Mapping[str, RuleSet], gate: ScopeGate | None = None
    ) -> CompiledTopic:
        sets = [rule_sets[name] for name in topic.use if name in rule_sets]
        include = [*topic.include, *(t for s in sets for t in s.include)]
        exclude = [*topic.exclude, *(t for s in sets for t in s.exclude)]
        all_of = [*topic.all_of, *(g for s in sets for g in s.all_of)]
        return cls(
            slug=topic.slug,
            include=_distinct(_compile(t) for t in dict.fromkeys(include)),
            all_of=tuple(tuple(_compile(t) for t in group) for group in all_of),
            exclude=tuple(_compile(t) for t in dict.fromkeys(exclude)),
            expression=parse_expression(topic.match) if topic.match else None,
            threshold=topic.threshold,
            min_terms=topic.min_terms,
            weights=topic.weights.model_dump(),
            sources=frozenset(topic.sources),
            gate=gate if topic.scope else None,
        )


def _distinct(terms: Iterable[Term]) -> tuple[Term, ...]:
    """One term per thing it matches: "yarn" and "yarns" have one stem, so they are one
    term (the heavier weight kept), and an item scores it once."""
    kept: dict[tuple[object, ...], Term] = {}
    for term in terms:
        key = (term.field, term.mode, term.words, term.substring, term.place,
               term.pattern.pattern if term.pattern is not None else None)  # fmt: skip
        if key not in kept or term.weight > kept[key].weight:
            kept[key] = term
    return tuple(kept.values())


#: The rule set that is the textile-scope gate.
SCOPE_RULE_SET = "scope"


def compile_topics(
    topics: Iterable[TopicConfig],
    rule_sets: Mapping[str, RuleSet] | None = None,
    trade_sources: frozenset[str] = frozenset(),
) -> tuple[CompiledTopic, ...]:
    """``trade_sources``: ids of textile trade-press sources (``AppConfig.trade_press``)."""
    rule_sets = rule_sets or {}
    gate = None
    if (scope := rule_sets.get(SCOPE_RULE_SET)) is not None:
        gate = ScopeGate(
            include=_distinct(_compile(t) for t in dict.fromkeys(scope.include)),
            exclude=tuple(_compile(t) for t in dict.fromkeys(scope.exclude)),
            threshold=scope.threshold,
            trade_sources=trade_sources,
            ignore=tuple(_compile(t) for t in dict.fromkeys(scope.ignore)),
        )
    return tuple(CompiledTopic.from_config(t, rule_sets, gate) for t in topics)


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
    #: The scope gate's verdict, when the topic requires it.
    scope: ScopeVerdict | None = None
    #: The score was reached by fewer distinct terms than ``min_terms``, none in the title.
    too_few_terms: int | None = None

    def reasons(self) -> list[str]:
        """Why the item is out (or what else decided), beyond score and hits."""
        found = []
        if self.too_few_terms is not None:
            found.append(f"only {self.too_few_terms} distinct term(s), none in the title")
        if self.source_excluded:
            found.append("source not in this topic's sources")
        if self.scope is not None and not self.scope.in_scope:
            found.append("out of textile scope")
        if self.vetoes:
            found.append(f"vetoed by {format_hits(self.vetoes)}")
        if self.missing_all_of:
            found.append(f"missing all_of: {'; '.join(self.missing_all_of)}")
        if self.expression is not None:
            found.append(f"match expression {'holds' if self.expression else 'fails'}")
        return found


_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z0-9\"'(])|[。！？；]")


def lead_sentence(text: str, limit: int = 400) -> str:
    """The first sentence of a summary (at most ``limit`` characters): up to the first
    full stop followed by a capital, or a Chinese full stop."""
    text = text.strip()[: limit + 1]
    found = _SENTENCE_END.search(text)
    return (text[: found.end()] if found else text)[:limit]


def item_fields(item: Item, source_name: str = "") -> dict[str, str]:
    return {
        "title": item.title,
        "lead": lead_sentence(item.summary_text),
        "summary": item.summary_text,
        "category": " | ".join(item.categories),
        "source": f"{item.source_id} {source_name}".strip(),
        "language": item.language or "",
    }


def judge_scope(
    item: Item, gate: ScopeGate, found: Mapping[int, list[str]], weights: Mapping[str, float]
) -> ScopeVerdict:
    """Whether ``item`` passes the textile-scope gate."""
    vetoes = _hits(gate.exclude, found, weights)
    hits = _hits(gate.include, found, weights)
    score = _score(hits)
    trade = item.source_id in gate.trade_sources
    ignored = () if found.keys().isdisjoint(gate.ignore_ids) else _hits(gate.ignore, found, weights)
    return ScopeVerdict(
        in_scope=not vetoes and (trade or score >= gate.threshold),
        score=score, threshold=gate.threshold, hits=hits, vetoes=vetoes, trade_source=trade,
        ignored=ignored,
    )  # fmt: skip


def _score(hits: Iterable[TermHit]) -> float:
    """Each term counts once, in its best field."""
    best: dict[str, float] = {}
    for hit in hits:
        best[hit.term] = max(best.get(hit.term, 0.0), hit.weight)
    return sum(best.values())


def judge(
    item: Item,
    topic: CompiledTopic,
    source_name: str = "",
    found: Mapping[int, list[str]] | None = None,
    scope: ScopeVerdict | None = None,
    fields: Mapping[str, FieldText] | None = None,
    include_rows: Sequence[_Row] | None = None,
) -> TopicVerdict:
    """The full reasoning of one topic about one item. ``found`` (id(term) -> fields it
    occurs in), ``scope`` (the gate's verdict) and ``fields`` (the item's indexed
    text) are computed once per item when several topics judge it; ``include_rows``
    (the rows of the topic's include terms in ``found``) once for all topics."""
    if fields is None:
        fields = index_fields(item_fields(item, source_name))
    if found is None:
        found = TermIndex(_terms(topic), _masks(topic.gate)).hits(fields)
    if topic.gate is None:
        scope = None
    elif scope is None:
        scope = judge_scope(item, topic.gate, found, topic.weights)
    source_excluded = bool(topic.sources) and item.source_id not in topic.sources
    vetoed = not found.keys().isdisjoint(topic.exclude_ids)
    vetoes = _hits(topic.exclude, found, topic.weights) if vetoed else ()
    if vetoes:
        # Excludes come first: the item is out, and nothing inside an exclude phrase (棉花
        # inside 棉花糖) is reported as a hit.
        return TopicVerdict(
            slug=topic.slug, belongs=False, score=0.0, threshold=topic.threshold, hits=(),
            vetoes=vetoes, missing_all_of=(), expression=None, source_excluded=source_excluded,
            scope=scope,
        )  # fmt: skip
    hits = _hits(topic.include, found, topic.weights, include_rows)
    score = _score(hits)
    missing: tuple[str, ...] = ()
    group_hits: list[TermHit] = []
    if topic.all_of:
        found_in_groups = [_hits(group, found, topic.weights) for group in topic.all_of]
        missing = tuple(
            " | ".join(t.text for t in group)
            for group, in_group in zip(topic.all_of, found_in_groups, strict=True)
            if not in_group
        )
        group_hits = [h for in_group in found_in_groups for h in in_group]
    expression = None
    expression_hits: list[TermHit] = []
    if topic.expression is not None:
        matched: list[tuple[Term, str]] = []
        expression = evaluate(topic.expression, fields, matched, found)
        expression_hits = [_hit(term, name, topic.weights) for term, name in matched]
    scored = score >= topic.threshold if topic.include else True
    too_few = None
    if scored and topic.include and topic.min_terms > 1:
        distinct = _too_few_terms(topic, hits)
        if distinct is not None:
            scored, too_few = False, distinct
    belongs = (
        not source_excluded
        and (scope is None or scope.in_scope)
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
        # The include hits are distinct (one a term and field); others may repeat them.
        hits=tuple(dict.fromkeys([*hits, *group_hits, *expression_hits]))
        if group_hits or expression_hits
        else hits,
        vetoes=vetoes,
        missing_all_of=missing,
        expression=expression,
        source_excluded=source_excluded,
        scope=scope,
        too_few_terms=too_few,
    )


def _too_few_terms(topic: CompiledTopic, hits: Sequence[TermHit]) -> int | None:
    """How many distinct include terms ``hits`` has, when that is fewer than the topic
    needs and none is in the title; None when they are enough."""
    distinct = len({h.term for h in hits})
    if distinct < topic.min_terms and not any(h.field == "title" for h in hits):
        return distinct
    return None


def _scores(topic: CompiledTopic, hits: Sequence[TermHit]) -> bool:
    """Whether include ``hits`` put an item in ``topic``, for a topic only its include
    terms decide (see ``_Lookup.plain``): what ``judge`` decides for it, without the
    reasoning explain shows."""
    if _score(hits) < topic.threshold:
        return False
    return topic.min_terms <= 1 or _too_few_terms(topic, hits) is None


def _gate_of(topics: Sequence[CompiledTopic]) -> ScopeGate | None:
    return next((t.gate for t in topics if t.gate is not None), None)


def verdicts(
    item: Item, topics: Sequence[CompiledTopic], source_name: str = ""
) -> tuple[TopicVerdict, ...]:
    """Every topic's reasoning about ``item``, its words looked up once for all topics.
    ``place:`` hits name the places found ("place:asia (Tiruppur)")."""
    fields = index_fields(item_fields(item, source_name))
    found = _lookup(topics).index.hits(fields)
    gate = _gate_of(topics)
    weights = topics[0].weights if topics else {}
    scope = judge_scope(item, gate, found, weights) if gate is not None else None
    judged = tuple(judge(item, topic, source_name, found, scope, fields) for topic in topics)
    places = {t.text: t for topic in topics for t in topic.include if t.place is not None}
    return tuple(_with_place_names(v, places, fields) for v in judged)


def _with_place_names(
    verdict: TopicVerdict, places: Mapping[str, Term], fields: Mapping[str, FieldText]
) -> TopicVerdict:
    if not places or not any(h.term in places for h in verdict.hits):
        return verdict

    def named(hit: TermHit) -> TermHit:
        if hit.term not in places or hit.field not in fields:
            return hit
        names = ", ".join(places[hit.term].places_in(fields[hit.field]))
        return term_hit(f"{hit.term} ({names})", hit.field, hit.weight)

    return replace(verdict, hits=tuple(map(named, verdict.hits)))


def categorize(
    item: Item,
    topics: Sequence[CompiledTopic],
    source_name: str = "",
    fields: Mapping[str, FieldText] | None = None,
) -> tuple[TopicMatch, ...]:
    """Every topic ``item`` belongs to, with the terms that put it there. ``fields``:
    the item's indexed text (``item_fields``), when the caller reads it too."""
    if fields is None:
        fields = index_fields(item_fields(item, source_name))
    lookup = _lookup(topics)
    found = lookup.index.hits(fields)
    gate = _gate_of(topics)
    scope = None
    if gate is not None:
        scope = judge_scope(item, gate, found, topics[0].weights)
        if not scope.in_scope and all(t.gate is not None for t in topics):
            return ()  # out of scope for every topic: nothing more to look at
    matches = []
    # Most topics have none of their include terms in a given item: it cannot reach the
    # threshold (always above zero), so the full reasoning is not needed; nor for a
    # vetoed topic (explain's ``judge`` says by what).
    for position, rows in lookup.candidates(found):
        topic = topics[position]
        if position in lookup.plain:
            if topic.gate is not None and scope is not None and not scope.in_scope:
                continue
            hits = _hits(topic.include, found, topic.weights, rows)
            if _scores(topic, hits):
                matches.append(TopicMatch(slug=topic.slug, hits=hits))
            continue
        verdict = judge(item, topic, source_name, found, scope, fields, rows)
        if verdict.belongs:
            matches.append(TopicMatch(slug=verdict.slug, hits=verdict.hits))
    return tuple(matches)


def _hit(term: Term, field: str, weights: Mapping[str, float]) -> TermHit:
    return term_hit(term.text, field, weights.get(field, 1.0) * term.weight)


def _hits(
    terms: Sequence[Term],
    found: Mapping[int, list[str]],
    weights: Mapping[str, float],
    rows: Sequence[_Row] | None = None,
) -> tuple[TermHit, ...]:
    """The hits of ``terms`` among ``found``, in the curator's order. ``rows``: the
    rows (``_hit_table``) of the terms in ``found``, when they are known."""
    if rows is None:
        table = _hit_table(terms, weights)
        rows = list(map(table.__getitem__, table.keys() & found.keys()))
    present = sorted(rows)  # by position: each term is there once
    return tuple([by_field[name] for _, by_field, term_id in present for name in found[term_id]])


#: A term's place in its list, its hit in each field, and its id.
_Row = tuple[int, dict[str, TermHit], int]

#: id(terms) -> (terms, weights, id(term) -> its row). Compiled topics live as long as
#: their configuration; a TermHit is made once per term, field and weights (making them
#: was a tenth of categorizing), and an item's hits are looked up, not made.
_hit_tables: dict[int, tuple[Sequence[Term], Mapping[str, float], dict[int, _Row]]] = {}


def _hit_table(terms: Sequence[Term], weights: Mapping[str, float]) -> dict[int, _Row]:
    cached = _hit_tables.get(id(terms))
    if cached is None or cached[0] is not terms or cached[1] is not weights:
        if len(_hit_tables) > 10_000:  # configurations reloaded many times over
            _hit_tables.clear()
        table: dict[int, _Row] = {}
        for position, term in enumerate(terms):
            if id(term) not in table:
                names = (term.field,) if term.field else FIELDS
                hits = {name: _hit(term, name, weights) for name in names}
                table[id(term)] = (position, hits, id(term))
        cached = _hit_tables[id(terms)] = (terms, weights, table)
    return cached[2]


def _terms(topic: CompiledTopic) -> list[Term]:
    gate = (*topic.gate.include, *topic.gate.exclude) if topic.gate is not None else ()
    expression = leaves(topic.expression) if topic.expression is not None else ()
    groups = (t for group in topic.all_of for t in group)
    return [*topic.include, *topic.exclude, *groups, *expression, *gate]


def _masks(gate: ScopeGate | None) -> tuple[Term, ...]:
    """The gate's ignore phrases: what the term index hides."""
    return gate.ignore if gate is not None else ()


@dataclass(frozen=True, slots=True)
class _Lookup:
    """A taxonomy's term index, and which topics each term can put an item in or veto:
    one pass over an item's terms finds the topics worth judging (testing each topic's
    terms against the item's was a tenth of categorizing)."""

    index: TermIndex
    #: id(term) -> the positions of the topics it is an include term of, with its row
    #: there (``_hit_table``).
    includes: dict[int, tuple[tuple[int, _Row], ...]]
    #: id(term) -> the positions of the topics it vetoes.
    excludes: dict[int, tuple[int, ...]]
    #: Topics with no include terms: judged whatever an item holds.
    always: frozenset[int]
    #: Topics only their include terms, the gate and the vetoes decide (no all_of,
    #: expression or sources): categorize scores them without the full reasoning.
    plain: frozenset[int]

    @classmethod
    def of(cls, topics: Sequence[CompiledTopic]) -> _Lookup:
        terms = (t for topic in topics for t in _terms(topic))
        includes: dict[int, list[tuple[int, _Row]]] = {}
        excludes: dict[int, list[int]] = {}
        for position, topic in enumerate(topics):
            table = _hit_table(topic.include, topic.weights)
            for term_id, row in table.items():
                includes.setdefault(term_id, []).append((position, row))
            for term_id in topic.exclude_ids:
                excludes.setdefault(term_id, []).append(position)
        return cls(
            index=TermIndex(terms, _masks(_gate_of(topics))),
            includes={term_id: tuple(p) for term_id, p in includes.items()},
            excludes={term_id: tuple(p) for term_id, p in excludes.items()},
            always=frozenset(p for p, topic in enumerate(topics) if not topic.include),
            plain=frozenset(
                p
                for p, topic in enumerate(topics)
                if topic.include
                and not topic.all_of
                and topic.expression is None
                and not topic.sources
            ),
        )

    def candidates(self, found: Iterable[int]) -> list[tuple[int, list[_Row]]]:
        """The positions of the topics that may hold an item whose terms are ``found``,
        in order, with the rows of their include terms there: an include term of theirs
        is there (or they have none) and no exclude term."""
        rows: dict[int, list[_Row]] = {position: [] for position in self.always}
        vetoed: set[int] = set()
        for term_id in found:
            for position, row in self.includes.get(term_id, ()):
                rows.setdefault(position, []).append(row)
            if term_id in self.excludes:
                vetoed.update(self.excludes[term_id])
        return [(position, rows[position]) for position in sorted(rows.keys() - vetoed)]


# The lookup of the topics last categorized with (one taxonomy at a time in practice).
_last_lookup: tuple[Sequence[CompiledTopic], _Lookup] | None = None


def _lookup(topics: Sequence[CompiledTopic]) -> _Lookup:
    global _last_lookup
    if _last_lookup is None or _last_lookup[0] is not topics:
        _last_lookup = (topics, _Lookup.of(topics))
    return _last_lookup[1]
