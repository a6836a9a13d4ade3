"""One persistent Jupyter kernel per session, run inside a sandbox: execute -> structured result.

`KernelSession` writes an IPC connection file into the session's ipc folder, asks the sandbox to start
ipykernel there, and talks the Jupyter messaging protocol (v5.3, HMAC-signed) to it over plain zmq sockets
polled from the calling thread: no background threads, and a warm round trip costs a few milliseconds.

What it guarantees per `execute`:
- stdout/stderr reach the `on_output` callback as they arrive, in order; rich outputs (execute_result,
  display_data) are kept as mime bundles; errors carry name, value and an ANSI-free traceback;
- wall-clock timeout: interrupt_request first (the kernel keeps its state); if it is still busy after a
  grace period, the kernel is restarted and the result says state was lost;
- kernel death (crash, out-of-memory kill) is noticed within about a second, reported as "crashed" or
  "memory_limit", and the kernel restarted;
- `input()` fails at once with a clear message (no stdin channel is offered);
- output is capped per stream: the head and the tail are kept, the middle dropped and counted. The kernel
  itself stops forwarding a cell's output beyond twice the cap (keeping the tail for the end of the cell),
  so a print loop costs neither the host nor the kernel memory;
- the code holds the connection key and can send anything on the kernel's sockets, so the host bounds what
  it takes: finite receive queues (RECEIVE_HWM messages of at most MAX_MESSAGE_BYTES each, also while no
  execution runs), and a byte budget per execution (`max_execution_bytes`); past the budget, or when a
  message over the size limit cut the output channel, the kernel is killed and restarted and the result
  says so (status "error", state lost).

What it deliberately does not do: choose or build the sandbox (see `interpreter.sandboxes`), run shell
blocks (see `interpreter.session`), keep kernels warm (see `interpreter.pool`), frame or sign messages
(`interpreter.wire`), buffer and cap output (`interpreter.output`), or hold the kernel-side code as text
(it is a real module, interpreter/kernel_prelude.py, read and sent at each kernel start).
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import os
import secrets
import shutil
import stat
import threading
import time
from pathlib import Path

# Output buffering and the wire live in their own modules; the names other modules import from here keep
# working (re-exported).
from interpreter.output import (  # noqa: F401 - re-exported
    DEFAULT_OUTPUT_CAP_CHARS,
    RICH_OUTPUT_CAP_CHARS,
    ExecutionOutput,
    OutputCallback,
    strip_ansi,
)

# The result types live in a leaf module (protocol and training import them without the kernel); they are
# re-exported here so `from interpreter.kernel import ExecutionResult` keeps working.
from interpreter.results import (  # noqa: F401 - re-exported
    STATUS_CRASHED,
    STATUS_ERROR,
    STATUS_MEMORY,
    STATUS_OK,
    STATUS_TIMEOUT,
    ExecutionError,
    ExecutionResult,
)
from interpreter.wire import Wire

DEFAULT_EXECUTION_TIMEOUT_S = 30.0  # seconds one execution may run; the one default for every caller
# What the host's kernel sockets may hold. The kernel runs untrusted code that holds the connection key, so
# it can send anything on its own sockets, at any time (also between executions, when nobody reads): every
# receive queue is finite (RCVHWM messages, each at most MAX_MESSAGE_BYTES; the kernel's own publisher
# queues or drops the rest, in the kernel's memory), so one session can pin at most about
# RECEIVE_HWM * MAX_MESSAGE_BYTES of the host's memory per socket. A peer that sends a bigger single
# message is disconnected by zmq (see `_channel_lost`).
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
RECEIVE_HWM = 8
# Bytes one execution may send to the host (all messages, all sockets) before the kernel is killed and
# restarted. Legitimate output stays far below it: the kernel caps streams itself and rich outputs beyond
# RICH_OUTPUT_CAP_CHARS are dropped anyway.
DEFAULT_MAX_EXECUTION_BYTES = 256 * 1024 * 1024
INTERRUPT_GRACE_S = 3.0
STARTUP_TIMEOUT_S = 60.0
# The first launch attempt's wait before a stalled start is relaunched (KernelSession._launch); a loaded
# 2-core machine starts a sandboxed kernel in about 6 s.
STALLED_START_S = 20.0
# How often a waiting execute checks that the kernel process still lives.
ALIVE_CHECK_S = 0.2
# Start-up: when the kernel has not answered this long after connecting, connect again.
RECONNECT_AFTER_S = 1.0
SEND_TIMEOUT_MS = 1000
# After execute_reply, how long to wait for the iopub "idle" that ends the output (it can be lost when the
# kernel's publisher drops messages under flood).
IDLE_AFTER_REPLY_S = 2.0

# The kernel stops forwarding a cell's output after this multiple of the host's cap, keeping a tail it
# sends when the cell ends (with a count the host adds to `dropped_chars`). Without it a tight print loop
# outruns the host and piles gigabytes into the kernel's own buffers until the memory limit kills it.
KERNEL_CAP_FACTOR = 2
# The kernel-side code, sent as source at every kernel start (interpreter/kernel_prelude.py).
PRELUDE_PATH = Path(__file__).with_name("kernel_prelude.py")


@functools.cache
def _prelude_source() -> str:
    """The prelude's code without its module docstring (read once per process)."""
    source = PRELUDE_PATH.read_text(encoding="utf-8")
    body = ast.parse(source).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        # The docstring is for readers of the file; sent, it would become the user's `__doc__`.
        source = "\n".join(source.splitlines()[body[0].end_lineno :]) + "\n"
    return source


