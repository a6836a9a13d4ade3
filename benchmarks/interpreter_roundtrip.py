"""Execution speed of the interpreter, per sandbox, against the original AutoCoder demo's approach.

Run: `python -m benchmarks.interpreter_roundtrip [--sandboxes docker local] [--roundtrips 200]`.

For each sandbox (docker, local):
1. warm round trip: median time of `print(1)` in a started session, from the call to the result (goal:
   2.5 ms or less). Baseline, same run, interleaved: stock Jupyter, i.e. jupyter_client's
   `BlockingKernelClient.execute_interactive("print(1)")` against a stock ipykernel started outside any
   sandbox (as nobody, on TCP loopback, IPython history on; see `StockJupyter`); the ratio is printed;
2. session start to first result: a fresh `Session` started cold and its first `print(1)`, and the same
   through a warm `interpreter.pool.SessionPool` (acquire + first `print(1)`; goals: 1 s docker, 0.7 s
   local, for the warm path a new chat actually takes);
3. the numpy cell `import numpy as np; print(np.arange(10).sum())` in our warm kernel, against the original
   demo's approach in the same run (bin123apple/AutoCoder Web_demo: write the code to a file, then
   `docker exec <container> python script.py` per execution, no state kept), in a long-running container
   of the same sandbox image; the ratio is printed (goal: 30x).

What it deliberately does not measure: model generation (benchmarks/loop_overhead.py) or the UI.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

NUMPY_CELL = "import numpy as np; print(np.arange(10).sum())"
GOALS = {
    "roundtrip_ms": 2.5,
    "start_s": {"docker": 1.0, "local": 0.7},
    "ratio": 30.0,
}


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _time_runs(session, code: str, n: int, expect: str) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        result = session.run(code)
        samples.append(time.perf_counter() - started)
        if result.stdout != expect:
            raise RuntimeError(f"unexpected result of {code!r}: {result}")
    return samples


class StockJupyter:
    """The baseline: a stock ipykernel (no sandbox, no prelude) and jupyter_client's blocking client.

    The kernel runs as nobody (setpriv), like ours, never as root; its folder is a temporary one of its own
    (the session base folder is private to this process's user)."""

    def __init__(self):
        from jupyter_client import BlockingKernelClient
        from jupyter_client.connect import write_connection_file

        self.folder = Path(tempfile.mkdtemp(prefix="autocoder-stock-"))
        self.folder.chmod(0o711)
        home = self.folder / "home"
        home.mkdir()
        home.chmod(0o777)  # the kernel's IPython history goes here
        key = secrets.token_hex(32).encode()
        connection, _ = write_connection_file(str(self.folder / "kernel.json"), ip="127.0.0.1", key=key)
        os.chmod(connection, 0o644)
        env = {**os.environ, "HOME": str(home), "IPYTHONDIR": str(home / "ipython")}
        self.process = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            + [sys.executable, "-m", "ipykernel_launcher", "-f", connection],
            env=env,
            cwd=home,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = BlockingKernelClient(connection_file=connection)
        self.client.load_connection_file()
        # No heartbeat channel: on a loaded machine a late heartbeat made wait_for_ready report a living
        # kernel dead; the process itself says whether it lives.
        self.client.start_channels(hb=False)
        try:
            self.client.wait_for_ready(timeout=60)
        except RuntimeError:
            self.close()
            raise RuntimeError(f"the stock kernel did not start (exit code {self.process.poll()})") from None

    def run(self, code: str) -> str:
        out: list[str] = []

        def hook(msg: dict) -> None:
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])

        self.client.execute_interactive(code, output_hook=hook, timeout=30)
        return "".join(out)

    def close(self) -> None:
        self.client.stop_channels()
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _time_stock(stock: StockJupyter, code: str, n: int, expect: str) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        out = stock.run(code)
        samples.append(time.perf_counter() - started)
        if out != expect:
            raise RuntimeError(f"unexpected output of {code!r} from the stock kernel: {out!r}")
    return samples


def _make_sandbox(name: str):
    from interpreter.sandboxes.base import Limits
    from interpreter.sandboxes.select import make_sandbox

    return make_sandbox(name, Limits())


def measure_sandbox(name: str, roundtrips: int, starts: int, cells: int, base: Path) -> dict:
    from interpreter.pool import SessionPool
    from interpreter.session import Session

    sandbox = _make_sandbox(name)
    row: dict = {"sandbox": name}

    # 1 + 3: warm kernel, interleaved with the stock Jupyter baseline in blocks (same machine load).
    stock = StockJupyter()
    try:
        with Session(sandbox, base_dir=base) as session:
            _time_runs(session, "print(1)", 10, "1\n")  # warm up the channels
            _time_stock(stock, "print(1)", 10, "1\n")
            row["roundtrip"], row["stock"] = [], []
            for block in range(0, roundtrips, 20):
                n = min(20, roundtrips - block)
                row["roundtrip"] += _time_runs(session, "print(1)", n, "1\n")
                row["stock"] += _time_stock(stock, "print(1)", n, "1\n")
            _time_runs(session, NUMPY_CELL, 2, "45\n")
            row["numpy_warm"] = _time_runs(session, NUMPY_CELL, cells, "45\n")
    finally:
        stock.close()

    # 2a: cold start to first result.
    cold = []
    for _ in range(starts):
        started = time.perf_counter()
        session = Session(sandbox, base_dir=base)
        try:
            result = session.run("print(1)")
            cold.append(time.perf_counter() - started)
            assert result.stdout == "1\n", result
        finally:
            session.close()
    row["start_cold"] = cold

    # 2b: through a warm pool: what a new chat waits for when the pool had time to fill.
    warm = []
    with SessionPool(lambda: Session(sandbox, base_dir=base), size=1) as pool:
        for _ in range(starts):
            if not pool.wait_ready(timeout_s=60):
                raise RuntimeError(f"session pool did not fill: {pool.last_error}")
            started = time.perf_counter()
            session = pool.acquire()
            try:
                result = session.run("print(1)")
                warm.append(time.perf_counter() - started)
                assert result.stdout == "1\n", result
            finally:
                session.close()
    row["start_pool"] = warm
    return row


