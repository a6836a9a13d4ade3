"""The canonical solutions' outputs and run times, computed in the sandbox and cached on disk.

EvalPlus computes the expected outputs of the "+" benchmarks by running the canonical solution (in-process,
on the host) and times every input to set the time limits; it caches the result per dataset. Here the
canonical solution runs through the same sandboxed test program as the samples (it is code from a dataset
file, so it is not trusted either), and the raw result file is cached per problem under a key made of
everything that could change it: the canonical code, the tests, the test program's source and the sandbox.

What this module deliberately does not do: judge samples (evaluation.execution) or decide time limits from
the times (evaluation.execution.TimeLimits).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from evaluation.compare import ORACLE_NOT_NONE
from evaluation.execution import (
    REFERENCE_PROCESS_LIMIT_S,
    PartReference,
    decode_run,
    parse_reference,
    reference_payload,
    run_in_sandbox,
    runner_source,
)
from evaluation.problems import InputTests, Problem
from interpreter.sandboxes.base import CommandResult, Sandbox

CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "autocoder" / "evaluation"


def needs_reference(problem: Problem) -> bool:
    """Whether any part takes its expected outputs or its time limit from the canonical solution."""
    if not problem.canonical_solution:
        return False
    for part in problem.tests:
        if isinstance(part, InputTests):
            if part.expected is None or part.time_limits_s is None:
                return True
        elif part.time_limit_s is None:
            return True
    return False


def reference_key(problem: Problem, sandbox_name: str) -> str:
    tests = [
        (type(p).__name__, p.name, getattr(p, "code", None), getattr(p, "inputs", None))
        for p in problem.tests
    ]
    blob = pickle.dumps(
        (CACHE_FORMAT, runner_source(), sandbox_name, problem.canonical_solution, problem.entry_point, tests),
        protocol=5,
    )
    return hashlib.sha256(blob).hexdigest()


def _finish(problem: Problem, refs: dict[str, PartReference]) -> dict[str, PartReference]:
    for part in problem.tests:
        ref = refs.get(part.name)
        # EvalPlus compares only "is it None" for these tasks, so it stores the reference that way too.
        if (
            isinstance(part, InputTests)
            and part.oracle == ORACLE_NOT_NONE
            and ref
            and ref.outputs is not None
        ):
            ref.outputs = [out is not None for out in ref.outputs]
    return refs


def compute_reference(
    problem: Problem, sandbox: Sandbox, base_dir: Path, cache_dir: Path | None
) -> dict[str, PartReference]:
    """Run (or load from the cache) the canonical solution of one problem."""
    path = None
    if cache_dir is not None:
        path = cache_dir / f"{reference_key(problem, sandbox.name)}.bin"
        if path.is_file():
            run = decode_run(path.read_bytes(), CommandResult(returncode=0, stdout="", stderr=""))
            if run.complete:
                return _finish(problem, parse_reference(problem, run.frames, run.result))
    run = run_in_sandbox(sandbox, reference_payload(problem), REFERENCE_PROCESS_LIMIT_S, base_dir)
    if path is not None and run.complete:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(run.raw)
        tmp.replace(path)  # atomic: a concurrent run never reads half a file
    return _finish(problem, parse_reference(problem, run.frames, run.result))


def compute_references(
    problems: list[Problem],
    sandbox: Sandbox,
    base_dir: Path,
    *,
    workers: int,
    cache_dir: Path | None,
    on_done: Callable[[], None] | None = None,
) -> dict[str, dict[str, PartReference]]:
    """References of every problem that needs one, in parallel; task_id -> part name -> reference."""
    todo = [p for p in problems if needs_reference(p)]
    # Slow ones first would be better, but their cost is what is being measured: keep the dataset order.
    refs: dict[str, dict[str, PartReference]] = {}

    def one(problem: Problem) -> None:
        refs[problem.task_id] = compute_reference(problem, sandbox, base_dir, cache_dir)
        if on_done:
            on_done()

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        try:
            for future in [pool.submit(one, p) for p in todo]:
                future.result()
        except BaseException:  # Ctrl-C: do not run every queued problem before stopping
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return refs
