"""HumanEval, HumanEval+, MBPP and MBPP+ pass@k, with every test run in the interpreter's sandbox.

The Python API scores any list of problems, not only the four benchmarks:

    from evaluation import Problem, ProgramTests, score_problems
    problem = Problem("demo/1", prompt="...", entry_point="add", tests=[ProgramTests("assert add(1, 2) == 3")])
    report = score_problems([problem], [{"task_id": "demo/1", "solution": "def add(a, b):\n    return a + b"}])
    report.pass_at_k()  # {"pass@1": 1.0}; report.tasks["demo/1"][0].why == "passed"

Modules: datasets (the four benchmarks, versions in one place), problems (what a problem is), generation
(prompting a model, with or without the interpreter), sanitize (the solution out of a reply), runner (the
test program inside the sandbox), wire (reading its results safely), compare (EvalPlus's output
comparison), execution (one sample in the sandbox -> verdict), reference (canonical outputs and times,
cached), scoring (parallel scoring, the API), metrics (pass@k), results (results.json, tables), cli.
"""

from evaluation.execution import SampleVerdict, TimeLimits
from evaluation.problems import InputTests, Problem, ProgramTests
from evaluation.sanitize import sanitize
from evaluation.scoring import EVAL_LIMITS, ScoreReport, make_eval_sandbox, score_problems

__all__ = [
    "EVAL_LIMITS",
    "InputTests",
    "Problem",
    "ProgramTests",
    "SampleVerdict",
    "ScoreReport",
    "TimeLimits",
    "make_eval_sandbox",
    "sanitize",
    "score_problems",
]
