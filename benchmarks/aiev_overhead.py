"""The orchestration's own share of an AIEV-Instruct round (`python -m data_pipeline aiev`).

Run: `python -m benchmarks.aiev_overhead [--rounds 2] [--round-size 20] [--latency 0.05] [--steps 100]`.

Each round runs in-process, exactly as the command runs it (data_pipeline.aiev.rounds.Rounds.run_round),
against the tests' scripted aiev teacher over real HTTP (answering every call after `--latency` seconds), the
local sandbox and the tiny AutoCoder-like student (tests/fixtures/tiny_models.py) trained `--steps` steps.
Every step records `delegated_s`, the time spent inside the pieces it calls (data_pipeline.generate: model
calls and executions; training.sft.run_sft; evaluation's generation, model loading and score_problems).
Reported per round, against the round's wall time measured around run_round in the same run (the baseline):

    overhead = round wall time - sum of delegated_s      (state writes, splitting, reading items, checks)
    share    = overhead / round wall time                 goal: under 2 %

What it deliberately does not measure: the pieces' own speed (benchmarks.pipeline_throughput,
benchmarks.training_throughput, benchmarks.evaluation_speed do).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds to run (default 2)")
    parser.add_argument("--round-size", type=int, default=20, help="verified items per round (default 20)")
    parser.add_argument("--latency", type=float, default=0.05, help="teacher seconds per call (default 0.05)")
    parser.add_argument("--steps", type=int, default=100, help="training steps per round (default 100)")
    parser.add_argument("--concurrency", type=int, default=4, help="generate --concurrency (default 4)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)  # the tiny model trains 5-10x faster single-threaded on a shared machine

    import yaml

    from data_pipeline.aiev.config import load_config
    from data_pipeline.aiev.rounds import STEPS, Rounds, step_name
    from tests.data_pipeline.aiev_teacher import API_KEY, MODEL, start_aiev_teacher, write_seeds
    from tests.fixtures.tiny_models import cached_tiny_autocoder

    student = cached_tiny_autocoder()
    server = start_aiev_teacher()
    server.latency_s = args.latency
    with tempfile.TemporaryDirectory(prefix="aiev-overhead-") as tmp:
        folder = Path(tmp)
        write_seeds(folder / "seeds.jsonl", easy=args.round_size, hard=args.round_size * (args.rounds - 1))
        (folder / "key.txt").write_text(API_KEY)
        config = {
            "seeds": "seeds.jsonl",
            "round_size": args.round_size,
            "max_rounds": args.rounds,
            "teacher": {"base_url": server.base_url, "model": MODEL, "api_key_file": "key.txt"},
            "generation": [
                "--sandbox",
                "local",
                "--concurrency",
                str(args.concurrency),
                "--max-new-tokens",
                "200",
            ],
            "student": {"base": str(student), "dtype": "fp32"},
            "training": {
                "settings": {
                    "max_steps": args.steps,
                    "lr": 1e-2,
                    "lr_scheduler": "constant",
                    "micro_batch": 8,
                    "grad_accum": 1,
                    "max_length": 512,
                    "save_steps": 1000,
                    "logging_steps": 1000,
                    "end_of_turn": "<|EOT|>",
                    "dtype": "fp32",
                }
            },
            "evaluation": {"max_new_tokens": 120, "sandbox": "local", "concurrency": 1},
        }
        (folder / "aiev.yaml").write_text(yaml.safe_dump(config))
        rounds = Rounds(load_config(folder / "aiev.yaml"), folder / "run", progress=False)
        rows = []
        try:
            for r in range(args.rounds):
                started = time.monotonic()
                rounds.run_round(r)
                wall = time.monotonic() - started
                steps = {s: rounds.state.step(step_name(r, s)) for s in STEPS}
                delegated = sum(step["result"].get("delegated_s", 0.0) for step in steps.values())
                rows.append((r, rounds.stage(r), wall, delegated, steps["generate"]["result"]["verified"]))
        finally:
            server.stop()

    print(
        f"aiev round overhead ({args.round_size} items/round, teacher latency {args.latency}s, {args.steps} steps)"
    )
    print(
        f"{'round':>5} {'stage':>13} {'items':>5} {'wall s':>8} {'pieces s':>9} {'overhead s':>10} {'share':>7}"
    )
    total_wall = total_overhead = 0.0
    for r, stage, wall, delegated, items in rows:
        overhead = wall - delegated
        total_wall += wall
        total_overhead += overhead
        print(
            f"{r:>5} {stage:>13} {items:>5} {wall:>8.2f} {delegated:>9.2f} {overhead:>10.3f} {overhead / wall:>7.2%}"
        )
    print(
        f"overall: overhead {total_overhead:.3f} s of {total_wall:.2f} s = {total_overhead / total_wall:.2%} (goal < 2 %)"
    )


if __name__ == "__main__":
    main()
