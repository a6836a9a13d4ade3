"""One interpreter session: its folders, its sandboxed kernel, and the blocks the model asks to run.

`Session` is what the loop, the app, the evaluation and the data pipeline hold: `run_block("python", ...)`
goes to the persistent kernel, `run_block("sh", ...)` goes to `interpreter.packages.run_sh_block` (pip
installs into the session's /pkgs, other commands in the same sandbox). Every session is closed at
interpreter exit at the latest, so no kernel, jail or folder outlives the process that made it.

Where sessions live: a base folder (default `<tmp>/autocoder-sessions`) that belongs to this process's user
and nobody else may enter (mode 0700; 0711 once the `none` sandbox used it: its kernel walks host paths).
It is checked every time a session is made: a base that is a link, belongs to another user, or that
another user may write is refused with `SessionFolderError` (one line) instead of being used, since
whoever owns it could plant links where the host later writes. Each session folder gets a disk quota
(`Limits.disk_mb`, see `interpreter.sandboxes.disk` for the mechanism and what happens at the limit).

A cap on sessions in total (for the app's `--max-sessions`; per-client caps are the app's business):

    set_max_sessions(n)        # process-wide; None (the default) means no cap
    open_session_count()       # sessions made and not yet closed (a warm pool's included)
    free_session_slots()       # how many more may be made now (None without a cap)
    Session(...)               # raises SessionLimitReached when n sessions are open

`SessionLimitReached` is a RuntimeError whose message is one line fit for the chat ("all 8 interpreter
sessions are in use; close a chat or try again later"). A slot is held from `Session(...)` until
`close()` (or garbage collection); `interpreter.pool.SessionPool` counts its warm sessions against the cap
and does not warm more than the cap leaves free.

What it deliberately does not do: pick a sandbox (see `interpreter.sandboxes.select`), keep sessions warm
(see `interpreter.pool`), or parse model text (see `interpreter.protocol`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import stat
import tempfile
import threading
import time
import weakref
from pathlib import Path

from interpreter.kernel import (
    DEFAULT_EXECUTION_TIMEOUT_S,
    DEFAULT_OUTPUT_CAP_CHARS,
    STATUS_ERROR,
    ExecutionError,
    ExecutionResult,
    KernelSession,
    OutputCallback,
)
from interpreter.protocol import normalize_language
from interpreter.sandboxes import disk
from interpreter.sandboxes.base import Sandbox, SessionDirs

OWNER_FILE = "owner"
# A session folder without an owner file this many seconds after it was made was left by a killed run.
UNOWNED_STALE_S = 300

_live: weakref.WeakSet[Session] = weakref.WeakSet()
_live_lock = threading.Lock()
_atexit_registered = False
_max_sessions: int | None = None
_open_sessions = 0


class SessionLimitReached(RuntimeError):
    """Every session slot is taken (see `set_max_sessions`); the message is one line for the user."""


class SessionFolderError(RuntimeError):
    """The session base folder is unsafe to use; the message says why in one line."""


def set_max_sessions(limit: int | None) -> None:
    """Cap the sessions open at once in this process (None: no cap). Sessions already open stay."""
    global _max_sessions
    if limit is not None and limit < 1:
        raise ValueError("the maximum number of sessions must be at least 1")
    with _live_lock:
        _max_sessions = limit


def open_session_count() -> int:
    with _live_lock:
        return _open_sessions


def free_session_slots() -> int | None:
    """How many more sessions may be made now; None when there is no cap."""
    with _live_lock:
        return None if _max_sessions is None else max(0, _max_sessions - _open_sessions)


def _take_slot() -> None:
    global _open_sessions
    with _live_lock:
        if _max_sessions is not None and _open_sessions >= _max_sessions:
            raise SessionLimitReached(
                f"all {_max_sessions} interpreter sessions are in use; close a chat or try again later"
            )
        _open_sessions += 1


def _release_slot() -> None:
    global _open_sessions
    with _live_lock:
        _open_sessions = max(0, _open_sessions - 1)


def prepare_base_dir(base: Path, *, others_may_enter: bool = False) -> None:
    """Create the session base folder (mode 0700, or 0711) or check an existing one: a real folder, ours,
    that no one else may write; its mode is set on the open folder. Raises SessionFolderError."""
    # 0711 stays once a `none` session needed it (tightening it would break that session's kernel).
    ensure_own_folder(
        base,
        0o711 if others_may_enter else 0o700,
        keep_modes=(0o711,),
        error=SessionFolderError,
        what="session folder",
        advice="remove it or choose another",
    )


def ensure_own_folder(
    path: Path,
    mode: int,
    *,
    error: type[Exception],
    what: str,
    advice: str,
    keep_modes: tuple[int, ...] = (),
) -> None:
    """Create `path` with `mode`, or check an existing one: a real folder (no link), owned by this process's
    user; its mode is set to `mode` (unless it is one of `keep_modes`) on the open folder, so a swapped path
    cannot redirect it. Raises `error` with one line: "<what> <path> ...: <advice>"."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, mode)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise error(f"{what} {path} is not a plain folder ({exc.strerror or exc}): {advice}") from None
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid():
            raise error(
                f"{what} {path} belongs to uid {info.st_uid}, not to this process (uid {os.geteuid()}): "
                f"refusing to use it; {advice}"
            )
        if stat.S_IMODE(info.st_mode) not in (mode, *keep_modes):
            os.fchmod(fd, mode)
    finally:
        os.close(fd)


