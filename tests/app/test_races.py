"""Races in app/chat.py, run many times with random delays: double submit, the idle reaper against an answer,
Stop while an `ask` approval waits, Stop during a pip install.

Everything is real except the people: the app's own loop runner (`app.server.make_loop_runner`) on the real
OpenAI backend, streaming over HTTP from the scripted server (tests/app/scripted_model.py), kernels in the
local sandbox from the app's warm pool. Python's thread switch interval is cut to microseconds while a test
runs, so the threads interleave far more often than they would in a server; each test is bounded in
iterations and in time (every join has a deadline), and checks invariants that a wrong lock order breaks:
a turn per answered message and the dialogue in step with the turns, a kernel slot per chat holding a
kernel, the "kernel was shut down" note in the turn that got the fresh kernel, a Stop seen by the answer
it was pressed during, and no installer process left behind after a Stop.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.chat import BusyError, ChatSessions, Settings
from app.view import NotePart
from interpreter.protocol import RUN_START, RUN_STOP
from tests.app.scripted_model import scripted_reply
from tests.conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.local_sandbox]

# Every wait in these tests is bounded by this (a loaded 2-core machine starts a sandboxed kernel in ~6 s).
DEADLINE_S = 90.0


def reply_with_sh(body: dict) -> list[str]:
    """scripted_reply, plus `sh: COMMAND`, which makes the model ask for an sh block."""
    messages = body.get("messages") or []
    last = messages[-1]["content"] if messages else ""
    if isinstance(last, str) and last.startswith("sh: "):
        return ["Installing.\n", f"{RUN_START}```sh\n{last[4:]}\n```{RUN_STOP}"]
    return scripted_reply(body)


@pytest.fixture
def fast_switching():
    """Threads switch every few microseconds instead of every 5 ms: interleavings a busy server meets
    once a day happen in every iteration."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(old)


@pytest.fixture
def rig(openai_server, fast_switching):
    """(ChatSessions, run_loop) wired as app.server wires them, with a warm pool of local-sandbox kernels."""
    from app.server import make_loop_runner
    from interpreter.pool import SessionPool
    from interpreter.sandboxes.base import Limits, SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session
    from llm.openai_backend import OpenAIBackend

    try:
        sandbox = make_sandbox("local", Limits())
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    openai_server.reply_for = reply_with_sh
    backend = OpenAIBackend(openai_server.base_url, openai_server.models[0], openai_server.api_key)
    run_loop = make_loop_runner(backend, argparse.Namespace(render_style="demo", exec_timeout=None))
    pool = SessionPool(lambda: Session(sandbox), size=2)
    sessions = ChatSessions(lambda: pool.acquire(wait_s=60.0), idle_timeout_s=3600, max_sessions=8)
    yield sessions, run_loop
    sessions.close_all()
    pool.close()


class JitterLock:
    """A lock that sleeps a random moment (0-2 ms) before taking and after giving back: the other threads
    get to run exactly where a check and its act could be split. Code whose check-and-set spans two lock
    sections (or none) then loses the race in a few iterations instead of once a month."""

    def __init__(self, rng: random.Random):
        self._lock = threading.Lock()
        self._rng = rng

    def _jitter(self) -> None:
        time.sleep(self._rng.random() * 0.002)

    def acquire(self, *args, **kwargs) -> bool:
        self._jitter()
        return self._lock.acquire(*args, **kwargs)

    def release(self) -> None:
        self._lock.release()
        self._jitter()

    def __enter__(self) -> JitterLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def jittered(chat, seed: int):
    """The chat with each of its locks replaced by a JitterLock (before any thread uses them)."""
    rng = random.Random(seed)
    for name, value in list(vars(chat).items()):
        if isinstance(value, type(threading.Lock())):
            setattr(chat, name, JitterLock(rng))
    return chat


def in_thread(target, *args) -> tuple[threading.Thread, list]:
    """Run target(*args) in a thread; the returned list gets ("ok", value) or ("raised", exception)."""
    out: list = []

    def run() -> None:
        try:
            out.append(("ok", target(*args)))
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            out.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def joined(thread: threading.Thread, out: list, what: str):
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), (
        f"{what} still running after {DEADLINE_S:.0f} s (a lost wake-up or a deadlock)"
    )
    return out[0]


def answer(chat, message: str, settings: Settings, run_loop):
    """Answer one message the way the /chat endpoint does; returns the final turn."""
    last = None
    for last in chat.run(message, settings, run_loop):  # noqa: B007 - the last one is the answer
        pass
    return last


