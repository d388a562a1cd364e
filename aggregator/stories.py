"""The story stage: which story each new item belongs to.

    new items ──candidates──> the recent reports sharing its band or figure keys, the
        best few ──decision──> ``cluster.story_evidence`` against each candidate
        story's checked members, boilerplate word pairs left out ──merge──> a report
        that is the same story as two stories proves them one ──> ``NewItem`` rows

The story's primary (whose report a feed shows) is chosen when publishing (``primary``,
at the end of this module), from all its members, so it does not depend on arrival
order.

Why stories and not members: comparing a new report with one member at a time let
template reports chain (Monday's quote joined Sunday's, Tuesday's joined Monday's,
issue 16). A story is joined only when no member checked disagrees by its figures, and
stories a report joins both become one, so the result does not depend on which
report arrived first.
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from aggregator.cluster import (
    FIGURES_DIFFER,
    ClusterSettings,
    ReportFacts,
    StoryEvidence,
    judge,
    tokens,
)
from aggregator.models import StoredItem
from aggregator.storage import NewItem, StoryJoin, Transaction

if TYPE_CHECKING:
    import numpy as np

    from aggregator.minhash import BandIndex, Holders
    from aggregator.prepare import ReadyItem

#: Reports sharing at least this many distinctive figures with a new one are
#: candidates even without a band key in common (a rewrite, a translation).
MIN_SHARED_FIGURE_KEYS = 2
#: Candidates checked exactly per new item, the most alike first. Template reports
#: (daily quotes, press releases) share band keys with every earlier report of their
#: template: checking them all made the story stage grow with the corpus (issue 16).
MAX_CANDIDATES = 12
#: A band or figure key held by more stored items than this is left out of the
#: ranking: it marks a template, not a story (like a stop word).
MAX_ITEMS_A_KEY = 64
#: Reports kept taken apart during a cycle (about 1 kB each: pairs and facts, no text).
REPORTS_KEPT = 32768


class WordPairCounts:
    """How many recent reports contain each word pair, in 2**20 hashed counters.

    A word pair found in many more than COMMON_AT reports is the portals' boilerplate
    ("受多重因素影响，市场观望情绪较浓", "click here to subscribe"): two reports made
    of it are not one story, so similarity weighs it down, like a rare word weighs more
    in search. A story is reposted by a handful of portals; boilerplate recurs in
    hundreds of reports.
    Counters are halved every HALVE_AFTER reports, so the counts follow what portals
    write now. Hash collisions only ever make a pair look more common than it is."""

    SIZE = 1 << 20
    COMMON_AT = 24
    HALVE_AFTER = 100_000

    def __init__(self, counts: np.ndarray | None = None, reports: int = 0) -> None:
        import numpy as np

        self.counts = counts if counts is not None else np.zeros(self.SIZE, dtype=np.uint16)
        self.reports = reports
        self.changed = False
        # Each counter's weight, kept up to date as reports are counted: looking a
        # report's weights up is then one gather (they were a tenth of a cold cycle's
        # polling process when worked out for every comparison).
        self._table = self._weight(self.counts)

    def _weight(self, seen: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.minimum(1.0, self.COMMON_AT / np.maximum(seen, 1)).astype(np.float32)

    @classmethod
    def from_bytes(cls, reports: int, blob: bytes) -> WordPairCounts:
        import numpy as np

        try:
            counts = np.frombuffer(zlib.decompress(blob), dtype=np.uint16).copy()
        except (zlib.error, ValueError):
            return cls()  # damaged: start counting again (they only weigh pairs down)
        if counts.size != cls.SIZE:
            return cls()  # another layout: start counting again
        return cls(counts, reports)

    def to_bytes(self) -> bytes:
        return zlib.compress(self.counts.tobytes(), 1)

    def add(self, pairs: bytes) -> None:
        """Count one report's word pairs (``Report.pairs``)."""
        import numpy as np

        if not pairs:
            return
        slots = np.frombuffer(pairs, dtype=np.uint32) & (self.SIZE - 1)
        seen = self.counts[slots]
        seen += seen < 0xFFFF
        self.counts[slots] = seen
        self._table[slots] = self._weight(seen)
        self.reports += 1
        self.changed = True
        if self.reports >= self.HALVE_AFTER:
            self.counts >>= 1
            self.reports //= 2
            self._table = self._weight(self.counts)

    def weights(self, pairs: bytes) -> np.ndarray:
        """How much each pair counts, in ``pairs``' order: 1, or COMMON_AT / n for a
        pair n > COMMON_AT recent reports carry (boilerplate counts for little, never
        for nothing)."""
        import numpy as np

        return self._table[np.frombuffer(pairs, dtype=np.uint32) & (self.SIZE - 1)]


