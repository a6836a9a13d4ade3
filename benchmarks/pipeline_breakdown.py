"""Where the time of `benchmarks.pipeline_throughput`'s default run goes, beyond the ideal.

Run: `python -m benchmarks.pipeline_breakdown [--items 200] [--concurrency 32] [--latency 0.3] [--prestarted N]
[--kernel-reuse N]`.

The same run as pipeline_throughput's default configuration (scripted teacher in its own process, local
sandbox, generate's defaults), measured from inside: every item's start and end, every model call's
duration and every wait for a kernel are recorded (by wrapping `ItemRunner.run`, `ModelClient._call` and
`RecyclingPool.acquire` in this process; nothing else changes). With C items in flight the run's wall time
is the ideal (calls x latency / C) plus, each divided by C:

- call overhead: what the calls took beyond the teacher's latency (HTTP, client, server, and waits for
  one of the C call slots);
- less the calls an item made at once: a failed attempt's analysis runs alongside the programmer's call
  (both hold one of the C call slots, so the ideal still bounds the run);
- kernel waits: items waiting for a sandbox (at the start of a run, while kernels boot);
- executions: the code's runs, kernel waits excluded;
- the rest of the items' own work (the loop, verification, records);
- the tail: workers with no item left while the last items finish (with items of unequal length this is
  about one item's length; it shrinks relative to the run as the run grows);
- before the first item and after the last (start-up, summary).

`--prestarted N`: a what-if, not a configuration users can choose: the pool's N kernels are started and
ready before the clock starts, so the run shows what it would take if kernel starts cost nothing.

What it deliberately does not do: compare configurations (pipeline_throughput does) or profile the CPU.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import pipeline_throughput as throughput
from interpreter.recycle import DEFAULT_KERNEL_REUSE


def instrument() -> dict:
    """Wrap the pipeline's item, call and kernel-wait entry points; returns the dict they record into."""
    from data_pipeline import client as client_module
    from data_pipeline import item as item_module
    from interpreter import recycle

    # "prestarted" is set once the untimed warm-up run is over: only the measured run's pool starts them.
    log: dict = {
        "items": [],
        "calls": [],
        "intervals": [],
        "waits": [],
        "execs": [],
        "clock": None,
        "prestarted": 0,
    }
    lock = threading.Lock()

    call = client_module.ModelClient._call

    def timed_call(self, *args, **kwargs):
        started = time.perf_counter()
        # The item's Usage, bound in every thread that calls for it: the key that groups its calls.
        item = id(getattr(self._local, "usage", None))
        try:
            yield from call(self, *args, **kwargs)
        finally:
            with lock:
                log["calls"].append(time.perf_counter() - started)
                log["intervals"].append((item, started, time.perf_counter()))

    run_block = item_module.ItemSession.run_block

    def timed_run_block(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return run_block(self, *args, **kwargs)
        finally:
            with lock:
                log["execs"].append(time.perf_counter() - started)

    acquire = recycle.RecyclingPool.acquire

    def timed_acquire(self):
        started = time.perf_counter()
        try:
            return acquire(self)
        finally:
            with lock:
                log["waits"].append(time.perf_counter() - started)

    run = item_module.ItemRunner.run

    def timed_run(self, seed, item_id):
        started = time.perf_counter()
        try:
            return run(self, seed, item_id)
        finally:
            with lock:
                log["items"].append((started, time.perf_counter(), threading.get_ident()))

    pool_init = recycle.RecyclingPool.__init__

    def init(self, *args, **kwargs):
        prestarted = log["prestarted"]
        if prestarted:
            kwargs["warm"] = prestarted
        pool_init(self, *args, **kwargs)
        if prestarted:
            while True:
                with self._changed:
                    if len(self._idle) >= prestarted:
                        break
                time.sleep(0.05)
            log["clock"] = time.perf_counter()  # the what-if's clock starts with every kernel ready

    client_module.ModelClient._call = timed_call
    item_module.ItemSession.run_block = timed_run_block
    recycle.RecyclingPool.acquire = timed_acquire
    item_module.ItemRunner.run = timed_run
    recycle.RecyclingPool.__init__ = init
    return log


def overlapping_s(intervals: list[tuple[int, float, float]]) -> float:
    """Seconds of model calls that ran while another call of the same item ran: the sum of the calls'
    durations less the time covered by at least one, per item (a failed attempt's analysis is asked for
    while the programmer's call runs)."""
    by_item = collections.defaultdict(list)
    for item, start, end in intervals:
        by_item[item].append((start, end))
    overlap = 0.0
    for spans in by_item.values():
        covered, reach = 0.0, float("-inf")
        for start, end in sorted(spans):
            covered += max(0.0, end - max(start, reach))
            reach = max(reach, end)
        overlap += sum(end - start for start, end in spans) - covered
    return overlap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.3, help="seconds per teacher call")
    parser.add_argument("--prestarted", type=int, default=0, help="what-if: N kernels ready before the clock")
    parser.add_argument(
        "--kernel-reuse", type=int, default=DEFAULT_KERNEL_REUSE, help="generate's --kernel-reuse"
    )
    args = parser.parse_args()

    log = instrument()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        teacher = throughput.start_teacher_process(tmp / "teacher-url", args.latency)
        try:
            warm = throughput.write_seeds(tmp / "warm.jsonl", 4, offset=30_000)
            throughput.run(warm, tmp / "warm", teacher.base_url, 4, "local", None, 1, 0)
            for key in ("items", "calls", "intervals", "waits", "execs"):
                log[key].clear()
            log["prestarted"] = args.prestarted
            seeds = throughput.write_seeds(tmp / "seeds.jsonl", args.items)
            started = time.perf_counter()
            result = throughput.run(
                seeds, tmp / "out", teacher.base_url, args.concurrency, "local", None, args.kernel_reuse, None
            )
            ended = time.perf_counter()
        finally:
            teacher.stop()
    if log["clock"] is not None:
        started = log["clock"]
    c, latency = args.concurrency, args.latency
    wall = ended - started
    calls, waits = log["calls"], sum(log["waits"])
    ideal = len(calls) * latency / c
    first = min(s for s, _, _ in log["items"])
    last = max(e for _, e, _ in log["items"])
    busy = sum(e - s for s, e, _ in log["items"])
    workers = len({t for _, _, t in log["items"]})
    call_overhead = sum(calls) - len(calls) * latency
    overlap = overlapping_s(log["intervals"])
    execs = sum(log["execs"]) - waits  # a kernel is acquired inside the first run_block of an item
    rest = busy - (sum(calls) - overlap) - sum(log["execs"])
    tail = workers * (last - first) - busy
    rows = [
        ("ideal (calls x latency / concurrency)", ideal),
        ("call overhead", call_overhead / c),
        ("calls an item made at once (analysis ahead)", -overlap / c),
        ("kernel waits", waits / c),
        ("executions (waits excluded)", execs / c),
        ("the rest of the items' work", rest / c),
        ("tail (workers idle at the end)", tail / c),
        ("before the first item, after the last", (first - started) + (ended - last)),
    ]
    what = (
        f"what-if: {args.prestarted} kernels ready before the clock" if args.prestarted else "as users run it"
    )
    print(
        f"{result['items']} items, {len(calls)} calls, {c} in flight, {latency * 1000:.0f} ms per call ({what}); "
        f"load after: {throughput.load()}"
    )
    for name, seconds in rows:
        print(f"  {name:<46} {seconds:6.2f} s")
    print(f"  {'sum':<46} {sum(s for _, s in rows):6.2f} s")
    print(f"  {'measured wall time':<46} {wall:6.2f} s = {ideal / wall:.0%} of the ideal")
    spread = collections.Counter(round(e - s, 1) for s, e, _ in log["items"])
    print("item durations (s: count):", ", ".join(f"{k}: {v}" for k, v in sorted(spread.items())))


if __name__ == "__main__":
    main()
