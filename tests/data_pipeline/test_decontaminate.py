"""Decontamination against the shipped benchmarks: planted near-copies go, different items stay, exact threshold."""

import gzip
import json
import random
import re

import pytest
from rapidfuzz.distance import Levenshtein

from data_pipeline.decontaminate import (
    DecontaminationError,
    Reference,
    decontaminate,
    load_ds1000_references,
    load_references,
    nearest_references,
    normalise,
    similarity,
)
from evaluation.datasets import load_humaneval, load_mbpp


@pytest.fixture(scope="module")
def references():
    return load_references()


@pytest.fixture(scope="module")
def humaneval():
    return {p.task_id: p for p in load_humaneval().problems}


@pytest.fixture(scope="module")
def mbpp_rows():
    from evaluation.datasets import MBPP_FILE

    with open(MBPP_FILE, encoding="utf-8") as f:
        return {row["task_id"]: row for row in map(json.loads, f)}


def item(item_id, problem, solution):
    return {"id": item_id, "problem": problem, "solution": solution}


def fields(entry):
    return {"problem": entry["problem"], "solution": entry["solution"]}


DIFFERENT_PROBLEM = (
    "Write a function that parses an INI-style configuration string into a dictionary of sections, where each "
    "section maps option names to values; lines starting with '#' or ';' are comments."
)
DIFFERENT_SOLUTION = """def parse_ini(text):
    sections, current = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
        elif "=" in line and current is not None:
            key, value = line.split("=", 1)
            current[key.strip()] = value.strip()
    return sections
"""


def test_references_cover_every_benchmark_task(references):
    task_ids = {r.task_id for r in references}
    assert {f"HumanEval/{i}" for i in range(164)} <= task_ids
    # All 974 MBPP tasks, not only the test split.
    mbpp = {t for t in task_ids if t.startswith("Mbpp/")}
    assert len(mbpp) == len(load_mbpp(task_ids=None).problems) == 974
    kinds = {(r.benchmark, r.kind) for r in references}
    assert {("humaneval", "prompt"), ("humaneval", "solution"), ("mbpp", "description")} <= kinds
    assert ("humaneval+", "solution") in kinds  # HumanEval+ rewrote some canonical solutions
    # De-duplicated on normalised text.
    assert len({normalise(r.text) for r in references}) == len(references)


def test_planted_humaneval_near_copy_is_removed_and_a_different_item_kept(references, humaneval):
    original = humaneval["HumanEval/0"].canonical_solution
    # Renamed variables, a different indentation width and blank lines: still a copy.
    planted = original.replace("numbers", "values").replace("elem2", "other").replace("    ", "  ")
    planted = planted.replace("\n\n", "\n")
    assert planted != original
    assert 0.9 <= similarity(planted, original) < 1.0
    items = [
        item("a", DIFFERENT_PROBLEM, DIFFERENT_SOLUTION),
        item("b", "Solve the task below.", planted),
        item("c", "Sort a list of records by two keys.", "def f(rows):\n    return sorted(rows, key=key)\n"),
    ]
    report = decontaminate(items, fields, references=references)
    assert [i["id"] for i in report.kept] == ["a", "c"]
    assert [i["id"] for i in report.removed_items] == ["b"]
    (removal,) = report.removed
    assert (removal.index, removal.item_id, removal.field) == (1, "b", "solution")
    assert removal.task_id == "HumanEval/0"
    assert removal.score == pytest.approx(similarity(planted, original), abs=1e-4)
    assert removal.score >= 0.9
    json.dumps([r.to_json() for r in report.removed])  # reportable as is
    assert report.summary()["removed"] == 1
    assert report.summary()["removed_by_benchmark"] == {removal.benchmark: 1}


def test_planted_humaneval_prompt_in_the_problem_is_removed(references, humaneval):
    prompt = humaneval["HumanEval/12"].prompt
    planted = "  " + prompt.upper().replace("\n", "\n\n") + "\n"  # case and whitespace only: score 1
    report = decontaminate([item("p", planted, DIFFERENT_SOLUTION)], fields, references=references)
    (removal,) = report.removed
    assert (removal.field, removal.task_id, removal.score) == ("problem", "HumanEval/12", 1.0)