def prelude_code(limit: int, tail_limit: int) -> str:
    """The kernel-side setup as one cell. The prelude runs in a namespace of its own, not the user's: its
    functions (the output cap wraps every write) look names up in their globals, so in the user's namespace
    a cell's `str = ...` or `isinstance = ...` would break every later print."""
    source = _prelude_source() + f"\n_autocoder_setup({limit}, {tail_limit}, get_ipython())\n"
    return f'exec({source!r}, {{"__name__": "autocoder_prelude", "get_ipython": get_ipython}})\n'


class KernelStartError(RuntimeError):
    """The kernel did not come up; the message says why in one line."""


class _StartTimeout(KernelStartError):
    """A launch attempt ran out of time with the kernel still alive (see KernelSession._launch)."""


class KernelSession:
    """A persistent ipykernel inside `sandbox`, reached through IPC sockets in `dirs.ipc`."""

    def __init__(
        self,
        sandbox,
        dirs,
        *,
        timeout_s: float = DEFAULT_EXECUTION_TIMEOUT_S,
        output_cap_chars: int = DEFAULT_OUTPUT_CAP_CHARS,
        interrupt_grace_s: float = INTERRUPT_GRACE_S,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        max_execution_bytes: int = DEFAULT_MAX_EXECUTION_BYTES,
    ) -> None:
        self.sandbox = sandbox
        self.max_execution_bytes = max_execution_bytes
        # Bytes received from the kernel since the current execution began (see DEFAULT_MAX_EXECUTION_BYTES).
        self._received = 0
        self.dirs = dirs
        self.timeout_s = timeout_s
        self.output_cap_chars = output_cap_chars
        self.interrupt_grace_s = interrupt_grace_s
        self.startup_timeout_s = startup_timeout_s
        self._attempt_timeout_s = startup_timeout_s  # the current launch attempt's (see _launch)
        self.process = None
        self._generation = 0
        self._context = None
        self._sockets: dict = {}
        self._ports: dict[str, int] = {}
        self._session = None
        self._lock = threading.RLock()  # one execute at a time
        self._control_lock = threading.Lock()  # interrupt() may come from another thread
        self._closed = False

    # ---- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> KernelSession:
        with self._lock:
            if self._closed:
                raise KernelStartError("kernel session is closed")
            if self.process is None:
                self._launch()
        return self

    def _launch(self) -> None:
        # A start that times out is launched once more with the full startup_timeout_s (the first attempt
        # waits STALLED_START_S at most): a second chance for a kernel stuck at start. The stall that made
        # this necessary, restarts whose kernel never answered, was this client's (see _close_sockets).
        try:
            self._launch_once(min(self.startup_timeout_s, STALLED_START_S))
        except _StartTimeout:
            self._launch_once(self.startup_timeout_s)

    def _launch_once(self, timeout_s: float) -> None:
        import zmq

        self._attempt_timeout_s = timeout_s
        self._generation += 1
        gen = self._generation
        key = secrets.token_hex(32)
        ports = {name: gen * 10 + i for i, name in enumerate(("shell", "iopub", "stdin", "control", "hb"), 1)}
        name = f"kernel-{gen}.json"
        connection = {f"{k}_port": v for k, v in ports.items()}
        connection.update(
            ip="/ipc/kernel",
            key=key,
            transport="ipc",
            signature_scheme="hmac-sha256",
            kernel_name="python3",
        )
        if len(f"ipc://{self.dirs.ipc}/kernel-{gen * 10 + 9}") > 100:
            raise KernelStartError(
                f"session folder path too long for IPC sockets ({self.dirs.ipc}); use a shorter base folder"
            )
        self._clear_ipc()
        self._write_ipc_file(name, json.dumps(connection))
        self._session = Wire(key.encode())
        if self._context is None:
            self._context = zmq.Context()
        self.process = self.sandbox.launch_kernel(self.dirs, name, {})
        try:
            self._ports = ports
            self._connect(ports)
            self._wait_ready()
            self._install_prelude()
        except BaseException:
            self._drop_kernel()
            raise

    # The ipc folder is writable from inside the sandbox, so code there could leave a symlink where the host
    # later writes a connection file or connects a socket, pointing at any host path (/etc/passwd, the Docker
    # socket). Hence: the folder is emptied while no sandboxed process is alive (before every launch), files
    # are created with O_EXCL|O_NOFOLLOW, sockets are checked to be sockets, and zmq never reconnects on its
    # own (a reconnect would follow whatever the path holds by then).

    def _clear_ipc(self) -> None:
        for entry in os.scandir(self.dirs.ipc):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)

    def _write_ipc_file(self, name: str, text: str) -> None:
        dir_fd = os.open(self.dirs.ipc, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
        except FileExistsError as exc:
            raise KernelStartError(f"the session's ipc folder was tampered with ({name} exists)") from exc
        finally:
            os.close(dir_fd)
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o644)  # readable by the sandbox user whatever the umask
            handle.write(text)

    def _wait_for_sockets(self, ports: dict[str, int], deadline: float) -> None:
        """Until the kernel has bound its sockets (real sockets, not links planted in the folder)."""
        paths = [self.dirs.ipc / f"kernel-{ports[n]}" for n in ("shell", "iopub", "control")]
        while True:
            ready = 0
            for path in paths:
                try:
                    mode = os.lstat(path).st_mode
                except FileNotFoundError:
                    continue
                if not stat.S_ISSOCK(mode):
                    raise KernelStartError(
                        f"the session's ipc folder was tampered with ({path.name} is no socket)"
                    )
                ready += 1
            if ready == len(paths):
                return
            if time.monotonic() > deadline:
                raise _StartTimeout(
                    f"kernel did not start within {self._attempt_timeout_s:.0f} s: {self._log_tail()}"
                )
            if not self.process.is_alive():
                raise KernelStartError(f"kernel exited at start: {self._log_tail()}")
            time.sleep(0.005)

    def _connect(self, ports: dict[str, int]) -> None:
        import zmq

        self._close_sockets()
        self._wait_for_sockets(ports, time.monotonic() + self._attempt_timeout_s)

        def socket(kind: int, port: int):
            sock = self._context.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, -1)  # see above: never reconnect by itself
            # Finite queues and message sizes: see RECEIVE_HWM (the kernel's code can flood its own sockets).
            sock.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            # Without auto-reconnect a socket whose kernel died has no peer, and a DEALER send would then
            # block forever (seen: an interrupt sent to a just-killed kernel hung the loop). Fail instead.
            sock.setsockopt(zmq.SNDTIMEO, SEND_TIMEOUT_MS)
            sock.connect(f"ipc://{self.dirs.ipc}/kernel-{port}")
            return sock

        iopub = socket(zmq.SUB, ports["iopub"])
        iopub.setsockopt(zmq.SUBSCRIBE, b"")
        sockets = {
            "shell": socket(zmq.DEALER, ports["shell"]),
            "iopub": iopub,
            "control": socket(zmq.DEALER, ports["control"]),
            # Tells when zmq cut the output channel (a message over MAX_MESSAGE_BYTES): it never reconnects.
            "iopub_monitor": iopub.get_monitor_socket(zmq.EVENT_DISCONNECTED),
        }
        with self._control_lock:
            self._sockets = sockets

    def _close_sockets(self) -> None:
        # Under the control lock: zmq sockets are not thread-safe, and interrupt() may be sending on the
        # control socket from another thread (closing it mid-send aborted the process in libzmq).
        with self._control_lock:
            sockets, self._sockets = self._sockets, {}
        # The monitor is stopped before its receiving socket closes: libzmq's I/O thread sends each monitor
        # event blocking, and one sent to a receiver already closed (iopub's disconnect as the old kernel
        # dies) blocked that thread for good: no later connect of this session ever happened, and every
        # restart after it timed out (the "kernel that never answers", seen on loaded machines).
        if "iopub" in sockets:
            with contextlib.suppress(Exception):
                sockets["iopub"].disable_monitor()
        for sock in sockets.values():
            with contextlib.suppress(Exception):
                sock.close(linger=0)

    def _wait_ready(self) -> None:
        """kernel_info until the shell answers and iopub delivers (so no early output is missed)."""
        import zmq

        deadline = time.monotonic() + self._attempt_timeout_s
        shell, iopub = self._sockets["shell"], self._sockets["iopub"]
        poller = zmq.Poller()
        poller.register(shell, zmq.POLLIN)
        poller.register(iopub, zmq.POLLIN)
        shell_ok = iopub_ok = False
        self._session.send(shell, "kernel_info_request", {})
        last_probe = connected_at = time.monotonic()
        patience = RECONNECT_AFTER_S
        while not (shell_ok and iopub_ok):
            now = time.monotonic()
            if now - connected_at > patience:
                # A connect can race the kernel's listen() (the socket file exists a moment before the
                # kernel listens on it); zmq will not retry, so we do.
                shell_ok = iopub_ok = False
                self._connect(self._ports)
                shell, iopub = self._sockets["shell"], self._sockets["iopub"]
                poller = zmq.Poller()
                poller.register(shell, zmq.POLLIN)
                poller.register(iopub, zmq.POLLIN)
                self._session.send(shell, "kernel_info_request", {})
                last_probe = connected_at = now
                patience *= 2  # a kernel slow to answer (a loaded machine) is not cut off every second
            if now > deadline:
                raise _StartTimeout(
                    f"kernel did not start within {self._attempt_timeout_s:.0f} s: {self._log_tail()}"
                )
            if not self.process.is_alive():
                raise KernelStartError(f"kernel exited at start: {self._log_tail()}")
            if shell_ok and now - last_probe > 0.05:
                # The iopub subscription may have missed the first status messages: ask again.
                self._session.send(shell, "kernel_info_request", {})
                last_probe = now
            events = dict(poller.poll(50))
            if shell in events:
                msg = self._recv(shell)
                if msg and msg["msg_type"] == "kernel_info_reply":
                    shell_ok = True
            if iopub in events and self._recv(iopub) is not None:
                iopub_ok = True
        # Drain replies to the extra probes so they do not show up later.
        time.sleep(0.005)
        for sock in (shell, iopub):
            while self._recv(sock) is not None:
                pass

    def _install_prelude(self) -> None:
        """Run the kernel-side output cap silently (no history, no output, no execution count)."""
        import zmq

        limit = KERNEL_CAP_FACTOR * self.output_cap_chars
        tail = self.output_cap_chars - self.output_cap_chars // 2
        code = prelude_code(limit, tail)
        content = {
            "code": code,
            "silent": True,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        }
        msg = self._session.msg("execute_request", content)
        self._session.send(self._sockets["shell"], msg)
        shell = self._sockets["shell"]
        deadline = time.monotonic() + self._attempt_timeout_s
        while time.monotonic() < deadline:
            if shell.poll(100, zmq.POLLIN):
                reply = self._recv(shell)
                if reply and reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                    if reply["content"].get("status") != "ok":
                        raise KernelStartError(f"kernel setup failed: {reply['content'].get('evalue', '?')}")
                    return
            elif not self.process.is_alive():
                raise KernelStartError(f"kernel exited at start: {self._log_tail()}")
        raise _StartTimeout(f"kernel did not finish its setup within {self._attempt_timeout_s:.0f} s")

    def _log_tail(self) -> str:
        """The kernel process's last line of its own output, when the sandbox keeps it."""
        log_tail = getattr(self.process, "log_tail", None)
        lines = log_tail().strip().splitlines() if callable(log_tail) else []
        return lines[-1] if lines else "the kernel wrote nothing"

    def _recv(self, sock) -> dict | None:
        """One message, or None when none is waiting or it cannot be parsed (never raises on bad data)."""
        import zmq

        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        self._received += sum(len(frame) for frame in frames)
        try:
            return self._session.parse(frames)
        except Exception:  # noqa: BLE001 - a malformed message is skipped, not fatal
            return {"msg_type": "_malformed", "parent_header": {}, "content": {}}

    def _drop_kernel(self) -> None:
        self._close_sockets()
        if self.process is not None:
            self.process.kill()
            self.process = None
        with contextlib.suppress(OSError):
            self._clear_ipc()

    def restart(self) -> None:
        """Kill the kernel and start a fresh one (state is lost)."""
        with self._lock:
            self._drop_kernel()
            self._launch()

    def interrupt(self) -> None:
        """Ask the kernel to interrupt what it runs (KeyboardInterrupt inside); safe from any thread."""
        with self._control_lock:
            sock = self._sockets.get("control")
            if sock is not None:
                with contextlib.suppress(Exception):
                    self._session.send(sock, "interrupt_request", {})

    def close(self) -> None:
        """Kill the kernel now (even while another thread executes: that call then returns) and free all."""
        with self._control_lock:
            self._closed = True
            process = self.process
        if process is not None:
            process.kill()
        with self._lock:
            self._drop_kernel()
            if self._context is not None:
                self._context.term()
                self._context = None

    def is_alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    # ---- execution ----------------------------------------------------------------------------------

    def execute(
        self, code: str, on_output: OutputCallback | None = None, timeout_s: float | None = None
    ) -> ExecutionResult:
        started = time.monotonic()
        if not isinstance(code, str):
            return ExecutionResult(status=STATUS_ERROR, message="code must be text", duration_s=0.0)
        if not code.strip():
            return ExecutionResult(status=STATUS_OK, message="nothing to run: the code is empty")
        with self._lock:
            if self._closed:
                return ExecutionResult(status=STATUS_ERROR, message="the kernel session is closed")
            if self.process is None or not self.process.is_alive():
                return self._recover_dead(
                    started, ExecutionOutput("", self.output_cap_chars, None), before=True
                )
            return self._execute(code, on_output, self.timeout_s if timeout_s is None else timeout_s, started)

    def _execute(self, code: str, on_output, timeout_s: float, started: float) -> ExecutionResult:
        import zmq

        shell, iopub = self._sockets["shell"], self._sockets["iopub"]
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        msg = self._session.msg("execute_request", content)
        msg_id = msg["header"]["msg_id"]
        run = ExecutionOutput(msg_id, self.output_cap_chars, on_output)
        self._received = 0
        budget = self.max_execution_bytes
        monitor = self._sockets["iopub_monitor"]
        if monitor.poll(0):  # cut between executions
            return self._channel_lost(run, started, before=True)
        try:
            self._session.send(shell, msg)
        except zmq.Again:  # no kernel on the other end: it died between the liveness check and now
            return self._recover_dead(started, run, before=True)
        poller = zmq.Poller()
        poller.register(shell, zmq.POLLIN)
        poller.register(iopub, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        deadline = started + timeout_s
        interrupted_at: float | None = None
        reply_at: float | None = None
        last_alive_check = time.monotonic()
        while not (run.reply is not None and run.idle):
            now = time.monotonic()
            if reply_at is not None and now - reply_at > IDLE_AFTER_REPLY_S:
                break  # the idle status was lost in a flood; the reply is authoritative
            if now - last_alive_check >= ALIVE_CHECK_S:
                last_alive_check = now
                if not self.process.is_alive():
                    return self._recover_dead(started, run)
            if interrupted_at is None and now >= deadline:
                self.interrupt()
                interrupted_at = now
            elif interrupted_at is not None and now - interrupted_at >= self.interrupt_grace_s:
                self.restart()
                return run.result(
                    STATUS_TIMEOUT,
                    started,
                    state_lost=True,
                    message=f"timed out after {timeout_s:g} s and did not stop when interrupted; "
                    "kernel restarted, state lost",
                )
            wait_ms = max(
                1,
                int(min(ALIVE_CHECK_S, max(0.0, deadline - now) if interrupted_at is None else 0.05) * 1000),
            )
            events = dict(poller.poll(wait_ms))
            if iopub in events:
                # Drain iopub before shell: output published before the reply must land first. The budget
                # check inside the loop also ends a drain that a flood would otherwise keep going forever.
                while self._received <= budget and (message := self._recv(iopub)) is not None:
                    self._handle_iopub(run, message)
            if shell in events:
                while self._received <= budget and (message := self._recv(shell)) is not None:
                    if (
                        message["msg_type"] == "execute_reply"
                        and message["parent_header"].get("msg_id") == msg_id
                    ):
                        run.reply = message["content"]
                        reply_at = time.monotonic()
            if self._received > budget:
                return self._over_budget(run, started)
            if monitor in events:
                return self._channel_lost(run, started)
        if interrupted_at is not None:
            # Subprocesses killed by the interrupt leave output in the kernel's pipes; collect it here, while
            # it is still attributed to this execution, instead of letting it spill into the next one.
            self._settle(run)
            return run.result(
                STATUS_TIMEOUT,
                started,
                message=f"timed out after {timeout_s:g} s; interrupted, the session keeps its state",
            )
        if run.error is not None or (run.reply or {}).get("status") == "error":
            if run.error is None:
                run.set_error(run.reply or {})
            if run.error.name == "MemoryError":
                return run.result(STATUS_MEMORY, started, message="the code ran out of memory (MemoryError)")
            return run.result(STATUS_ERROR, started)
        if (run.reply or {}).get("status") == "aborted":
            return run.result(STATUS_ERROR, started, message="execution aborted by the kernel")
        return run.result(STATUS_OK, started)

    def _settle(self, run: ExecutionOutput, quiet_s: float = 0.2, max_s: float = 2.0) -> None:
        """Keep reading this execution's output until none arrived for `quiet_s` (at most `max_s`)."""
        iopub = self._sockets["iopub"]
        end = time.monotonic() + max_s
        while time.monotonic() < end:
            if not iopub.poll(int(quiet_s * 1000)):
                return
            while time.monotonic() < end and (message := self._recv(iopub)) is not None:
                self._handle_iopub(run, message)

    def _channel_lost(self, run: ExecutionOutput, started: float, before: bool = False) -> ExecutionResult:
        """zmq cut the kernel's output channel. A dying kernel does that too: give its death a moment to
        show, so a crash or a memory kill is reported as such; otherwise it sent a message over the limit."""
        deadline = time.monotonic() + 1.0
        while self.process.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.process.is_alive():
            return self._recover_dead(started, run, before=before)
        limit_mb = MAX_MESSAGE_BYTES // (1024 * 1024)
        what = f"the kernel sent a message over {limit_mb} MB, which cut its output channel"
        if before:
            what += " before this execution (the code was not run)"
        try:
            self.restart()
            tail = "kernel restarted, state lost"
        except Exception as exc:  # noqa: BLE001 - reported in the result
            tail = f"restarting the kernel failed: {exc}"
        return run.result(STATUS_ERROR, started, state_lost=True, message=f"{what}; {tail}")

    def _over_budget(self, run: ExecutionOutput, started: float) -> ExecutionResult:
        """The execution sent more than its byte budget: kill the kernel (it may be flooding on purpose)."""
        limit_mb = self.max_execution_bytes // (1024 * 1024)
        what = f"the code sent more than {limit_mb} MB of messages to the host in one execution"
        try:
            self.restart()
            tail = "kernel restarted, state lost"
        except Exception as exc:  # noqa: BLE001 - reported in the result
            tail = f"restarting the kernel failed: {exc}"
        return run.result(STATUS_ERROR, started, state_lost=True, message=f"{what}; {tail}")

    def _handle_iopub(self, run: ExecutionOutput, message: dict) -> None:
        if message["parent_header"].get("msg_id") != run.msg_id:
            return
        kind = message["msg_type"]
        content = message["content"]
        if kind == "stream":
            run.stream(content.get("name", "stdout"), content.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            run.rich(kind, content)
        elif kind == "error":
            run.set_error(content)
        elif kind == "status" and content.get("execution_state") == "idle":
            run.idle = True

    def _recover_dead(self, started: float, run: ExecutionOutput, before: bool = False) -> ExecutionResult:
        """The kernel process is gone: say why, start a fresh one, report that state was lost."""
        if self._closed:
            return run.result(STATUS_ERROR, started, state_lost=True, message="the session was closed")
        reason = self.process.exit_reason() if self.process is not None else "crashed"
        limit_mb = getattr(getattr(self.sandbox, "limits", None), "memory_mb", None)
        if reason == "memory":
            status = STATUS_MEMORY
            what = f"the kernel was killed for exceeding its memory limit ({limit_mb} MB)"
        else:
            status = STATUS_CRASHED
            what = (
                "the kernel had died before this execution (the code was not run)"
                if before
                else "the kernel died"
            )
        try:
            self._drop_kernel()
            self._launch()
            tail = "kernel restarted, state lost"
        except Exception as exc:  # noqa: BLE001 - reported in the result
            tail = f"restarting the kernel failed: {exc}"
        return run.result(status, started, state_lost=True, message=f"{what}; {tail}")
