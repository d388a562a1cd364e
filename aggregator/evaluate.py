"""``textile-feeds evaluate LABELS.jsonl``: how well the topic rules agree with labelled
items, for curators measuring their rule edits. Pure: no database, no network.

A labels file has one JSON object a line::

    {"id": "e001", "title": "...", "summary": "...", "source_category": "industry news",
     "lang": "en", "style": "trade", "topics": ["cashmere-wool", "asian-markets"]}

``title`` and ``topics`` are required; ``summary``, ``source_category`` (a string or a
list), ``lang`` and ``style`` (any grouping label: "trade", "mt", "trap") are optional.
An item with ``"topics": []`` is one that should get no topic (outside textile scope,
or a textile item no topic carries).

Printed: precision, recall and F1 per topic; macro-F1 (the mean of the topics' F1) and
micro figures; the same for each language and style apart; the items labelled with no
topic that got one; and the worst errors with ``explain``'s reasons.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from aggregator.categorize import CompiledTopic, TopicVerdict, format_hits, verdicts
from aggregator.models import Item, ParsedEntry
from aggregator.normalize import normalize_entry

_NOW = datetime(2026, 1, 1, tzinfo=UTC)


class LabelsError(ValueError):
    """A labels file that cannot be read (with its path and line)."""


@dataclass(frozen=True, slots=True)
class LabelledItem:
    id: str
    item: Item
    gold: frozenset[str]
    lang: str
    style: str


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules did with one labelled item."""

    case: LabelledItem
    got: frozenset[str]
    verdicts: tuple[TopicVerdict, ...]

    @property
    def false_positives(self) -> frozenset[str]:
        return self.got - self.case.gold

    @property
    def false_negatives(self) -> frozenset[str]:
        return self.case.gold - self.got


@dataclass(frozen=True, slots=True)
class Scores:
    precision: float
    recall: float
    f1: float
    support: int
    true_pos: int = 0
    false_pos: int = 0
    false_neg: int = 0


@dataclass(frozen=True, slots=True)
class Report:
    """Scores of one group of decisions (all items, one language, one style)."""

    label: str
    items: int
    per_topic: dict[str, Scores]
    macro_f1: float
    micro: Scores
    exact: float
    #: Items labelled with no topic, and how many of them got one.
    no_topic_items: int
    no_topic_wrong: int
    decisions: tuple[Decision, ...] = field(default=(), repr=False)


def read_labels(path: Path, *, part: str = "all") -> list[LabelledItem]:
    """The items of a labels file. ``part``: ``odd`` or ``even`` keeps the items whose
    id ends in an odd or even number (a tuning half and a held-out half), ``all`` all."""
    cases: list[LabelledItem] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"{path}: cannot read: {exc}") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            case = _labelled(row, number)
        except (ValueError, KeyError, TypeError) as exc:
            raise LabelsError(f"{path}:{number}: {exc}") from exc
        if part == "all" or _parity(case.id) == part:
            cases.append(case)
    return cases


def _parity(item_id: str) -> str:
    digits = "".join(ch for ch in item_id if ch.isdigit())
    return "even" if digits and int(digits) % 2 == 0 else "odd"


def _labelled(row: dict[str, object], number: int) -> LabelledItem:
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    title = row["title"]
    topics = row["topics"]
    if not isinstance(title, str) or not isinstance(topics, list):
        raise ValueError("'title' must be a string and 'topics' a list")
    category = row.get("source_category") or ()
    categories = (category,) if isinstance(category, str) else tuple(map(str, category))  # type: ignore[call-overload]
    lang = str(row.get("lang") or "en")
    item_id = str(row.get("id") or number)
    # Through the normalize stage, as a feed's entry would go: the same text (credit
    # lines left out, entities decoded) as the topic rules see in production.
    entry = ParsedEntry(
        guid=item_id, link=None, title=title, title_is_html=False,
        summary_html=f"<p>{html.escape(str(row.get('summary') or ''))}</p>",
        published_raw=None, updated_raw=None, author=None, categories=categories,
        language=lang,
    )  # fmt: skip
    item = normalize_entry(entry, source_id="evaluate", base_url="", timezone=UTC, now=_NOW)
    if item is None:
        raise ValueError("an item with no title, text or link")
    return LabelledItem(
        id=item_id,
        item=item,
        gold=frozenset(map(str, topics)),
        lang=lang,
        style=str(row.get("style") or "-"),
    )


def decide(cases: Iterable[LabelledItem], topics: Sequence[CompiledTopic]) -> list[Decision]:
    decisions = []
    for case in cases:
        judged = verdicts(case.item, topics)
        got = frozenset(v.slug for v in judged if v.belongs)
        decisions.append(Decision(case=case, got=got, verdicts=judged))
    return decisions


