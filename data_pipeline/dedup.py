"""De-duplication within the generated data: exact copies, then near-duplicates by MinHash LSH.

- Exact: two items are copies when their texts are equal after `decontaminate.normalise` (lower-cased, every
  whitespace run collapsed to one space), compared by SHA-256 of that normalised text.
- Near: word shingles of `shingle_size` (default 5) consecutive tokens of the normalised text, tokens being
  identifier/number runs or single punctuation characters (so `f(x)+1` is f ( x ) + 1); a text with fewer
  tokens is one shingle. Shingles are hashed with CRC-32 (deterministic across runs and machines, unlike
  Python's `hash`, and several times faster than datasketch's default SHA-1; the MinHash mixes it further). Candidates come from datasketch's MinHashLSH (`num_perm` 128 permutations, seed 1,
  its bands tuned for `threshold`), and each candidate pair is then checked with the exact Jaccard similarity
  of the two shingle sets: an item is a near-duplicate when Jaccard >= `threshold` (default 0.8) with an item
  already kept. LSH may miss a pair near the threshold (it is probabilistic in what it proposes) but never
  removes one below it.

Which copy is kept is deterministic: items are visited in input order (or sorted by `key(item)` when given,
ties in input order) and the first visited is kept; each later copy is removed and names the kept one. The
kept list keeps the input order. Shards merged in any order give the same result when `key` is the item id.

API (called by `python -m data_pipeline generate`, `stats` and `merge`):

    deduplicate(items, text_of, *, threshold=0.8, shingle_size=5, num_perm=128, key=None, id_of=None)
        -> DedupReport(kept, exact_removed, near_removed)   (each removal a `Duplicate`; .summary() counts)

What this module deliberately does not do: compare against benchmarks (data_pipeline.decontaminate) or decide
which text of an item to compare (the caller's `text_of`, e.g. the problem plus the final solution).
"""

from __future__ import annotations

import functools
import hashlib
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Generic, TypeVar

from data_pipeline.decontaminate import default_item_id, normalise

T = TypeVar("T")

DEFAULT_THRESHOLD = 0.8
DEFAULT_SHINGLE_SIZE = 5
DEFAULT_NUM_PERM = 128
# datasketch's default seed, spelled out: the permutations (and so which pairs LSH proposes) never change.
MINHASH_SEED = 1
SHINGLE_CACHE_ITEMS = 4096  # shingle sets kept for candidate checks (see `deduplicate`)

_TOKEN = re.compile(r"\w+|[^\w\s]")


class DedupError(ValueError):
    """Bad arguments or item texts; one line."""


@dataclass(frozen=True)
class Duplicate:
    index: int  # position of the removed item in the input
    item_id: str
    kept_index: int
    kept_id: str
    similarity: float  # 1.0 for exact copies; the shingles' Jaccard similarity for near ones

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class DedupReport(Generic[T]):
    kept: list[T]
    exact_removed: list[Duplicate]
    near_removed: list[Duplicate]
    threshold: float

    def summary(self) -> dict:
        return {
            "checked": len(self.kept) + len(self.exact_removed) + len(self.near_removed),
            "kept": len(self.kept),
            "exact_removed": len(self.exact_removed),
            "near_removed": len(self.near_removed),
            "near_threshold": self.threshold,
        }


def exact_key(text: str) -> str:
    """The hash two exact copies share: SHA-256 of the normalised text."""
    return hashlib.sha256(normalise(text).encode("utf-8")).hexdigest()


def shingles(text: str, size: int = DEFAULT_SHINGLE_SIZE) -> set[str]:
    """The set of `size`-token shingles of the normalised text (one shingle when it has fewer tokens)."""
    tokens = _TOKEN.findall(normalise(text))
    if len(tokens) <= size:
        return {" ".join(tokens)}
    return {" ".join(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def deduplicate(
    items: Sequence[T],
    text_of: Callable[[T], str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    shingle_size: int = DEFAULT_SHINGLE_SIZE,
    num_perm: int = DEFAULT_NUM_PERM,
    key: Callable[[T], Any] | None = None,
    id_of: Callable[[T], str] | None = None,
) -> DedupReport[T]:
    """Remove exact copies and near-duplicates (Jaccard >= threshold); see the module docstring."""
    from datasketch import MinHash, MinHashLSH

    if not 0 < threshold <= 1:
        raise DedupError(f"threshold must be in (0, 1], got {threshold}")
    if shingle_size < 1 or num_perm < 16:
        raise DedupError(f"shingle_size must be >= 1 and num_perm >= 16, got {shingle_size} and {num_perm}")
    texts = []
    for index, item in enumerate(items):
        text = text_of(item)
        if not isinstance(text, str):
            raise DedupError(f"item {index}: text_of must return a str, got {type(text).__name__}")
        texts.append(text)
    ids = [id_of(item) if id_of is not None else default_item_id(item, i) for i, item in enumerate(items)]
    order = list(range(len(items)))
    if key is not None:
        order.sort(key=lambda i: key(items[i]))  # stable: ties stay in input order

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    # The permutations depend only on (num_perm, seed): drawn once, not per item (a third of the time otherwise).
    template = MinHash(num_perm=num_perm, seed=MINHASH_SEED)
    # Normalised-text hash -> (the kept item it is represented by, similarity to it). A copy of an item that was
    # itself removed as a near-duplicate is reported against the kept item, as a near-duplicate of it.
    first_by_hash: dict[str, tuple[int, float, bool]] = {}
    kept_indices: set[int] = set()
    # Similar items are each other's candidates again and again: recomputing a candidate's shingles per query
    # made a run of 200 look-alike items cost seconds. Bounded, since all of a big dataset's sets would not fit.
    shingles_of = functools.lru_cache(maxsize=SHINGLE_CACHE_ITEMS)(lambda i: shingles(texts[i], shingle_size))
    exact_removed: list[Duplicate] = []
    near_removed: list[Duplicate] = []
    for index in order:
        digest = exact_key(texts[index])
        if digest in first_by_hash:
            kept, score, exact = first_by_hash[digest]
            removed = exact_removed if exact else near_removed
            removed.append(Duplicate(index, ids[index], kept, ids[kept], score))
            continue
        own = shingles_of(index)
        minhash = MinHash(
            num_perm=num_perm,
            seed=MINHASH_SEED,
            hashfunc=zlib.crc32,
            permutations=template.permutations,
            scheme=template.scheme,
        )
        minhash.update_batch([s.encode("utf-8") for s in own])
        best: tuple[float, int] | None = None
        for candidate in lsh.query(minhash):
            other = int(candidate)
            score = jaccard(own, shingles_of(other))
            # The most similar kept item; on a tie the one kept first (lowest index), whatever LSH's order.
            if score >= threshold and (best is None or (score, -other) > (best[0], -best[1])):
                best = (score, other)
        if best is not None:
            score = round(best[0], 4)
            near_removed.append(Duplicate(index, ids[index], best[1], ids[best[1]], score))
            first_by_hash[digest] = (best[1], score, False)
            continue
        first_by_hash[digest] = (index, 1.0, True)
        lsh.insert(str(index), minhash)
        kept_indices.add(index)
    exact_removed.sort(key=lambda d: d.index)
    near_removed.sort(key=lambda d: d.index)
    kept_items = [item for i, item in enumerate(items) if i in kept_indices]
    return DedupReport(kept_items, exact_removed, near_removed, threshold)