def test_planted_mbpp_problem_is_removed(references, mbpp_rows):
    # A task outside MBPP's usual test split (11-510): every one of the 974 counts.
    row = mbpp_rows[700]
    text = row["text"]
    planted = re.sub(r"^Write a (python )?function", "Write a Python function", text).rstrip(".") + "."
    planted = planted.replace(" the ", " the  ")
    assert similarity(planted, text) >= 0.9
    different = "Write a function to compute the checksum of an ISBN-13 code given as a string of digits."
    report = decontaminate(
        [item("x", planted, DIFFERENT_SOLUTION), item("y", different, DIFFERENT_SOLUTION)],
        fields,
        references=references,
    )
    assert [i["id"] for i in report.kept] == ["y"]
    (removal,) = report.removed
    assert (removal.task_id, removal.benchmark, removal.field) == ("Mbpp/700", "mbpp", "problem")


def test_planted_mbpp_solution_is_removed(references, mbpp_rows):
    code = mbpp_rows[20]["code"].replace("\r\n", "\n")
    # Tabs become four spaces, `p` becomes `k`, trailing spaces go: a copy under the threshold's eyes.
    planted = (
        code.replace("\t", "    ").replace("p = ", "k = ").replace("p + 1", "k + 1").replace(" \n", "\n")
    )
    assert 0.9 <= similarity(planted, code) < 1.0
    (match,) = nearest_references([planted], references)
    assert match is not None
    assert (match.reference.task_id, match.reference.kind) == ("Mbpp/20", "solution")


def test_threshold_boundary_is_exact():
    reference = "0123456789" * 10  # 100 characters, unchanged by normalisation
    refs = [Reference("Toy/1", "toy", "prompt", reference)]

    def substitute(n):
        chars = list(reference)
        for i in range(n):
            chars[i * 9] = "#"
        return "".join(chars)

    at = substitute(10)  # distance 10 of 100: similarity exactly 0.9
    below = substitute(11)  # 0.89
    assert Levenshtein.distance(at, reference) == 10
    assert Levenshtein.distance(below, reference) == 11
    at_match, below_match = nearest_references([at, below], refs, threshold=0.9)
    assert at_match is not None and at_match.score == pytest.approx(0.9)
    assert below_match is None
    # A threshold one step above: the 0.9 text no longer counts.
    assert nearest_references([at], refs, threshold=0.91) == [None]
    report = decontaminate([at, below], lambda t: t, references=refs)
    assert report.kept == [below] and [r.field for r in report.removed] == ["text"]


