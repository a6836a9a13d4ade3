"""What a problem is, for scoring: a prompt, an entry point and its tests. Not tied to the four benchmarks.

A problem has one or more test parts, checked in order; a sample passes when every part passes:

- `ProgramTests`: test code run after the solution in the same namespace (HumanEval's `check(candidate)`,
  MBPP's asserts, or the unit tests the data pipeline writes). Passes when it raises nothing.
- `InputTests`: argument lists for the entry point (HumanEval+/MBPP+). The expected outputs are those of the
  canonical solution on the same inputs, computed in the sandbox and cached (evaluation.reference), or given
  directly in `expected`.

Time limits follow EvalPlus: each input (or test program) gets max(min_time_limit, factor x the canonical
solution's time on it); without a canonical solution a program part gets `time_limit_s` (or the default).

What this module deliberately does not do: load datasets (evaluation.datasets) or run anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# EvalPlus's defaults (evalplus/config.py): the limit is 4x the canonical solution's time, at least 1 s.
DEFAULT_MIN_TIME_LIMIT_S = 1.0
DEFAULT_TIME_LIMIT_FACTOR = 4.0
# EvalPlus caps a part at this (then adds 1 s).
PART_TIME_CAP_S = 60.0
# A test program without a canonical solution to time (e.g. from the data pipeline) gets this.
DEFAULT_PROGRAM_TIME_LIMIT_S = 10.0


@dataclass
class ProgramTests:
    code: str
    name: str = "tests"
    time_limit_s: float | None = (
        None  # fixed limit; None: from the canonical solution's time, else the default
    )


@dataclass
class InputTests:
    inputs: list[list]  # one argument list per call
    name: str = "tests"
    atol: float = 0.0
    oracle: str | None = None  # see evaluation.compare
    expected: list | None = None  # None: computed from the problem's canonical solution
    time_limits_s: list[float] | None = None  # per input; None: from the canonical solution's times


TestPart = ProgramTests | InputTests


@dataclass
class Problem:
    task_id: str
    prompt: str  # the problem as shown to the model (inside the instruction's python fence)
    entry_point: str | None
    tests: list[TestPart]
    canonical_solution: str | None = None  # complete code (prompt included where the dataset splits them)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tests:
            raise ValueError(f"problem {self.task_id}: no tests")
        names = [part.name for part in self.tests]
        if len(set(names)) != len(names):
            raise ValueError(f"problem {self.task_id}: test part names must be unique, got {names}")
        for part in self.tests:
            if isinstance(part, InputTests):
                if not self.entry_point:
                    raise ValueError(f"problem {self.task_id}: input tests need an entry point")
                if part.expected is None and not self.canonical_solution:
                    raise ValueError(
                        f"problem {self.task_id}: input tests need expected outputs or a canonical solution"
                    )