def score(label: str, decisions: Sequence[Decision], slugs: Sequence[str]) -> Report:
    per_topic: dict[str, Scores] = {}
    totals = [0, 0, 0]
    for slug in slugs:
        tp = sum(1 for d in decisions if slug in d.got and slug in d.case.gold)
        fp = sum(1 for d in decisions if slug in d.got and slug not in d.case.gold)
        fn = sum(1 for d in decisions if slug not in d.got and slug in d.case.gold)
        per_topic[slug] = _scores(tp, fp, fn)
        totals = [totals[0] + tp, totals[1] + fp, totals[2] + fn]
    # Macro-F1 over the topics that occur in this group (gold or predicted).
    present = [s for s in per_topic.values() if s.support or s.false_pos]
    macro = sum(s.f1 for s in present) / len(present) if present else 0.0
    no_topic = [d for d in decisions if not d.case.gold]
    return Report(
        label=label,
        items=len(decisions),
        per_topic=per_topic,
        macro_f1=macro,
        micro=_scores(*totals),
        exact=sum(1 for d in decisions if d.got == d.case.gold) / len(decisions)
        if decisions
        else 0.0,
        no_topic_items=len(no_topic),
        no_topic_wrong=sum(1 for d in no_topic if d.got),
        decisions=tuple(decisions),
    )


def _scores(tp: int, fp: int, fn: int) -> Scores:
    precision = tp / (tp + fp) if tp + fp else (1.0 if not fn else 0.0)
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision, recall, f1, tp + fn, tp, fp, fn)


def evaluate(
    cases: Sequence[LabelledItem], topics: Sequence[CompiledTopic]
) -> tuple[Report, list[Report]]:
    """The report over every item, and one per language and per style."""
    slugs = [t.slug for t in topics]
    decisions = decide(cases, topics)
    groups: list[Report] = []
    for attribute in ("lang", "style"):
        values = sorted({getattr(d.case, attribute) for d in decisions})
        if len(values) > 1:
            for value in values:
                chosen = [d for d in decisions if getattr(d.case, attribute) == value]
                groups.append(score(f"{attribute}={value}", chosen, slugs))
    return score("all", decisions, slugs), groups


def format_report(overall: Report, groups: Sequence[Report], *, errors: int = 15) -> str:
    """The text ``evaluate`` prints."""
    lines = [f"{overall.items} labelled items", "", f"{'topic':<22} {'P':>5} {'R':>5} "
             f"{'F1':>5} {'gold':>5} {'tp':>4} {'fp':>4} {'fn':>4}"]  # fmt: skip
    for slug, s in overall.per_topic.items():
        lines.append(
            f"{slug:<22} {s.precision:5.2f} {s.recall:5.2f} {s.f1:5.2f} {s.support:5d} "
            f"{s.true_pos:4d} {s.false_pos:4d} {s.false_neg:4d}"
        )
    lines += ["", _summary_line(overall)]
    lines += [_summary_line(group) for group in groups]
    wrong_empty = [d for d in overall.decisions if not d.case.gold and d.got]
    lines += ["", f"Items labelled with no topic that got one: {len(wrong_empty)}"]
    lines += [f"  {d.case.id}: {d.case.item.title[:70]} -> {', '.join(sorted(d.got))}"
              for d in wrong_empty]  # fmt: skip
    worst = sorted(
        (d for d in overall.decisions if d.got != d.case.gold),
        key=lambda d: (-(len(d.false_positives) + len(d.false_negatives)), d.case.id),
    )[:errors]
    if worst:
        lines += ["", f"Worst errors (of {sum(d.got != d.case.gold for d in overall.decisions)}):"]
    for decision in worst:
        lines.append(f"  {decision.case.id} [{decision.case.lang}/{decision.case.style}] "
                     f"{decision.case.item.title[:80]}")  # fmt: skip
        by_slug = {v.slug: v for v in decision.verdicts}
        for slug in sorted(decision.false_positives):
            lines.append(f"    + {slug}: {_reasons(by_slug[slug])}")
        for slug in sorted(decision.false_negatives):
            verdict = by_slug.get(slug)
            lines.append(f"    - {slug}: {_reasons(verdict) if verdict else 'unknown topic'}")
    return "\n".join(lines)


def _summary_line(report: Report) -> str:
    share = (
        f"{report.no_topic_wrong}/{report.no_topic_items} "
        f"({report.no_topic_wrong / report.no_topic_items:.0%})"
        if report.no_topic_items
        else "0/0"
    )
    return (
        f"{report.label:<12} items {report.items:4d}  macro-F1 {report.macro_f1:.3f}  "
        f"micro P {report.micro.precision:.3f} R {report.micro.recall:.3f} "
        f"F1 {report.micro.f1:.3f}  exact {report.exact:.1%}  no-topic items given one {share}"
    )


def _reasons(verdict: TopicVerdict) -> str:
    parts = [f"score {verdict.score:g}/{verdict.threshold:g}", f"hits {format_hits(verdict.hits)}"]
    if verdict.scope is not None and (not verdict.scope.in_scope or verdict.belongs):
        parts.append(verdict.scope.reason())
    parts += [r for r in verdict.reasons() if r != "out of textile scope"]  # said just above
    return ", ".join(parts)
