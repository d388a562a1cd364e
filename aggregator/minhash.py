"""MinHash signatures and the LSH band index that finds near-duplicate candidates.

An item's shingles (``cluster.shingles``) become a MinHash signature of NUM_PERM
32-bit minima, cut into BANDS band keys; two items sharing a band key are candidates,
which ``cluster.same_story`` then decides exactly.

The database keeps each item's band keys as one row (``item_lsh``); a cycle that
stores something loads them into a ``BandIndex`` in memory (12 bytes a key: ~35 MB
at 90,000 items, freed when the cycle ends) and catches up with what other workers
committed once per transaction. Pure: storage reads and writes the rows.

The only module needing numpy: imported when a cycle has something to prepare or
store, so a cycle of 304s never loads it.
"""

from __future__ import annotations

import array
import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from aggregator.cluster import significant_digits, tokens

NUM_PERM = 128
#: LSH bands x rows per band (= NUM_PERM). Two items become candidates when all the rows
#: of any one band agree: likely from a Jaccard similarity of about 0.4 up (datasketch's
#: optimum for a 0.35 threshold). The exact check decides; this only finds candidates.
#: Changing them needs a migration rebuilding item_lsh.
BANDS, ROWS = 32, 4
# Odd 64-bit multipliers folding a band's ROWS values into one key, and a per-band
# offset so equal values in different bands never meet.
_ROW_MULTIPLIERS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)
_BAND_OFFSETS = np.arange(BANDS, dtype=np.uint64) * np.uint64(0xFF51AFD7ED558CCD)


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

    Stored band keys derive from it: changing it needs a migration rebuilding the
    band index (migration 9 did, when SHA-1 per shingle string gave way to cached token
    hashes: 0.24 -> ~0.1 ms an item)."""
    return signature_of(shingle_hashes(tokens(f"{title} . {text}")))


def distinct_hashes(hashes: np.ndarray) -> bytes:
    """Shingle hashes sorted and each once, 4 bytes apiece (``stories.Report.pairs``)."""
    return np.unique(hashes).astype("<u4").tobytes()


def signature_of(hashes: np.ndarray) -> bytes:
    """``signature`` from the shingle hashes (``shingle_hashes``)."""
    if not hashes.size:
        return _EMPTY.tobytes()
    permuted = hashes.reshape(-1, 1) * _A + _B  # uint32: the wrap-around is the modulo
    return permuted.min(axis=0).astype("<u4").tobytes()


def band_keys(signature_data: bytes) -> list[int]:
    """The item's LSH band keys (as signed 63-bit integers, which every database stores)
    from its signature."""
    return [int(key) for key in _folded(signature_data)]


def band_blob(signature_data: bytes) -> bytes:
    """``band_keys`` packed as BANDS little-endian 8-byte integers: how workers ship
    them and the database stores them (one value an item, not 32 rows)."""
    return _folded(signature_data).astype("<i8").tobytes()


def keys_of(blob: bytes) -> list[int]:
    """The band keys ``band_blob`` packed (and any ``figure_blob`` after them)."""
    return np.frombuffer(blob, dtype="<i8").tolist()


#: Figures an item is found by, at most (the most distinctive: longest first).
FIGURE_KEYS = 8


def figure_blob(item_figures: Iterable[str]) -> bytes:
    """Keys for the distinctive figures a report states (``cluster.figures``), packed
    like band keys and stored after them: a rewrite or a translation of a report,
    with few word pairs in common, still shares its figures. Left out: short numbers
    and years, which too many reports share."""
    # Keyed by their significant digits: 117.8 (亿 yuan) and 11.78 (billion) are one key.
    chosen = sorted(
        {significant_digits(f) for f in item_figures
         if len(f.replace(".", "")) >= 3 and not _is_year(f)},
        key=lambda f: (-len(f), f),
    )[:FIGURE_KEYS]  # fmt: skip
    return b"".join(hashlib.blake2b(f"figure {f}".encode(), digest_size=8).digest() for f in chosen)


def _is_year(figure: str) -> bool:
    return len(figure) == 4 and figure.isdigit() and 1990 <= int(figure) <= 2049


def split_keys(keys: Sequence[int]) -> tuple[Sequence[int], Sequence[int]]:
    """(band keys, figure keys) of one item's stored keys."""
    return keys[:BANDS], keys[BANDS:]


def _folded(signature_data: bytes) -> np.ndarray:
    values = np.frombuffer(signature_data, dtype="<u4").astype(np.uint64)
    folded = (values.reshape(BANDS, ROWS) * _ROW_MULTIPLIERS).sum(axis=1) ^ _BAND_OFFSETS
    return folded >> np.uint64(1)


#: Keys in a run that is no longer merged (12 bytes a key: 3 MB).
RUN_LIMIT = 1 << 18
#: A run no longer merged gets a bit array of the low FILTER_BITS bits of its keys
#: (256 KB; about one bit in eight set): a look-up binary-searches the run only for the
#: keys whose bit is set. Searching ~1,400 keys in a dozen runs of 256k was ~2 ms a
#: source batch, memory-bound; most keys are in none.
FILTER_BITS = 21
FILTER_MASK = (1 << FILTER_BITS) - 1


@dataclass(slots=True)
class _Run:
    keys: np.ndarray  # sorted
    slots: np.ndarray  # of each key's item
    filter: np.ndarray | None = None


def _bit_filter(keys: np.ndarray) -> np.ndarray:
    seen = np.zeros(1 << FILTER_BITS, dtype=bool)
    seen[keys & FILTER_MASK] = True
    return np.packbits(seen, bitorder="little")


#: The indexed items that hold one key: their ids and published Unix seconds, in
#: publishing order (a window of them is two binary searches away). A plain tuple: a
#: named one cost a second of a cold cycle, made for every key looked up.
Holders = tuple[list[int], list[int]]


