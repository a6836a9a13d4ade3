"""The concurrent runner: ordering, bounds, resume, cancellation, failures; and real dialogues through it.

The last test runs whole dialogues through the one loop, with real sandboxed kernels from a session pool and
the OpenAI backend over real HTTP against the tests' scripted server, concurrently and serially, and checks
the two outputs are the same.
"""

from __future__ import annotations

import _thread
import random
import re
import signal
import threading
import time

import pytest

from interpreter.batch import BatchSummary, run_batch


def jobs_of(n: int) -> list[tuple[str, int]]:
    return [(f"job-{i}", i) for i in range(n)]


class Recorder:
    """on_result that remembers the order and the thread it was called from."""

    def __init__(self) -> None:
        self.got: list[tuple[str, object]] = []
        self.threads: set[int] = set()

    def __call__(self, job_id: str, result) -> None:
        self.got.append((job_id, result))
        self.threads.add(threading.get_ident())


def test_results_arrive_in_job_order_from_the_callers_thread_while_jobs_overlap():
    rng = random.Random(1)
    delays = [rng.uniform(0, 0.05) for _ in range(30)]
    running, most = [0], [0]
    lock = threading.Lock()

    def work(i, cancel):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(delays[i])  # finish out of order
        with lock:
            running[0] -= 1
        return i * i

    record = Recorder()
    summary = run_batch(jobs_of(30), work, concurrency=4, on_result=record, progress=False)
    assert record.got == [(f"job-{i}", i * i) for i in range(30)]
    assert record.threads == {threading.get_ident()}
    assert most[0] == 4  # bounded, and really concurrent
    assert (summary.completed, summary.failed, summary.skipped, summary.cancelled) == (30, 0, 0, False)
    assert summary.not_run == 0


def test_done_ids_are_skipped_for_resume():
    ran = []

    def work(i, cancel):
        ran.append(i)
        return i

    record = Recorder()
    summary = run_batch(
        jobs_of(6), work, concurrency=3, on_result=record, skip={"job-0", "job-2"}, progress=False
    )
    assert sorted(ran) == [1, 3, 4, 5]
    assert [job_id for job_id, _ in record.got] == ["job-1", "job-3", "job-4", "job-5"]
    assert summary.skipped == 2 and summary.completed == 4


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="'a' appears twice"):
        run_batch([("a", 1), ("a", 2)], lambda p, c: p, concurrency=2, on_result=print, progress=False)


def test_at_most_max_pending_jobs_start_beyond_a_slow_one():
    release = threading.Event()
    started = []

    def work(i, cancel):
        started.append(i)
        if i == 0:
            release.wait(10)
        return i

    seen_while_stuck = []

    def watch():
        deadline = time.monotonic() + 10
        while len(started) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # time for more to start, if the window let them
        seen_while_stuck.append(len(started))
        release.set()

    threading.Thread(target=watch, daemon=True).start()
    record = Recorder()
    run_batch(jobs_of(40), work, concurrency=2, on_result=record, progress=False, max_pending=5)
    assert [r for _, r in record.got] == list(range(40))
    # While job 0 was stuck only jobs 1..4 could start (job 0 plus 4 more inside the window of 5), not all 40.
    assert seen_while_stuck == [5]


def test_a_cancel_stops_scheduling_tells_running_jobs_and_keeps_the_finished_prefix():
    cancel = threading.Event()
    saw_cancel = []

    def work(i, stop):
        if i < 3:
            return i  # quick: done before the cancel
        if i == 3:
            cancel.set()
        if stop.wait(5):  # a long job that listens
            saw_cancel.append(i)
            return "partial"
        return i

    record = Recorder()
    start = time.monotonic()
    summary = run_batch(jobs_of(50), work, concurrency=4, on_result=record, cancel=cancel, progress=False)
    assert time.monotonic() - start < 2.0
    assert summary.cancelled
    assert record.got == [("job-0", 0), ("job-1", 1), ("job-2", 2)]  # no partial result delivered
    assert 3 in saw_cancel
    assert summary.completed == 3 and summary.not_run == 47
    # Resume: the same call with the delivered ids skipped completes the rest, in order.
    rest = Recorder()
    run_batch(
        jobs_of(50),
        lambda i, stop: i,
        concurrency=4,
        on_result=rest,
        skip={j for j, _ in record.got},
        progress=False,
    )
    assert [r for _, r in record.got + rest.got] == list(range(50))


