"""A warm pool of started sessions, so a new chat's first execution does not wait for a kernel to boot.

`SessionPool(factory, size)` keeps `size` sessions started in the background; `acquire()` hands one over
(starting one on the spot when the pool is empty) and starts a replacement. The caller owns and closes the
sessions it acquired; `close()` closes those still waiting in the pool.

Warm sessions count against `interpreter.session`'s cap on sessions in total (`set_max_sessions`): the pool
warms only as many as the cap leaves free, and `acquire()` raises `SessionLimitReached` when it has none
ready and no slot is free.

What it deliberately does not do: reuse sessions (a session is never handed out twice: code from one chat
must never meet another chat's state; batch jobs that accept reset-and-reuse use interpreter.recycle) or set
the cap.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections import deque
from collections.abc import Callable

from interpreter.session import Session, SessionLimitReached, free_session_slots


class SessionPool:
    def __init__(self, factory: Callable[[], Session], size: int = 1) -> None:
        self.factory = factory
        self.size = max(0, size)
        self._ready: deque[Session] = deque()
        self._starting = 0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False
        self.last_error: str | None = None
        self._fill()

    def _fill(self) -> None:
        free = free_session_slots()
        with self._lock:
            missing = self.size - len(self._ready) - self._starting
            if free is not None:
                missing = min(missing, free)
            if self._closed or missing <= 0:
                return
            self._starting += missing
        for _ in range(missing):
            threading.Thread(target=self._start_one, name="session-pool-filler", daemon=True).start()

    def _start_one(self) -> None:
        session = None
        try:
            session = self.factory()
            session.start()
        except SessionLimitReached:
            pass  # the cap filled up meanwhile: nothing to warm, nothing to report
        except Exception as exc:  # noqa: BLE001 - remembered; acquire() will retry in the foreground
            self.last_error = f"{type(exc).__name__}: {exc}"
            print(f"session pool: could not start a session: {self.last_error}", file=sys.stderr)
            if session is not None:
                with contextlib.suppress(Exception):
                    session.close()
            session = None
        with self._lock:
            if session is not None and not self._closed:
                self._ready.append(session)
                session = None
            if session is None:
                self._starting -= 1
                self._changed.notify_all()
                return
        try:  # the pool closed while it started: close it before close() stops waiting for it
            session.close()
        finally:
            with self._lock:
                self._starting -= 1
                self._changed.notify_all()

    def acquire(self, wait_s: float = 0.0) -> Session:
        """A started session of one's own. Waits up to `wait_s` for a warming one, else starts one now."""
        with self._lock:
            if self._closed:
                raise RuntimeError("session pool is closed")
            if not self._ready and self._starting and wait_s > 0:
                self._changed.wait_for(lambda: self._ready or not self._starting, timeout=wait_s)
            session = None
            while self._ready:
                candidate = self._ready.popleft()
                if candidate.kernel.is_alive():
                    session = candidate
                    break
                threading.Thread(target=candidate.close, daemon=True).start()
        self._fill()
        if session is None:
            session = self.factory()
            try:
                session.start()
            except BaseException:
                session.close()  # no half-started jail or container left behind
                raise
        return session

    @property
    def ready_count(self) -> int:
        with self._lock:
            return len(self._ready)

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Block until the pool holds `size` started sessions (or none are starting any more)."""
        with self._lock:
            return self._changed.wait_for(
                lambda: len(self._ready) >= self.size or not self._starting, timeout=timeout_s
            )

    def close(self, wait_s: float = 30.0) -> None:
        """Close the sessions waiting in the pool, and wait (up to `wait_s`) for those still starting: each
        closes itself when it sees the pool closed. Without the wait, a server stopping while a warm kernel
        boots would exit under it and leave its session folder (and container) behind."""
        with self._lock:
            self._closed = True
            sessions = list(self._ready)
            self._ready.clear()
        for session in sessions:
            session.close()
        with self._lock:
            self._changed.wait_for(lambda: not self._starting, timeout=wait_s)

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
