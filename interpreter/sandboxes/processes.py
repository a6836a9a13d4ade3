"""Process helpers shared by the sandboxes that start host processes (local, none) and the kernel command
line every sandbox uses (docker too).

- `python_layout`, `ancestors`: where the host's Python lives, for binding or reaching it;
- `kernel_argv`: the kernel command (`python -I -B -c KERNEL_LAUNCH ...`: ipykernel without debugpy), the
  same in every sandbox;
- `limits_prefix`: prlimit + cgroup entry in front of a command, so the limits hold before anything runs;
- `spawn`: start long-lived processes from one process-wide thread (PR_SET_PDEATHSIG is per thread);
- `LogTail`: a kernel's own stdout/stderr, only the last few KB kept;
- `Jail`: one started process tree (host process, cgroups, log) and how to kill all of it;
- `wait_exit`, `collect`: run a one-shot command to its end or timeout, its output capped.

What it deliberately does not do: build a jail's command line (bubblewrap/unshare in `local.py`, none's
setpriv in `none.py`, containers in `docker.py`), choose limits (`base.Limits`) or manage cgroups
(`cgroups.py`).
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from interpreter.sandboxes import cgroups
from interpreter.sandboxes.base import CommandResult, Limits

# Per-uid process backstop (all sandboxes share uid 65534); the per-sandbox limit is the pids cgroup.
NPROC_BACKSTOP = 4096
MAX_OPEN_FILES = 4096
AS_HEADROOM_MB = 1024


def python_layout() -> tuple[str, str | None]:
    """(base interpreter prefix, venv prefix or None) of the Python running this process."""
    base = os.path.realpath(sys.base_prefix)
    venv = os.path.realpath(sys.prefix) if sys.prefix != sys.base_prefix else None
    return base, venv


def ancestors(path: str) -> list[str]:
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def killpg_quiet(popen: subprocess.Popen) -> None:
    """SIGKILL the jail's host process and its process group (started with a session of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        popen.kill()


class _Spawner:
    """Starts long-lived jails from one thread that lives as long as the process.

    Why: bubblewrap's --die-with-parent uses PR_SET_PDEATHSIG, which fires when the *thread* that forked
    the jail exits. A kernel started from a short-lived thread (a warm pool's filler) would die with it.
    """

    def __init__(self) -> None:
        self._requests: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="sandbox-spawner", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            func, reply = self._requests.get()
            try:
                reply.put((True, func()))
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                reply.put((False, exc))

    def call(self, func):
        reply: queue.Queue = queue.Queue(maxsize=1)
        self._requests.put((func, reply))
        ok, value = reply.get()
        if not ok:
            raise value
        return value


_spawner: _Spawner | None = None
_spawner_lock = threading.Lock()


def spawn(func):
    global _spawner
    if threading.current_thread() is threading.main_thread():
        return func()
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
    return _spawner.call(func)


class LogTail:
    """A pipe for a kernel's own stdout/stderr that keeps only the last few KB, for start-up diagnostics.

    Why not a file: ipykernel echoes everything written to fd 1/2 (subprocess and C-level output) to its
    original stdout/stderr too, so a file would grow with every flood the cell produces.
    """

    KEEP_BYTES = 16 * 1024

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._tail = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, name="kernel-log", daemon=True)

    def start(self) -> None:
        """Call after the child got `write_fd`: closes our copy so the reader sees EOF when the child ends."""
        os.close(self.write_fd)
        self._thread.start()

    def _drain(self) -> None:
        try:
            while data := os.read(self.read_fd, 65536):
                with self._lock:
                    self._tail += data
                    del self._tail[: max(0, len(self._tail) - self.KEEP_BYTES)]
        except OSError:
            pass
        finally:
            os.close(self.read_fd)

    def text(self) -> str:
        with self._lock:
            return self._tail.decode("utf-8", errors="replace")


@dataclass
class Jail:
    """One started jail: the host process (bubblewrap), its cgroups and, for kernels, its log tail."""

    popen: subprocess.Popen
    groups: cgroups.CgroupSet
    log: LogTail | None = None

    def kill(self) -> None:
        killpg_quiet(self.popen)
        self.groups.kill_all()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self.groups.remove()


# `sys.modules[name] = None` makes `import name` raise ImportError (the import system's documented marker).
KERNEL_LAUNCH = (
    "import sys; sys.modules['debugpy'] = None; "
    "from ipykernel import kernelapp; kernelapp.launch_new_instance()"
)


