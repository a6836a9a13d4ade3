"""The kernel-side start-up code (interpreter/kernel_prelude.py): its pure parts on the host, and the exact
cell the host sends, run in a child Python with a stand-in IPython shell (the real ipykernel path is covered
by test_kernel.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from interpreter import kernel_prelude
from interpreter.kernel import prelude_code
from interpreter.output import ExecutionOutput

SITE = "/venv/lib/python3.11/site-packages"
STDLIB = ["/usr/lib/python311.zip", "/usr/lib/python3.11", "/usr/lib/python3.11/lib-dynload"]


def test_working_folder_and_pythonpath_go_after_the_stdlib_before_site_packages():
    entries = kernel_prelude._autocoder_import_path_entries([*STDLIB, SITE], "/pkgs::/extra", ":")
    assert entries == [*STDLIB, "", "/pkgs", "/extra", SITE]


def test_import_paths_without_site_packages_are_appended_and_never_duplicated():
    assert kernel_prelude._autocoder_import_path_entries(STDLIB, "", ":") == [*STDLIB, ""]
    # An entry already on sys.path stays where it is; only the missing ones are inserted.
    assert kernel_prelude._autocoder_import_path_entries([*STDLIB, "/pkgs", SITE], "/pkgs", ":") == [
        *STDLIB,
        "/pkgs",
        "",
        SITE,
    ]


def _capped(limit: int, tail: int):
    written: list[tuple[str, str]] = []
    wrap, finish, reset = kernel_prelude._autocoder_output_cap(limit, tail)

    def writer(name: str):
        def write(text):
            written.append((name, text))
            return len(text)

        return write

    out, err = wrap("stdout", writer("stdout")), wrap("stderr", writer("stderr"))
    return written, out, err, finish, reset


def test_the_kernel_cap_passes_the_head_and_keeps_the_tail_until_the_cell_ends():
    written, out, _, finish, _ = _capped(limit=10, tail=4)
    assert out("abcdefgh") == 8
    assert out("ijklmnopqrstuvwxyz") == 18  # a write reports its full size even when cut
    assert written == [("stdout", "abcdefgh"), ("stdout", "ij")]
    finish()
    assert written[2:] == [("stdout", "\x1eautocoder-dropped:12\x1e"), ("stdout", "wxyz")]


def test_the_kernel_cap_counts_per_stream_and_resets_per_cell():
    written, out, err, finish, reset = _capped(limit=2, tail=3)
    out("ab")
    err("cdef")
    out("gh")
    finish()
    # The tail keeps the last 3 characters across both streams, in order; each stream's drop is counted.
    assert written == [
        ("stdout", "ab"),
        ("stderr", "\x1eautocoder-dropped:3\x1e"),
        ("stderr", "f"),
        ("stdout", "gh"),
    ]
    written.clear()
    reset()
    out("xy")
    assert written == [("stdout", "xy")]


def test_non_text_writes_pass_through_uncounted():
    written, out, _, finish, _ = _capped(limit=1, tail=1)
    out(b"bytes")
    out("a")
    finish()
    assert written == [("stdout", b"bytes"), ("stdout", "a")]


def test_the_host_turns_the_kernel_marker_into_a_dropped_count():
    written, out, _, finish, _ = _capped(limit=6, tail=4)
    out("0123456789" * 3)
    finish()
    run = ExecutionOutput("id", cap=100, on_output=None)
    for name, text in written:
        run.stream(name, text)
    result = run.result("ok", 0.0)
    # The host's own cap is not reached: the kernel's head and tail are joined, the drop noted after them.
    assert result.stdout == "0123456789\n[... 20 characters dropped: output limit reached ...]\n"
    assert result.dropped_chars == 30 - 10


def test_every_top_level_name_is_prefixed_and_the_cell_defines_none_in_the_users_namespace():
    defined = [name for name in vars(kernel_prelude) if not name.startswith("__")]
    assert defined and all(name.startswith("_autocoder_") for name in defined)
    code = prelude_code(10, 5)
    assert code.startswith("exec(") and code.count("\n") == 1  # one statement: exec in its own namespace
    compile(code, "<prelude>", "exec")


@pytest.mark.local_sandbox
def test_a_cell_that_shadows_builtins_does_not_break_later_output():
    # The output cap wraps every write; its functions must not look `str` or `isinstance` up in the
    # user's namespace (the stand-in model often writes `str = 'autocoder'`).
    from tests.interpreter.conftest import new_session

    session = new_session("local")
    try:
        shadow = session.run("str = 'autocoder'; isinstance = len = getattr = None; print('still', str)")
        assert shadow.status == "ok" and shadow.stdout == "still autocoder\n", shadow
        later = session.run("import sys; print(1); sys.stderr.write('two')")
        assert later.status == "ok" and later.stdout == "1\n" and later.stderr == "two", later
    finally:
        session.close()


def test_the_sent_cell_sets_up_the_shell_and_leaves_the_namespace_clean(tmp_path):
    # The exact cell the kernel receives, run in a child Python (it changes sys.path, the process group and
    # the std streams' write) with a stand-in for IPython's shell: what it registers, and what it leaves.
    code = prelude_code(limit=8, tail_limit=3)
    script = textwrap.dedent(
        """
        import json, sys

        class Events:
            def __init__(self):
                self.handlers = {}

            def register(self, name, handler):
                self.handlers[name] = handler

        class Shell:
            events = Events()
            _tee = "original"

        shell = Shell()
        namespace = {"get_ipython": lambda: shell, "__name__": "__main__"}
        exec(sys.argv[1], namespace)
        leftover = sorted(name for name in namespace if name not in ("get_ipython", "__name__", "__builtins__"))
        writes = []
        original = sys.stdout.write
        sys.stdout.write = lambda text: writes.append(text) or len(text)
        shell.events.handlers["pre_run_cell"]()
        sys.stdout.write("0123456789abc")
        shell.events.handlers["post_run_cell"]()
        sys.stdout.write = original
        print(json.dumps({
            "leftover": leftover,
            "events": sorted(shell.events.handlers),
            "tee_replaced": shell._tee != "original",
            "writes": writes,
            "path_has_cwd": "" in sys.path,
        }))
        """
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["leftover"] == []  # no names, no __doc__ from the file's docstring
    assert report["events"] == ["post_run_cell", "pre_run_cell"]
    assert report["tee_replaced"]
    assert report["writes"] == ["01234567", "\x1eautocoder-dropped:2\x1e", "abc"]
    assert report["path_has_cwd"]


class _Stream:
    """The parts of ipykernel's OutStream that the quick flush reads and calls."""

    def __init__(self, master: bool = True):
        self._flush_pending = False
        self._subprocess_flush_pending = False
        self.master = master
        self.waited = 0  # flushes that waited for the IOPub thread (the original flush)
        self.queued = 0  # buffered text handed to the IOPub thread (`_flush`)

    def flush(self):
        self.waited += 1

    def _flush(self):
        self._flush_pending = False
        self.queued += 1

    def _is_master_process(self):
        return self.master