def assert_dialogue_matches_turns(chat) -> None:
    """Each turn's user message sits where the turn says its exchange starts, in order."""
    starts = [turn.dialogue_start for turn in chat.turns]
    assert starts == sorted(starts), starts
    for turn in chat.turns:
        assert chat.dialogue[turn.dialogue_start] == {"role": "user", "content": turn.user}, (
            turn.user,
            chat.dialogue,
        )
    users = [m["content"] for m in chat.dialogue if m["role"] == "user"]  # results are "execution" turns
    assert users == [turn.user for turn in chat.turns], (users, [turn.user for turn in chat.turns])


def stdout_of(turn) -> str:
    (part,) = turn.executions()
    return part.result.stdout


def slots_match_kernels(sessions: ChatSessions, chats) -> None:
    holding = sum(1 for chat in chats if chat.kernel_started)
    assert len(sessions.slots) == holding, f"{len(sessions.slots)} slots taken for {holding} kernels"


def test_double_submit_and_clear_never_interleave_two_answers(rig):
    sessions, run_loop = rig
    chat = jittered(sessions.get("double-submit"), 1)
    settings = Settings(execution_mode="auto")
    rng = random.Random(13)
    answered = 0
    for i in range(12):
        messages = [f"run: print({i * 10 + 1})", f"run: print({i * 10 + 2})"]

        def submit(message: str, delay: float):
            time.sleep(delay)
            return answer(chat, message, settings, run_loop)

        def clear(delay: float):
            time.sleep(delay)
            chat.clear()

        workers = [in_thread(submit, m, rng.random() * 0.02) for m in messages]
        # Clear (also the API's new_chat) aimed at the moment the submits start, or later in the answer.
        clearing = in_thread(clear, rng.random() * (0.02 if i % 2 else 0.3)) if i % 3 else None
        outcomes = [joined(t, out, "a submit") for t, out in workers]
        ok = [value for kind, value in outcomes if kind == "ok"]
        refused = [value for kind, value in outcomes if kind == "raised"]
        assert all(isinstance(exc, BusyError) for exc in refused), refused
        cleared = False
        if clearing is not None:
            kind, value = joined(*clearing, "clear")
            assert kind == "ok" or isinstance(value, BusyError), value
            cleared = kind == "ok"
        # Only a Clear holding the chat at that moment may refuse both.
        assert ok or cleared, f"both submits were refused: {refused}"
        for turn in ok:
            assert turn.done_reason == "end_of_turn", turn.done_reason
            assert stdout_of(turn) == f"{turn.user[len('run: print(') : -1]}\n"
        answered += len(ok)
        assert not chat.running
        assert_dialogue_matches_turns(chat)
    assert answered >= 8


def test_stop_or_undo_at_the_start_of_an_answer_is_never_lost_or_half_done(rig):
    """Many cheap iterations aimed at the instant an answer starts: a Stop that sees the answer running
    must end it (else, in ask mode, it would wait for approval forever), and an Undo either happens wholly
    before the answer or is refused, never pulling the new turn out from under it."""
    sessions, run_loop = rig
    chat = jittered(sessions.get("start"), 1)
    answer(chat, "run: print(0)", Settings(), run_loop)  # its kernel, started once
    rng = random.Random(11)
    for i in range(150):
        if i % 2:
            runner = in_thread(answer, chat, f"run: print({i})", Settings(execution_mode="ask"), run_loop)
            deadline = time.monotonic() + DEADLINE_S
            while not chat.running and time.monotonic() < deadline and runner[0].is_alive():
                pass
            saw_running = chat.stop()
            runner[0].join(20)
            if runner[0].is_alive():  # unstick it, then report
                chat.stop(any_time=True)
                pytest.fail(f"iteration {i}: a Stop pressed while the answer ran was lost")
            kind, turn = runner[1][0]
            assert kind == "ok", turn
            if saw_running:
                assert turn.done_reason == "cancelled", turn.done_reason
        else:
            runner = in_thread(answer, chat, f"say: hello {i}", Settings(), run_loop)
            time.sleep(rng.random() * 0.002)
            chat.undo()
            kind, turn = joined(*runner, "an answer raced by Undo")
            assert kind == "ok", turn
        assert not chat.running
        assert_dialogue_matches_turns(chat)


