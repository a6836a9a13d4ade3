"""Kernel-side start-up code: runs INSIDE the sandboxed kernel, once, right after it starts.

`interpreter.kernel` reads this file's source and sends it to the kernel as one silent execute_request:
the code after this docstring, then a call, `_autocoder_setup(LIMIT, TAIL_LIMIT, get_ipython())`, run by
`exec` in a namespace of its own, never the user's (see `interpreter.kernel.prelude_code`: a user's
`str = ...` must not reach the functions that wrap every write). It travels as source, never imported
there, because the kernel runs on the sandbox's own Python (the docker sandbox image has no copy of this
package). What it does there:
- puts the working folder and PYTHONPATH (/pkgs) on sys.path, after the standard library (the kernel starts
  with `python -I`, so nothing the code wrote runs at start-up);
- caps each cell's stdout/stderr at LIMIT characters, keeping a TAIL_LIMIT-character tail it writes when
  the cell ends after a marker with the count it dropped (parsed by `interpreter.output`), so a print loop
  costs neither the host nor the kernel memory;
- silences ipykernel's echo of fd 1/2, makes the kernel lead its process group (so an interrupt reaches its
  subprocesses), and stops IPython 9 from keeping every cell's output in its history;
- trims ipykernel's fixed costs per request that the host does not need (see `_autocoder_quick_replies`):
  no 0.5 ms sleep before the reply, no "busy" status or execute_input echo, and no round trip through the
  IOPub thread for a flush of a stream with nothing written, or for ipykernel's flushes after the code ran.

Rules for this file, because its source runs in the user's kernel on the sandbox's Python: every
top-level name starts with `_autocoder_` (they never meet the user's names), nothing runs at import
(the host's tests import it to test the pure parts), only the standard library is imported, inside the
functions, and the syntax stays within the sandbox image's Python (3.11).

What it deliberately does not do: talk to the host (output goes through the kernel's normal streams) or
enforce anything the code could undo; the host's own caps (`interpreter.output`, the byte budget in
`interpreter.kernel`) are what bound the host.
"""


def _autocoder_import_path_entries(sys_path, pythonpath, pathsep):
    """The new sys.path: "" (the working folder) and the PYTHONPATH entries, before site-packages.

    Pure (no sys, no os.environ) so it can be tested on the host. /pkgs is a plain path entry, never a
    site folder, so .pth files in it are never processed.
    """
    import os

    extra = [""] + [path for path in pythonpath.split(pathsep) if path]
    site = (
        i for i, path in enumerate(sys_path) if os.path.basename(path) in ("site-packages", "dist-packages")
    )
    index = next(site, len(sys_path))
    return sys_path[:index] + [path for path in extra if path not in sys_path] + sys_path[index:]


def _autocoder_output_cap(limit, tail_limit):
    """The per-cell cap as three functions: wrap(name, write) -> capped write, finish(), reset().

    Writes pass through until a cell has written `limit` characters; after that only the last
    `tail_limit` characters are kept, and `finish` writes the dropped count (per stream) and that tail
    through the original writes. Pure: it touches only the writes it is given.
    """
    import collections

    # The marker written before a cell's kept tail, per stream: the number of characters dropped. \x1e (record
    # separator) never appears in ordinary output; the host strips it and counts (interpreter.output). Bound
    # here, not at module level: the host deletes this file's top-level names once setup has run.
    dropped_format = "\x1eautocoder-dropped:{}\x1e"
    state = {"seen": 0, "dropped": {}, "tail": collections.deque(), "tail_len": 0}
    originals = {}

    def wrap(name, original):
        originals[name] = original

        def write(text):
            if not isinstance(text, str):
                return original(text)
            size = len(text)
            room = limit - state["seen"]
            state["seen"] += size
            if room >= size:
                return original(text)
            if room > 0:
                original(text[:room])
                text = text[room:]
            state["tail"].append((name, text))
            state["tail_len"] += len(text)
            while state["tail_len"] > tail_limit:
                first_name, first = state["tail"][0]
                cut = min(len(first), state["tail_len"] - tail_limit)
                state["dropped"][first_name] = state["dropped"].get(first_name, 0) + cut
                state["tail_len"] -= cut
                if cut == len(first):
                    state["tail"].popleft()
                else:
                    state["tail"][0] = (first_name, first[cut:])
            return size

        return write

    def reset(*args):
        state.update(seen=0, dropped={}, tail=collections.deque(), tail_len=0)

    def finish(*args):
        for name, count in state["dropped"].items():
            originals[name](dropped_format.format(count))
        for name, text in state["tail"]:
            originals[name](text)
        reset()

    return wrap, finish, reset