def weighted_similarity(
    a: bytes, weights_a: np.ndarray, total_a: float, b: bytes, total_b: float
) -> float:
    """Weighted Jaccard of two reports' word pairs (sorted hashes; ``weights_a`` from
    ``WordPairCounts.weights``, ``total_a`` and ``total_b`` the sums of their weights)."""
    import numpy as np

    if not a or not b:
        return 0.0
    mine, theirs = np.frombuffer(a, dtype=np.uint32), np.frombuffer(b, dtype=np.uint32)
    # Both sorted and distinct: a binary search finds the shared ones (intersect1d
    # sorts both again).
    at = np.minimum(theirs.searchsorted(mine), theirs.size - 1)
    shared = float(weights_a[theirs[at] == mine].sum())
    union = total_a + total_b - shared
    return shared / union if union else 0.0


def pair_hashes(title: str, text: str) -> bytes:
    """The report's word pairs (``cluster.shingles``) as sorted, distinct 32-bit hashes,
    the ones its MinHash is made of (``minhash.shingle_hashes``): they index the stored
    counters, compare in one numpy call, and ship and cache in 4 bytes a pair."""
    from aggregator.minhash import distinct_hashes, shingle_hashes

    return distinct_hashes(shingle_hashes(tokens(f"{title} . {text}")))


@dataclass(frozen=True, slots=True)
class Report:
    """What the decision compares of one report."""

    #: Word pairs: sorted distinct hashes (``pair_hashes``).
    pairs: bytes
    facts: ReportFacts

    @classmethod
    def of(
        cls, title: str, text: str, pairs: bytes | None = None, facts: str | None = None
    ) -> Report:
        """``pairs``, ``facts``: the report's ``pair_hashes`` and encoded
        ``ReportFacts``, when already known (prepared in a worker, or stored)."""
        return cls(
            pair_hashes(title, text) if pairs is None else pairs,
            (ReportFacts.decode(facts) if facts else None) or ReportFacts.of(title, text),
        )

    @classmethod
    def stored(cls, pairs: bytes | None, facts: str | None) -> Report | None:
        """The report from its stored pairs and facts; None when either is missing or
        in another layout (then ``of`` makes it from the text)."""
        decoded = ReportFacts.decode(facts) if facts else None
        return None if pairs is None or decoded is None else cls(pairs, decoded)

    @property
    def figures(self) -> frozenset[str]:
        return self.facts.figures

    @property
    def chinese(self) -> bool:
        return self.facts.chinese


#: Why two reports alike in words are still other stories: each title states a figure,
#: or names a place, that the other report does not mention at all ("9月纺织服装出口
#: 下跌22.5%" against "12月纺织服装出口上涨23.5%"; "海运费回落，苏州…" against
#: "…，南通…"). A rewrite's title picks other facts of the same report, which the
#: other version states in its text.
TITLE_FIGURES_DIFFER = "titles state other figures"
TITLE_PLACES_DIFFER = "titles name other places"
#: Evidence that a candidate is another report in the same template: its story is
#: not joined, however alike another of its members is.
TEMPLATE_SIBLING = frozenset({FIGURES_DIFFER, TITLE_FIGURES_DIFFER, TITLE_PLACES_DIFFER})