def test_idle_reaper_against_an_answer_keeps_slots_and_says_when_state_was_lost(rig):
    sessions, run_loop = rig
    chat = jittered(sessions.get("reaped"), 1)
    base = Settings(execution_mode="auto")
    used: list = []

    def recording(dialogue, session, settings, cancel, approve):
        used.append(session)
        return run_loop(dialogue, session, settings, cancel, approve)

    rng = random.Random(7)
    reaped = 0
    for i in range(10):
        before = chat.kernel()  # a kernel, then made to look idle for the reaper
        chat.last_used = time.monotonic() - 10 * sessions.idle_timeout_s
        used.clear()

        def reap(delay: float) -> int:
            time.sleep(delay)
            return sessions.reap_idle()

        reaper = in_thread(reap, rng.random() * 0.05)
        time.sleep(rng.random() * 0.05)
        turn = answer(chat, f"run: print({i})", base, recording)
        kind, count = joined(*reaper, "the reaper")
        assert kind == "ok", count
        reaped += count
        assert stdout_of(turn) == f"{i}\n", "the answer ran without a working kernel"
        (session,) = used
        notes = [p.text for p in turn.parts if isinstance(p, NotePart) and "shut down" in p.text]
        if session is not before:  # the answer got a fresh kernel: this turn must say state was lost
            assert notes, "the kernel was replaced during the answer, and the turn does not say so"
        slots_match_kernels(sessions, [chat])
        # Whatever the interleaving, no pending note may be shown for a kernel this answer already used.
        if chat.kernel_started and chat.kernel() is session:
            assert chat.kernel_note == "", chat.kernel_note
    assert not chat.running
    print(f"reaper won {reaped} of 10 races")


def test_stop_while_an_ask_approval_waits_ends_the_answer_and_runs_nothing(rig):
    sessions, run_loop = rig
    chat = jittered(sessions.get("ask"), 1)
    ask = Settings(execution_mode="ask")
    rng = random.Random(3)
    for i in range(12):
        runner = in_thread(answer, chat, f"run: print({i})", ask, run_loop)
        mode = i % 3
        if mode == 0:  # Stop the moment the answer is seen to run, before the approval exists
            deadline = time.monotonic() + DEADLINE_S
            while not chat.running and time.monotonic() < deadline:
                pass
        else:  # Stop while the approval waits
            deadline = time.monotonic() + DEADLINE_S
            while chat.approval is None and time.monotonic() < deadline and runner[0].is_alive():
                time.sleep(0.001)
            assert chat.approval is not None, "the loop never asked for approval"
            time.sleep(rng.random() * 0.01)
        approver = None
        if mode == 2:  # Run pressed at the same moment as Stop
            pending = chat.approval
            approver = in_thread(lambda a=pending, n=i: a is not None and a.resolve(f"print({n}, 'ok')"))
        chat.stop()
        kind, turn = joined(*runner, "the answer after Stop")
        assert kind == "ok", turn
        if approver is not None:
            joined(*approver, "Run")
        assert turn.done_reason == "cancelled", f"iteration {i}: Stop was lost ({turn.done_reason})"
        if mode != 2:
            ran = [part for part in turn.executions() if part.result is not None]
            assert ran == [], "a block ran although Stop came before Run"
        assert not chat.running and chat.approval is None
    # The chat still answers afterwards.
    turn = answer(chat, "run: print('after')", Settings(execution_mode="auto"), run_loop)
    assert stdout_of(turn) == "after\n"


class _StallingIndex(ThreadingHTTPServer):
    """A package index that accepts requests and never answers: pip download hangs until it is stopped."""

    daemon_threads = True

    def __init__(self):
        self.hits = 0
        self.release = threading.Event()
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                index.hits += 1
                index.release.wait(120)

        super().__init__(("127.0.0.1", 0), Handler)


def _pip_downloads_of(folder_prefix: str) -> list[int]:
    """Processes of this machine running `pip download` into one of our wheel folders."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = b" ".join(argv).decode(errors="replace")
        if " pip download " in text and folder_prefix in text:
            found.append(int(entry.name))
    return found


def test_stop_during_a_pip_install_kills_the_download(rig, monkeypatch):
    sessions, run_loop = rig
    index = _StallingIndex()
    threading.Thread(target=index.serve_forever, args=(0.05,), daemon=True).start()
    # The host-side download inherits the host's pip settings: point them at the stalling index only.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{index.server_address[1]}/simple")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "120")
    import tempfile

    wheels_prefix = str(Path(tempfile.gettempdir()) / "autocoder-wheels-")
    chat = jittered(sessions.get("pip"), 1)
    rng = random.Random(5)
    try:
        for i in range(3):
            hits = index.hits
            runner = in_thread(answer, chat, "sh: pip install autocoder-stall-probe", Settings(), run_loop)
            deadline = time.monotonic() + DEADLINE_S
            while index.hits == hits and time.monotonic() < deadline:
                time.sleep(0.02)
            assert index.hits > hits, f"iteration {i}: pip never asked the index"
            time.sleep(rng.random() * 0.5)
            chat.stop()
            kind, turn = joined(*runner, "the answer after Stop")
            assert kind == "ok", turn
            assert turn.done_reason == "cancelled"
            (part,) = turn.executions()
            # Without a cancel path the loop gives up after its grace period and leaves pip running.
            assert "stopped waiting" not in (part.result.message or ""), part.result.message
            deadline = time.monotonic() + 5
            while _pip_downloads_of(wheels_prefix) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _pip_downloads_of(wheels_prefix) == [], "pip download still runs after Stop"
    finally:
        index.release.set()
        index.shutdown()
        index.server_close()