def measure_original_demo(cells: int, base: Path) -> list[float]:
    """The original demo: code written to a file, `docker exec <container> python script.py` per run."""
    from interpreter.sandboxes.docker_image import image_tag

    folder = base / f"demo-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    folder.chmod(0o777)
    name = f"autocoder-bench-demo-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        ["docker", "run", "-d", "--rm", "--name", name, "--network", "none", "--label", "autocoder.bench=1"]
        + ["-v", f"{folder}:/work", image_tag(), "sleep", "infinity"],
        check=True,
        capture_output=True,
    )
    samples = []
    try:
        for i in range(cells + 2):
            started = time.perf_counter()
            (folder / "script.py").write_text(NUMPY_CELL + "\n")
            done = subprocess.run(
                ["docker", "exec", name, "python", "/work/script.py"], capture_output=True, text=True
            )
            elapsed = time.perf_counter() - started
            if done.stdout != "45\n":
                raise RuntimeError(f"original approach failed: {done.stderr.strip()[-300:]}")
            if i >= 2:  # the first runs warm the page cache
                samples.append(elapsed)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    return samples


def _status(value: float, goal: float, lower_is_better: bool = True) -> str:
    ok = value <= goal if lower_is_better else value >= goal
    return "ok" if ok else "MISSED"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.interpreter_roundtrip", description=__doc__)
    parser.add_argument("--sandboxes", nargs="+", default=["docker", "local"], choices=["docker", "local"])
    parser.add_argument("--roundtrips", type=int, default=200, help="print(1) runs per sandbox")
    parser.add_argument("--starts", type=int, default=5, help="session starts per sandbox (cold and pooled)")
    parser.add_argument("--cells", type=int, default=20, help="numpy cells per approach")
    args = parser.parse_args(argv)

    from interpreter.sandboxes.base import SandboxUnavailable

    rows, skipped = [], []
    with tempfile.TemporaryDirectory(prefix="autocoder-bench-") as tmp:
        base = Path(tmp)
        for name in args.sandboxes:
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            try:
                rows.append(measure_sandbox(name, args.roundtrips, args.starts, args.cells, base))
            except SandboxUnavailable as exc:
                skipped.append(f"{name}: {exc}")
        demo = None
        if any(row["sandbox"] == "docker" for row in rows):
            print("measuring the original demo's docker exec approach ...", file=sys.stderr, flush=True)
            demo = measure_original_demo(args.cells, base)

    print()
    print(f"{'sandbox':8} {'metric':44} {'median':>11} {'p90':>11} {'goal':>9}  status")
    for row in rows:
        name = row["sandbox"]
        goal_start = GOALS["start_s"][name]
        for label, key, scale, unit, goal in (
            (
                f"warm round trip print(1), n={len(row['roundtrip'])}",
                "roundtrip",
                1000,
                "ms",
                GOALS["roundtrip_ms"],
            ),
            (f"baseline: stock Jupyter print(1), n={len(row['stock'])}", "stock", 1000, "ms", None),
            (f"start to first result, cold, n={len(row['start_cold'])}", "start_cold", 1, "s", goal_start),
            (
                f"start to first result, warm pool, n={len(row['start_pool'])}",
                "start_pool",
                1,
                "s",
                goal_start,
            ),
            (f"numpy cell, warm kernel, n={len(row['numpy_warm'])}", "numpy_warm", 1000, "ms", None),
        ):
            samples = sorted(row[key])
            median = statistics.median(samples) * scale
            p90 = samples[int(0.9 * (len(samples) - 1))] * scale
            goal_text = f"{goal:g} {unit}" if goal is not None else "-"
            status = _status(median, goal) if goal is not None else ""
            print(f"{name:8} {label:44} {median:8.3f} {unit:2} {p90:8.3f} {unit:2} {goal_text:>9}  {status}")
    for row in rows:
        ratio = statistics.median(row["stock"]) / statistics.median(row["roundtrip"])
        label = "round trip: stock Jupyter / ours (same run)"
        print(f"{row['sandbox']:8} {label:44} {ratio:8.2f} x")
    if demo is not None:
        demo_ms = _median_ms(demo)
        print(f"{'docker':8} {f'numpy cell, original docker exec, n={len(demo)}':44} {demo_ms:8.3f} ms")
        for row in rows:
            ours = _median_ms(row["numpy_warm"])
            ratio = demo_ms / ours
            label = f"speed-up vs original ({row['sandbox']} kernel)"
            goal = GOALS["ratio"]
            print(
                f"{row['sandbox']:8} {label:44} {ratio:8.1f} x  {'':11} {goal:>7g} x  {_status(ratio, goal, False)}"
            )
    for line in skipped:
        print(f"skipped {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
