"""Scoring speed: all 164 HumanEval+ canonical solutions (base + plus inputs), ours against EvalPlus's own
evaluator, on the same samples, in the same run, with the same number of workers.

Run: `python -m benchmarks.evaluation_speed [--workers N] [--sandbox local]`.

Both are measured twice: cold (the canonical solutions' expected outputs and times computed from scratch,
each tool with an empty cache of its own) and warm (cached). EvalPlus runs in a subprocess (it reads its
data path at import); its time is taken inside that process around `evaluate()`, which excludes its
import and the ~20 s its watchdog thread keeps the process alive afterwards (the process total is shown
too). Goal: no slower than EvalPlus (ratio <= 1) while each sample runs in a fresh sandbox (ours: its own
namespaces, unprivileged user, memory/process cgroup, no network) where EvalPlus forks the host process.

What it deliberately does not measure: generation, or MBPP (MBPP+ is not shipped).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EVALPLUS_SCRIPT = """
import json, sys, time
start = time.perf_counter()
from evalplus.evaluate import evaluate
imported = time.perf_counter()
evaluate(dataset="humaneval", samples=sys.argv[1], parallel=int(sys.argv[2]), i_just_wanna_run=True)
done = time.perf_counter()
print("TIMES " + json.dumps({"import_s": imported - start, "evaluate_s": done - imported}), flush=True)
"""


def run_evalplus(samples: Path, workers: int, cache: Path, data: Path) -> dict:
    result_file = samples.with_name(samples.stem + "_eval_results.json")
    result_file.unlink(missing_ok=True)
    env = dict(os.environ, HUMANEVAL_OVERRIDE_PATH=str(data), XDG_CACHE_HOME=str(cache))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", EVALPLUS_SCRIPT, str(samples), str(workers)],
        env=env,
        capture_output=True,
        text=True,
    )
    total = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"evalplus failed: {proc.stderr[-2000:]}")
    times = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("TIMES "))[6:])
    results = json.loads(result_file.read_text())["eval"]
    passed = sum(r[0]["base_status"] == r[0]["plus_status"] == "pass" for r in results.values())
    return {"seconds": times["evaluate_s"], "process_s": total, "passed": passed}


def run_ours(problems, samples: list[dict], workers: int, cache: Path, sandbox) -> dict:
    from evaluation.scoring import score_problems

    started = time.perf_counter()
    report = score_problems(
        problems, samples, sandbox=sandbox, workers=workers, cache_dir=cache, progress=False
    )
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "process_s": None, "passed": sum(v[0].passed for v in report.tasks.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workers", type=int, default=None, help="parallel workers for both (default: CPU count)"
    )
    parser.add_argument("--sandbox", default="local", choices=("local", "docker", "none"))
    args = parser.parse_args(argv)

    from evaluation.datasets import HUMANEVAL_PLUS_FILE, load_humaneval_plus
    from evaluation.execution import cpu_count
    from evaluation.scoring import make_eval_sandbox

    workers = args.workers or cpu_count()
    benchmark = load_humaneval_plus()
    problems = benchmark.problems
    samples = [{"task_id": p.task_id, "solution": p.canonical_solution} for p in problems]
    sandbox = make_eval_sandbox(args.sandbox)
    n_inputs = sum(len(part.inputs) for p in problems for part in p.tests)
    print(
        f"{benchmark.info.label}: {len(problems)} canonical solutions, {n_inputs} inputs; {workers} workers each"
    )
    print(
        f"ours: sandbox {sandbox.name}, one process per sample; evalplus: fork per sample and part, no sandbox"
    )

    rows = []
    with tempfile.TemporaryDirectory(prefix="autocoder-evalspeed-") as tmp:
        tmp_path = Path(tmp)
        samples_path = tmp_path / "samples.jsonl"
        samples_path.write_text("".join(json.dumps(s) + "\n" for s in samples))
        for phase in ("cold", "warm"):
            theirs = run_evalplus(samples_path, workers, tmp_path / "evalplus-cache", HUMANEVAL_PLUS_FILE)
            mine = run_ours(problems, samples, workers, tmp_path / "our-cache", sandbox)
            rows.append((phase, mine, theirs))

    print()
    print(
        f"{'phase':<6} {'ours (s)':>9} {'evalplus (s)':>13} {'evalplus process (s)':>21} {'ratio ours/evalplus':>20}  passed"
    )
    for phase, mine, theirs in rows:
        ratio = mine["seconds"] / theirs["seconds"]
        print(
            f"{phase:<6} {mine['seconds']:9.1f} {theirs['seconds']:13.1f} {theirs['process_s']:21.1f} {ratio:20.2f}"
            f"  {mine['passed']}/{len(problems)} vs {theirs['passed']}/{len(problems)}"
        )
    warm_ratio = rows[1][1]["seconds"] / rows[1][2]["seconds"]
    print(f"goal: ratio <= 1 (no slower than evalplus): {'met' if warm_ratio <= 1 else 'NOT met'} when warm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
