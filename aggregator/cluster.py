"""Near-duplicate stories across sources: MinHash LSH for candidates, exact Jaccard to decide.

Exact dedupe (same canonical link or permalink guid, ``dedupe.py``) stays the first and
cheapest test. An item that is new by those keys is compared here with the items of
the last ``cluster.window`` days: its normalized title and text become shingles (word
pairs for Latin text, character pairs for Chinese), a MinHash of them cut
into LSH bands finds candidates, and the exact Jaccard similarity of the shingle
sets decides. Short texts need stronger evidence: below ``short_text`` shingles the
threshold rises by ``short_text_margin``.

The LSH index lives in the database (``item_bands``: one row per band of each
item), not in memory: memory stays flat however many items the window holds, a
restart rebuilds nothing, and several workers sharing one database see each other's
items. Pure; storage does the look-ups.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from aggregator.models import StoredItem

NUM_PERM = 128
#: LSH bands x rows per band (= NUM_PERM). Two items become candidates when all the rows
#: of any one band agree: likely from a Jaccard similarity of about 0.4 up (datasketch's
#: optimum for a 0.35 threshold). The exact check decides; this only finds candidates.
#: Changing them needs a migration rebuilding item_bands.
BANDS, ROWS = 32, 4
# Odd 64-bit multipliers folding a band's ROWS values into one key, and a per-band
# offset so equal values in different bands never meet.
_ROW_MULTIPLIERS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)
_BAND_OFFSETS = np.arange(BANDS, dtype=np.uint64) * np.uint64(0xFF51AFD7ED558CCD)
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


def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """The NUM_PERM affine permutations h -> a*h + b (mod 2^32, a odd), drawn once with
    a fixed seed (they were datasketch 2.0's "affine32" draws; kept)."""
    draw = np.random.RandomState(1)
    a = draw.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = draw.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b


_A, _B = _permutations()
_EMPTY = np.full(NUM_PERM, 0xFFFFFFFF, dtype=np.uint32)
_PAIR_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))

#: Hashes of the tokens met lately: words recur (Zipf), and hashing one costs more than
#: looking it up. Bounded: a daemon meets new words forever.
_token_hashes: dict[str, int] = {}
TOKEN_CACHE_LIMIT = 100_000


def _token_hash(token: str) -> int:
    value = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    if len(_token_hashes) >= TOKEN_CACHE_LIMIT:
        _token_hashes.clear()
    _token_hashes[token] = value
    return value


def shingle_hashes(words: Sequence[str]) -> np.ndarray:
    """32-bit hashes of the shingles of ``words`` (adjacent pairs, or the single token),
    each combined from its two tokens' hashes: no string is built or hashed per
    shingle. A shingle occurring twice hashes twice; a MinHash does not mind."""
    cached = _token_hashes
    hashes = np.array([cached.get(w) or _token_hash(w) for w in words], dtype=np.uint64)
    if len(hashes) > 1:
        hashes = hashes[:-1] * _PAIR_MULTIPLIER + hashes[1:]  # ordered: (a, b) != (b, a)
    hashes ^= hashes >> np.uint64(30)  # SplitMix64's finalizer spreads every bit
    hashes *= _MIX[0]
    hashes ^= hashes >> np.uint64(27)
    hashes *= _MIX[1]
    hashes ^= hashes >> np.uint64(31)
    return (hashes >> np.uint64(32)).astype(np.uint32)


def signature(title: str, text: str) -> bytes:
    """The MinHash of an item's shingles (those ``shingles`` returns): NUM_PERM 32-bit
    minima, 512 bytes, of the permuted shingle hashes.

    Stored band keys derive from it: changing it needs a migration rebuilding
    item_bands (migration 9 did, when SHA-1 per shingle string gave way to cached token
    hashes: 0.24 -> ~0.1 ms an item)."""
    hashes = shingle_hashes(tokens(f"{title} . {text}"))
    if not hashes.size:
        return _EMPTY.tobytes()
    permuted = hashes.reshape(-1, 1) * _A + _B  # uint32: the wrap-around is the modulo
    return permuted.min(axis=0).astype("<u4").tobytes()


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def threshold_for(a: frozenset[str], b: frozenset[str], settings: ClusterSettings) -> float:
    """Short texts share shingles by chance more easily: ask them for more."""
    if min(len(a), len(b)) < settings.short_text:
        return min(0.95, settings.threshold + settings.short_text_margin)
    return settings.threshold


def same_story(
    a: frozenset[str], b: frozenset[str], settings: ClusterSettings
) -> tuple[bool, float]:
    similarity = jaccard(a, b)
    return similarity >= threshold_for(a, b, settings), similarity


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


def band_keys(signature_data: bytes) -> list[int]:
    """The item's LSH band keys (as signed 63-bit integers, which every database stores)
    from its persisted signature."""
    values = np.frombuffer(signature_data, dtype="<u4").astype(np.uint64)
    folded = (values.reshape(BANDS, ROWS) * _ROW_MULTIPLIERS).sum(axis=1) ^ _BAND_OFFSETS
    return [int(key) for key in folded >> np.uint64(1)]


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
    carried = {ref.source_id for ref in lead.sources}
    related = [
        replace(ref, link=other.link or ref.link)
        for other in members
        if other.item_id != lead.item_id
        for ref in other.sources[:1]
        if ref.source_id not in carried
    ]
    topics = sorted({slug for m in members for slug in m.topics})
    return replace(lead, public_id=public_id, topics=tuple(topics), related=tuple(related))
