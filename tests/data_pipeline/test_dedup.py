"""De-duplication within the data: exact and near copies go, distinct items stay, the kept copy is deterministic."""

import json

import pytest

from data_pipeline.dedup import DedupError, deduplicate, exact_key, jaccard, shingles
from data_pipeline.seeds import seeds_from_source

BASE = "\n".join(
    [
        "def moving_average(values, window):",
        '    """Return the simple moving averages of `values` over `window` items."""',
        "    if window <= 0:",
        "        raise ValueError('window must be positive')",
        "    averages = []",
        "    total = 0.0",
        "    for index, value in enumerate(values):",
        "        total += value",
        "        if index >= window:",
        "            total -= values[index - window]",
        "        if index + 1 >= window:",
        "            averages.append(total / window)",
        "    return averages",
        "",
        "assert moving_average([1, 2, 3, 4], 2) == [1.5, 2.5, 3.5]",
        "assert moving_average([5, 5, 5], 3) == [5.0]",
        "assert moving_average([], 3) == []",
    ]
)
DISTINCT = [
    "def reverse_words(sentence):\n    return ' '.join(reversed(sentence.split()))\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n    def push(self, x):\n        self.items.append(x)\n",
    "Write a function that merges two sorted lists into one sorted list without using sort().",
    "import re\n\ndef is_email(text):\n    return re.fullmatch(r'[^@]+@[^@]+\\.[a-z]+', text) is not None\n",
]


def items_of(texts):
    return [{"id": f"i{n}", "text": t} for n, t in enumerate(texts)]


def text(entry):
    return entry["text"]


def test_exact_copies_up_to_whitespace_and_case_are_removed():
    copy = "  " + BASE.upper().replace("\n", "\n\n") + "\n"
    items = items_of([BASE, DISTINCT[0], copy, BASE])
    report = deduplicate(items, text)
    assert [i["id"] for i in report.kept] == ["i0", "i1"]
    assert [(d.index, d.kept_id, d.similarity) for d in report.exact_removed] == [
        (2, "i0", 1.0),
        (3, "i0", 1.0),
    ]
    assert report.near_removed == []
    assert exact_key(copy) == exact_key(BASE)


def test_near_copy_is_removed_and_distinct_items_kept():
    near = BASE.replace("assert moving_average([], 3) == []", "assert moving_average([7], 1) == [7.0]")
    assert 0.8 <= jaccard(shingles(BASE), shingles(near)) < 1.0
    items = items_of([*DISTINCT[:2], BASE, *DISTINCT[2:], near])
    report = deduplicate(items, text)
    assert [i["id"] for i in report.kept] == ["i0", "i1", "i2", "i3", "i4"]
    (dup,) = report.near_removed
    assert (dup.index, dup.item_id, dup.kept_index, dup.kept_id) == (5, "i5", 2, "i2")
    assert dup.similarity == pytest.approx(jaccard(shingles(BASE), shingles(near)), abs=1e-4)
    assert report.summary() == {
        "checked": 6,
        "kept": 5,
        "exact_removed": 0,
        "near_removed": 1,
        "near_threshold": 0.8,
    }
    json.dumps([d.to_json() for d in report.near_removed])


def test_a_pair_below_the_threshold_is_kept():
    # Half of the function rewritten: similar, but well under 0.8 Jaccard.
    lines = BASE.splitlines()
    other = "\n".join(
        lines[:7] + ["    result = []", "    for i in range(len(values) - window + 1):"] + lines[14:]
    )
    score = jaccard(shingles(BASE), shingles(other))
    assert 0.2 < score < 0.8
    report = deduplicate(items_of([BASE, other]), text)
    assert len(report.kept) == 2
    # With a threshold under their similarity they are near-duplicates.
    lowered = deduplicate(items_of([BASE, other]), text, threshold=score - 0.05)
    assert [d.index for d in lowered.near_removed] == [1]


def test_which_copy_is_kept_is_deterministic_and_follows_the_key():
    near = BASE.replace("window must be positive", "window has to be positive")
    items = [{"id": "b", "text": near}, {"id": "a", "text": BASE}, {"id": "c", "text": DISTINCT[0]}]
    by_input = deduplicate(items, text)
    assert [i["id"] for i in by_input.kept] == ["b", "c"]
    by_id = deduplicate(items, text, key=lambda i: i["id"])
    assert [i["id"] for i in by_id.kept] == ["a", "c"]  # kept in input order
    assert [(d.item_id, d.kept_id) for d in by_id.near_removed] == [("b", "a")]
    # Shards merged in another order: the same survivor when the key is the id.
    assert deduplicate(list(reversed(items)), text, key=lambda i: i["id"]).kept == [items[2], items[1]]


def test_copy_of_a_removed_near_duplicate_names_the_kept_item():
    near = BASE.replace("window must be positive", "window has to be positive")
    report = deduplicate(items_of([BASE, near, near]), text)
    assert [i["id"] for i in report.kept] == ["i0"]
    assert [(d.index, d.kept_index) for d in report.near_removed] == [(1, 0), (2, 0)]
    assert report.exact_removed == []


def test_real_snippets_keep_distinct_ones_and_run_twice_the_same():
    seeds = seeds_from_source(limit=400, lines_per_window=0)
    items = [{"id": s.id, "text": s.text} for s in seeds]
    first = deduplicate(items, text)
    second = deduplicate(items, text)
    assert first.kept == second.kept and first.near_removed == second.near_removed
    assert len(first.kept) > 300
    # Every removal really is a near copy of the item it names (never a false positive).
    for dup in first.near_removed:
        assert jaccard(shingles(items[dup.index]["text"]), shingles(items[dup.kept_index]["text"])) >= 0.8


def test_shingles_are_code_aware_tokens():
    assert shingles("f(x)+1", size=2) == {"f (", "( x", "x )", ") +", "+ 1"}
    assert shingles("short", size=5) == {"short"}


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(DedupError, match=r"threshold"):
        deduplicate([], text, threshold=1.5)
    with pytest.raises(DedupError, match=r"item 0: text_of must return a str"):
        deduplicate([{"text": None}], text)
