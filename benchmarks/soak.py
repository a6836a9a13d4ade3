"""Soak: many API users at once against one `python -m app`, every reply checked, then a crash and a restart.

Run: `python -m benchmarks.soak [--users 12] [--messages 3] [--sandbox docker]`.

The app runs as a user starts it (a subprocess, its own TMPDIR so its session folders can be counted) on
the tests' scripted OpenAI-compatible server (real HTTP and SSE): a message `run: CODE` makes the model
write CODE in an execution block, so every message runs code in the sandbox, and every reply is checked
(each user prints its own numbers: a reply from another chat's kernel, or a lost one, is an error).

Phases, all in one run:
1. baseline: one user sends the messages alone (the same app) -> its per-message latency;
2. soak: `--users` clients at once, `--messages` each -> errors, p50/p95 latency (ratio to the baseline),
   the app's peak memory (RSS of its process tree, sampled every 0.2 s) and its growth over the soak;
3. clean stop (SIGTERM): exit status 0, no sandbox container and no session folder left;
4. crash: a second app is killed with SIGKILL while its users' code runs; a third app on the same TMPDIR
   must remove every orphan (containers of the dead process, its session folders) once it is up.

What it deliberately does not measure: a real model (the server answers at once: latency here is the app,
the loop and the sandbox), or a browser (the page's own benchmark is benchmarks.execution_latency).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class App:
    """`python -m app` with the scripted server as its model; TMPDIR given so a restart sees the same base."""

    def __init__(self, server, sandbox: str, tmp: Path, log: Path, *flags: str, startup_s: float = 600):
        with socket_free_port() as port:
            self.port = port
        self.url = f"http://127.0.0.1:{self.port}/"
        self.tmp = tmp
        self.log_path = log
        env = {
            **os.environ,
            "TMPDIR": str(tmp),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            "OPENAI_API_KEY": server.api_key,
        }
        argv = [sys.executable, "-m", "app", "--port", str(self.port), "--backend", "openai"]
        argv += ["--base-url", server.base_url, "--model", server.models[0], "--sandbox", sandbox, *flags]
        self._log = open(log, "w")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}: {self.log()[-2000:]}")
            if "AutoCoder chat on" in self.log():
                try:
                    urllib.request.urlopen(self.url, timeout=5).read()
                    return
                except OSError:
                    pass
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"app did not come up in {startup_s:.0f} s: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout_s: float = 120) -> int:
        """SIGTERM, as `docker stop` and service managers do; its exit status."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            self._log.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self._log.close()

    def session_dirs(self) -> list[str]:
        base = self.tmp / "autocoder-sessions"
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []


class socket_free_port:
    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self._sock.close()


def containers_of(pid: int) -> list[str]:
    """Sandbox containers (kernels and one-shot commands) labelled as started by process `pid`."""
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=autocoder.owner_pid={pid}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (MB), from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        child = int(entry.name)
        children.setdefault(int(fields.get("PPid", "0").strip() or 0), []).append(child)
        rss[child] = int(fields.get("VmRSS", "0 kB").split()[0]) if "VmRSS" in fields else 0
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo += children.get(current, [])
    return total / 1024


