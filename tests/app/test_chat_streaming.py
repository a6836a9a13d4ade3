"""The streaming path of app.chat: how `Chat.run` groups the loop's events into page updates
(`_next_batch`: the model's text waits up to TEXT_INTERVAL_S to go out with more text, anything else goes at
once), and a cancel reaching an approval that waits (execution mode "ask") without polling."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from app.chat import Chat, Settings, _next_batch
from interpreter.loop import (
    BlockOpened,
    BlockUpdated,
    ExecutionStarted,
    LoopConfig,
    OutputChunk,
    TextDelta,
    run_loop,
)
from interpreter.protocol import block_text
from tests.interpreter.test_loop_malformed import Scripted


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


def test_the_first_text_of_an_answer_goes_to_the_page_at_once(monkeypatch):
    # The model's first words are not held back for TEXT_INTERVAL_S (the reader sees it start at once);
    # the text after them is batched. Checked on the deadline each batch is given (a timing check would be
    # noise on a shared machine). Without a kernel: the runner only streams text.
    import app.chat as chat_module
    from interpreter.loop import Done

    deadlines = []

    def recording(events, text_until=0.0):
        deadlines.append(text_until)
        return chat_module._next_batch.__wrapped__(events, text_until)

    recording.__wrapped__ = _next_batch
    monkeypatch.setattr(chat_module, "_next_batch", recording)
    seen = {"first": threading.Event(), "first second": threading.Event()}

    def runner(dialogue, kernel, settings, cancel, approve):
        yield TextDelta("first")
        seen["first"].wait(10)  # the next text comes once the first is on the page
        yield TextDelta(" second")
        seen["first second"].wait(10)
        yield Done([*dialogue, {"role": "assistant", "content": "first second"}], "end_of_turn")

    chat = Chat("k", lambda: None)
    shown = []
    for turn in chat.run("go", Settings(), runner):
        shown.append(turn.raw_text())
        if shown[-1] in seen:
            seen[shown[-1]].set()
    assert shown[:3] == ["", "first", "first second"], shown
    assert deadlines[0] == 0.0, "the first text waited for more"
    assert deadlines[1] > 0.0, "text after text was not batched"


def test_without_a_deadline_a_batch_is_what_already_arrived():
    events: queue.Queue = queue.Queue()
    events.put(TextDelta("a"))
    assert len(_next_batch(events)) == 1


@pytest.mark.local_sandbox
def test_a_cancel_set_anywhere_ends_a_waiting_approval():
    # Not Stop (which resolves the approval itself): the chat's cancel set directly, as a closing server
    # does. The approval listens to the cancel, so the answer ends without anyone polling.
    from llm.base import GenerationParams
    from tests.interpreter.conftest import new_session

    session = new_session("local")
    chat = Chat("k", lambda: session)

    def runner(dialogue, kernel, settings, cancel, approve):
        config = LoopConfig(generation=GenerationParams(max_new_tokens=200), execution_mode="ask")
        backend = Scripted(block_text("python", "print('ran')"), "never asked")
        return run_loop(backend, dialogue, kernel, config, cancel=cancel, approve=approve)

    turns = []
    answering = threading.Thread(
        target=lambda: turns.extend(chat.run("go", Settings(execution_mode="ask"), runner)), daemon=True
    )
    try:
        answering.start()
        deadline = time.monotonic() + 60
        while chat.approval is None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert chat.approval is not None, "the loop never asked for approval"
        chat.cancel.set()
        answering.join(timeout=60)
        assert not answering.is_alive(), "the approval kept waiting after the cancel"
        assert turns[-1].done_reason == "cancelled" and not chat.running and chat.approval is None
        assert not [part for part in turns[-1].executions() if part.result is not None]
    finally:
        session.close()
