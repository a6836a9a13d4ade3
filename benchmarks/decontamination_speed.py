"""Decontamination speed: 170,000 generated items (problem + solution) against HumanEval, HumanEval+ and all 974
MBPP tasks, with `data_pipeline.decontaminate`; goal under 10 minutes on this machine.

Run: `python -m benchmarks.decontamination_speed [--items 170000] [--naive-items 200] [--extract-items 2000]`.

The items are synthetic but shaped like the pipeline's output and deterministic (`--seed`): solutions are
snippets cut from the installed standard library (`seeds_from_source`) with identifiers renamed and a few
asserts added; problems are instruction-style paragraphs (150-1,200 characters) naming the snippet's function.
Among them 0.1 % are planted near-copies of benchmark prompts and solutions (light edits: should be removed)
and as many heavily edited ones (should mostly be kept); after the timed run, the planted items are checked
against a brute-force full score matrix (rapidfuzz cdist with no cutoff and no length band) so the speed is
not bought with misses.

Baselines, in the same run, on subsets of the same items, extrapolated linearly to all items:
- naive: a Python double loop calling `Levenshtein.normalized_similarity` for every (text, reference) pair;
- per-item extractOne: `rapidfuzz.process.extractOne(text, references, score_cutoff=threshold)` per text, one
  thread (what a straightforward rapidfuzz script does).
Each baseline's removals on its subset are compared with the fast path's on the same items, and the fast path
is also timed on that subset right after the baseline (a second ratio, less exposed to changes in the shared
machine's load between the full run and the baseline).

What it deliberately does not measure: loading or parsing real generated dialogues, or dedup.
"""

from __future__ import annotations

import argparse
import keyword
import os
import random
import re
import time

# A vocabulary for instruction-style problem text (what a questioner writes around a seed).
OPENINGS = (
    "Write a Python function `{name}` that {purpose}.",
    "Implement `{name}`: it should {purpose}.",
    "You are given a helper from a larger code base. Re-implement `{name}` so that it {purpose}.",
    "Create a function named `{name}` which {purpose}, and explain your approach briefly.",
    "Your task is to complete `{name}`. The function {purpose}.",
)
PURPOSES = (
    "parses the given input and returns a normalised representation",
    "validates its arguments and raises a ValueError with a clear message on bad input",
    "computes the result in a single pass over the data without extra copies",
    "returns a new list rather than modifying its argument in place",
    "handles unicode text, empty strings and very long inputs correctly",
    "caches intermediate results so repeated calls are fast",
    "works with any iterable, not only lists",
    "reads a configuration mapping and returns the effective settings",
)
SENTENCES = (
    "The input may be empty; in that case return an empty result instead of raising.",
    "Do not use any third-party packages; only the Python standard library is available.",
    "Write unit tests with assert statements that cover the normal case and at least two edge cases.",
    "The function must run in O(n log n) time or better for inputs of up to one million elements.",
    "Document the function with a docstring that states the arguments, the return value and the errors.",
    "If an argument has the wrong type, raise a TypeError that names the argument.",
    "Keep the original order of elements that compare equal (the result must be stable).",
    "Assume the input fits in memory, but avoid quadratic algorithms.",
    "Return None when no answer exists rather than a sentinel value such as -1.",
    "Include a short example of calling the function and the expected output.",
    "Numbers may be negative or zero, and floating point values must be compared with a tolerance.",
    "The code should be thread-safe; it will be called from several worker threads at once.",
    "Explain the time and space complexity of your solution after the code.",
    "Names of variables and functions must follow PEP 8.",
)
_IDENTIFIER = re.compile(r"\b[a-z_][a-z0-9_]{2,}\b")
_KEYWORDS = frozenset(keyword.kwlist) | {"self", "none", "true", "false"}


def rename_identifiers(code: str, rng: random.Random, count: int) -> str:
    """Rename up to `count` identifiers consistently (a model restating a snippet in its own words)."""
    names = sorted({n for n in _IDENTIFIER.findall(code) if n not in _KEYWORDS})
    for name in rng.sample(names, min(count, len(names))):
        code = re.sub(rf"\b{name}\b", f"{name[:3]}_{rng.randrange(1000)}", code)
    return code


