"""Kernel reuse for batch jobs: a pool that hands a used session to the next job only after a real reset.

Why: starting a sandboxed Jupyter kernel costs about 0.35 s of CPU (importing ipykernel, IPython, zmq,
plus the jail); the data pipeline runs one short job per item, so on a small machine fresh kernels, not
the model calls, bound its throughput (benchmarks.pipeline_throughput). `RecyclingPool(factory, reuse=N)`
lets one kernel serve up to N jobs in turn:

    pool = RecyclingPool(lambda: Session(sandbox), reuse=20, warm=4)
    session = pool.acquire()            # a started session: fresh, or reset after an earlier job
    ... session.run_block(...) ...
    pool.release(session, retire=None)  # or retire="why" when the job left state a reset cannot clear
    pool.close()

A fresh session gets a snapshot of its pristine kernel (taken by the kernel itself, before any job's code,
with IPython's traceback formatter already loaded) right after it starts. On release it is reset INSIDE the sandbox, by the kernel, in one execution
(`_autocoder_reset` below, sent as source with the snapshot, like interpreter/kernel_prelude.py), back to
that snapshot:
- the user namespace and IPython's history/output cache (`InteractiveShell.reset`), open matplotlib figures;
- every module imported since the snapshot is dropped from sys.modules (so the next job's `import` runs the
  module afresh); a third-party extension module (numpy, pandas, ...) cannot be unloaded, so importing one
  retires the kernel instead;
- builtins and the attributes of the standard-library modules loaded at the snapshot are put back (a
  monkeypatched `print`, `json.dumps` or `sys.stdout` does not survive);
- working folder (cwd), os.environ, sys.path, import hooks, umask, recursion limit, signal handlers and
  timers, trace/profile hooks, excepthooks, warnings filters, root logger, IPython event callbacks and AST
  transformers; `random` is reseeded from the OS as in a new process;
- /work, /tmp and /dev/shm inside the sandbox are emptied by the kernel itself, but for what was there at
  the snapshot (IPython's profile folder in /tmp); the host never touches the workdir for this: files a
  sandbox wrote are hostile to the host (DESIGN.md, "Where the host and the sandbox meet").
The reset then checks what it cannot undo and retires the kernel (closes it, a fresh one takes its place)
when it finds any: a thread or process the job left running, packages installed into /pkgs, a third-party
extension module or multiprocessing imported, a lowered hard resource limit, a folder it could not empty,
a reset that failed or timed out. The caller retires a session itself (`release(session, retire=reason)`)
after anything that may have left state outside the kernel's view or broken the reset's own machinery: an
execution that timed out, crashed, hit the memory limit, lost state or restarted the kernel, flooded its
output past the cap, an interrupt or kill, or any sh block (installs change /pkgs). After `reuse` jobs a
kernel is retired in any case (or sooner: the limits are spread, see below), which bounds what an
undetected leak can reach.

The isolation trade-off, stated plainly: a reused kernel is the same process. The reset covers what code
does by accident or habit (the list above, tested in tests/data_pipeline/test_kernel_reuse.py), not code
that sets out to survive it: in-process code can tamper with the reset itself (its snapshot lives in the
kernel), or hide state in C-level structures or objects the reset does not compare. The sandbox boundary
and the host's safety are unchanged by reuse (same jail, same limits); what reuse can cost is the
independence of jobs' results. `reuse=0` gives every job a fresh kernel (strict isolation, slower).

Starting kernels: jobs are served in the order they asked, each by the first kernel that is ready, a
reset one or a new one. A job that has waited `start_after_s` (0.3 s; at once without reuse) asks for one
kernel to be started in the background and still takes whichever is ready first: most jobs hold a kernel
for a fraction of a second, while a start takes seconds on a busy machine, so a job bound to its own start
waited for it while reset kernels came back unused. A start that finishes after its job was served joins
the ready kernels for the next one. With reuse at most `max_starting` kernels start at once (default: twice
the CPUs; a start also waits on the jail, the session's filesystem and the sockets), so a burst of jobs
does not boot more kernels in parallel than the machine can (without reuse every job needs a start of its
own, as in interpreter.pool). `warm` kernels are started in the background from the beginning (with
reuse: until that many exist in all; without: kept ready, one per job). Each kernel's limit is `reuse` less
a spread of up to half of it (`_limit_for`), so kernels used in turn do not all retire at once, and a
kernel handed out for its last job gets its successor started at once, ready when it retires. Resets run
in a background thread per release, so the releasing job's thread moves on at once.

What it deliberately does not do: decide which results retire a session (the caller's `retire` argument;
`retire_reason` below is the rule the data pipeline applies), cap sessions (interpreter.session does), or
serve the app (a chat's kernel is never reused: interpreter.pool).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
import threading
from collections import Counter, deque
from collections.abc import Callable

from interpreter.results import STATUS_CRASHED, STATUS_MEMORY, STATUS_OK, STATUS_TIMEOUT
from interpreter.session import Session

DEFAULT_KERNEL_REUSE = 50  # jobs per kernel in the data pipeline (see data_pipeline/README.md)
RESET_TIMEOUT_S = 15.0  # a reset that takes longer is taken as failed: the kernel is retired
SNAPSHOT_TIMEOUT_S = 15.0
# With reuse, a job waits this long for a kernel in use or being reset before it asks for a new one.
START_AFTER_S = 0.3
# The reset's report line on stdout: marker + JSON. \x1e never appears in ordinary output.
REPORT_MARKER = "\x1eautocoder-reset:"
# Result statuses after which a kernel may hold state a reset cannot see (or never ran the job's code).
RETIRING_STATUSES = frozenset({STATUS_TIMEOUT, STATUS_CRASHED, STATUS_MEMORY})


# ---- kernel side: these two functions run INSIDE the sandboxed kernel, sent as source -------------------
# Rules as for interpreter/kernel_prelude.py: standard library only, imported inside the functions; every
# name starts with `_autocoder_`; the syntax stays within the sandbox image's Python (3.11).


def _autocoder_snapshot(shell, folders):
    """Record the pristine kernel's state on the shell object (before any job's code runs)."""
    import builtins
    import logging
    import os
    import random  # noqa: F401 - loaded now so that it is part of the snapshot (reset reseeds it)
    import resource
    import signal
    import sys
    import sysconfig
    import threading
    import warnings

    # IPython imports its traceback formatting (pygments, stack_data, ...) at the first error. Loaded
    # before the snapshot, it stays loaded; after it, every reset would drop it and every item's first
    # error would import it again (tens of ms of the kernel's CPU each). Formatted here, not shown.
    try:
        raise ValueError("warming the traceback formatter")
    except ValueError:
        shell.InteractiveTB.structured_traceback(*sys.exc_info())

    paths = sysconfig.get_paths()
    # Both spellings of the standard library's folders, so no module's path needs resolving (fast).
    stdlib = tuple(
        {
            f(paths[key]).rstrip(os.sep) + os.sep
            for key in ("stdlib", "platstdlib")
            for f in (str, os.path.realpath)
        }
    )

    def is_stdlib(module):
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None) or getattr(module, "__file__", None)
        if origin in ("built-in", "frozen") or (
            spec is not None and origin is None and not spec.submodule_search_locations
        ):
            return True
        # A venv's platstdlib holds its site-packages: installed packages are not the standard library.
        return isinstance(origin, str) and origin.startswith(stdlib) and "-packages" + os.sep not in origin

    stdlib_modules = {}
    for name, module in list(sys.modules.items()):
        if module is not None and is_stdlib(module):
            with_dict = getattr(module, "__dict__", None)
            if isinstance(with_dict, dict):
                stdlib_modules[name] = (module, dict(with_dict))
    signals = {}
    for number in signal.valid_signals():
        try:
            signals[number] = signal.getsignal(number)
        except (OSError, ValueError):
            continue
    limits = {}
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            try:
                limits[name] = resource.getrlimit(getattr(resource, name))
            except (OSError, ValueError):
                pass
    umask = os.umask(0o022)
    os.umask(umask)
    # What the folders the reset empties hold at the start (IPython keeps its profile in /tmp/.ipython): kept.
    kept = set()
    for folder in folders:
        for top, dirs, files in os.walk(folder):
            kept.update(os.path.join(top, name) for name in dirs + files)
    root = logging.getLogger()
    shell._autocoder_recycle_state = {
        "is_stdlib": is_stdlib,
        "modules": set(sys.modules),
        "stdlib_modules": stdlib_modules,
        "builtins": dict(vars(builtins)),
        "path": list(sys.path),
        "meta_path": list(sys.meta_path),
        "path_hooks": list(sys.path_hooks),
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "folders": list(folders),
        "kept": kept,
        "umask": umask,
        "recursion": sys.getrecursionlimit(),
        "signals": signals,
        "limits": limits,
        "hooks": (sys.excepthook, sys.displayhook, sys.unraisablehook, threading.excepthook),
        "trace": (sys.gettrace(), sys.getprofile()),
        "warnings": list(warnings.filters),
        "logging": (
            root.level,
            list(root.handlers),
            logging.root.manager.disable,
            set(logging.root.manager.loggerDict),
        ),
        "events": {name: list(callbacks) for name, callbacks in shell.events.callbacks.items()},
        "ast_transformers": list(shell.ast_transformers),
        "input_transformers": list(shell.input_transformers_post),
        "extensions": set(shell.extension_manager.loaded),
        "tasks": set(os.listdir("/proc/self/task")),
        "pids": {entry for entry in os.listdir("/proc") if entry.isdigit()},
        "gc": None,
        # This cell's count: the reset cell takes it over, so the next job's cells are numbered (In[n], and
        # "Cell In[n]" in its tracebacks) as on a fresh kernel, whichever kernel the scheduling gave it.
        "execution_count": shell.execution_count,
    }
    import gc

    # The kernel's own objects (hundreds of thousands) move to the permanent generation, so a full
    # collection (IPython's reset runs one) looks only at what jobs made: ~30 ms less per reset.
    gc.freeze()
    shell._autocoder_recycle_state["gc"] = (gc.isenabled(), gc.get_threshold())
    print("\x1eautocoder-reset:" + '{"clean": true, "problems": [], "restored": []}')


def _autocoder_reset(shell):
    """Put the kernel back to its snapshot; print a report: clean, what was restored, what was not."""
    import builtins
    import gc
    import importlib
    import json
    import logging
    import os
    import random
    import resource
    import signal
    import stat
    import sys
    import threading
    import time
    import warnings

    state = getattr(shell, "_autocoder_recycle_state", None)
    problems, restored = [], []

    def changed(now, then):
        # The kernel rebinds some hooks to a new bound method of the same object at every cell.
        return now is not then and not (type(then).__name__ == "method" and now == then)

    if state is None:
        print(
            "\x1eautocoder-reset:" + json.dumps({"clean": False, "problems": ["no snapshot"], "restored": []})
        )
        return

    # Figures first: closing them may need modules that are about to be dropped.
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is not None:
        try:
            pyplot.close("all")
        except Exception as exc:  # noqa: BLE001
            problems.append(f"closing figures failed: {type(exc).__name__}")

    # Timers and signal handlers, before anything else can fire.
    signal.alarm(0)
    for timer in (signal.ITIMER_REAL, signal.ITIMER_VIRTUAL, signal.ITIMER_PROF):
        signal.setitimer(timer, 0)
    for number, handler in state["signals"].items():
        try:
            if handler is not None and changed(signal.getsignal(number), handler):
                signal.signal(number, handler)
                restored.append(f"signal {number}")
        except (OSError, ValueError, TypeError):
            pass

    # The namespace and IPython's histories (in memory; a new history session would write to its database).
    shell.reset(new_session=False)
    history = shell.history_manager
    if history is not None:  # without a new session, reset keeps the inputs: In, _ih, _i1 ...
        history.input_hist_parsed[:] = [""]
        history.input_hist_raw[:] = [""]
    shell.execution_count = state["execution_count"]  # as the snapshot cell's: the same numbers follow

    # Builtins.
    current = vars(builtins)
    for name in list(current):
        if name not in state["builtins"]:
            del current[name]
            restored.append(f"builtins.{name}")
    for name, value in state["builtins"].items():
        if changed(current.get(name, state), value):
            current[name] = value
            restored.append(f"builtins.{name}")

    # Modules imported since the snapshot: dropped, unless they cannot be unloaded.
    new = [name for name in list(sys.modules) if name not in state["modules"]]
    for name in new:
        module = sys.modules.get(name)
        origin = getattr(getattr(module, "__spec__", None), "origin", None) or getattr(
            module, "__file__", None
        )
        if name.split(".")[0] == "multiprocessing":
            problems.append("multiprocessing was imported")
        elif isinstance(origin, str) and origin.endswith((".so", ".pyd")) and not state["is_stdlib"](module):
            problems.append(f"extension module {name} was imported (cannot be unloaded)")
    if not problems:
        for name in new:
            sys.modules.pop(name, None)
    # Standard-library modules loaded at the snapshot: attributes put back.
    for name, (module, attributes) in state["stdlib_modules"].items():
        if sys.modules.get(name) is not module:
            sys.modules[name] = module
            restored.append(f"sys.modules[{name!r}]")
        now = module.__dict__
        if name == "sys":
            continue  # handled field by field below (sys holds live interpreter state)
        try:
            if now == attributes:  # the usual case, compared in C (identical values never call __eq__)
                continue
        except Exception:  # noqa: BLE001 - a changed value whose __eq__ fails: compare one by one
            pass
        for key in [k for k in now if k not in attributes]:
            if not key.startswith("__"):
                del now[key]
                restored.append(f"{name}.{key}")
        for key, value in attributes.items():
            if changed(now.get(key, state), value):
                now[key] = value
                restored.append(f"{name}.{key}")
    sys_now, sys_then = sys.__dict__, state["stdlib_modules"]["sys"][1]
    for key in ("stdout", "stderr", "stdin", "displayhook", "excepthook", "breakpointhook", "unraisablehook"):
        if key in sys_then and changed(sys_now.get(key), sys_then[key]):
            sys_now[key] = sys_then[key]
            restored.append(f"sys.{key}")
    for key in ("last_type", "last_value", "last_traceback", "last_exc"):
        sys_now.pop(key, None)

    # Interpreter-wide settings.
    sys.path[:] = state["path"]
    sys.meta_path[:] = state["meta_path"]
    sys.path_hooks[:] = state["path_hooks"]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    sys.setrecursionlimit(state["recursion"])
    sys.excepthook, sys.displayhook, sys.unraisablehook, threading.excepthook = state["hooks"]
    if (sys.gettrace(), sys.getprofile()) != state["trace"]:
        sys.settrace(state["trace"][0])
        sys.setprofile(state["trace"][1])
        restored.append("trace/profile hooks")
    threading.settrace(None)
    threading.setprofile(None)
    os.umask(state["umask"])
    if os.environ != state["environ"]:
        os.environ.clear()
        os.environ.update(state["environ"])
        time.tzset()
        restored.append("os.environ")
    warnings.filters[:] = state["warnings"]
    warnings._filters_mutated()
    level, handlers, disabled, loggers = state["logging"]
    root = logging.getLogger()
    root.setLevel(level)
    root.handlers[:] = handlers
    logging.disable(disabled)
    for name in [n for n in logging.root.manager.loggerDict if n not in loggers]:
        del logging.root.manager.loggerDict[name]
    for name, callbacks in state["events"].items():
        shell.events.callbacks[name][:] = callbacks
    shell.ast_transformers[:] = state["ast_transformers"]
    shell.input_transformers_post[:] = state["input_transformers"]
    if set(shell.extension_manager.loaded) != state["extensions"]:
        problems.append("an IPython extension was loaded")
    enabled, threshold = state["gc"]
    gc.enable() if enabled else gc.disable()
    gc.set_threshold(*threshold)
    for name, (soft, hard) in state["limits"].items():
        try:
            now_soft, now_hard = resource.getrlimit(getattr(resource, name))
            if (now_soft, now_hard) != (soft, hard):
                if now_hard != hard:
                    problems.append(f"hard {name} was changed")
                else:
                    resource.setrlimit(getattr(resource, name), (soft, hard))
                    restored.append(name)
        except (OSError, ValueError):
            problems.append(f"could not restore {name}")
    random.seed()

    # Files: emptied from in here, but for what was there at the snapshot; links are removed, never followed.
    kept = state["kept"]

    def empty(folder):
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        except OSError as exc:
            problems.append(f"cannot list {folder}: {exc.strerror}")
            return
        for entry in entries:
            try:
                if entry.path in kept:
                    if entry.is_dir(follow_symlinks=False):
                        empty(entry.path)  # new files inside it go; the folder stays
                    continue
                if entry.is_dir(follow_symlinks=False):
                    os.chmod(entry.path, stat.S_IRWXU)
                    empty(entry.path)
                    os.rmdir(entry.path)
                else:
                    os.unlink(entry.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append(f"cannot remove {entry.path}: {exc.strerror}")

    os.chdir(state["cwd"])
    for folder in state["folders"]:
        if os.path.isdir(folder) and os.access(folder, os.W_OK):
            empty(folder)
    if os.path.isdir("/pkgs") and os.listdir("/pkgs"):
        problems.append("packages were installed into /pkgs")

    # What cannot be undone from in here: threads and processes the job left running.
    if set(os.listdir("/proc/self/task")) - state["tasks"]:
        problems.append("a thread started by the job is still running")
    mine = str(os.getpid())
    for pid in {entry for entry in os.listdir("/proc") if entry.isdigit()} - state["pids"] - {mine}:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" or fields[1] == mine:
            problems.append("a process started by the job is still running")
            break
    report = {"clean": not problems, "problems": problems, "restored": sorted(set(restored))}
    print("\x1eautocoder-reset:" + json.dumps(report))


# ---- host side ----------------------------------------------------------------------------------------

# Folders the kernel empties: the workdir (the sandbox's /work) and the jail's private temp folders.
RESET_FOLDERS = ("/work", "/tmp", "/dev/shm")


@functools.cache
def _kernel_source() -> str:
    """The kernel-side functions' source (read once per process: inspect tokenizes the whole file)."""
    return "\n\n".join(inspect.getsource(fn) for fn in (_autocoder_snapshot, _autocoder_reset))