def _sibling(mine: Report, theirs: Report) -> str | None:
    """Another report in the same template, told apart by its title."""
    if mine.chinese != theirs.chinese:
        return None  # units, scales and scripts change in translation
    mine_, theirs_ = mine.facts, theirs.facts
    if any(f not in theirs_.figures for f in mine_.title_figures) and any(
        f not in mine_.figures for f in theirs_.title_figures
    ):
        return TITLE_FIGURES_DIFFER
    if any(not theirs_.names(p) for p in mine_.title_places) and any(
        not mine_.names(p) for p in theirs_.title_places
    ):
        return TITLE_PLACES_DIFFER
    return None


@dataclass(frozen=True, slots=True)
class Candidate:
    report: Report
    story_id: int


def decide_story(
    mine: Report,
    candidates: Mapping[int, Candidate],
    counts: WordPairCounts,
    settings: ClusterSettings,
    total_of: Callable[[int, Report], float] | None = None,
) -> StoryJoin:
    """The story a report joins among its candidates' stories, and the other stories
    it proves the same one (to merge into it), or a new story (``StoryJoin()``).
    ``total_of``: a candidate's total pair weight, when the caller keeps it.

    A story is joined when one of its checked members is the same story by the
    evidence and none is another report in the same template (words alike, figures
    differ)."""
    my_weights = counts.weights(mine.pairs)
    my_total = float(my_weights.sum())
    best: dict[int, tuple[StoryEvidence, int]] = {}
    vetoed: set[int] = set()
    for item_id, candidate in sorted(candidates.items()):
        theirs = candidate.report
        their_total = (
            total_of(item_id, theirs) if total_of else float(counts.weights(theirs.pairs).sum())
        )
        pairs = min(len(mine.pairs), len(theirs.pairs)) // 4  # 4 bytes a pair
        short = pairs < settings.short_text
        evidence = judge(
            weighted_similarity(mine.pairs, my_weights, my_total, theirs.pairs, their_total),
            settings.threshold + (settings.short_text_margin if short else 0.0),
            mine.figures, theirs.figures, cross_lingual=theirs.chinese != mine.chinese,
        )  # fmt: skip
        if evidence.same and (sibling := _sibling(mine, theirs)):
            evidence = replace(evidence, same=False, reason=sibling)
        if evidence.reason in TEMPLATE_SIBLING:
            vetoed.add(candidate.story_id)
        elif evidence.same:
            held = best.get(candidate.story_id)
            if held is None or evidence.similarity > held[0].similarity:
                best[candidate.story_id] = (evidence, item_id)
    joined = {story: found for story, found in best.items() if story not in vetoed}
    if not joined:
        return StoryJoin()
    story_id = min(joined)  # the oldest story keeps its id when stories merge
    evidence, via = max(joined.values(), key=lambda found: (found[0].similarity, -found[1]))
    return StoryJoin(
        story_id=story_id, similarity=evidence.similarity, via=via, reason=evidence.reason,
        merged=tuple(sorted(s for s in joined if s != story_id)),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Pending:
    """An item of the batch being stored, not written yet."""

    report: Report
    story_id: int
    published: int  # Unix seconds


@dataclass(slots=True)
class StoryStage:
    """The story stage of one cycle: the near-duplicate index and the word-pair counts,
    loaded when the cycle first stores a new item and caught up with what other
    writers committed once per transaction."""

    settings: ClusterSettings
    now: datetime
    bands: BandIndex | None = None
    band_marker: int | None = None
    #: The transaction the index last caught up in (once per transaction is enough).
    caught_up_in: Transaction | None = None
    counts: WordPairCounts | None = None
    #: Reports lately stored or compared, taken apart (``_candidates``), and their
    #: stories as this transaction knows them (merges move them; another worker's
    #: commits show in the next transaction).
    reports: OrderedDict[int, Report] = field(default_factory=OrderedDict)
    story_of: dict[int, int] = field(default_factory=dict)
    #: story id -> the cached items in it (what a merge moves).
    members: dict[int, set[int]] = field(default_factory=dict)
    stories_seen_in: Transaction | None = None
    #: item id -> (its total pair weight, the reports counted when it was summed).
    weight_totals: dict[int, tuple[float, int]] = field(default_factory=dict)

    def band_index(self, tx: Transaction) -> BandIndex:
        """The cycle's band index, with what other writers committed since its last
        look. The first time, band keys nothing new can join any more are dropped."""
        if self.bands is None:
            from aggregator.minhash import BandIndex  # numpy: only cycles storing items

            tx.prune_bands(self.now - self.settings.window * 2)
            self.bands = BandIndex()
        if self.caught_up_in is not tx:
            first = self.band_marker is None
            rows, self.band_marker = tx.band_sets(self.band_marker)
            self.bands.add(rows)
            self.caught_up_in = tx
            if first:
                tx.release_cache()
        return self.bands

    def word_pairs(self, tx: Transaction) -> WordPairCounts:
        if self.counts is None:
            stored = tx.word_pair_counts()
            self.counts = WordPairCounts.from_bytes(*stored) if stored else WordPairCounts()
        return self.counts

    @property
    def counted(self) -> bool:
        """Whether this cycle counted word pairs that are not stored yet."""
        return self.counts is not None and self.counts.changed

    def save(self, tx: Transaction) -> None:
        """Store the word-pair counts, if this cycle counted any reports."""
        if self.counts is not None and self.counts.changed:
            tx.set_word_pair_counts(self.counts.reports, self.counts.to_bytes())
            self.counts.changed = False

    def assign(self, tx: Transaction, fresh: Sequence[ReadyItem]) -> list[NewItem]:
        """Ids and stories for a batch of new items: LSH candidates from the band index
        in one look-up for the whole batch, plus the batch's own earlier items."""
        from aggregator.minhash import keys_of, split_keys

        index = self.band_index(tx)
        counts = self.word_pairs(tx)
        window = int(self.settings.window.total_seconds())
        bands = [keys_of(r.bands) for r in fresh]
        published = [int(r.item.published_at.timestamp()) for r in fresh]
        stored = index.matches(
            (key for keys in bands for key in keys),
            min(published) - window,
            max(published) + window,
            most=MAX_ITEMS_A_KEY,
        )
        reports = [
            Report.of(r.item.title, r.item.summary_text, r.pairs or None, r.facts or None)
            for r in fresh
        ]
        for report in reports:  # a feed's own boilerplate counts before it is compared
            counts.add(report.pairs)
        in_batch: dict[int, list[int]] = {}
        pending: dict[int, _Pending] = {}
        batch: list[NewItem] = []
        totals = self.weight_totals

        def total_of(item_id: int, report: Report) -> float:
            """A candidate's total pair weight, worked out again once the counts grew
            by a twentieth: template reports are candidates of thousands of reports,
            and looking their weights up each time was a tenth of a cold cycle."""
            held = totals.get(item_id)
            if held is None or counts.reports > held[1] * 1.05 + 16:
                if len(totals) > 2 * REPORTS_KEPT:
                    totals.clear()
                held = totals[item_id] = (float(counts.weights(report.pairs).sum()), counts.reports)
            return held[0]

        for ready, keys, when, report in zip(fresh, bands, published, reports, strict=True):
            band_keys, figure_keys = split_keys(keys)
            bands_shared = _shared_keys(band_keys, when, window, stored, in_batch, pending)
            figures_shared = _shared_keys(figure_keys, when, window, stored, in_batch, pending)
            chosen = _best_candidates(bands_shared, figures_shared)
            found = self._candidates(tx, chosen, pending)
            story = decide_story(report, found, counts, self.settings, total_of)
            item_id = tx.reserve_id("items")
            story_id = story.story_id
            if story_id is None:
                story_id = tx.reserve_id("stories")
            elif story.merged:
                batch, pending = self._merge(tx, story_id, story.merged, batch, pending)
            batch.append(NewItem(
                item_id=item_id, item=ready.item, story_id=story_id,
                new_story=story.story_id is None, similarity=story.similarity,
                via=story.via, reason=story.reason, bands=ready.bands, topics=ready.topics,
                pairs=report.pairs, facts=ready.facts or report.facts.encode(),
            ))  # fmt: skip
            pending[item_id] = _Pending(report, story_id, when)
            for key in keys:
                in_batch.setdefault(key, []).append(item_id)
        index.add(
            (new.item_id, when, new.bands) for new, when in zip(batch, published, strict=True)
        )
        for new in batch:  # this cycle's reports are the next ones' likeliest candidates
            self._keep(new.item_id, pending[new.item_id].report, new.story_id)
        return batch

    def release(self) -> None:
        """Drop the index, the counts and the caches (the cycle stored its last item):
        what publishing allocates then reuses their memory instead of adding to it."""
        self.bands = None
        self.band_marker = None
        self.caught_up_in = None
        self.counts = None
        self.stories_seen_in = None
        self.forget()

    def forget(self) -> None:
        """Drop what the caches hold (a write rolled back: some ids never got stored)."""
        self.reports.clear()
        self.weight_totals.clear()
        self._forget_stories()

    def _forget_stories(self) -> None:
        self.story_of.clear()
        self.members.clear()

    def _keep(self, item_id: int, report: Report, story_id: int) -> None:
        self.reports[item_id] = report
        self.reports.move_to_end(item_id)
        self._place(item_id, story_id)
        while len(self.reports) > REPORTS_KEPT:
            evicted, _ = self.reports.popitem(last=False)
            held = self.story_of.pop(evicted, None)
            if held is not None and (left := self.members.get(held)) is not None:
                left.discard(evicted)
                if not left:  # a story none of whose reports is cached any more
                    del self.members[held]

    def _place(self, item_id: int, story_id: int) -> None:
        self.story_of[item_id] = story_id
        self.members.setdefault(story_id, set()).add(item_id)

    def _merge(
        self,
        tx: Transaction,
        into: int,
        others: tuple[int, ...],
        batch: list[NewItem],
        pending: dict[int, _Pending],
    ) -> tuple[list[NewItem], dict[int, _Pending]]:
        """Stories ``others`` become story ``into``: stored members, the batch's own and
        the cached ones."""
        tx.merge_stories(into, others)
        gone = set(others)
        for story_id in others:
            for item_id in self.members.pop(story_id, ()):
                self._place(item_id, into)
        # A story founded earlier in this batch is not written at all: its founder
        # joins ``into`` like the rest.
        batch = [
            replace(n, story_id=into, new_story=False) if n.story_id in gone else n for n in batch
        ]
        pending = {
            i: replace(p, story_id=into) if p.story_id in gone else p for i, p in pending.items()
        }
        return batch, pending

    def _candidates(
        self, tx: Transaction, chosen: set[int], pending: Mapping[int, _Pending]
    ) -> dict[int, Candidate]:
        """The chosen candidates' reports and stories. A stored report is read and
        taken apart once a cycle while it is among the last REPORTS_KEPT used: the
        same template reports are candidates of many new items."""
        if self.stories_seen_in is not tx and tx.others_write:
            self._forget_stories()  # another worker may have merged stories meanwhile
        self.stories_seen_in = tx
        found = {c: Candidate(p.report, p.story_id) for c in chosen if (p := pending.get(c))}
        stored = sorted(c for c in chosen if c not in pending)
        unknown_story = [c for c in stored if c in self.reports and c not in self.story_of]
        for item_id, story_id in tx.story_ids(unknown_story).items():
            self._place(item_id, story_id)
        for item_id in stored:
            if item_id in self.reports and item_id in self.story_of:
                self.reports.move_to_end(item_id)
                found[item_id] = Candidate(self.reports[item_id], self.story_of[item_id])
        unread = [c for c in stored if c not in found]
        stored_reports = tx.item_reports(unread)
        ready = {i: Report.stored(pairs, facts) for i, (_, pairs, facts) in stored_reports.items()}
        texts = tx.item_texts([i for i, report in ready.items() if report is None])
        for item_id, (story_id, pairs, facts) in stored_reports.items():
            report = ready[item_id] or Report.of(*texts[item_id], pairs, facts or None)
            self._keep(item_id, report, story_id)
            found[item_id] = Candidate(report, story_id)
        return found


_NO_HOLDERS: Holders = ([], [])


def _shared_keys(
    keys: Sequence[int],
    when: int,
    window: int,
    stored: Mapping[int, Holders],
    in_batch: Mapping[int, list[int]],
    pending: Mapping[int, _Pending],
) -> dict[int, int]:
    """item id -> how many of ``keys`` it shares, among the items within the window
    (stored, and this batch's earlier ones)."""
    shared_count: Counter[int] = Counter()
    for key in set(keys):
        ids, published = stored.get(key, _NO_HOLDERS)
        batch_holders = in_batch.get(key, ())
        if len(ids) + len(batch_holders) > MAX_ITEMS_A_KEY:
            continue  # a key of a whole template says nothing about one story
        if ids:  # in publishing order: the window is a slice, counted in C
            lowest = bisect_left(published, when - window)
            shared_count.update(ids[lowest : bisect_right(published, when + window, lowest)])
        for item_id in batch_holders:
            if abs(pending[item_id].published - when) <= window:
                shared_count[item_id] += 1
    return shared_count


def _best_candidates(bands: Mapping[int, int], figures_: Mapping[int, int]) -> set[int]:
    """The candidates worth an exact check: any item sharing a band key, or several
    distinctive figures; ranked by the figures shared (a repost states the same ones,
    another report in its template others), then by the band keys shared, at most
    MAX_CANDIDATES."""
    pool = set(bands) | {i for i, n in figures_.items() if n >= MIN_SHARED_FIGURE_KEYS}
    ranked = sorted(pool, key=lambda i: (-figures_.get(i, 0), -bands.get(i, 0), -i))
    return set(ranked[:MAX_CANDIDATES])


# --- the primary: whose report a story's entry shows ----------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """What choosing a story's primary item needs to know about one member."""

    item_id: int
    published_at: datetime
    source_name: str
    original_publisher: str | None
    priority: int = 0


def primary(members: Sequence[Member]) -> Member:
    """The original publisher when a member names one that another member is; else the
    earliest published; ties broken by source priority (higher first), then first stored."""
    named = {m.original_publisher.casefold() for m in members if m.original_publisher}
    originals = [m for m in members if m.source_name.casefold() in named]
    pool = originals or list(members)
    return min(pool, key=lambda m: (m.published_at, -m.priority, m.item_id))


def story_entry(
    public_id: str, members: Sequence[StoredItem], priorities: dict[str, int]
) -> StoredItem:
    """One feed entry for a story: its primary item, under the story's id, naming the
    other reports; its topics are those of any member."""
    by_id = {m.item_id: m for m in members}
    chosen = primary(
        [
            Member(
                item_id=m.item_id,
                published_at=m.published_at,
                source_name=m.sources[0].name if m.sources else "",
                original_publisher=m.original_publisher,
                priority=priorities.get(m.sources[0].source_id, 0) if m.sources else 0,
            )
            for m in members
        ]
    )
    lead = by_id[chosen.item_id]
    # Every other report is listed, by its own link, even when its source also carries
    # the lead (a portal reporting a story twice): a member left out was a report no
    # subscriber could reach. One entry per link.
    shown = {lead.link} | {ref.link for ref in lead.sources}
    related = []
    for other in members:
        if other.item_id == lead.item_id or not other.sources:
            continue
        ref = replace(other.sources[0], link=other.link or other.sources[0].link)
        if ref.link in shown:
            continue
        shown.add(ref.link)
        related.append(ref)
    topics = sorted({slug for m in members for slug in m.topics})
    return replace(lead, public_id=public_id, topics=tuple(topics), related=tuple(related))
