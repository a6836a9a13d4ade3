"""Kernel reuse between items (interpreter.recycle, `generate --kernel-reuse N`): with real sandboxed kernels.

What item A leaves behind must not reach item B when B gets A's kernel after the reset: variables, imported
modules (its own module in the workdir included), files in /work and /tmp (a read-only folder and a link out
included), the working folder, environment, sys.path, a monkeypatched builtin and standard-library function,
signal handlers, warnings filters, logging, the RNG's seed, IPython's history. And what a reset cannot undo
retires the kernel instead: a thread left running, a third-party extension module, an execution that timed
out, an sh block, an interrupt.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from data_pipeline.item import ItemSession
from interpreter.recycle import RecyclingPool, parse_report, retire_reason
from interpreter.results import ExecutionError, ExecutionResult
from interpreter.session import Session
from tests.conftest import require

pytestmark = [pytest.mark.local_sandbox, pytest.mark.slow]

ITEM_A = r"""
import builtins, json, logging, os, random, signal, sys, warnings
secret = "from item A"
builtins.abs = lambda value: "patched by A"
builtins.from_a = True
json.dumps = lambda *args, **kwargs: "patched by A"
os.environ["LEAK"] = "A"
sys.path.append("/nonexistent-A")
os.makedirs("/work/pkg_a/locked", exist_ok=True)
open("/work/pkg_a/locked/data.txt", "w").write("A")
os.chmod("/work/pkg_a/locked", 0o500)
open("/work/helper_a.py", "w").write("VALUE = 'A'\n")
import helper_a
os.symlink("/etc/hostname", "/work/link_out")
open("/tmp/scratch_a.txt", "w").write("A")
os.chdir("/tmp")
import fractions, colorsys
signal.signal(signal.SIGUSR1, lambda *a: print("A's handler"))
warnings.simplefilter("error")
logging.basicConfig(level=logging.DEBUG)
random.seed(1234)
print(helper_a.VALUE, abs(-2), json.dumps(1))
"""

ITEM_B = r"""
import json, logging, os, random, signal, sys, warnings
print(json.dumps({
    "secret": "secret" in dir(),
    "abs": abs(-2),
    "from_a": "from_a" in dir(__builtins__) if not isinstance(__builtins__, dict) else "from_a" in __builtins__,
    "dumps": json.dumps(1),
    "leak": os.environ.get("LEAK"),
    "path": "/nonexistent-A" in sys.path,
    "work": sorted(os.listdir("/work")),
    "tmp": sorted(os.listdir("/tmp")),
    "cwd": os.getcwd(),
    "modules": sorted(m for m in ("helper_a", "fractions", "colorsys") if m in sys.modules),
    "helper_importable": __import__("importlib").util.find_spec("helper_a") is not None,
    "sigusr1": signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL,
    "warnings_error": any(f[0] == "error" for f in warnings.filters),
    "root_level": logging.getLogger().level,
    "root_handlers": len(logging.getLogger().handlers),
    "random": random.random() == __import__("random").Random(1234).random(),
    "history": [cell for cell in In if "item A" in cell],
}))
"""


@pytest.fixture(scope="module")
def sandbox():
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox

    try:
        return make_sandbox("local")
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")


@pytest.fixture
def pool(sandbox):
    # One kernel start at a time and none ahead: a released kernel is the next job's unless it was retired.
    pool = RecyclingPool(lambda: Session(sandbox, timeout_s=20), reuse=5, warm=0, max_starting=1)
    yield pool
    pool.close()


def fresh_state(session: Session) -> dict:
    result = session.run(ITEM_B)
    assert result.status == "ok", result
    return json.loads(result.stdout)


def test_state_of_item_a_does_not_reach_item_b(pool):
    session = pool.acquire()
    expected = fresh_state(session)  # what a job sees in a kernel nobody used: the baseline
    pool.release(session)
    assert pool.wait_idle(1, timeout_s=30)
    session = pool.acquire()
    result = session.run(ITEM_A)
    assert result.status == "ok" and result.stdout == "A patched by A patched by A\n", result
    pool.release(session)
    assert pool.wait_idle(1, timeout_s=30)
    again = pool.acquire()
    assert again is session  # the same kernel, reset: otherwise this test would prove nothing
    state = fresh_state(again)
    assert state == expected
    assert (
        state["work"] == []
        and state["cwd"] == "/work"
        and state["abs"] == 2
        and not state["from_a"]
        and state["leak"] is None
    )
    assert pool.stats["started"] == 1 and pool.stats["reused"] == 2 and not pool.retire_reasons
    pool.release(again)


def test_a_thread_left_running_retires_the_kernel(pool):
    session = pool.acquire()
    result = session.run("import threading, time\nthreading.Thread(target=time.sleep, args=(600,)).start()")
    assert result.status == "ok", result
    pool.release(session)
    other = pool.acquire()
    assert other is not session and session.closed
    assert pool.retire_reasons == {"reset: a thread started by the job is still running": 1}
    pool.release(other)


def test_a_third_party_extension_module_retires_the_kernel(pool):
    session = pool.acquire()
    assert session.run("import numpy").status == "ok"
    pool.release(session)
    other = pool.acquire()
    assert other is not session and session.closed
    [(reason, count)] = pool.retire_reasons.items()
    assert reason.startswith("reset: extension module numpy") and count == 1
    pool.release(other)


def test_a_timed_out_execution_retires_the_kernel_through_the_item_session(pool):
    item = ItemSession(pool.acquire, threading.Semaphore(2), pool.release)
    result = item.run_block("python", "while True:\n    pass", timeout_s=1)
    assert result.status == "timeout"
    assert item.retire == "an execution ended with status timeout"
    session = item._session
    item.close()
    assert session.closed and pool.retire_reasons == {"an execution ended with status timeout": 1}
    # After the retirement the next item gets a kernel that never ran A's loop.
    fresh = pool.acquire()
    assert fresh is not session and fresh.run("print(1)").stdout == "1\n"
    pool.release(fresh)


def test_a_parked_item_gives_its_kernel_back_and_finds_its_state_again(pool):
    item = ItemSession(pool.acquire, threading.Semaphore(2), pool.release)
    failed = item.run_block(
        "python", "helper = 41\nopen('/work/notes.txt', 'w').write('A')\nraise ValueError('attempt 1')"
    )
    assert failed.status == "error"
    kernel = item._session
    assert item.park() and item._session is None
    assert pool.wait_idle(1, timeout_s=30)
    other = pool.acquire()  # another item gets the parked kernel, reset
    assert other is kernel and other.run("print('helper' in dir())").stdout == "False\n"
    pool.release(other)
    # The revision finds what the failed attempt left: its variables and files, replayed into the kernel.
    revised = item.run_block("python", "print(helper + 1, open('/work/notes.txt').read())")
    assert revised.status == "ok" and revised.stdout == "42 A\n", revised
    assert not item.replay_diverged
    item.close()
    assert pool.stats["started"] == 1 and not pool.retire_reasons


def test_a_replay_that_ends_otherwise_than_the_first_run_is_flagged(pool):
    item = ItemSession(pool.acquire, threading.Semaphore(2), pool.release)
    assert item.run_block("python", "x = 1").status == "ok"
    # As if the block had failed the first time (code that depends on the clock or on chance).
    lang, language, code, timeout_s, _ = item._history[0]
    failed = ExecutionResult(status="error", error=ExecutionError("ValueError", "unlucky", ""))
    item._history[0] = (lang, language, code, timeout_s, failed)
    assert item.park()
    assert item.run_block("python", "print(x)").stdout == "1\n"
    assert item.replay_diverged
    item.close()


def test_an_item_keeps_its_kernel_where_a_replay_would_be_slow_or_unfaithful(pool, monkeypatch):
    from data_pipeline import item as item_module

    slow = ItemSession(pool.acquire, threading.Semaphore(2), pool.release)
    assert slow.run_block("python", "import time\ntime.sleep(0.3)").status == "ok"
    monkeypatch.setattr(item_module, "REPLAY_MAX_S", 0.2)
    assert not slow.park() and slow._session is not None
    slow.close()
    off = ItemSession(pool.acquire, threading.Semaphore(2), pool.release, park_between_attempts=False)
    assert off.run_block("python", "x = 1").status == "ok"
    assert not off.park() and off._session is not None
    off.close()
    install = ItemSession(pool.acquire, threading.Semaphore(2), pool.release)
    assert install.run_block("sh", "echo installing").status == "ok"
    assert not install.park() and install._session is not None  # an sh block: /pkgs may have changed
    install.close()


def test_kernel_limits_are_spread_so_kernels_used_in_turn_retire_one_by_one(sandbox):
    pool = RecyclingPool(lambda: Session(sandbox, timeout_s=20), reuse=20, warm=0)
    limits = [pool._limit_for(number) for number in range(11)]
    assert max(limits) == 20 and min(limits) >= 10 and len(set(limits)) == 11
    pool.close()
    # Real kernels: the first may serve 4 jobs, the second 3 (reuse 4: spread 3, stride 1).
    pool = RecyclingPool(lambda: Session(sandbox, timeout_s=20), reuse=4, warm=0, max_starting=1)
    try:
        served = []
        for _ in range(2):
            session, jobs = pool.acquire(), 1
            pool.release(session)
            while pool.wait_idle(1, timeout_s=30) and pool._idle[0] is session:
                pool.release(pool.acquire())
                jobs += 1
            served.append(jobs)
            assert session.closed
        assert served == [4, 3] and pool.retire_reasons == {"served 4 jobs": 1, "served 3 jobs": 1}
    finally:
        pool.close()


def test_kernels_retire_after_their_reuse_count(sandbox):
    pool = RecyclingPool(lambda: Session(sandbox, timeout_s=20), reuse=2, warm=0, max_starting=1)
    try:
        first = pool.acquire()
        pool.release(first)
        assert pool.wait_idle(1, timeout_s=30)
        assert pool.acquire() is first
        pool.release(first)
        second = pool.acquire()
        assert second is not first and first.closed
        assert pool.retire_reasons == {"served 2 jobs": 1}
        pool.release(second, retire="told so")
        assert second.closed and pool.retire_reasons["told so"] == 1
    finally:
        pool.close()


def test_a_kernels_successor_starts_with_its_last_job_and_is_ready_when_it_retires(sandbox):
    pool = RecyclingPool(lambda: Session(sandbox, timeout_s=20), reuse=2, warm=0, max_starting=1)
    try:
        first = pool.acquire()
        pool.release(first)
        assert pool.wait_idle(1, timeout_s=30) and pool.stats["started"] == 1  # no successor yet
        assert pool.acquire() is first  # its last job: the successor starts now, while it works
        assert pool.wait_idle(1, timeout_s=30), "no successor came up while the last job ran"
        successor = pool._idle[0]
        pool.release(first)
        assert first.closed and pool.acquire() is successor
        assert pool.stats["started"] == 2
        pool.release(successor)
    finally:
        pool.close()


def test_reuse_zero_is_a_fresh_kernel_per_job(sandbox):
    pool = RecyclingPool(lambda: Session(sandbox, timeout_s=20), reuse=0, warm=1)
    try:
        used = []
        for _ in range(3):
            session = pool.acquire()
            assert session not in used and all(old.closed for old in used)
            used.append(session)
            pool.release(session)
    finally:
        pool.close()
    # One per job and the one kept ready: no kernel started for nothing.
    assert pool.stats["started"] <= 4 and pool.retire_reasons == {"reuse is off": 3}


def test_retire_reason_rules():
    ok = ExecutionResult(status="ok", stdout="x\n")
    assert retire_reason("python", ok) is None
    assert retire_reason("sh", ok).startswith("an sh block ran")
    for status in ("timeout", "crashed", "memory_limit"):
        assert (
            retire_reason("python", ExecutionResult(status=status))
            == f"an execution ended with status {status}"
        )
    assert retire_reason("python", ExecutionResult(status="error", state_lost=True)).startswith(
        "the kernel lost"
    )
    assert retire_reason("python", ExecutionResult(status="ok", dropped_chars=10)).startswith(
        "an execution's"
    )
    assert retire_reason("python", ExecutionResult(status="error")) is None  # a failing test: reset cleans it


def test_a_report_is_trusted_only_from_a_clean_run():
    line = '\x1eautocoder-reset:{"clean": true, "problems": [], "restored": []}'
    assert parse_report(ExecutionResult(status="ok", stdout=line + "\n"))["clean"]
    assert not parse_report(ExecutionResult(status="ok", stdout="no report\n"))["clean"]
    assert not parse_report(ExecutionResult(status="timeout", stdout=line))["clean"]
    error = ExecutionError(name="KeyboardInterrupt", value="", traceback="")
    assert not parse_report(ExecutionResult(status="error", stdout=line, error=error))["clean"]
    claims_clean = '\x1eautocoder-reset:{"clean": true, "problems": ["a thread"], "restored": []}'
    assert not parse_report(ExecutionResult(status="ok", stdout=claims_clean))["clean"]


def test_a_waiting_job_takes_the_first_kernel_ready_and_its_own_start_is_kept(sandbox):
    # No patience: the second job asks for a start of its own at once. The first job's kernel comes back
    # from its reset (milliseconds) long before that start ends (a fraction of a second or more): the job
    # takes it, and the kernel it asked for joins the ready ones instead of being thrown away.
    pool = RecyclingPool(
        lambda: Session(sandbox, timeout_s=20), reuse=5, warm=0, max_starting=2, start_after_s=0.0
    )
    try:
        first = pool.acquire()
        got = {}
        waiter = threading.Thread(target=lambda: got.setdefault("session", pool.acquire()))
        waiter.start()
        time.sleep(0.2)  # it waits, its start under way (started == 2 below shows it asked for one)
        pool.release(first)
        waiter.join(60)
        assert got["session"] is first
        assert pool.wait_idle(1, timeout_s=60)  # the start it asked for, ready for the next job
        assert pool.stats["started"] == 2 and pool.stats["reused"] == 1
        pool.release(first)
    finally:
        pool.close()


def test_a_kernel_that_cannot_start_is_the_asking_jobs_error(sandbox):
    class BrokenSession(Session):
        def start(self):
            raise RuntimeError("no kernel today")

    pool = RecyclingPool(lambda: BrokenSession(sandbox, timeout_s=20), reuse=5, warm=0, start_after_s=0.0)
    try:
        with pytest.raises(RuntimeError, match="no kernel today"):
            pool.acquire()
    finally:
        pool.close()


def test_a_reset_kernel_numbers_cells_as_a_fresh_one(pool):
    # "Cell In[n]" is part of a traceback the dialogue records: it must not tell which kernel an item got
    # (a rerun after a crash schedules differently, and must write the same records).
    def first_error_cell(session: Session) -> list[str]:
        result = session.run("1/0")
        return [line for line in result.error.traceback.splitlines() if "Cell In[" in line]

    session = pool.acquire()
    fresh = first_error_cell(session)
    pool.release(session)
    for _ in range(2):
        again = pool.acquire()
        assert again is session and first_error_cell(again) == fresh
        pool.release(again)
