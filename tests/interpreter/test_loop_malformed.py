"""The loop on model output the tiny trained model never produces: malformed blocks and stream shapes.

Why a scripted backend here (and only here): these cases are about exact byte sequences a real model
emits rarely or a real server produces (a stop string stripped from the stream, an unknown language, a
block cut off by the token limit, the released checkpoints' sh-then-python turn). `Scripted` is a test
double of our own Backend interface that streams predetermined text in small chunks; everything else
(the detector, the loop, the sandboxed kernel and the package runner) is real. The normal path, with a
real trained model, is in test_loop.py.
"""

from __future__ import annotations

import threading
import time

import pytest

from interpreter.loop import (
    BlockClosed,
    BlockOpened,
    BlockUpdated,
    Cancel,
    Done,
    ExecutionStarted,
    LoopConfig,
    Notice,
    OutputChunk,
    TextDelta,
    run_loop,
)
from interpreter.protocol import RUN_START, RUN_STOP, block_text
from tests.conftest import require

pytestmark = [pytest.mark.local_sandbox]


class Scripted:
    """Streams one scripted reply per call, `chunk` characters at a time, like a backend would."""

    name = "scripted"

    def __init__(self, *replies: str, chunk: int = 3, strip_stop: bool = False):
        self.replies = list(replies)
        self.chunk = chunk
        self.strip_stop = strip_stop  # behave like an OpenAI-compatible server: the stop string is not sent
        self.calls: list[dict] = []

    def stream(self, messages, params, cancel: threading.Event | None = None, stats=None):
        call = {"messages": messages, "stop": list(params.stop), "cancel": cancel, "closed_early": False}
        self.calls.append(call)
        reply = self.replies.pop(0)
        for stop in params.stop:  # generation ends at a stop string, as real backends do
            if stop in reply:
                reply = reply[: reply.index(stop) + (0 if self.strip_stop else len(stop))]
        sent = 0
        try:
            while sent < len(reply):
                if cancel is not None and cancel.is_set():
                    return
                yield reply[sent : sent + self.chunk]
                sent += self.chunk
        except GeneratorExit:
            call["closed_early"] = True
            raise


@pytest.fixture(scope="module")
def session():
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session

    try:
        sandbox = make_sandbox("local")
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    with Session(sandbox) as session:
        yield session


def config(**kwargs) -> LoopConfig:
    from llm.base import GenerationParams

    return LoopConfig(generation=GenerationParams(max_new_tokens=200), **kwargs)


def run(backend, session, cfg=None) -> list:
    return list(run_loop(backend, [{"role": "user", "content": "go"}], session, cfg or config()))


def test_released_checkpoint_turn_sh_then_python_in_one_turn(session):
    # The shape of the original demo's transcripts: the install and the code in one assistant turn, both
    # results fed back together. The sh block here runs a plain command so the test needs no network.
    turn = (
        "Install first.\n"
        + block_text("sh", "echo installed")
        + "\nThen run:\n"
        + block_text("python", "print('ran')")
        + "IGNORED"
    )
    backend = Scripted(turn, "All good.")
    events = run(backend, session)
    started = [(e.language, e.code) for e in events if isinstance(e, ExecutionStarted)]
    assert started == [("sh", "echo installed"), ("python", "print('ran')")]
    done = events[-1]
    assert done.reason == "end_of_turn"
    assert done.messages[1]["content"] == turn.removesuffix("IGNORED")
    assert done.messages[2]["content"] == (
        "pip_result.stdout: \ninstalled\n\n pip_result.stderr: \n\n result.stdout:\nran\n\nresult.stderr:\nNone"
    )
    # No RUN_STOP stop string (the sh block must not end the turn); the loop broke the stream off itself.
    assert backend.calls[0]["stop"] == [] and backend.calls[0]["closed_early"]
    assert backend.calls[0]["cancel"].is_set()
    # The model saw the result as a plain user turn.
    assert backend.calls[1]["messages"][-1] == {"role": "user", "content": done.messages[2]["content"]}


def test_stop_string_stripped_by_the_server_still_runs_and_the_dialogue_stays_canonical(session):
    backend = Scripted("Run:\n" + block_text("python", "print(5)"), "Five.", strip_stop=True)
    events = run(backend, session, config(sh_ends_turn=True))
    assert backend.calls[0]["stop"] == [RUN_STOP]
    assert [e.text for e in events if isinstance(e, OutputChunk)] == ["5\n"]
    done = events[-1]
    assert done.messages[1]["content"] == "Run:\n" + block_text("python", "print(5)")
    assert done.messages[-1]["content"] == "Five."