def default_base_dir() -> Path:
    """Where session folders go unless the caller says otherwise (short: IPC socket paths are limited)."""
    return Path(tempfile.gettempdir()) / "autocoder-sessions"


def close_all_sessions() -> None:
    """Close every session still open (registered with atexit on first use)."""
    with _live_lock:
        sessions = list(_live)
    for session in sessions:
        with contextlib.suppress(Exception):
            session.close()


def _register(session: Session) -> None:
    global _atexit_registered
    with _live_lock:
        _live.add(session)
        if not _atexit_registered:
            atexit.register(close_all_sessions)
            _atexit_registered = True


class Session:
    """A sandboxed, persistent interpreter session. Use as a context manager or call `close()`."""

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        base_dir: str | Path | None = None,
        timeout_s: float = DEFAULT_EXECUTION_TIMEOUT_S,
        output_cap_chars: int = DEFAULT_OUTPUT_CAP_CHARS,
    ) -> None:
        self.sandbox = sandbox
        self.timeout_s = timeout_s
        self.output_cap_chars = output_cap_chars
        self._closed = False
        self._sh_cancel: threading.Event | None = None  # set by interrupt() while an sh block runs
        _take_slot()  # SessionLimitReached when the cap is reached: nothing made yet
        try:
            base = Path(base_dir) if base_dir is not None else default_base_dir()
            prepare_base_dir(base, others_may_enter=sandbox.kernel_walks_host_paths)
            _remove_stale_sessions(base)
            self.dirs = SessionDirs.create(base, disk_mb=sandbox.limits.disk_mb)
            (self.dirs.root / OWNER_FILE).write_text(_owner_id(os.getpid()))
            self.kernel = KernelSession(
                sandbox, self.dirs, timeout_s=timeout_s, output_cap_chars=output_cap_chars
            )
        except BaseException:
            if getattr(self, "dirs", None) is not None:
                self.dirs.remove()
            _release_slot()
            raise
        self._finalizer = weakref.finalize(self, _cleanup, self.kernel, self.dirs)
        _register(self)

    @property
    def id(self) -> str:
        return self.dirs.root.name

    @property
    def workdir(self) -> Path:
        """The host folder that appears as /work inside the sandbox (files in and out)."""
        return self.dirs.work

    @property
    def closed(self) -> bool:
        return self._closed

    def start(self) -> Session:
        """Start the kernel (idempotent). Raises KernelStartError with a one-line reason."""
        self.kernel.start()
        return self

    def run_block(
        self,
        language: str,
        code: str,
        on_output: OutputCallback | None = None,
        timeout_s: float | None = None,
    ) -> ExecutionResult:
        """Run one block the model asked for and return its result (never raises for bad code)."""
        if self._closed:
            return ExecutionResult(status=STATUS_ERROR, message="the session is closed; start a new one")
        # One table of language names (the detector's): a block the loop handed over is already normalised.
        lang = normalize_language(language or "python")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        if lang == "python":
            if self.kernel.process is None:
                self.start()
            return self.kernel.execute(code, on_output=on_output, timeout_s=timeout)
        if lang == "sh":
            from interpreter.packages import run_sh_block  # written alongside; imported when needed

            self._sh_cancel = cancel = threading.Event()
            try:
                return run_sh_block(
                    code,
                    sandbox=self.sandbox,
                    dirs=self.dirs,
                    timeout_s=timeout,
                    on_output=on_output,
                    cancel=cancel,
                )
            finally:
                self._sh_cancel = None
        message = f"cannot run {language!r} blocks: only python and sh are supported"
        return ExecutionResult(
            status=STATUS_ERROR,
            error=ExecutionError(name="UnsupportedLanguage", value=message, traceback=""),
            stderr=message + "\n",
            message=message,
        )

    def run(
        self, code: str, on_output: OutputCallback | None = None, timeout_s: float | None = None
    ) -> ExecutionResult:
        """Shorthand for `run_block("python", code)`."""
        return self.run_block("python", code, on_output=on_output, timeout_s=timeout_s)

    def interrupt(self) -> None:
        """Stop what the kernel runs now (the stop button); state is kept. A running sh block's pip download
        is killed and its remaining lines are not run."""
        sh_cancel = self._sh_cancel
        if sh_cancel is not None:
            sh_cancel.set()
        self.kernel.interrupt()

    def kill(self) -> bool:
        """Kill the kernel process now, for code that ignores `interrupt`: a running `run_block` notices the
        death, starts a fresh kernel and reports the state as lost. False when no kernel process runs."""
        process = self.kernel.process
        if process is None or not process.is_alive():
            return False
        process.kill()
        return True

    def is_alive(self) -> bool:
        """Whether the session is open and its kernel process runs (False before the first python block)."""
        return not self._closed and self.kernel.is_alive()

    def restart(self) -> None:
        """A fresh kernel: variables and imports are gone, files in the workdir stay."""
        self.kernel.restart()

    def close(self) -> None:
        """Kill the kernel and everything it started, and remove the session's folders. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._finalizer()
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> Session:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Session(id={self.id!r}, sandbox={self.sandbox.name!r}, closed={self._closed})"


def _owner_id(pid: int) -> str:
    """pid plus the process start time, so a reused pid is not mistaken for the owner."""
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{pid} {start}"


_stale_checked: set[Path] = set()


def _remove_stale_sessions(base: Path) -> None:
    """Once per process and base folder: remove session folders whose owning process is gone (a crashed
    run; its jails died with it, see the sandboxes' die-with-parent handling)."""
    with _live_lock:
        if base in _stale_checked:
            return
        _stale_checked.add(base)
    for root in base.iterdir() if base.is_dir() else ():
        if root.name.endswith(disk.IMAGE_SUFFIX):
            if not root.with_name(root.name[: -len(disk.IMAGE_SUFFIX)]).exists():
                root.unlink(missing_ok=True)  # the image of a session folder that is gone
            continue
        owner = root / OWNER_FILE
        try:
            pid_text, _, start = owner.read_text().partition(" ")
            pid = int(pid_text)
        except (OSError, ValueError):
            # No owner yet: a session being made right now, or a run killed while it made one (after its
            # disk was mounted, before the owner file was written). Only the latter is this old.
            with contextlib.suppress(OSError):
                if root.is_dir() and time.time() - root.lstat().st_ctime > UNOWNED_STALE_S:
                    disk.unmount(root)
                    shutil.rmtree(root, ignore_errors=True)
            continue
        if pid != os.getpid() and _owner_id(pid) != f"{pid} {start}":
            disk.unmount(root)
            shutil.rmtree(root, ignore_errors=True)


def _cleanup(kernel: KernelSession, dirs: SessionDirs) -> None:
    try:
        with contextlib.suppress(Exception):
            kernel.close()
        # Processes may take a moment to release files in the folders.
        for _ in range(3):
            dirs.remove()
            if not dirs.root.exists():
                return
            time.sleep(0.05)
    finally:
        _release_slot()