def kernel_argv(python: str, connection_file: str) -> list[str]:
    """The kernel command, shared by every sandbox.

    `-I` (isolated mode): neither the working folder nor PYTHONPATH (/pkgs) is on sys.path and the user's
    site folder is off while the kernel starts, so a module the code left in /work (say an
    `ipykernel_launcher.py`) or a `sitecustomize.py` / `.pth` file in /pkgs never runs at a kernel start.
    The kernel's prelude (interpreter/kernel_prelude.py) adds both to sys.path once the kernel is up, for
    the code's own imports. `-B`: -I also ignores PYTHONDONTWRITEBYTECODE.

    The launch code (`KERNEL_LAUNCH`) is ipykernel_launcher's with debugpy hidden while ipykernel starts:
    ipykernel imports debugpy at every start to offer a debugger the host never asks for, which was about a
    fifth of a kernel start's CPU (0.07 of 0.33 s; it matters when a pipeline starts kernels by the dozen).
    ipykernel treats the failed import as "no debugpy" and answers debug requests with an error; the prelude
    removes the marker, so the code's own `import debugpy` still works.
    """
    return [
        python,
        "-I",
        "-B",
        "-c",
        KERNEL_LAUNCH,
        "-f",
        connection_file,
        # History is a sqlite file per kernel: useless here and slow to create.
        "--HistoryManager.enabled=False",
        "--IPKernelApp.quiet=True",
    ]


def limits_prefix(limits: Limits, groups: cgroups.CgroupSet) -> list[str]:
    """The command prefix that enters `groups` and sets the rlimits, before the jail starts."""
    args = [
        "prlimit",
        f"--nproc={NPROC_BACKSTOP}",
        f"--fsize={limits.max_file_size_mb * 1024 * 1024}",
        f"--cpu={limits.cpu_time_s}",
        f"--nofile={MAX_OPEN_FILES}",
        "--core=0",
    ]
    if not groups.limits_memory:
        # No memory cgroup: an address-space limit instead. It counts reserved, not used, memory (an idle
        # kernel reserves ~700 MB for thread stacks and allocator arenas), hence the headroom.
        args.append(f"--as={(limits.memory_mb + AS_HEADROOM_MB) * 1024 * 1024}")
    if not groups.limits_processes:
        args[1] = f"--nproc={limits.max_processes}"
    args.append("--")
    if groups.paths:
        # Enter the cgroups before anything else runs, so no child escapes them.
        enter = "; ".join(f"echo $$ > {shlex.quote(p)}" for p in groups.procs_files())
        return ["/bin/sh", "-c", f'{enter}; exec "$@"', "sh", *args]
    return args


def wait_exit(popen: subprocess.Popen, timeout_s: float) -> bool:
    """Wait for the process to end; False on timeout. Popen.wait(timeout) polls with sleeps of up to 50 ms;
    a pidfd wakes up the moment the process exits."""
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        try:
            popen.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        if not poller.poll(max(0, int(timeout_s * 1000))):
            return False
    finally:
        os.close(pidfd)
    popen.wait()
    return True


def collect(jail: Jail, stdin: bytes | None, timeout_s: float, cap: int, started: float) -> CommandResult:
    """Feed stdin, read both pipes (keeping at most `cap` bytes each), enforce the timeout."""
    popen = jail.popen
    chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    sizes = {"stdout": 0, "stderr": 0}
    dropped = {"stdout": 0, "stderr": 0}

    def reader(name: str, stream) -> None:
        while True:
            data = stream.read1(65536)
            if not data:
                return
            room = cap - sizes[name]
            if room > 0:
                chunks[name].append(data[:room])
                sizes[name] += min(room, len(data))
            dropped[name] += max(0, len(data) - max(room, 0))

    threads = [
        threading.Thread(target=reader, args=("stdout", popen.stdout), daemon=True),
        threading.Thread(target=reader, args=("stderr", popen.stderr), daemon=True),
    ]
    for thread in threads:
        thread.start()
    if stdin is not None:
        with contextlib.suppress(BrokenPipeError, OSError):
            popen.stdin.write(stdin)
        with contextlib.suppress(OSError):
            popen.stdin.close()
    timed_out = not wait_exit(popen, timeout_s)
    memory = jail.groups.oom_kills() > 0
    jail.kill()
    for thread in threads:
        thread.join(timeout=2)

    def text(name: str) -> str:
        out = b"".join(chunks[name]).decode("utf-8", errors="replace")
        if dropped[name]:
            out += f"\n[... {dropped[name]} more bytes dropped: output limit is {cap} bytes ...]\n"
        return out

    return CommandResult(
        returncode=None if timed_out else popen.returncode,
        stdout=text("stdout"),
        stderr=text("stderr"),
        timed_out=timed_out,
        memory_exceeded=memory,
        duration_s=time.monotonic() - started,
    )