def test_unknown_language_is_explained_to_the_model_which_retries(session):
    backend = Scripted(
        block_text("javascript", "console.log(1)"),
        block_text("python", "print(1)"),
        "Done.",
    )
    events = run(backend, session)
    assert any(isinstance(e, Notice) and "javascript" in e.message for e in events)
    assert [e.language for e in events if isinstance(e, ExecutionStarted)] == ["python"]
    done = events[-1]
    execution = done.messages[2]
    assert execution["role"] == "execution"
    assert execution["content"] == (
        "result.stdout:\nNone\nresult.stderr:\n```javascript blocks cannot be run here; only python and sh blocks run"
    )
    # The structured run says it was not run, and why.
    (run_,) = execution["runs"]
    assert (run_["language"], run_["code"], run_["status"]) == ("javascript", "console.log(1)", "not_run")
    assert "cannot be run here" in run_["note"]
    assert done.reason == "end_of_turn" and done.messages[-1]["content"] == "Done."


class CountingScripted(Scripted):
    """Also reports stats the way llm backends do (stop_reason), to exercise the max-tokens path."""

    def stream(self, messages, params, cancel=None, stats=None):
        yield from super().stream(messages, params, cancel, stats)
        stats.generated_tokens = params.max_new_tokens
        stats.stop_reason = "max_tokens"


def test_block_cut_off_by_the_token_limit_is_not_run(session):
    backend = CountingScripted(f"Here:\n{RUN_START}```python\nfor i in range(10):\n    print(")
    events = run(backend, session)
    assert not any(isinstance(e, ExecutionStarted) for e in events)
    assert any(isinstance(e, Notice) and "max new tokens" in e.message for e in events)
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "max_tokens"
    assert [m["role"] for m in done.messages] == ["user", "assistant"]


def test_always_mode_runs_bare_python_fences(session):
    reply = "Let me check:\n```python\nprint(2 + 2)\n```\nMore text that is not part of the turn."
    backend = Scripted(reply, "It is 4.")
    events = run(backend, session, config(execution_mode="always"))
    assert [e.text for e in events if isinstance(e, OutputChunk)] == ["4\n"]
    done = events[-1]
    assert done.messages[1]["content"] == "Let me check:\n```python\nprint(2 + 2)\n```"
    assert (
        "".join(e.text for e in events if isinstance(e, TextDelta))
        == done.messages[1]["content"] + "It is 4."
    )
    # The same reply in "auto" mode is just text.
    auto = run(Scripted(reply), session)
    assert not any(isinstance(e, ExecutionStarted) for e in auto) and auto[-1].reason == "end_of_turn"


def test_duplicate_start_and_missing_closing_fence_are_reported_and_run(session):
    reply = f"{RUN_START}```python\nprint('lost'){RUN_START}```python\nprint('kept')\n{RUN_STOP}"
    events = run(Scripted(reply, "ok"), session)
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert any("dropped" in n for n in notices) and any("closing ``` fence" in n for n in notices)
    assert [e.text for e in events if isinstance(e, OutputChunk)] == ["kept\n"]


def test_executed_bare_fences_are_recorded_in_token_form_when_asked(session):
    reply = "Let me check:\n```python\nprint(2 + 2)\n```\nignored"
    cfg = config(execution_mode="always", record_bare_as_tokens=True)
    events = run(Scripted(reply, "It is 4."), session, cfg)
    done = events[-1]
    assert done.messages[1]["content"] == "Let me check:\n" + block_text("python", "print(2 + 2)")
    # What streamed is what the model wrote; only the record is rewritten.
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert streamed == "Let me check:\n```python\nprint(2 + 2)\n```It is 4."
    # A bare fence that was not run (no executions left) stays as written.
    events = run(
        Scripted(reply), session, config(execution_mode="always", record_bare_as_tokens=True, max_rounds=0)
    )
    assert events[-1].messages[1]["content"] == "Let me check:\n```python\nprint(2 + 2)\n```"


def test_each_follow_up_question_gets_its_own_execution_budget(session):
    # max_rounds=1: one execution per question. The follow-up's block must still run.
    backend = Scripted(
        block_text("python", "print('q1')"),
        "Answer one.",
        block_text("python", "print('q2')"),
        "Answer two.",
    )
    follow_ups = iter(["a second question"])
    cfg = config(max_rounds=1, on_turn_end=lambda messages: next(follow_ups, None))
    events = run(backend, session, cfg)
    assert [e.text for e in events if isinstance(e, OutputChunk)] == ["q1\n", "q2\n"]
    done = events[-1]
    assert done.reason == "end_of_turn"
    roles = [m["role"] for m in done.messages]
    assert roles == [
        "user",
        "assistant",
        "execution",
        "assistant",
        "user",
        "assistant",
        "execution",
        "assistant",
    ]
    assert [m["runs"][0]["stdout"] for m in done.messages if m["role"] == "execution"] == ["q1\n", "q2\n"]