class BandIndex:
    """The band keys of the items a new item can join, in memory for one cycle: key ->
    (item id, published Unix seconds).

    The database keeps one blob of keys an item (``item_lsh``); a cycle that stores
    something loads them once and adds its own items as it goes. Looking keys up in a
    B-tree of 32 rows an item cost more than the rest of storing (2.9 million rows at
    90,000 items; half of the polling process in a cold cycle).

    Keys sit in sorted numpy runs, each batch's added as a new run and neighbours
    merged when of similar size (a log-structured merge: a stable sort of two sorted
    runs is a linear merge), so adding stays cheap and a look-up searches ~log n runs.
    Runs stop growing at ``RUN_LIMIT`` keys: merging two halves of a 90,000-item index
    needed ~90 MB of temporaries; a look-up then searches a dozen or so more runs.
    """

    def __init__(self) -> None:
        self._runs: list[_Run] = []
        # Slot -> item id, and -> published Unix seconds (machine integers: a Python int
        # in a list costs 36 bytes, here 8).
        self._ids = array.array("q")
        self._published = array.array("q")
        self._known: set[int] = set()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item_id: int) -> bool:
        return item_id in self._known

    def add(self, entries: Iterable[tuple[int, int, bytes]]) -> None:
        """Index (item id, published Unix seconds, ``band_blob``) entries; an item
        already indexed is skipped (catching up reads back what this cycle added)."""
        chunk = iter(entries)
        while batch := list(itertools.islice(chunk, 4096)):  # bounded temporaries
            self._add_run(batch)

    def _add_run(self, entries: list[tuple[int, int, bytes]]) -> None:
        blobs: list[bytes] = []
        counts: list[int] = []
        first_slot = len(self._ids)
        for item_id, published, blob in entries:
            if item_id in self._known or not blob:
                continue
            self._known.add(item_id)
            self._ids.append(item_id)
            self._published.append(published)
            blobs.append(blob)
            counts.append(len(blob) // 8)
        if not blobs:
            return
        keys = np.frombuffer(b"".join(blobs), dtype="<i8")
        slots = np.repeat(np.arange(first_slot, len(self._ids), dtype=np.int32), counts)
        order = np.argsort(keys, kind="stable")
        self._runs.append(_Run(keys[order], slots[order]))
        runs = self._runs
        while (
            len(runs) > 1
            and len(runs[-2].keys) <= 2 * len(runs[-1].keys)
            and len(runs[-2].keys) < RUN_LIMIT
        ):
            a, b = runs[-2:]
            keys = np.concatenate((a.keys, b.keys))
            order = np.argsort(keys, kind="stable")  # two sorted runs: a linear merge
            runs[-2:] = [_Run(keys[order], np.concatenate((a.slots, b.slots))[order])]
        if len(runs[-1].keys) >= RUN_LIMIT:  # merged for the last time
            runs[-1].filter = _bit_filter(runs[-1].keys)

    def matches(
        self, keys: Iterable[int], since: int, until: int, most: int | None = None
    ) -> dict[int, Holders]:
        """Indexed items published between ``since`` and ``until`` (Unix seconds,
        inclusive) sharing a key with ``keys``: key -> its holders. A key
        more than ``most`` such items hold is left out: it marks a template (the story
        stage ranks without it), and listing its thousands of holders one by one was
        a quarter of a cold cycle's polling process (issue 16). All in numpy."""
        query = np.unique(np.fromiter(keys, dtype=np.int64))
        low_bits = query & FILTER_MASK
        published = np.frombuffer(self._published, dtype=np.int64)
        held_keys: list[np.ndarray] = []
        held_slots: list[np.ndarray] = []
        for run in self._runs:
            asked = query
            if run.filter is not None:  # only keys whose bit is set can be in the run
                asked = query[(run.filter[low_bits >> 3] >> (low_bits & 7)) & 1 == 1]
            first = run.keys.searchsorted(asked, side="left")
            count = run.keys.searchsorted(asked, side="right") - first
            present = count > 0
            if not present.any():
                continue
            first, count, asked = first[present], count[present], asked[present]
            # Every position first[k] .. first[k] + count[k] - 1, in one array.
            offsets = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
            slots = run.slots[np.repeat(first, count) + offsets]
            when = published[slots]
            in_window = (when >= since) & (when <= until)
            held_keys.append(np.repeat(asked, count)[in_window])
            held_slots.append(slots[in_window])
        if not held_keys:
            return {}
        key_of = np.concatenate(held_keys)
        slot_of = np.concatenate(held_slots)
        if most is not None and key_of.size:
            _, inverse, holders = np.unique(key_of, return_inverse=True,
                                                   return_counts=True)  # fmt: skip
            kept = holders[inverse] <= most
            key_of, slot_of = key_of[kept], slot_of[kept]
        if not key_of.size:
            return {}
        # Grouped by key in numpy; Python then slices lists once a key, not once a
        # holder (listing holders one by one was a tenth of a cold cycle's polling).
        when = published[slot_of]
        del published  # a view of the array: it cannot grow while one exists
        order = np.lexsort((when, key_of))  # by key, then by publishing time
        key_of, slot_of, when = key_of[order], slot_of[order], when[order]
        ids = np.frombuffer(self._ids, dtype=np.int64)[slot_of].tolist()
        starts = np.flatnonzero(np.concatenate(([True], key_of[1:] != key_of[:-1])))
        bounds = [*starts.tolist(), len(ids)]
        whens = when.tolist()
        return {
            key: (ids[a:b], whens[a:b])
            for key, a, b in zip(key_of[starts].tolist(), bounds, bounds[1:], strict=False)
        }
