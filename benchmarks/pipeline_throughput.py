"""Generation throughput of `python -m data_pipeline generate` against a teacher with a fixed latency.

Run: `python -m benchmarks.pipeline_throughput [--items 200] [--concurrency 32] [--latency 0.3]
[--sequential-items 20] [--sandbox local] [--kernel-reuse N] [--no-fresh] [--no-floor]`.

The teacher is the tests' scripted one (tests/fixtures/scripted_teacher.py) over real HTTP, in a process of
its own as a real teacher is, answering every call after `--latency` seconds; two thirds of the items pass
first time (3 calls), one third carries a planted bug that is fixed after the questioner's analysis (6
calls). Every item runs its code in a sandboxed kernel, as in a real run. One untimed warm-up run first
(a process's first generate imports the OpenAI client and the dedup libraries: start-up, not throughput).
Reported, all in one run:

- concurrent, default configuration (generate's defaults: a kernel serves up to 50 jobs, reset inside the
  sandbox in between, see interpreter/recycle.py): items/min with `--concurrency` items in flight, against
  the ideal = what the model calls alone would allow, (calls x latency / concurrency) for the run's real
  number of calls (at most `--concurrency` calls are in flight, a failed attempt's analysis asked ahead
  included, so no run can beat it); with the kernels started, reused and retired, how long items waited
  for a kernel, and the CPU the pipeline process and the teacher used;
- concurrent, a fresh kernel per item (`--kernel-reuse 0`, the strict-isolation configuration), the same
  way (other seeds, so no call is answered from the cache);
- sequential: the approach of Magicoder's and OpenCodeInterpreter's generators, one call at a time
  (--concurrency 1, default configuration), on `--sequential-items` items (items/min is per item, so
  fewer items suffice); the ratios concurrent / sequential and default / fresh;
- the kernel floor: `--items` fresh kernels started, used once and closed, `--concurrency` at a time, with
  no model calls: the least a run with a fresh kernel per item can take here;
- the load average (1/5/15 min) before, after each run and at the end: the machine is shared, and the
  numbers mean little without it.

Goal: at least 80 % of the ideal. What it deliberately does not measure: a real model's latency spread,
or decontamination (off here; benchmarks.decontamination_speed measures it).
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


def write_seeds(path: Path, count: int, offset: int = 0) -> Path:
    with open(path, "w") as f:
        for i in range(offset, offset + count):
            seed = f"def task_{i}(values, scale={i % 17 + 1}):\n    return [v * scale + {i} for v in values if v != {i % 5}]"
            f.write(json.dumps({"seed": seed}) + "\n")
    return path


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    seeds: Path,
    out: Path,
    url: str,
    concurrency: int,
    sandbox: str,
    executions: int | None,
    reuse: int,
    warm: int | None,
    teacher_pid: int | None = None,
) -> dict:
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
        "--kernel-reuse",
        str(reuse),
    ]
    if warm is not None:
        args += ["--warm-kernels", str(warm)]
    if executions:
        args += ["--max-executions", str(executions)]
    cpu_before = os.times()
    teacher_before = process_cpu_s(teacher_pid) if teacher_pid else 0.0
    started = time.perf_counter()
    code = main(args)
    seconds = time.perf_counter() - started
    cpu_after = os.times()
    teacher_after = process_cpu_s(teacher_pid) if teacher_pid else 0.0
    if code != 0:
        raise SystemExit(f"generate failed with status {code}")
    items = calls = 0
    for name in ("dialogues.jsonl", "rejected.jsonl"):
        for line in (out / name).read_text().splitlines():
            record = json.loads(line)
            items += 1
            calls += sum(u["calls"] for u in record["meta"]["usage"].values())
    summary = json.loads((out / "summary.json").read_text())
    return {
        "items": items,
        "calls": calls,
        "seconds": seconds,
        "items_per_min": 60 * items / seconds,
        # This process (the pipeline and the scripted teacher's server); kernels are other processes.
        "host_cpu_s": (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system),
        "teacher_cpu_s": teacher_after - teacher_before,
        "kernels": summary.get("kernels", {}),
    }


def kernel_floor(items: int, concurrency: int, sandbox_name: str, warm: int | None) -> float:
    """Seconds to start, use once and close `items` fresh kernels, `concurrency` at a time, through the
    pool the pipeline uses (at most one start per CPU at once), with no model calls: the least a run of
    `items` items with a fresh kernel each can take here."""
    from concurrent.futures import ThreadPoolExecutor

    from interpreter.recycle import RecyclingPool
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session

    sandbox = make_sandbox(sandbox_name)
    warm = (os.cpu_count() or 1) if warm is None else warm  # generate's default
    pool = RecyclingPool(lambda: Session(sandbox), reuse=0, warm=min(warm, concurrency))

    def one(_):
        session = pool.acquire()
        try:
            session.run("print(1)")
        finally:
            pool.release(session)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as executor:
        list(executor.map(one, range(items)))
    seconds = time.perf_counter() - started
    pool.close()
    return seconds


def describe(name: str, result: dict, latency: float, concurrency: int) -> tuple[str, float]:
    ideal_s = result["calls"] * latency / concurrency
    ideal_rate = 60 * result["items"] / ideal_s
    share = result["items_per_min"] / ideal_rate
    kernels = result["kernels"]
    retired = ", ".join(f"{count} {why}" for why, count in kernels.get("retired", {}).items()) or "none"
    line = (
        f"{name}: {result['items']} items, {result['calls']} calls in {result['seconds']:.1f} s = "
        f"{result['items_per_min']:.1f} items/min; ideal {ideal_s:.1f} s = {ideal_rate:.1f} items/min; "
        f"{share:.0%} of ideal (goal >= 80 %); kernels started {kernels.get('started', '?')}, reused "
        f"{kernels.get('reused', '?')}, retired: {retired}; items waited {kernels.get('items_waited_s', 0):.0f} s "
        f"for kernels in all; CPU used by the pipeline process {result['host_cpu_s']:.1f} s and the teacher "
        f"{result['teacher_cpu_s']:.1f} s (the kernels' own CPU is not counted here)"
    )
    return line, share


class TeacherProcess:
    """The scripted teacher in a process of its own, as a real teacher is: its HTTP server's work does not
    share the pipeline's interpreter lock (it still shares the machine's CPUs)."""

    def __init__(self, process: subprocess.Popen, base_url: str) -> None:
        self.process = process
        self.base_url = base_url

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_teacher_process(port_file: Path, latency: float) -> TeacherProcess:
    argv = [sys.executable, "-m", "tests.fixtures.scripted_teacher", "--port-file", str(port_file)]
    process = subprocess.Popen([*argv, "--latency", str(latency)])
    deadline = time.monotonic() + 120
    while not port_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit("the scripted teacher did not start")
        time.sleep(0.05)
    return TeacherProcess(process, port_file.read_text().strip())


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f} (1/5/15 min)"


def main() -> None:
    from interpreter.recycle import DEFAULT_KERNEL_REUSE

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per teacher call")
    parser.add_argument("--sequential-items", type=int, default=20)
    parser.add_argument("--sandbox", default="local")
    parser.add_argument("--max-executions", type=int, help="sandbox executions at once (default: CPUs)")
    parser.add_argument(
        "--kernel-reuse",
        type=int,
        default=DEFAULT_KERNEL_REUSE,
        help=f"the measured configuration's --kernel-reuse (default: generate's, {DEFAULT_KERNEL_REUSE})",
    )
    parser.add_argument("--warm-kernels", type=int, help="generate's --warm-kernels (default: generate's)")
    parser.add_argument("--no-fresh", action="store_true", help="skip the fresh-kernel-per-item comparison")
    parser.add_argument("--no-floor", action="store_true", help="skip the kernel floor measurement")
    args = parser.parse_args()

    print(
        f"machine: {os.cpu_count()} CPUs; sandbox {args.sandbox}; load average before: {load()}", flush=True
    )
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        teacher = start_teacher_process(tmp / "teacher-url", args.latency)
        try:

            def measure(key, count, offset, concurrency, reuse):
                seeds = write_seeds(tmp / f"seeds-{key}.jsonl", count, offset=offset)
                results[key] = run(
                    seeds,
                    tmp / key,
                    teacher.base_url,
                    concurrency,
                    args.sandbox,
                    args.max_executions,
                    reuse,
                    args.warm_kernels,
                    teacher.process.pid,
                )
                results[key]["load_after"] = load()

            # Untimed warm-up: the first generate in a process imports the OpenAI client, the dedup and
            # decontamination libraries and more (seconds on a loaded machine); items/min is throughput.
            warm_seeds = write_seeds(tmp / "warm.jsonl", 4, offset=30_000)
            run(warm_seeds, tmp / "warm", teacher.base_url, 4, args.sandbox, None, 1, 0)
            measure("default", args.items, 0, args.concurrency, args.kernel_reuse)
            if not args.no_fresh:
                # Other seeds, so no call is answered from a cache and the items are comparable.
                measure("fresh", args.items, 20_000, args.concurrency, 0)
            measure("sequential", args.sequential_items, 10_000, 1, args.kernel_reuse)
        finally:
            teacher.stop()
    floor_s = (
        None if args.no_floor else kernel_floor(args.items, args.concurrency, args.sandbox, args.warm_kernels)
    )

    lines = [
        describe(
            f"concurrent, default configuration (--kernel-reuse {args.kernel_reuse}, {args.concurrency} in flight)",
            results["default"],
            args.latency,
            args.concurrency,
        )[0]
        + f"; load after: {results['default']['load_after']}"
    ]
    if "fresh" in results:
        lines.append(
            describe(
                f"concurrent, fresh kernel per item (--kernel-reuse 0, {args.concurrency} in flight)",
                results["fresh"],
                args.latency,
                args.concurrency,
            )[0]
            + f"; load after: {results['fresh']['load_after']}"
        )
    sequential = results["sequential"]
    lines.append(
        f"sequential (one call at a time, --kernel-reuse {args.kernel_reuse}): {sequential['items']} items, "
        f"{sequential['calls']} calls in {sequential['seconds']:.1f} s = {sequential['items_per_min']:.1f} items/min"
    )
    if floor_s is not None:
        ideal_s = results["default"]["calls"] * args.latency / args.concurrency
        lines.append(
            f"kernel floor: {args.items} fresh kernels started, used once and closed ({args.concurrency} at a "
            f"time, no model calls) take {floor_s:.1f} s here, {floor_s / ideal_s:.1f}x the ideal: the bound "
            "of a fresh kernel per item"
        )
    lines.append(
        "ratio concurrent (default) / sequential: "
        f"{results['default']['items_per_min'] / sequential['items_per_min']:.1f}x"
    )
    if "fresh" in results:
        lines.append(
            "ratio default / fresh kernel per item: "
            f"{results['default']['items_per_min'] / results['fresh']['items_per_min']:.1f}x"
        )
    lines.append(f"load average at the end: {load()}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
