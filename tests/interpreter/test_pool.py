"""SessionPool: warm sessions handed out once each, refilled in the background."""

from __future__ import annotations

import threading

import pytest

from interpreter.pool import SessionPool
from interpreter.session import Session
from tests.interpreter.conftest import TEST_LIMITS, sandbox_or_skip

pytestmark = pytest.mark.local_sandbox


def test_pool_hands_out_started_distinct_sessions_and_refills():
    sandbox = sandbox_or_skip("local", TEST_LIMITS)
    pool = SessionPool(lambda: Session(sandbox, timeout_s=10), size=1)
    acquired = []
    try:
        assert pool.wait_ready(timeout_s=60)
        assert pool.ready_count == 1
        first = pool.acquire()
        acquired.append(first)
        assert first.kernel.is_alive()  # warm: the kernel was started before acquire
        assert first.run("print('one')").stdout == "one\n"
        assert pool.wait_ready(timeout_s=60) and pool.ready_count == 1  # refilled
        second = pool.acquire()
        acquired.append(second)
        assert second is not first and second.id != first.id
        first.run("secret = 1")
        assert second.run("print('secret' in dir())").stdout == "False\n"
    finally:
        pool.close()
        for session in acquired:
            session.close()


def test_pool_starts_one_on_the_spot_when_empty_and_kernels_survive_their_filler_thread():
    sandbox = sandbox_or_skip("local", TEST_LIMITS)
    pool = SessionPool(lambda: Session(sandbox, timeout_s=10), size=0)
    try:
        session = pool.acquire()
        try:
            assert session.run("print(2)").stdout == "2\n"
        finally:
            session.close()
        # A session started in a thread that then exits must keep its kernel (die-with-parent is per thread).
        holder = {}
        thread = threading.Thread(target=lambda: holder.setdefault("s", Session(sandbox).start()))
        thread.start()
        thread.join()
        try:
            assert holder["s"].run("print(3)").stdout == "3\n"
        finally:
            holder["s"].close()
    finally:
        pool.close()


def test_closed_pool_closes_waiting_sessions():
    sandbox = sandbox_or_skip("local", TEST_LIMITS)
    made: list[Session] = []

    def factory() -> Session:
        made.append(Session(sandbox))
        return made[-1]

    pool = SessionPool(factory, size=1)
    assert pool.wait_ready(timeout_s=60)
    pool.close()
    assert made and all(s.closed for s in made)
    with pytest.raises(RuntimeError):
        pool.acquire()
