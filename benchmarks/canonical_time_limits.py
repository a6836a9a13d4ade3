"""How many of the 828 canonical solutions (HumanEval 164, HumanEval+ 164, MBPP 500) pass under the default
time limits, against the same solutions under generous limits, in the same run.

Run: `python -m benchmarks.canonical_time_limits [--sandbox local] [--benchmarks humaneval,humaneval+,mbpp]`.

The tests (tests/evaluation/test_fidelity.py) score the canonical solutions under generous limits, because
on a busy shared machine a correct solution can exceed a limit scaled from its own reference time. This
prints the tight number: passes under the defaults (evaluation.execution's DEFAULT_MIN_TIME_LIMIT_S and
DEFAULT_TIME_LIMIT_FACTOR), the time-outs among the failures, and the ratio to the generous run (goal: 1.0,
i.e. no false time-outs; MBPP's known-bad items fail in both).

What it deliberately does not measure: scoring speed (benchmarks.evaluation_speed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

GENEROUS = dict(min_s=5.0, factor=8.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sandbox", default="local", choices=("local", "docker"))
    parser.add_argument("--benchmarks", default="humaneval,humaneval+,mbpp", help="comma-separated")
    args = parser.parse_args(argv)

    from evaluation.datasets import load_benchmark
    from evaluation.execution import TimeLimits
    from evaluation.problems import DEFAULT_MIN_TIME_LIMIT_S, DEFAULT_TIME_LIMIT_FACTOR
    from evaluation.scoring import make_eval_sandbox, score_problems

    sandbox = make_eval_sandbox(args.sandbox)
    print(
        f"default limits: min {DEFAULT_MIN_TIME_LIMIT_S} s, factor {DEFAULT_TIME_LIMIT_FACTOR}; generous: {GENEROUS}"
    )
    with tempfile.TemporaryDirectory() as cache:
        for name in args.benchmarks.split(","):
            problems = load_benchmark(name).problems
            samples = [{"task_id": p.task_id, "solution": p.canonical_solution} for p in problems]
            counts = {}
            for label, limits in (("generous", TimeLimits(**GENEROUS)), ("default", TimeLimits())):
                began = time.monotonic()
                report = score_problems(
                    problems,
                    samples,
                    sandbox=sandbox,
                    cache_dir=Path(cache),
                    time_limits=limits,
                    progress=False,
                )
                failed = {t: v[0].why for t, v in report.tasks.items() if not v[0].passed}
                counts[label] = len(problems) - len(failed)
                timeouts = sorted(t for t, why in failed.items() if why == "timeout")
                print(
                    f"{name} {label}: {counts[label]}/{len(problems)} pass, {len(timeouts)} time-outs "
                    f"{timeouts[:10]} ({time.monotonic() - began:.0f} s)"
                )
            print(f"{name}: default/generous passes ratio {counts['default'] / counts['generous']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