def test_the_quick_flush_skips_an_empty_stream_and_waits_only_inside_a_cell():
    stream, in_cell = _Stream(), [True]
    assert kernel_prelude._autocoder_quick_flush(stream, in_cell)
    stream.flush()
    assert (stream.waited, stream.queued) == (0, 0)  # nothing written: no round trip
    stream._flush_pending = True
    stream.flush()  # inside a cell: the original flush, which waits until the text is sent
    assert (stream.waited, stream.queued) == (1, 0)
    in_cell[0] = False
    stream.flush()  # after the code ran: the text is queued for the IOPub thread, no wait
    assert (stream.waited, stream.queued) == (1, 1) and not stream._flush_pending
    stream._flush()  # what ipykernel schedules (its timed flush) goes through the same lock
    assert stream.queued == 2
    # A forked child's writes always take the original path.
    stream._subprocess_flush_pending = True
    stream.flush()
    child = _Stream(master=False)
    kernel_prelude._autocoder_quick_flush(child, in_cell)
    child._flush_pending = True
    child.flush()
    assert (stream.waited, child.waited, child.queued) == (2, 1, 0)
    # A stream whose state it does not know (not ipykernel's OutStream) keeps its own flush.
    assert not kernel_prelude._autocoder_quick_flush(sys.__stdout__, in_cell)


def test_quick_replies_drop_the_sleep_the_busy_status_and_the_input_echo_only():
    published = []

    class Kernel:
        _execute_sleep = 0.0005

        def _publish_status(self, status, channel, parent=None):
            published.append(("status", status, channel))

        def _publish_execute_input(self, code, parent, count):
            published.append(("execute_input", code))

    kernel, stream = Kernel(), _Stream()
    kernel_prelude._autocoder_quick_replies(kernel, [stream, sys.__stdout__], [False])
    assert kernel._execute_sleep == 0.0
    kernel._publish_status("busy", "shell")
    kernel._publish_execute_input("print(1)", {}, 1)
    kernel._publish_status("idle", "shell")
    kernel._publish_status("starting", "shell")
    assert published == [("status", "idle", "shell"), ("status", "starting", "shell")]
    stream.flush()
    assert (stream.waited, stream.queued) == (0, 0)
    # Anything else (no kernel: the stand-in shell of the test above) is left alone.
    kernel_prelude._autocoder_quick_replies(None, [], [False])