def test_block_events_frame_the_block_text_in_every_chunking(session):
    reply = "Run:\n" + block_text("python", "x = 6\nprint(x * 7)")
    for chunk in (1, 3, 50):
        events = run(Scripted(reply, "ok", chunk=chunk), session)
        opened = next(i for i, e in enumerate(events) if isinstance(e, BlockOpened))
        closed = next(i for i, e in enumerate(events) if isinstance(e, BlockClosed))
        before = "".join(e.text for e in events[:opened] if isinstance(e, TextDelta))
        inside = "".join(e.text for e in events[opened:closed] if isinstance(e, TextDelta))
        assert (before, inside) == ("Run:\n", block_text("python", "x = 6\nprint(x * 7)"))
        assert events[closed] == BlockClosed("python", "x = 6\nprint(x * 7)")
        updates = [e for e in events[opened:closed] if isinstance(e, BlockUpdated)]
        assert all(u.language in ("", "python") for u in updates)
        assert all("x = 6\nprint(x * 7)".startswith(u.code) for u in updates)
        assert isinstance(events[closed + 1], ExecutionStarted)
    # An unknown language closes as a block with a problem, and nothing runs.
    events = run(Scripted(block_text("ruby", "puts 1"), "ok"), session)
    closed = next(e for e in events if isinstance(e, BlockClosed))
    assert (closed.language, closed.problem, closed.runnable) == ("ruby", "unknown_language", False)


def test_cancel_event_calls_its_listeners_once():
    cancel = Cancel()
    calls = []
    unsubscribe = cancel.subscribe(lambda: calls.append("a"))
    cancel.subscribe(lambda: calls.append("b"))
    gone = cancel.subscribe(lambda: calls.append("never"))
    gone()
    cancel.set()
    cancel.set()
    assert calls == ["a", "b"] and cancel.is_set()
    unsubscribe()  # harmless after the fact
    cancel.subscribe(lambda: calls.append("late"))  # already set: called at once
    assert calls == ["a", "b", "late"]


def _watchers() -> int:
    return sum(t.name == "autocoder-cancel-watch" for t in threading.enumerate())


def test_a_cancel_event_needs_no_watcher_thread_a_plain_event_gets_one_per_event(session):
    reply = block_text("python", "import time\ntime.sleep(0.3)\nprint('slept')")
    plain = threading.Event()
    for cancel, added in ((Cancel(), 0), (plain, 1), (plain, 0)):  # the second loop on `plain` shares it
        before = _watchers()
        names = []
        loop_events = run_loop(
            Scripted(reply, "ok"), [{"role": "user", "content": "go"}], session, config(), cancel=cancel
        )
        for event in loop_events:
            if isinstance(event, ExecutionStarted):
                names = [t.name for t in threading.enumerate()]
        assert sum(name == "autocoder-cancel-watch" for name in names) - before == added, names
        assert sum(name.startswith("autocoder-exec-") for name in names) == 1
    # The watcher sleeps until the event is set, then ends.
    plain.set()
    deadline = time.monotonic() + 5
    while _watched(plain) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _watched(plain)


def _watched(event: threading.Event) -> bool:
    from interpreter.loop import _PlainEventWatch

    with _PlainEventWatch._lock:
        return id(event) in _PlainEventWatch._listeners


def test_a_plain_event_reaches_every_listener_once_and_none_that_left():
    from interpreter.loop import _PlainEventWatch

    event = threading.Event()
    calls: list[str] = []
    done = threading.Event()
    _PlainEventWatch.subscribe(event, lambda: calls.append("a"))
    leave = _PlainEventWatch.subscribe(event, lambda: calls.append("left"))
    _PlainEventWatch.subscribe(event, lambda: 1 / 0)  # a broken listener does not stop the others
    _PlainEventWatch.subscribe(event, lambda: (calls.append("b"), done.set()))
    leave()
    leave()  # harmless twice
    assert not done.wait(0.05) and calls == []
    event.set()
    assert done.wait(5) and calls == ["a", "b"]
    # Already set: a new listener is called at once, from a fresh watch thread.
    late = threading.Event()
    _PlainEventWatch.subscribe(event, late.set)
    assert late.wait(5)


def test_session_kill_and_is_alive_what_the_loop_uses_to_stop_stuck_code():
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session

    try:
        sandbox = make_sandbox("local")
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    session = Session(sandbox)
    try:
        assert not session.is_alive() and session.kill() is False  # no kernel yet: nothing to kill
        session.start()
        assert session.is_alive()
        session.run_block("python", "kept = 1")
        # Killed from another thread mid-execution: the call returns, the session restarts, state is lost.
        threading.Timer(0.5, session.kill).start()
        result = session.run_block("python", "import time\nwhile True: time.sleep(0.1)")
        assert result.state_lost and result.status in ("crashed", "memory_limit")
        assert session.is_alive()
        again = session.run_block("python", "print(kept)")
        assert again.error is not None and again.error.name == "NameError"
    finally:
        session.close()
    assert not session.is_alive()