def edit_characters(text: str, rng: random.Random, rate: float) -> str:
    """Random single-character substitutions, insertions and deletions at `rate` of the characters."""
    chars = list(text)
    for _ in range(int(len(chars) * rate)):
        pos = rng.randrange(len(chars))
        op = rng.random()
        if op < 0.4:
            chars[pos] = rng.choice("abcdefghijklmnopqrstuvwxyz_ ")
        elif op < 0.7:
            chars.insert(pos, rng.choice("abcdefghijklmnopqrstuvwxyz_ "))
        else:
            del chars[pos]
    return "".join(chars)


def make_items(count: int, seed: int, references) -> tuple[list[dict], dict[str, str]]:
    """`count` items and, for the planted ones, {item id: "light" | "heavy"}."""
    from data_pipeline.seeds import seeds_from_source

    rng = random.Random(seed)
    snippets = [s.text for s in seeds_from_source(seed=seed)]
    items, planted = [], {}
    plant_every = 1000  # 0.1 % light and 0.1 % heavy edits of benchmark texts
    for index in range(count):
        item_id = f"item-{index:06d}"
        if index % plant_every in (500, 501):
            kind = "light" if index % plant_every == 500 else "heavy"
            ref = rng.choice(references)
            copied = edit_characters(ref.text, rng, 0.02 if kind == "light" else 0.25)
            if ref.kind == "solution":
                copied = rename_identifiers(copied, rng, 1) if kind == "light" else copied
                item = {"id": item_id, "problem": "Solve the following task.", "solution": copied}
            else:
                item = {"id": item_id, "problem": copied, "solution": rng.choice(snippets)}
            items.append(item)
            planted[item_id] = kind
            continue
        snippet = rng.choice(snippets)
        match = re.search(r"(?:def|class)\s+(\w+)", snippet)
        name = match.group(1) if match else f"task_{index}"
        problem = rng.choice(OPENINGS).format(name=name, purpose=rng.choice(PURPOSES))
        problem += " " + " ".join(rng.sample(SENTENCES, rng.randint(1, 8)))
        solution = rename_identifiers(snippet, rng, rng.randint(0, 3))
        solution += f"\n\nassert {name}({rng.randint(0, 99)}) == {rng.randint(0, 99)}\n"
        items.append({"id": item_id, "problem": problem, "solution": solution})
    return items, planted


def fields(item: dict) -> dict:
    return {"problem": item["problem"], "solution": item["solution"]}


def naive_removed(items: list[dict], refs: list[str], threshold: float) -> tuple[set[str], float]:
    """Python double loop over every (text, reference) pair; (ids removed, seconds)."""
    from rapidfuzz.distance import Levenshtein

    from data_pipeline.decontaminate import normalise

    started = time.perf_counter()
    removed = set()
    for item in items:
        for text in fields(item).values():
            query = normalise(text)
            best = 0.0
            for ref in refs:
                best = max(best, Levenshtein.normalized_similarity(query, ref))
            if query and best >= threshold:
                removed.add(item["id"])
    return removed, time.perf_counter() - started


