"""How `Chat.run` groups the loop's events into page updates (app.chat._next_batch): the model's text waits
up to TEXT_INTERVAL_S to go out with more text, anything else goes at once."""

from __future__ import annotations

import queue
import threading
import time

from app.chat import _next_batch
from interpreter.loop import BlockOpened, BlockUpdated, ExecutionStarted, OutputChunk, TextDelta


def test_text_waits_for_more_text_until_the_deadline():
    events: queue.Queue = queue.Queue()
    events.put(TextDelta("a"))
    threading.Timer(0.05, events.put, args=(TextDelta("b"),)).start()
    batch = _next_batch(events, time.monotonic() + 5.0)  # far: only the other event may end the wait
    assert [e.text for e in batch[:2]] == ["a", "b"]


def test_text_goes_out_at_the_deadline_without_more_events():
    events: queue.Queue = queue.Queue()
    events.put(TextDelta("a"))
    events.put(BlockOpened(wrapped=True))
    events.put(BlockUpdated("python", "print("))
    started = time.monotonic()
    batch = _next_batch(events, started + 0.2)
    assert len(batch) == 3 and time.monotonic() - started >= 0.19


def test_any_other_event_ends_the_wait_at_once():
    events: queue.Queue = queue.Queue()
    events.put(TextDelta("a"))
    started = time.monotonic()
    # The output of the code arrives while text waits: both go out together, long before the deadline.
    threading.Timer(0.05, events.put, args=(ExecutionStarted("x", "python", "print(1)"),)).start()
    batch = _next_batch(events, started + 30.0)
    assert isinstance(batch[-1], ExecutionStarted) and time.monotonic() - started < 20.0
    # Already queued behind text: no wait at all, and everything queued is taken.
    events.put(TextDelta("b"))
    events.put(OutputChunk("x", "stdout", "1\n"))
    events.put(TextDelta("c"))
    started = time.monotonic()
    batch = _next_batch(events, started + 30.0)
    assert [type(e).__name__ for e in batch] == ["TextDelta", "OutputChunk", "TextDelta"]
    assert time.monotonic() - started < 20.0


def test_without_a_deadline_a_batch_is_what_already_arrived():
    events: queue.Queue = queue.Queue()
    events.put(TextDelta("a"))
    assert len(_next_batch(events)) == 1
