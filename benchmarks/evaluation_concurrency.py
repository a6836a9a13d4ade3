"""`python -m evaluation run` against an OpenAI-compatible server that takes 500 ms per request:
`--concurrency 16` against serial (`--concurrency 1`), same problems, same server, same run.

Run: `python -m benchmarks.evaluation_concurrency [--limit 64] [--latency 0.5] [--concurrency 16]
[--with-interpreter]`.

The server is the tests' scripted OpenAI-compatible server (real HTTP, real SSE) answering every request
after a fixed latency with the problem's canonical solution, so the scores are real (pass@1 = 100%) and the
two runs must write the same samples in the same order; the benchmark checks that. Both commands run as
subprocesses, exactly as a user would type them, after one warm-up run (imports, the scoring cache), and
the report gives the whole command's wall time and the generation phase alone (the line the command
prints), each with the serial/concurrent ratio. Goal: generation >= 10x faster at concurrency 16.

What it deliberately does not measure: a real model's throughput (the server's batching is what concurrency
exploits; here every request costs a fixed latency), or scoring (the same work in both runs; it dilutes
the whole-command ratio, which is shown for honesty).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 10.0


def run_command(server, args, concurrency: int, out: Path, cache: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "evaluation",
        "run",
        "--benchmark",
        "humaneval",
        "--limit",
        str(args.limit),
    ]
    command += ["--backend", "openai", "--base-url", server.base_url, "--no-progress"]
    command += ["--concurrency", str(concurrency), "--out", str(out), "--cache-dir", str(cache)]
    if args.with_interpreter:
        command.append("--with-interpreter")
    env = dict(os.environ, OPENAI_API_KEY=server.api_key)  # the key stays out of argv
    server.max_in_flight = 0
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"evaluation run failed (concurrency {concurrency}): {proc.stderr.strip()[-2000:]}")
    found = re.search(r"^generation: .* in ([0-9.]+) s", proc.stderr, re.MULTILINE)
    if not found:
        raise SystemExit(f"no generation line in the output: {proc.stderr.strip()[-1000:]}")
    scores = json.loads((out / "results.json").read_text())["scores"]
    return {
        "wall_s": wall,
        "generation_s": float(found.group(1)),
        "in_flight": server.max_in_flight,
        "samples": (out / "samples.jsonl").read_text(),
        "pass@1": scores[0]["pass@1"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluation_concurrency", description=__doc__)
    parser.add_argument("--limit", type=int, default=64, help="HumanEval problems (default 64)")
    parser.add_argument("--latency", type=float, default=0.5, help="seconds per request (default 0.5)")
    parser.add_argument("--concurrency", type=int, default=16, help="against serial (default 16)")
    parser.add_argument("--with-interpreter", action="store_true", help="each sample through the loop")
    args = parser.parse_args(argv)

    from evaluation.datasets import load_benchmark
    from tests.evaluation.scripted_solver import canonical_solver
    from tests.fixtures.openai_server import ScriptedOpenAIServer

    problems = load_benchmark("humaneval").problems[: args.limit]
    server = ScriptedOpenAIServer().start()
    server.reply_for = canonical_solver(problems, run_first=args.with_interpreter)
    server.latency_s = args.latency
    requests_per_sample = 2 if args.with_interpreter else 1
    print(
        f"HumanEval, {len(problems)} problems, {requests_per_sample} request(s) per sample, {args.latency * 1000:.0f} ms "
        f"per request; {os.cpu_count()} CPUs (shared machine: expect noise)"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="autocoder-bench-") as tmp:
            tmp = Path(tmp)
            cache = tmp / "cache"
            run_command(server, args, args.concurrency, tmp / "warmup", cache)
            serial = run_command(server, args, 1, tmp / "serial", cache)
            concurrent = run_command(server, args, args.concurrency, tmp / "concurrent", cache)
    finally:
        server.stop()

    same = serial["samples"] == concurrent["samples"]
    print(f"{'':<22}{'serial':>10}{f'concurrency {args.concurrency}':>17}{'ratio':>9}")
    for key, label in (("generation_s", "generation (s)"), ("wall_s", "whole command (s)")):
        ratio = serial[key] / concurrent[key]
        print(f"{label:<22}{serial[key]:>10.2f}{concurrent[key]:>17.2f}{ratio:>8.1f}x")
    print(f"{'requests at once':<22}{serial['in_flight']:>10}{concurrent['in_flight']:>17}")
    print(f"{'pass@1':<22}{serial['pass@1']:>10.3f}{concurrent['pass@1']:>17.3f}")
    print(f"samples identical, same order: {'yes' if same else 'NO'}")
    ratio = serial["generation_s"] / concurrent["generation_s"]
    print(f"generation speed-up {ratio:.1f}x (goal >= {GOAL:g}x): {'met' if ratio >= GOAL else 'MISSED'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