@pytest.fixture
def default_sigint():
    """Ctrl-C as a plain Python program gets it: SIGINT's default handler raises KeyboardInterrupt. Code run
    in-process by earlier tests, or a library, may have left another handler in place; put it back after."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_cancels_running_jobs_and_re_raises(default_sigint):
    saw_cancel = threading.Event()

    def work(i, stop):
        if i == 0:
            return 0
        if stop.wait(10):
            saw_cancel.set()
        return i

    record = Recorder()
    threading.Timer(0.3, _thread.interrupt_main).start()  # what Ctrl-C does
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_batch(jobs_of(20), work, concurrency=3, on_result=record, progress=False)
    assert time.monotonic() - start < 3.0
    assert saw_cancel.is_set()
    assert record.got == [("job-0", 0)]


def test_the_first_failure_stops_the_batch_after_the_results_before_it():
    def work(i, stop):
        if i == 5:
            raise RuntimeError("job five broke\nsecond line")
        if i > 5:
            stop.wait(0.2)
        return i

    record = Recorder()
    with pytest.raises(RuntimeError, match="job five broke"):
        run_batch(jobs_of(40), work, concurrency=4, on_result=record, progress=False)
    assert [r for _, r in record.got] == [0, 1, 2, 3, 4]  # a prefix of the serial output


def test_with_on_error_failures_are_reported_in_order_and_the_batch_goes_on():
    def work(i, stop):
        time.sleep(random.uniform(0, 0.01))
        if i % 4 == 1:
            raise ValueError(f"bad {i}\nmore")
        return i

    order = []
    summary = run_batch(
        jobs_of(12),
        work,
        concurrency=3,
        on_result=lambda job_id, r: order.append(("ok", r)),
        on_error=lambda job_id, exc: order.append(("error", str(exc).splitlines()[0])),
        progress=False,
    )
    assert order == [("error", f"bad {i}") if i % 4 == 1 else ("ok", i) for i in range(12)]
    assert summary.failed == 3 and summary.completed == 9
    assert summary.errors[0] == ("job-1", "ValueError: bad 1")


def test_an_on_result_failure_stops_everything_and_is_raised():
    calls = []

    def on_result(job_id, result):
        calls.append(job_id)
        if result == 2:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run_batch(jobs_of(30), lambda i, stop: i, concurrency=4, on_result=on_result, progress=False)
    assert calls == ["job-0", "job-1", "job-2"]


def test_summary_line():
    summary = BatchSummary(total=10, skipped=2, completed=5, failed=1, cancelled=True, elapsed_s=1.25)
    assert summary.line() == "5 done, 1 failed, 2 skipped, 2 not run in 1.2 s (cancelled)"


def test_progress_goes_to_stderr(capsys):
    run_batch(jobs_of(3), lambda i, stop: i, concurrency=2, on_result=lambda *a: None, desc="dialogues")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "dialogues" in captured.err and "3/3" in captured.err


def without_timings(record):
    """Dialogues minus how long each execution took (the one thing that differs between two runs)."""
    if isinstance(record, dict):
        return {k: without_timings(v) for k, v in record.items() if k != "duration_s"}
    if isinstance(record, list | tuple):
        return [without_timings(v) for v in record]
    return record


# -- real dialogues: the loop, sandboxed kernels from a pool, the OpenAI backend over HTTP -------------


def scripted_model(body: dict) -> list[str]:
    """A deterministic 'model': asks to run code computing from the question, then answers from the result."""
    from interpreter.protocol import RUN_START, RUN_STOP

    messages = body["messages"]
    last = messages[-1]["content"]
    if len(messages) == 1:  # the question: "What is N squared?"
        n = int(re.search(r"\d+", last).group())
        return ["Let me compute it.\n", f"{RUN_START}```python\nprint({n} ** 2)\n```{RUN_STOP}"]
    number = re.search(r"\d+", last.split("result.stdout:")[-1]).group()
    return [f"The answer is {number}."]


@pytest.mark.local_sandbox
def test_concurrent_dialogues_equal_serial_ones(openai_server):
    from interpreter.loop import Done, LoopConfig, run_loop
    from interpreter.pool import SessionPool
    from interpreter.session import Session
    from llm.base import GenerationParams
    from llm.openai_backend import OpenAIBackend
    from tests.interpreter.conftest import sandbox_or_skip

    openai_server.reply_for = scripted_model
    openai_server.latency_s = 0.2  # the requests overlap only if the runner really runs them at once
    backend = OpenAIBackend(base_url=openai_server.base_url, model="tiny-autocoder", api_key="test-key")
    sandbox = sandbox_or_skip("local")
    config = LoopConfig(generation=GenerationParams(), max_rounds=2)
    questions = [(f"q{n}", f"What is {n} squared?") for n in (3, 7, 12, 25, 40, 99)]

    def run(concurrency: int) -> list[tuple[str, list[dict]]]:
        out = []
        with SessionPool(lambda: Session(sandbox, timeout_s=20), size=concurrency) as pool:

            def work(question: str, cancel: threading.Event) -> list[dict]:
                session = pool.acquire(wait_s=30)
                try:
                    events = run_loop(
                        backend, [{"role": "user", "content": question}], session, config, cancel=cancel
                    )
                    done = [e for e in events if isinstance(e, Done)][-1]
                    assert done.reason == "end_of_turn", done
                    return done.messages
                finally:
                    session.close()

            run_batch(
                questions,
                work,
                concurrency=concurrency,
                on_result=lambda i, m: out.append((i, m)),
                progress=False,
            )
        return out

    try:
        serial = run(1)
        assert openai_server.max_in_flight == 1
        concurrent = run(4)
        assert openai_server.max_in_flight > 1
    finally:
        backend.close()
    assert without_timings(concurrent) == without_timings(serial)
    assert [i for i, _ in serial] == [i for i, _ in questions]
    first = serial[0][1]
    assert first[-1] == {"role": "assistant", "content": "The answer is 9."}
    assert any(m["role"] == "execution" and "9" in m["content"] for m in first)
