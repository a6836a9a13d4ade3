"""Agreement with the reference implementation: EvalPlus 0.3.1 scores the same samples, verdicts must match.

EvalPlus runs in a subprocess: it reads its dataset path from HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH at
import time, keeps its ground-truth cache under XDG_CACHE_HOME (a temporary folder here), and its evaluation
waits for a watchdog thread (about 20 s) before the process can exit.

Verdicts are compared as EvalPlus states them: base tests passed or not, base + plus passed or not. (EvalPlus
calls a per-input time-out "fail" and keeps "timeout" for a hung process, so the reasons are not compared.)
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.datasets import (
    HUMANEVAL_PLUS_FILE,
    MBPP_FILE,
    MBPP_KNOWN_BAD,
    MBPP_TEST_SPLIT,
    load_mbpp_plus,
    mbpp_entry_point,
    mbpp_prompt,
)
from evaluation.execution import TimeLimits
from evaluation.scoring import score_problems
from tests.conftest import require
from tests.evaluation import samples as S

pytestmark = [pytest.mark.local_sandbox, pytest.mark.slow]

EVALPLUS_SCRIPT = """
import json, sys
from evalplus.evaluate import evaluate
evaluate(dataset=sys.argv[1], samples=sys.argv[2], parallel=2, i_just_wanna_run=True,
         min_time_limit=float(sys.argv[3]), gt_time_limit_factor=float(sys.argv[4]))
