"""Generation throughput of `python -m data_pipeline generate` against a teacher with a fixed latency.

Run: `python -m benchmarks.pipeline_throughput [--items 200] [--concurrency 32] [--latency 0.3]
[--sequential-items 20] [--sandbox local]`.

The teacher is the tests' scripted one (tests/fixtures/scripted_teacher.py) over real HTTP, answering every
call after `--latency` seconds; two thirds of the items pass first time (3 calls), one third carries a planted
bug that is fixed after the questioner's analysis (6 calls). Every item runs its code in a fresh sandboxed
kernel, as in a real run. Reported:

- concurrent: items/min with `--concurrency` items in flight, against the ideal = what the model calls
  alone would allow, (calls x latency / concurrency) for the run's real number of calls;
- sequential: the approach of Magicoder's and OpenCodeInterpreter's generators, one call at a time
  (--concurrency 1), on `--sequential-items` items (items/min is per item, so fewer items suffice);
- the ratio concurrent / sequential;
- the kernel floor: the same number of fresh kernels started, used once and closed through the same warm
  pool with no model calls. Every item needs its own kernel, so on a small machine this, not the calls,
  bounds the run; the report says how close the run came to max(ideal, floor).

Goal: at least 80 % of the ideal. What it deliberately does not measure: a real model's latency spread,
or decontamination (off here; benchmarks.decontamination_speed measures it).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def write_seeds(path: Path, count: int, offset: int = 0) -> Path:
    with open(path, "w") as f:
        for i in range(offset, offset + count):
            seed = f"def task_{i}(values, scale={i % 17 + 1}):\n    return [v * scale + {i} for v in values if v != {i % 5}]"
            f.write(json.dumps({"seed": seed}) + "\n")
    return path


def run(seeds: Path, out: Path, url: str, concurrency: int, sandbox: str, executions: int | None) -> dict:
    from data_pipeline.cli import main
    from tests.fixtures.scripted_teacher import API_KEY, MODEL

    args = [
        "generate",
        "--seeds",
        str(seeds),
        "--out",
        str(out),
        "--teacher-base-url",
        url,
        "--teacher-model",
        MODEL,
        "--api-key",
        API_KEY,
        "--sandbox",
        sandbox,
        "--concurrency",
        str(concurrency),
        "--no-decontamination",
        "--no-progress",
        "--warm-kernels",
        str(min(concurrency, 8)),
    ]
    if executions:
        args += ["--max-executions", str(executions)]
    started = time.perf_counter()
    code = main(args)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"generate failed with status {code}")
    items = calls = 0
    for name in ("dialogues.jsonl", "rejected.jsonl"):
        for line in (out / name).read_text().splitlines():
            record = json.loads(line)
            items += 1
            calls += sum(u["calls"] for u in record["meta"]["usage"].values())
    return {"items": items, "calls": calls, "seconds": seconds, "items_per_min": 60 * items / seconds}


def kernel_floor(items: int, concurrency: int, sandbox_name: str, warm: int) -> float:
    """Seconds to start, use once and close `items` fresh kernels, `concurrency` at a time, through the same
    warm pool the pipeline uses, with no model calls: the least any run of `items` items can take here."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from interpreter.pool import SessionPool
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session

    sandbox = make_sandbox(sandbox_name)
    slots = threading.Semaphore(os.cpu_count() or 1)
    pool = SessionPool(lambda: Session(sandbox), size=min(warm, concurrency))

    def one(_):
        session = pool.acquire()
        try:
            with slots:
                session.run("print(1)")
        finally:
            session.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as executor:
        list(executor.map(one, range(items)))
    seconds = time.perf_counter() - started
    pool.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per teacher call")
    parser.add_argument("--sequential-items", type=int, default=20)
    parser.add_argument("--sandbox", default="local")
    parser.add_argument("--max-executions", type=int, help="sandbox executions at once (default: CPUs)")
    args = parser.parse_args()

    from tests.fixtures.scripted_teacher import start_teacher

    server = start_teacher(latency_s=args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            concurrent = run(
                write_seeds(tmp / "seeds.jsonl", args.items),
                tmp / "concurrent",
                server.base_url,
                args.concurrency,
                args.sandbox,
                args.max_executions,
            )
            sequential = run(
                write_seeds(tmp / "seeds-seq.jsonl", args.sequential_items, offset=10_000),
                tmp / "sequential",
                server.base_url,
                1,
                args.sandbox,
                args.max_executions,
            )
    finally:
        server.stop()
    floor_s = kernel_floor(args.items, args.concurrency, args.sandbox, min(args.concurrency, 8))
    ideal_s = concurrent["calls"] * args.latency / args.concurrency
    ideal_rate = 60 * concurrent["items"] / ideal_s
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; sandbox {args.sandbox}")
    print(
        f"concurrent ({args.concurrency} in flight): {concurrent['items']} items, {concurrent['calls']} calls in "
        f"{concurrent['seconds']:.1f} s = {concurrent['items_per_min']:.1f} items/min; ideal {ideal_s:.1f} s = "
        f"{ideal_rate:.1f} items/min; {concurrent['items_per_min'] / ideal_rate:.0%} of ideal (goal >= 80 %)"
    )
    print(
        f"sequential (one call at a time): {sequential['items']} items, {sequential['calls']} calls in "
        f"{sequential['seconds']:.1f} s = {sequential['items_per_min']:.1f} items/min"
    )
    print(
        f"kernel floor: {args.items} fresh kernels started, used once and closed ({args.concurrency} at a time, no "
        f"model calls) take {floor_s:.1f} s here; the run took {concurrent['seconds'] / max(ideal_s, floor_s):.2f}x "
        f"max(ideal, kernel floor)"
    )
    print(f"ratio concurrent / sequential: {concurrent['items_per_min'] / sequential['items_per_min']:.1f}x")


if __name__ == "__main__":
    main()