def test_length_prefilter_never_changes_the_answer():
    """The banded cdist search finds exactly what a brute-force double loop finds (at a lower threshold)."""
    rng = random.Random(7)
    alphabet = "abcdefgh ()=:_\n"
    refs_text = ["".join(rng.choice(alphabet) for _ in range(rng.randint(5, 300))) for _ in range(120)]

    def mutate(text):
        chars = list(text)
        for _ in range(rng.randint(0, max(1, len(chars) // 4))):
            op, pos = rng.random(), rng.randrange(len(chars) + 1)
            if op < 0.4 and pos < len(chars):
                chars[pos] = rng.choice(alphabet)
            elif op < 0.7:
                chars.insert(pos, rng.choice(alphabet))
            elif pos < len(chars):
                del chars[pos]
        return "".join(chars)

    queries = [mutate(rng.choice(refs_text)) for _ in range(300)] + [""]
    refs = [Reference(f"R/{i}", "toy", "prompt", t) for i, t in enumerate(refs_text)]
    for threshold in (0.6, 0.9):
        found = nearest_references(queries, refs, threshold=threshold)
        hits = 0
        for query, match in zip(queries, found, strict=True):
            q = normalise(query)
            scores = [Levenshtein.normalized_similarity(q, normalise(r)) if q else 0.0 for r in refs_text]
            best = max(range(len(refs)), key=lambda i: (scores[i], -i))
            if scores[best] >= threshold - 1e-12:
                hits += 1
                assert match is not None and match.score == pytest.approx(scores[best])
                assert match.reference.task_id == f"R/{best}"
            else:
                assert match is None
        assert hits > 20  # the comparison had something to compare


def test_text_far_longer_than_any_reference_is_kept(references, humaneval):
    solution = humaneval["HumanEval/0"].canonical_solution
    report = decontaminate([solution + "\n# padding\n" * 400], lambda t: t, references=references)
    assert report.removed == []


def test_empty_and_missing_fields_are_never_matches(references):
    report = decontaminate([{"problem": "", "solution": None}, {}], lambda d: d, references=references)
    assert len(report.kept) == 2


def test_bad_text_of_is_one_line_error(references):
    with pytest.raises(DecontaminationError, match=r"item 0: text_of must return a str or a mapping"):
        decontaminate([1], lambda x: x, references=references)
    with pytest.raises(DecontaminationError, match=r"threshold"):
        nearest_references(["x"], references, threshold=0)


def write_jsonl(path, rows, gz=False):
    opener = gzip.open if gz else open
    with opener(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


DS1000_PROMPT = (
    "Problem:\nI have a pandas DataFrame with a column of lists and want to explode it into one row per element "
    "while keeping the index. How can I do that?\nA:\n<code>\nimport pandas as pd\ndf = ...\n</code>\n"
)


def test_ds1000_file_is_used_when_given(tmp_path):
    file = write_jsonl(
        tmp_path / "ds1000.jsonl.gz",
        [
            {
                "prompt": DS1000_PROMPT,
                "reference_code": "result = df.explode('a')",
                "metadata": {"problem_id": 41},
            },
            {"prompt": "Problem: something else entirely", "reference_code": "x = 1", "metadata": {}},
        ],
        gz=True,
    )
    refs = load_ds1000_references(file)
    assert [r.task_id for r in refs] == ["DS-1000/41", "DS-1000/41", "DS-1000/1", "DS-1000/1"]
    planted = DS1000_PROMPT.replace("pandas DataFrame", "pandas dataframe").replace("How can", "how can")
    report = decontaminate(
        [item("d", planted, "print(1)"), item("k", DIFFERENT_PROBLEM, DIFFERENT_SOLUTION)],
        fields,
        ds1000_file=file,
    )
    (removal,) = report.removed
    assert (removal.task_id, removal.benchmark) == ("DS-1000/41", "ds1000")
    assert report.references["ds1000"] == 4 and report.references["humaneval"] > 0


def test_mbpp_plus_file_is_used_when_given(tmp_path):
    prompt = '"""\nWrite a function that returns the seventeenth Fibonacci-like Lucas number variant.\n"""\n'
    row = {
        "task_id": "Mbpp/999",
        "prompt": prompt,
        "entry_point": "lucas17",
        "canonical_solution": "def lucas17():\n    return 3571\n",
        "base_input": [[]],
        "plus_input": [],
        "atol": 0,
    }
    file = write_jsonl(tmp_path / "MbppPlus-v0.2.0.jsonl", [row])
    refs = load_references(mbpp_plus_file=file)
    assert any(r.benchmark == "mbpp+" and r.task_id == "Mbpp/999" for r in refs)
    (match,) = nearest_references([prompt.replace("returns", "return")], refs)
    assert match is not None and match.reference.benchmark == "mbpp+"


def test_broken_benchmark_files_are_one_line_errors(tmp_path):
    with pytest.raises(DecontaminationError, match=r"does not exist"):
        load_ds1000_references(tmp_path / "missing.jsonl")
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "reference_code": "c"}, "{not json"])
    with pytest.raises(DecontaminationError, match=r"bad.jsonl:2: DS-1000 line is not JSON") as info:
        load_ds1000_references(bad)
    assert "\n" not in str(info.value)
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"question": "q"}])
    with pytest.raises(DecontaminationError, match=r"wrong.jsonl:1: DS-1000 line lacks"):
        load_ds1000_references(wrong)
    with pytest.raises(DecontaminationError, match=r"MBPP\+ file .* does not exist"):
        load_references(mbpp_plus_file=tmp_path / "nope.jsonl")