class MemorySampler:
    def __init__(self, pid: int, every_s: float = 0.2):
        self.pid = pid
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every_s,), daemon=True)
        self._thread.start()

    def _run(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.samples.append(tree_rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return max(self.samples, default=tree_rss_mb(self.pid))


@dataclass
class SoakReport:
    users: int
    messages: int
    sandbox: str
    errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    baseline_s: float = 0.0
    rss_before_mb: float = 0.0
    rss_after_mb: float = 0.0
    peak_rss_mb: float = 0.0
    stop_status: int | None = None
    left_containers: list[str] = field(default_factory=list)
    left_dirs: list[str] = field(default_factory=list)
    orphans_before_restart: tuple[int, int] = (0, 0)  # (containers, folders) the crash left
    orphans_after_restart: tuple[int, int] = (0, 0)

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_s)
        return data[min(len(data) - 1, round(q * (len(data) - 1)))] if data else float("nan")

    def lines(self) -> list[str]:
        p50, p95 = self.pct(0.5), self.pct(0.95)
        ratio = p50 / self.baseline_s if self.baseline_s else float("nan")
        return [
            f"soak ({self.sandbox} sandbox): {self.users} users x {self.messages} messages, "
            f"{len(self.latencies_s)} answered, {len(self.errors)} errors",
            f"latency per message: p50 {p50:.2f} s, p95 {p95:.2f} s; one user alone {self.baseline_s:.2f} s "
            f"(p50 / alone = {ratio:.1f}x with {self.users} at once)",
            f"app memory (RSS, process tree): {self.rss_before_mb:.0f} MB before, peak {self.peak_rss_mb:.0f} MB, "
            f"{self.rss_after_mb:.0f} MB after",
            f"clean stop: exit {self.stop_status}, {len(self.left_containers)} containers and "
            f"{len(self.left_dirs)} session folders left",
            f"kill -9 mid-execution: {self.orphans_before_restart[0]} containers and "
            f"{self.orphans_before_restart[1]} folders orphaned; after a restart "
            f"{self.orphans_after_restart[0]} and {self.orphans_after_restart[1]} remain",
            *[f"error: {e}" for e in self.errors[:10]],
        ]


def scripted_server():
    from tests.app.scripted_model import scripted_reply
    from tests.fixtures.openai_server import ScriptedOpenAIServer

    server = ScriptedOpenAIServer().start()
    server.reply_for = scripted_reply
    return server


def _user(url: str, user: int, messages: int, report: SoakReport, lock: threading.Lock) -> None:
    from gradio_client import Client

    try:
        client = Client(url, verbose=False)
    except Exception as exc:  # noqa: BLE001 - counted, reported in one line
        with lock:
            report.errors.append(f"user {user}: could not connect: {exc}".splitlines()[0])
        return
    for message in range(messages):
        value = user * 1000 + message
        started = time.monotonic()
        try:
            reply = client.predict(f"run: print({value} * 2)", api_name="/chat")
            (run,) = reply["executions"]
            got = run["result"]["stdout"]
            if got != f"{value * 2}\n" or reply["reason"] != "end_of_turn":
                raise AssertionError(f"wrong reply: {got!r} ({reply['reason']})")
        except Exception as exc:  # noqa: BLE001 - counted, reported in one line
            with lock:
                report.errors.append(f"user {user} message {message}: {exc}".splitlines()[0][:300])
            continue
        with lock:
            report.latencies_s.append(time.monotonic() - started)


def soak(users: int = 12, messages: int = 3, sandbox: str = "docker", work: Path | None = None) -> SoakReport:
    """All four phases (see the module docstring); `work` keeps the apps' TMPDIRs and logs."""
    work = Path(work or tempfile.mkdtemp(prefix="acsoak-"))
    report = SoakReport(users, messages, sandbox)
    server = scripted_server()
    flags = ["--max-sessions", str(users + 2), "--max-sessions-per-client", str(users + 2)]
    flags += ["--concurrency", str(users), "--warm-kernels", "2"]
    try:
        # 1-3: baseline, soak, clean stop.
        tmp = work / "tmp1"
        tmp.mkdir(parents=True, exist_ok=True)
        app = App(server, sandbox, tmp, work / "app1.log", *flags)
        try:
            alone = SoakReport(1, messages, sandbox)
            _user(app.url, 999, messages, alone, threading.Lock())
            report.errors += [f"baseline: {e}" for e in alone.errors]
            report.baseline_s = statistics.median(alone.latencies_s) if alone.latencies_s else float("nan")
            report.rss_before_mb = tree_rss_mb(app.proc.pid)
            sampler = MemorySampler(app.proc.pid)
            lock = threading.Lock()
            threads = [
                threading.Thread(target=_user, args=(app.url, u, messages, report, lock))
                for u in range(users)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=1800)
            report.peak_rss_mb = sampler.stop()
            report.rss_after_mb = tree_rss_mb(app.proc.pid)
        finally:
            report.stop_status = app.stop()
        if sandbox == "docker":
            report.left_containers = containers_of(app.proc.pid)
        report.left_dirs = app.session_dirs()

        # 4: kill -9 while code runs, then a restart on the same TMPDIR.
        tmp = work / "tmp2"
        tmp.mkdir(parents=True, exist_ok=True)
        crashed = App(server, sandbox, tmp, work / "app2.log", *flags)
        sleepers = [
            threading.Thread(target=_sleeping_user, args=(crashed.url,), daemon=True) for _ in range(3)
        ]
        for thread in sleepers:
            thread.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and _running_sleeps(server) < 3:
            time.sleep(0.2)
        time.sleep(5)  # the model asked to run them: the sleeps are now running in their kernels
        crashed.kill()
        dead = crashed.proc.pid
        orphan_dirs = crashed.session_dirs()
        orphan_containers = containers_of(dead) if sandbox == "docker" else []
        report.orphans_before_restart = (len(orphan_containers), len(orphan_dirs))
        restarted = App(server, sandbox, tmp, work / "app3.log", *flags)
        try:
            # The restart cleans up as its first kernel starts (the warm pool starts one at once).
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                left = containers_of(dead) if sandbox == "docker" else []
                stale = [d for d in restarted.session_dirs() if d in orphan_dirs]
                if not left and not stale:
                    break
                time.sleep(0.5)
            report.orphans_after_restart = (len(left), len(stale))
        finally:
            restarted.stop()
    finally:
        server.stop()
    return report


def _sleeping_user(url: str) -> None:
    from gradio_client import Client

    try:
        Client(url, verbose=False).predict("run: import time; time.sleep(120)", api_name="/chat")
    except Exception:  # noqa: BLE001 - the app is killed under it
        pass


def _running_sleeps(server) -> int:
    return sum(
        1
        for body in list(server.requests)
        if any("time.sleep(120)" in str(m.get("content")) for m in body.get("messages", [])[-1:])
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=12, help="API users at once (default 12)")
    parser.add_argument("--messages", type=int, default=3, help="messages per user (default 3)")
    parser.add_argument("--sandbox", choices=("docker", "local"), default="docker")
    parser.add_argument("--keep", type=Path, default=None, help="keep the apps' logs and TMPDIRs here")
    args = parser.parse_args(argv)
    work = args.keep or Path(tempfile.mkdtemp(prefix="acsoak-"))
    started = time.monotonic()
    report = soak(args.users, args.messages, args.sandbox, work)
    for line in report.lines():
        print(line)
    print(f"total {time.monotonic() - started:.0f} s" + (f"; logs in {work}" if args.keep else ""))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    clean = not report.errors and not report.left_containers and not report.left_dirs
    return 0 if clean and report.stop_status == 0 and report.orphans_after_restart == (0, 0) else 1


if __name__ == "__main__":
    sys.exit(main())