def snapshot_code(folders: tuple[str, ...] = RESET_FOLDERS) -> str:
    """The cell that defines the kernel-side functions in a private namespace (not the user's), takes the
    snapshot, and keeps the reset function on the shell beside the snapshot, so a reset is a short cell."""
    return (
        f"exec(compile({_kernel_source()!r}, '<autocoder-recycle>', 'exec'), _ns := {{}})\n"
        f"get_ipython()._autocoder_recycle_reset = _ns['_autocoder_reset']\n"
        f"_ns['_autocoder_snapshot'](get_ipython(), {list(folders)!r}); del _ns\n"
    )


def reset_code() -> str:
    return "get_ipython()._autocoder_recycle_reset(get_ipython())"


def parse_report(result) -> dict:
    """The kernel's report from a snapshot or reset execution; a failed run is an unclean report."""
    if result.status != STATUS_OK or getattr(result, "state_lost", False) or result.error is not None:
        why = result.message or (result.error.name if result.error is not None else result.status)
        return {"clean": False, "problems": [f"reset did not run cleanly: {why}"], "restored": []}
    for line in reversed(result.stdout.split("\n")):  # not splitlines(): it splits at the marker's \x1e
        if line.startswith(REPORT_MARKER):
            try:
                report = json.loads(line[len(REPORT_MARKER) :])
            except ValueError:
                break
            if isinstance(report, dict) and isinstance(report.get("problems"), list):
                report["clean"] = report.get("clean") is True and not report["problems"]
                return report
            break
    return {"clean": False, "problems": ["the reset wrote no report"], "restored": []}