"""
# Generous limits for both tools: the verdicts compared are about correctness, and this machine may be busy
# (EvalPlus times its reference on the host, in-process, so a loaded machine makes its limits tight).
LIMITS = TimeLimits(min_s=5.0, factor=8.0)
# EvalPlus 0.3.1 fails every find_zero sample: its special oracle `continue`s before recording the pass
# (fixed upstream after 0.3.1). Ours records it, so canonical solutions score 164/164.
EVALPLUS_0_3_1_FIND_ZERO_BUG = "HumanEval/32"


def _evalplus_available() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import evalplus.evaluate"], capture_output=True)
    return probe.returncode == 0


def run_evalplus(dataset: str, samples: list[dict], workdir: Path, env_var: str, data_file: Path) -> dict:
    """{task_id: (base passed, base+plus passed)} as EvalPlus scores `samples` (one per task)."""
    verdicts = {}
    for task_id, rows in run_evalplus_all(dataset, samples, workdir, env_var, data_file).items():
        (verdicts[task_id],) = rows
    return verdicts


def run_evalplus_all(dataset: str, samples: list[dict], workdir: Path, env_var: str, data_file: Path) -> dict:
    """{task_id: [(base passed, base+plus passed) per sample, in the samples' order]} as EvalPlus scores them."""
    require(_evalplus_available(), "evalplus is not installed (pip install -r requirements-dev.txt)")
    path = workdir / f"{dataset}-samples.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    # Its 4 GiB address-space cap counts the forked parent's reference outputs too (HumanEval/15 and /130
    # hold hundreds of MB): lifted, as our sandbox caps real memory (cgroup) instead.
    env = dict(os.environ, XDG_CACHE_HOME=str(workdir / "cache"), EVALPLUS_MAX_MEMORY_BYTES="-1")
    env[env_var] = str(data_file)
    argv = [sys.executable, "-c", EVALPLUS_SCRIPT, dataset, str(path), str(LIMITS.min_s), str(LIMITS.factor)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((workdir / f"{dataset}-samples_eval_results.json").read_text())
    return {
        task_id: [(r["base_status"] == "pass", r["base_status"] == r["plus_status"] == "pass") for r in rows]
        for task_id, rows in results["eval"].items()
    }


def ours(report) -> dict:
    return {t: (v[0].passed_parts(("base",)), v[0].passed) for t, v in report.tasks.items()}


def test_humaneval_plus_verdicts_identical_to_evalplus(
    humaneval_plus, eval_sandbox, reference_cache, tmp_path
):
    mixed, expected = S.mixed_plus(humaneval_plus.problems)
    covered = {s["task_id"] for s in mixed}
    sample_list = mixed + [s for s in S.canonical(humaneval_plus.problems) if s["task_id"] not in covered]
    theirs = run_evalplus("humaneval", sample_list, tmp_path, "HUMANEVAL_OVERRIDE_PATH", HUMANEVAL_PLUS_FILE)
    report = score_problems(
        humaneval_plus.problems,
        sample_list,
        sandbox=eval_sandbox,
        cache_dir=reference_cache,
        time_limits=LIMITS,
        progress=False,
    )
    mine = ours(report)
    assert len(mine) == 164
    assert mine[EVALPLUS_0_3_1_FIND_ZERO_BUG] == (True, True)
    assert theirs.pop(EVALPLUS_0_3_1_FIND_ZERO_BUG) == (False, False), (
        "evalplus fixed find_zero: drop the exception"
    )
    mine.pop(EVALPLUS_0_3_1_FIND_ZERO_BUG)
    disagreements = {t: (mine[t], theirs.get(t)) for t in mine if mine[t] != theirs.get(t)}
    assert disagreements == {}
    # The set is not trivial: every kind of verdict is in it, including base-only passes.
    assert {v[0].why for v in report.tasks.values()} == {
        "passed",
        "wrong answer",
        "exception",
        "syntax error",
        "timeout",
    }
    assert sum(base and not plus for base, plus in mine.values()) == len(S.BASE_ONLY)


# --- MBPP+ ------------------------------------------------------------------------------------------------


def _literal_calls(test: str, entry: str):
    """The literal arguments of `assert entry(literal args) == ...`, else None."""
    import ast

    try:
        node = ast.parse(test).body[0]
    except SyntaxError:
        return None
    if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
        return None
    call = node.test.left
    if (
        not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == entry)
        or call.keywords
    ):
        return None
    try:
        return [ast.literal_eval(a) for a in call.args]
    except ValueError:
        return None


def _jsonable(value) -> bool:
    try:
        return json.loads(json.dumps(value)) == value
    except (TypeError, ValueError):
        return False


def make_mbpp_plus_file(path: Path, count: int = 40) -> Path:
    """An MBPP+-shaped file (EvalPlus's fields) built from MBPP's own asserts: same inputs as base and plus."""
    rows = []
    with open(MBPP_FILE, encoding="utf-8") as source:
        lines = source.readlines()
    for line in lines:
        raw = json.loads(line)
        number = raw["task_id"]
        if number not in MBPP_TEST_SPLIT or number in MBPP_KNOWN_BAD:
            continue
        code = raw["code"].replace("\r\n", "\n")
        entry = mbpp_entry_point(code, raw["test_list"][0])
        calls = [_literal_calls(t, entry) for t in raw["test_list"]]
        if entry is None or any(c is None or not _jsonable(c) for c in calls) or raw["test_setup_code"]:
            continue
        rows.append(
            {
                "task_id": f"Mbpp/{number}",
                "prompt": mbpp_prompt(raw["text"], raw["test_list"][0]),
                "entry_point": entry,
                "canonical_solution": code,
                "base_input": calls,
                "plus_input": calls[::-1],
                "atol": 0,
                "contract": "",
                "assertion": "\n".join(raw["test_list"]),
            }
        )
        if len(rows) == count:
            break
    with gzip.open(path, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return path


def test_mbpp_plus_from_a_user_file_verdicts_identical_to_evalplus(eval_sandbox, reference_cache, tmp_path):
    data = make_mbpp_plus_file(tmp_path / "MbppPlus-v0.2.0.jsonl.gz")
    benchmark = load_mbpp_plus(data)
    assert benchmark.info.version == "v0.2.0" and len(benchmark.problems) == 40
    sample_list = []
    for i, p in enumerate(benchmark.problems):
        solution = [p.canonical_solution, S.returns_sentinel(p.entry_point), S.raises(p.entry_point)][i % 3]
        sample_list.append({"task_id": p.task_id, "solution": solution})
    theirs = run_evalplus("mbpp", sample_list, tmp_path, "MBPP_OVERRIDE_PATH", data)
    report = score_problems(
        benchmark.problems, sample_list, sandbox=eval_sandbox, cache_dir=reference_cache, progress=False
    )
    mine = ours(report)
    assert {t: v for t, v in mine.items() if v != theirs.get(t)} == {}
    assert report.pass_at_k() == {"pass@1": pytest.approx(sum(1 for i in range(40) if i % 3 == 0) / 40)}
