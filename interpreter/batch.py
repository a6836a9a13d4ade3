"""The one concurrent runner: many independent jobs at once, results handed back in job order.

    summary = run_batch(jobs, work, concurrency=16, on_result=append)

`jobs` is a sequence of (id, payload); `work(payload, cancel)` runs in a worker thread and returns a result
(for a dialogue: it acquires its own session from the pool, runs the loop, closes the session). At most
`concurrency` jobs run at once. `on_result(id, result)` is called from the caller's thread, in job order,
whatever order the jobs finish in, so a caller that appends each result to a file gets the same file as a
serial run, and a run stopped at any point leaves a prefix of it: rerun with `skip=` the ids already written
and it resumes where it stopped.

Cancellation: when the caller's `cancel` event is set or Ctrl-C arrives (KeyboardInterrupt in the caller's
thread), nothing new starts, the running jobs see the event each of them was given and should return
promptly; results that completed before the cancel are still delivered (the in-order prefix), the rest are
dropped (a job that saw the cancel may hold a partial result) and are redone on resume. A cancel returns the
summary with `cancelled=True`; Ctrl-C re-raises KeyboardInterrupt after the same cleanup.

Failures: by default the first failing job stops the batch like a cancel and its exception is re-raised (after
the results before it are delivered), so the output stays a prefix of the serial one. With `on_error`, a
failure is reported through `on_error(id, exception)`, in job order, in the caller's thread, and the batch
goes on. An exception raised by `on_result` or `on_error` (a full disk) stops the batch and is re-raised.

Results that finish ahead of a slow job wait in memory; at most `max_pending` jobs (default 8 x concurrency)
are started beyond the oldest undelivered one, which bounds both that memory and the work a crash loses.

What it deliberately does not do: retry (the backends retry their requests; a failed job is redone on resume),
write files, or know what a job is: it imports nothing of the project.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POLL_S = 0.1  # how often the caller's thread looks at its cancel event while jobs run


@dataclass
class BatchSummary:
    total: int  # jobs given
    skipped: int  # of them, already done (in `skip`)
    completed: int  # results delivered through on_result
    failed: int  # failures delivered through on_error (or the one that stopped the batch)
    cancelled: bool  # stopped early by the cancel event or Ctrl-C
    elapsed_s: float
    errors: list[tuple[str, str]] = field(default_factory=list)  # (id, one line) per failure

    @property
    def not_run(self) -> int:
        """Jobs neither skipped nor finished: left for a resume."""
        return self.total - self.skipped - self.completed - self.failed

    def line(self) -> str:
        text = f"{self.completed} done, {self.failed} failed, {self.skipped} skipped"
        if self.not_run:
            text += f", {self.not_run} not run"
        text += f" in {self.elapsed_s:.1f} s"
        return text + (" (cancelled)" if self.cancelled else "")


@dataclass
class _Outcome(Generic[R]):
    result: R | None = None
    error: BaseException | None = None
    after_cancel: bool = False  # finished after the cancel: possibly partial, never delivered


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def run_batch(
    jobs: Sequence[tuple[str, T]],
    work: Callable[[T, threading.Event], R],
    *,
    concurrency: int,
    on_result: Callable[[str, R], None],
    skip: Collection[str] = (),
    cancel: threading.Event | None = None,
    on_error: Callable[[str, BaseException], None] | None = None,
    progress: bool = True,
    desc: str = "",
    max_pending: int | None = None,
) -> BatchSummary:
    """Run `work` on every job not in `skip`, `concurrency` at a time; deliver results in job order."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    ids = [job_id for job_id, _ in jobs]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"job ids must be unique (resume relies on them); {duplicate!r} appears twice")
    skip = set(skip)
    todo = [(job_id, payload) for job_id, payload in jobs if job_id not in skip]
    window = max_pending if max_pending is not None else 8 * concurrency
    window = max(window, concurrency)
    summary = BatchSummary(
        total=len(jobs), skipped=len(jobs) - len(todo), completed=0, failed=0, cancelled=False, elapsed_s=0.0
    )
    started_at = time.monotonic()
    stop = threading.Event()  # what every job is given: set on cancel, Ctrl-C or a stopping failure
    finished: queue.Queue[int] = queue.Queue()
    outcomes: dict[int, _Outcome] = {}
    futures: dict[int, Future] = {}
    next_start = 0  # index in todo of the next job to start
    next_deliver = 0  # index in todo of the next result to hand to the caller
    raise_after: BaseException | None = None

    def run_one(index: int) -> None:
        job_id, payload = todo[index]
        outcome: _Outcome = _Outcome()
        try:
            outcome.result = work(payload, stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome.error = exc
        # Checked after the job returns: a job that saw the cancel may have returned early with a part.
        outcome.after_cancel = stop.is_set()
        outcomes[index] = outcome
        finished.put(index)

    in_callback = False

    def deliver() -> None:
        """Hand over every result now contiguous from the front, in job order."""
        nonlocal next_deliver, raise_after, in_callback
        while raise_after is None and next_deliver in outcomes:
            outcome = outcomes[next_deliver]
            if outcome.after_cancel:
                return  # possibly partial: left for the resume
            del outcomes[next_deliver]
            job_id = todo[next_deliver][0]
            if outcome.error is None:
                in_callback = True
                on_result(job_id, outcome.result)
                in_callback = False
                summary.completed += 1
            else:
                summary.errors.append((job_id, _one_line(outcome.error)))
                summary.failed += 1
                if on_error is None or isinstance(outcome.error, KeyboardInterrupt):
                    raise_after = outcome.error
                    stop.set()  # nothing new starts; the running jobs are told to stop
                    return
                in_callback = True
                on_error(job_id, outcome.error)
                in_callback = False
            next_deliver += 1

    bar = _progress_bar(len(todo), desc, progress)
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="batch")
    try:
        while True:
            if cancel is not None and cancel.is_set() and not stop.is_set():
                summary.cancelled = True
                stop.set()
            while (
                not stop.is_set()
                and next_start < len(todo)
                and len(futures) < concurrency
                and next_start < next_deliver + window
            ):
                futures[next_start] = executor.submit(run_one, next_start)
                next_start += 1
            if not futures:
                break  # all delivered, or stopped and every started job has returned
            try:
                index = finished.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            del futures[index]
            bar.update(1)
            deliver()
    except BaseException:
        # Ctrl-C, or an exception from on_result/on_error: stop, and let the running jobs see it and return.
        summary.cancelled = True
        stop.set()
        _drain(futures)
        if not in_callback:
            deliver()  # what completed before the interrupt is kept
        raise
    finally:
        stop.set()
        executor.shutdown(wait=True, cancel_futures=True)
        bar.close()
        summary.elapsed_s = time.monotonic() - started_at
    if raise_after is not None:
        raise raise_after
    return summary


def _drain(futures: dict[int, Future]) -> None:
    """Wait until every started job has returned (each was told to stop)."""
    wait(list(futures.values()))
    futures.clear()


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc or None, unit="job", file=sys.stderr)