def _autocoder_quick_flush(stream, in_cell):
    """Make ipykernel's OutStream `stream` flush without waiting where it need not; False when the stream
    is not one whose state it knows (left as it is). `in_cell[0]` is true while a cell's code runs.

    ipykernel flushes stdout and stderr twice per request (before the reply and before the idle status),
    and each flush from the main thread is a round trip through the IOPub thread, which sends while the
    main thread waits: about 0.1 ms each on a quiet machine, several times that on a loaded one.
    - nothing written since the last flush: return at once. `write` always marks the stream pending
      (`_flush_pending`, or `_subprocess_flush_pending` in a forked child) before it returns, and a flush
      clears the mark, so an unmarked stream has nothing to send;
    - outside a cell (ipykernel's own flushes after the code ran): take the buffered text and queue its
      message for the IOPub thread right here (`_flush`), without waiting for the send. It is queued before
      the idle status that ends the execution for the host, so it is sent before it; every `_flush` (the
      IOPub thread's timed one too) holds one lock, so chunks are queued in the order they were written.
    While a cell runs, and in a forked child, a flush waits as before (the code's `print(..., flush=True)`
    is out before the code goes on, e.g. to crash).
    """
    import threading

    needed = ("flush", "_flush", "_flush_pending", "_subprocess_flush_pending", "_is_master_process")
    if not all(hasattr(stream, name) for name in needed):
        return False
    original_flush, queue_buffered = stream.flush, stream._flush
    lock = threading.Lock()

    def locked_queue_buffered():
        with lock:
            return queue_buffered()

    def flush():
        if not (stream._flush_pending or stream._subprocess_flush_pending):
            return None
        if in_cell[0] or stream._subprocess_flush_pending or not stream._is_master_process():
            return original_flush()
        return locked_queue_buffered()

    # ipykernel looks `_flush` up when it schedules it (the timed flush, the original flush): the locked one.
    stream._flush = locked_queue_buffered
    stream.flush = flush
    return True


def _autocoder_quick_replies(kernel, streams, in_cell):
    """Remove ipykernel's fixed per-request work that the host does not use; each only where present.

    - `_execute_sleep` (0.5 ms before every execute_reply) is there so that output reaches a client before
      the reply. The host ends an execution at the idle status, which the kernel publishes after the output
      on the same socket, so order is kept without it.
    - the flush of an empty stream, and the wait for the send after the code ran: see
      `_autocoder_quick_flush` (`in_cell[0]`: whether a cell's code runs).
    - the "busy" status and the execute_input echo of the code: the host reads neither (it ends at "idle",
      and it sent the code itself). Each is a message built and signed on the kernel's main thread, sent by
      the IOPub thread and woken up for on the host; on two busy cores that is a good part of a round trip.
    """
    if isinstance(getattr(kernel, "_execute_sleep", None), float):
        kernel._execute_sleep = 0.0
    for stream in streams:
        _autocoder_quick_flush(stream, in_cell)
    publish_status = getattr(kernel, "_publish_status", None)
    if callable(publish_status) and callable(getattr(kernel, "_publish_execute_input", None)):

        def status_but_busy(status, channel, parent=None):
            if status != "busy":
                publish_status(status, channel, parent)

        kernel._publish_status = status_but_busy
        kernel._publish_execute_input = lambda *args, **kwargs: None


def _autocoder_setup(limit, tail_limit, shell):
    """Everything the kernel needs once, in its own process; `shell` is the kernel's IPython shell."""
    import contextlib
    import os
    import sys

    # The kernel starts isolated (python -I, see interpreter.sandboxes.processes.kernel_argv): while
    # ipykernel starts, neither the working folder nor PYTHONPATH (/pkgs) is on sys.path, so nothing the code
    # or a package wrote there runs at start-up (a shadowing ipykernel_launcher.py, a sitecustomize.py, a
    # .pth file). From here on the code's own imports see both, as in plain Python: the working folder,
    # then the installed packages, after the standard library.
    sys.path[:] = _autocoder_import_path_entries(sys.path, os.environ.get("PYTHONPATH", ""), os.pathsep)
    # The launch hid debugpy from ipykernel (interpreter.sandboxes.processes.KERNEL_LAUNCH); the code's own
    # `import debugpy` must work as in plain Python.
    if "debugpy" in sys.modules and sys.modules["debugpy"] is None:
        del sys.modules["debugpy"]

    wrap, finish, reset = _autocoder_output_cap(limit, tail_limit)
    wrapped = []
    in_cell = [False]  # between pre_run_cell and post_run_cell (see _autocoder_quick_flush)

    def start_cell(*args):
        in_cell[0] = True
        # Wrap here, not at setup: IPython restores the streams' write when a cell ends.
        if not wrapped:
            wrapped.append(True)
            sys.stdout.write = wrap("stdout", sys.stdout.write)
            sys.stderr.write = wrap("stderr", sys.stderr.write)
        reset()

    # ipykernel echoes everything written to fd 1/2 (subprocesses, C code) to the kernel's original
    # stdout/stderr as well. After start-up nobody reads those: point them at /dev/null so the echo costs
    # nothing and cannot lag behind (a lagging echo delivers a dead subprocess's output into the next cell).
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        fd = getattr(stream, "_original_stdstream_copy", None)
        if isinstance(fd, int):
            os.dup2(devnull, fd)
    os.close(devnull)
    # ipykernel interrupts its whole process group (so a running `subprocess.run` child stops too) only when
    # the kernel leads that group; inside a jail it usually does not (bwrap's init does).
    try:
        os.setpgid(0, 0)
    except OSError:
        pass

    if hasattr(shell, "_tee"):
        # IPython 9 copies every write of every cell into history_manager.outputs and never frees it: a print
        # loop would fill the kernel's memory however little reaches the host. Nothing here reads it.
        shell._tee = lambda channel: contextlib.nullcontext()

    def end_cell(*args):
        finish()  # writes the kept tail: still the cell's output
        in_cell[0] = False

    _autocoder_quick_replies(getattr(shell, "kernel", None), (sys.stdout, sys.stderr), in_cell)
    shell.events.register("pre_run_cell", start_cell)
    shell.events.register("post_run_cell", end_cell)