def extract_one_removed(items: list[dict], refs: list[str], threshold: float) -> tuple[set[str], float]:
    """rapidfuzz extractOne per text, with the cutoff, one thread; (ids removed, seconds)."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    from data_pipeline.decontaminate import normalise

    started = time.perf_counter()
    removed = set()
    for item in items:
        for text in fields(item).values():
            query = normalise(text)
            hit = process.extractOne(
                query, refs, scorer=Levenshtein.normalized_similarity, score_cutoff=threshold - 1e-9
            )
            if query and hit is not None:
                removed.add(item["id"])
    return removed, time.perf_counter() - started


def check_planted(items: list[dict], planted: dict[str, str], refs: list[str], threshold: float) -> dict:
    """Brute force (full score matrix, no cutoff, no band) on the planted items against the fast result."""
    import numpy as np
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    from data_pipeline.decontaminate import normalise

    chosen = [i for i in items if i["id"] in planted]
    texts = [normalise(t) for i in chosen for t in fields(i).values()]
    scores = process.cdist(
        texts, refs, scorer=Levenshtein.normalized_similarity, dtype=np.float64, workers=-1
    )
    best = scores.max(axis=1).reshape(len(chosen), 2).max(axis=1)
    should = {item["id"] for item, score in zip(chosen, best, strict=True) if score >= threshold}
    return {"should_remove": should}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=170_000, help="items to decontaminate (default 170000)")
    parser.add_argument("--naive-items", type=int, default=200, help="subset for the Python double loop")
    parser.add_argument("--extract-items", type=int, default=2000, help="subset for per-item extractOne")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic items")
    parser.add_argument("--workers", type=int, default=-1, help="rapidfuzz threads (-1: all cores)")
    args = parser.parse_args(argv)

    from data_pipeline.decontaminate import DEFAULT_THRESHOLD, decontaminate, load_references, normalise

    threshold = DEFAULT_THRESHOLD
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}")
    started = time.perf_counter()
    references = load_references()
    load_s = time.perf_counter() - started
    print(f"references: {len(references)} texts (HumanEval, HumanEval+, MBPP 974) loaded in {load_s:.1f} s")

    started = time.perf_counter()
    items, planted = make_items(args.items, args.seed, references)
    chars = sum(len(i["problem"]) + len(i["solution"]) for i in items)
    print(
        f"items: {len(items)} synthetic ({chars / len(items) / 2:.0f} characters per text on average, "
        f"{len(planted)} planted), made in {time.perf_counter() - started:.1f} s"
    )

    started = time.perf_counter()
    report = decontaminate(items, fields, references=references, workers=args.workers)
    fast_s = time.perf_counter() - started
    removed = {r.item_id for r in report.removed}
    print(
        f"decontaminate: {fast_s:.1f} s for {len(items)} items ({len(items) / fast_s:,.0f} items/s), "
        f"removed {len(removed)}; load average after: {os.getloadavg()[0]:.2f}"
    )
    goal = 600.0
    if len(items) >= 170_000:
        print(f"goal: under {goal:.0f} s for 170,000 items -> {'met' if fast_s < goal else 'NOT met'}")
    else:
        print(f"goal: under {goal:.0f} s for 170,000 items -> not measured (only {len(items)} items)")

    ref_texts = [normalise(r.text) for r in references]
    truth = check_planted(items, planted, ref_texts, threshold)["should_remove"]
    light = {i for i, kind in planted.items() if kind == "light"}
    heavy = {i for i, kind in planted.items() if kind == "heavy"}
    print(
        f"planted: light edits {len(light & removed)}/{len(light)} removed, heavy edits "
        f"{len(heavy & removed)}/{len(heavy)} removed; brute force says {len(truth)} of the planted reach "
        f"{threshold}, the fast path removed exactly those: {truth == (removed & set(planted))}; "
        f"removed among the other items: {len(removed - set(planted))}"
    )

    rng = random.Random(args.seed + 1)
    for name, runner, size in (
        ("naive double loop", naive_removed, args.naive_items),
        ("per-item extractOne", extract_one_removed, args.extract_items),
    ):
        subset = rng.sample(items, min(size, len(items)))
        found, seconds = runner(subset, ref_texts, threshold)
        # The fast path on the same subset right after, so a change in the machine's load between the full
        # run and the baseline does not decide the ratio alone.
        started = time.perf_counter()
        decontaminate(subset, fields, references=references, workers=args.workers)
        fast_subset_s = time.perf_counter() - started
        expected = {i["id"] for i in subset} & removed
        estimate = seconds / len(subset) * len(items)
        print(
            f"baseline {name}: {seconds:.1f} s for {len(subset)} items -> {estimate:,.0f} s estimated for "
            f"{len(items)} ({estimate / 60:.1f} min); ratio baseline/fast = {estimate / fast_s:,.1f}x "
            f"(on the same subset, measured next to it: {seconds / fast_subset_s:,.1f}x); "
            f"same removals on the subset: {found == expected}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
