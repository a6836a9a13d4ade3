"""The sandboxes' tight timing numbers, which the tests only check against generous, self-calibrated limits.

`python -m benchmarks.sandbox_latency [--runs 5] [--sandbox local] [--skip-docker] [--skip-bomb]`

Each number is printed beside a baseline taken in the same run, with the ratio, because the machine is
shared and its load changes from minute to minute:

1. First output: a run's call to its first output chunk (`print('first')`, then a 1 s sleep), against the
   same session's whole round trip for `pass` (goal: within 0.5 s absolute, ratio near 1).
2. Output flood: characters an endless `print('z' * 10_000)` loop gets through in a 2 s time-out (all but
   the capped part dropped), against a plain Python process printing the same lines to /dev/null for 2 s
   (goal: over 10 MB).
3. Docker only: a killed container's death noticed (from `docker kill` returning to the process's wait
   returning), against one `inspect` round trip to the engine (goal: within 1 s; usually tens of ms).
4. Fork bomb (the local or docker sandbox's pids limit): /bin/true on the host while a bomb runs in the
   sandbox, median and max, against /bin/true before it (goal: max under 2 s).

What it deliberately does not do: assert anything (tests/interpreter asserts the behaviour with generous
limits) or measure kernel start-up (benchmarks.interpreter_roundtrip).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

FLOOD = "while True:\n    print('z' * 10_000)"
BOMB = (
    "import os, subprocess, sys, time\n"
    "bomb = 'import os, time\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n"
    "        time.sleep(0.01)'\n"
    "subprocess.Popen([sys.executable, '-c', bomb], stderr=subprocess.DEVNULL)\n"
    "time.sleep(5)\n"
)


def _session(sandbox: str):
    from interpreter.sandboxes.base import Limits
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session

    # The tests' limits: small enough that a bomb is contained quickly.
    limits = Limits(memory_mb=512, max_processes=64, cpus=1.0)
    return Session(make_sandbox(sandbox, limits), timeout_s=30).start()


def first_output(session, runs: int) -> tuple[list[float], list[float]]:
    firsts, trips = [], []
    for _ in range(runs):
        began = time.monotonic()
        session.run("pass")
        trips.append(time.monotonic() - began)
        seen: list[float] = []
        began = time.monotonic()
        session.run(
            "import time\nprint('first', flush=True)\ntime.sleep(1)",
            on_output=lambda name, text, seen=seen: seen.append(time.monotonic()),
        )
        firsts.append(seen[0] - began)
    return firsts, trips


def flood(session) -> tuple[int, int]:
    result = session.run(FLOOD, timeout_s=2)
    script = (
        "import time, sys\nend = time.monotonic() + 2\nn = 0\n"
        "while time.monotonic() < end:\n    print('z' * 10_000)\n    n += 10_001\nprint(n, file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    return result.dropped_chars + len(result.stdout), int(done.stderr.strip())


def docker_death(runs: int) -> tuple[list[float], list[float]]:
    from interpreter.sandboxes.base import SessionDirs
    from interpreter.sandboxes.docker import DockerSandbox
    from interpreter.sandboxes.docker_api import DockerAPI

    sandbox, api = DockerSandbox(), DockerAPI()
    noticed, trips = [], []
    base = Path(tempfile.mkdtemp(prefix="ac-bench-", dir="/tmp"))  # short: IPC socket paths
    for _ in range(runs):
        dirs = SessionDirs.create(base)
        (dirs.ipc / "unused.json").write_text("{}")
        process = sandbox.launch_kernel(dirs, "unused.json", {})
        try:
            began = time.monotonic()
            api.inspect(process.container_id)
            trips.append(time.monotonic() - began)
            subprocess.run(["docker", "kill", process.container_id], check=True, capture_output=True)
            began = time.monotonic()
            process.wait(timeout=30)
            noticed.append(time.monotonic() - began)
        finally:
            process.kill()
            dirs.remove()
    shutil.rmtree(base, ignore_errors=True)
    return noticed, trips


def _true_latency() -> float:
    began = time.monotonic()
    subprocess.run(["/bin/true"], check=True)
    return time.monotonic() - began


def fork_bomb(session) -> tuple[list[float], list[float]]:
    before = [_true_latency() for _ in range(20)]
    runner = threading.Thread(target=lambda: session.run(BOMB, timeout_s=30))
    runner.start()
    during = []
    while runner.is_alive():
        during.append(_true_latency())
        time.sleep(0.1)
    runner.join()
    return during, before


def _ms(values: list[float]) -> str:
    return f"median {1000 * statistics.median(values):.1f} ms, max {1000 * max(values):.1f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="repetitions of the latency measurements")
    parser.add_argument("--sandbox", default="local", choices=("local", "docker"), help="for 1, 2 and 4")
    parser.add_argument("--skip-docker", action="store_true", help="leave out the container-death number")
    parser.add_argument("--skip-bomb", action="store_true", help="leave out the fork bomb")
    args = parser.parse_args(argv)

    session = _session(args.sandbox)
    try:
        firsts, trips = first_output(session, args.runs)
        print(
            f"first output ({args.sandbox}): {_ms(firsts)}; baseline `pass` round trip: {_ms(trips)}; "
            f"ratio {statistics.median(firsts) / statistics.median(trips):.2f} (goal < 0.5 s)"
        )
        flooded, plain = flood(session)
        print(
            f"flood in 2 s ({args.sandbox}): {flooded / 1e6:.1f} MB; baseline plain process to /dev/null: "
            f"{plain / 1e6:.1f} MB; ratio {flooded / plain:.2f} (goal > 10 MB)"
        )
        if not args.skip_bomb:
            during, before = fork_bomb(session)
            print(
                f"/bin/true during a fork bomb ({args.sandbox}): {_ms(during)}; before: {_ms(before)}; "
                f"ratio of medians {statistics.median(during) / statistics.median(before):.2f} "
                "(goal max < 2 s)"
            )
    finally:
        session.close()
    if not args.skip_docker:
        noticed, trips = docker_death(args.runs)
        print(
            f"killed container noticed (docker): {_ms(noticed)}; baseline inspect round trip: {_ms(trips)}; "
            f"ratio {statistics.median(noticed) / statistics.median(trips):.1f} (goal < 1 s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