def retire_reason(language: str, result) -> str | None:
    """Why a session must not be reused after this block's result (None: a reset can clean it)."""
    if language == "sh":
        return "an sh block ran (installs change /pkgs, which the kernel cannot empty)"
    if result is None:
        return None
    if result.status in RETIRING_STATUSES:
        return f"an execution ended with status {result.status}"
    if getattr(result, "state_lost", False):
        return "the kernel lost its state (restarted)"
    if getattr(result, "dropped_chars", 0):
        return "an execution's output went past the cap"
    return None


class RecyclingPool:
    """Sessions handed to one job at a time, reset in between (see the module docstring)."""

    def __init__(
        self,
        factory: Callable[[], Session],
        *,
        reuse: int = DEFAULT_KERNEL_REUSE,
        warm: int = 0,
        max_starting: int | None = None,
        reset_timeout_s: float = RESET_TIMEOUT_S,
        start_after_s: float = START_AFTER_S,
    ) -> None:
        if reuse < 0:
            raise ValueError("kernel reuse must be 0 (a fresh kernel per job) or more")
        self.factory = factory
        self.reuse = reuse
        self.warm = max(0, warm)
        self.reset_timeout_s = reset_timeout_s
        self._idle: deque[Session] = deque()  # ready for a job: fresh (snapshot taken) or reset
        self._uses: dict[int, int] = {}  # id(session) -> jobs it served
        self._limits: dict[int, int] = {}  # id(session) -> jobs it may serve (`_limit_for`)
        self._snapshotted: set[int] = set()
        self._starting = 0  # starts in progress (for a job or in the background)
        self._warming = 0  # background starts not finished (waiting for a start slot, or starting)
        self._warm_starting = 0  # of those, the ones starting now (also counted in _starting)
        self._busy = 0  # handed out, not released yet
        self._resetting = 0
        self._queue: deque[object] = deque()  # jobs waiting in acquire, in the order they asked
        self._asked: set[object] = set()  # waiting jobs whose own start is on its way
        self._adopted: set[object] = set()  # starts whose job was served first: counted as warm kernels
        self._failed: dict[object, BaseException] = {}  # a waiting job's start failed: it raises this
        # Starting a kernel waits on the jail, mkfs and sockets as well as the CPU: twice the CPUs at once.
        # Without reuse every job needs a start of its own: each starts its kernel itself, as the app's pool.
        default_starting = 2 * (os.cpu_count() or 1) if reuse else 1_000_000
        self._max_starting = max(1, max_starting or default_starting)
        self.start_after_s = start_after_s
        self._changed = threading.Condition()
        self._closed = False
        # started, reused, retired; reset_s and wait_s: seconds spent resetting, and jobs spent waiting in acquire
        self.stats: Counter = Counter()
        self.retire_reasons: Counter = Counter()
        self.last_error: str | None = None
        with self._changed:
            self._top_up()

    # -- starting ---------------------------------------------------------------------------------------

    def _start_in_background(self, ticket: object | None = None) -> None:
        """Start one kernel in a thread of its own; when it is up it joins the ready ones, for whichever job
        is first in line. `ticket`: the waiting job that asked for it (None: a warm kernel), which gets the
        error if the start fails, as if it had started the kernel itself. Called under the lock, with
        `_starting` (and for a warm kernel `_warming`) already counted."""
        threading.Thread(
            target=self._run_start, args=(ticket,), name="recycling-pool-start", daemon=True
        ).start()

    def _run_start(self, ticket: object | None) -> None:
        if ticket is None:  # a warm kernel waits for a start slot; a job's request was given one
            with self._changed:
                self._changed.wait_for(lambda: self._closed or self._starting < self._max_starting)
                if self._closed:
                    self._warming -= 1
                    self._changed.notify_all()
                    return
                self._starting += 1
                self._warm_starting += 1
        session = None
        try:
            session = self._start()
        except Exception as exc:  # noqa: BLE001 - remembered; the asking job (if any) raises it
            self.last_error = f"{type(exc).__name__}: {exc}"
            print(f"recycling pool: could not start a session: {self.last_error}", file=sys.stderr)
            with self._changed:
                if ticket in self._asked:  # its job still waits
                    self._failed[ticket] = exc
        finally:
            with self._changed:
                self._starting -= 1
                self._asked.discard(ticket)
                if ticket is None or ticket in self._adopted:
                    self._adopted.discard(ticket)
                    self._warm_starting -= 1
                    self._warming -= 1
                if session is not None and not self._closed:
                    self._idle.append(session)
                    session = None
                self._changed.notify_all()
        if session is not None:
            session.close()

    def _start(self) -> Session:
        session = self.factory()
        try:
            session.start()
            if self.reuse:
                self._snapshot(session)
        except BaseException:
            session.close()  # no half-started jail or container left behind
            raise
        with self._changed:
            self._limits[id(session)] = self._limit_for(self.stats["started"])
            self.stats["started"] += 1
        return session

    def _limit_for(self, number: int) -> int:
        """Jobs the `number`-th kernel started may serve: `reuse` less a spread of up to half of it. Ready
        kernels are handed out in turn, so with one limit for all they reached it together and their
        successors booted at once, while jobs waited; spread limits retire them one by one. The stride
        (about 0.38 of the spread, the golden ratio's) keeps neighbours in starting order far apart."""
        spread = self.reuse // 2 + 1
        stride = max(1, round(spread * 0.382))
        return self.reuse - (number * stride) % spread

    def _snapshot(self, session: Session) -> None:
        report = parse_report(session.run(snapshot_code(), timeout_s=SNAPSHOT_TIMEOUT_S))
        if not report["clean"]:
            raise RuntimeError(f"kernel snapshot failed: {'; '.join(report['problems'])}")
        self._snapshotted.add(id(session))

    # -- handing out ------------------------------------------------------------------------------------

    def acquire(self) -> Session:
        """A started session for one job: a ready one if any, else the first that becomes ready. Jobs are
        served in the order they asked. A job that has waited `start_after_s` (with reuse; at once without)
        asks for one kernel to be started in the background, at most `max_starting` starting at once, and
        takes whichever kernel is ready first, its own start or one coming back from a reset: most jobs hold
        a kernel for a fraction of a second, and a start takes seconds on a busy machine. If the start it
        asked for fails while it still waits, it raises that error."""
        import time

        asked = time.monotonic()
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
            try:
                while True:
                    if self._closed:
                        raise RuntimeError("recycling pool is closed")
                    if self._queue[0] is ticket:
                        session = self._take_ready()
                        if session is not None:
                            self._leave_queue(ticket)  # first: its own start may now count as a warm one
                            return self._hand_out(session, asked)
                    if ticket in self._failed:
                        raise self._failed.pop(ticket)
                    waited = time.monotonic() - asked
                    patient = self.reuse and waited < self.start_after_s and self._kernel_count() > 0
                    if not patient and ticket not in self._asked and self._starting < self._max_starting:
                        self._asked.add(ticket)
                        self._starting += 1
                        self._start_in_background(ticket)
                    self._changed.wait(self.start_after_s - waited if patient else None)
            finally:
                self._leave_queue(ticket)

    def _leave_queue(self, ticket: object) -> None:
        """A job stops waiting (served, failed or closed). Called under the lock; idempotent."""
        if ticket not in self._queue:
            return
        self._queue.remove(ticket)
        self._failed.pop(ticket, None)
        if ticket in self._asked:  # served before its own start ended: that kernel is now a warm one
            self._asked.discard(ticket)
            self._adopted.add(ticket)
            self._warming += 1
            self._warm_starting += 1
        self._changed.notify_all()  # the next in line may take a ready kernel now

    def _take_ready(self) -> Session | None:
        """A ready session that is still alive, or None. Called under the lock."""
        while self._idle:
            session = self._idle.popleft()
            if session.is_alive():
                return session
            threading.Thread(target=self._discard, args=(session, "died while idle"), daemon=True).start()
        return None

    def _hand_out(self, session: Session, asked: float) -> Session:
        """Called under the lock."""
        import time

        self._busy += 1
        served = self._uses.setdefault(id(session), 0)
        if self.reuse and served == self._limits.get(id(session), self.reuse) - 1 and not self._closed:
            # Its last job: its successor starts now and is ready when it retires. Kernels are used in
            # turn, so they reach the limit together: replaced only at retirement, a long run stalled on
            # a burst of starts every `reuse` rounds (1,000 items: 142 s of waits, 45 of 57 starts mid-run).
            self._warming += 1
            self._start_in_background()
        self._top_up()
        self.stats["wait_s"] += time.monotonic() - asked
        return session

    def _kernel_count(self) -> int:
        """Kernels ready, in use, being reset or being started. Called under the lock."""
        foreground_starts = self._starting - self._warm_starting
        return len(self._idle) + self._busy + self._resetting + foreground_starts + self._warming

    def _top_up(self) -> None:
        """Start kernels in the background (called under the lock): with reuse, until `warm` kernels exist
        in all; without, until `warm` wait ready or are on their way (each job uses up one)."""
        if self._closed:
            return
        have = self._kernel_count() if self.reuse else len(self._idle) + self._warming
        for _ in range(max(0, self.warm - have)):
            self._warming += 1
            self._start_in_background()

    def release(self, session: Session, retire: str | None = None) -> None:
        """A job is done with `session`: reset it for the next job (in the background), or close it when
        `retire` says why it must not be reused, when it served `reuse` jobs, or when reuse is off."""
        with self._changed:
            self._busy = max(0, self._busy - 1)
        uses = self._uses.get(id(session), 0) + 1
        self._uses[id(session)] = uses
        if session.closed:
            self._forget(session)
            return
        if retire is None:
            if not self.reuse:
                retire = "reuse is off"
            elif uses >= self._limits.get(id(session), self.reuse):
                retire = f"served {uses} jobs"
            elif id(session) not in self._snapshotted:
                retire = "no snapshot"
        if retire is not None or self._closed:
            self._discard(session, retire or "the pool closed")
            return
        with self._changed:
            self._resetting += 1
        threading.Thread(
            target=self._reset, args=(session,), name="recycling-pool-reset", daemon=True
        ).start()

    def _reset(self, session: Session) -> None:
        import time

        started = time.monotonic()
        report = None
        try:
            report = parse_report(session.run(reset_code(), timeout_s=self.reset_timeout_s))
        except Exception as exc:  # noqa: BLE001 - any failure retires the session
            report = {"clean": False, "problems": [f"reset failed: {type(exc).__name__}: {exc}"]}
        finally:
            self.stats["reset_s"] += time.monotonic() - started
        alive = session.is_alive()
        with self._changed:
            self._resetting -= 1
            closed = self._closed
            if report["clean"] and alive and not closed:
                # In turn (the least recently used first): jobs spread over all kernels, so none reaches its
                # reuse limit early and is replaced by a start while others sit ready (most recently used
                # first retired the busiest kernels in bursts, each replacement a start a job waited for).
                self._idle.append(session)
                self.stats["reused"] += 1
                self._changed.notify_all()
                return
            self._changed.notify_all()
        if closed:
            reason = "the pool closed"
        elif not report["clean"]:
            reason = f"reset: {report['problems'][0]}"
        else:
            reason = "the kernel died after its reset"
        self._discard(session, reason)

    def _discard(self, session: Session, reason: str) -> None:
        self.stats["retired"] += 1
        self.retire_reasons[reason.split(" (")[0]] += 1
        self._forget(session)
        _close_quietly(session)
        with self._changed:
            if not self._closed:
                self._top_up()
            self._changed.notify_all()

    def _forget(self, session: Session) -> None:
        self._uses.pop(id(session), None)
        self._limits.pop(id(session), None)
        self._snapshotted.discard(id(session))

    @property
    def idle_count(self) -> int:
        with self._changed:
            return len(self._idle)

    def wait_idle(self, count: int, timeout_s: float = 60.0) -> bool:
        """Block until `count` sessions are ready (for tests and benchmarks)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._idle) >= count, timeout=timeout_s)

    def close(self, wait_s: float = 30.0) -> None:
        """Close the ready sessions and wait (up to `wait_s`) for resets and starts in flight to end."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            self._changed.wait_for(lambda: not self._resetting and not self._starting, timeout=wait_s)
            sessions = list(self._idle)
            self._idle.clear()
        # In parallel: closing one unmounts and deletes its disk image and kills its jail (mostly waiting).
        closers = [threading.Thread(target=_close_quietly, args=(s,), daemon=True) for s in sessions]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(wait_s)

    def __enter__(self) -> RecyclingPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _close_quietly(session: Session) -> None:
    with contextlib.suppress(Exception):
        session.close()
