"""The loop with real pieces: the tiny trained model through the hf backend, a real sandboxed kernel, and back.

The model (tests/fixtures/tiny_models.py) was trained to emit a fixed execution block per prompt and to
answer after any execution result; the sandbox is the local bubblewrap one. Nothing here is scripted.
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
    ErrorEvent,
    ExecutionFinished,
    ExecutionStarted,
    LoopConfig,
    Notice,
    OutputChunk,
    RoundFinished,
    TextDelta,
    final_answer,
    run_loop,
)
from interpreter.protocol import OUTPUT_START, OUTPUT_STOP, RUN_STOP, block_text, render_dialogue
from tests.conftest import package_index_reachable, require
from tests.fixtures.tiny_models import SCENARIOS, tiny_autocoder_path  # noqa: F401 (pytest fixture)

pytestmark = [pytest.mark.model, pytest.mark.local_sandbox, pytest.mark.slow]


@pytest.fixture(scope="module")
def backend(tiny_autocoder_path):  # noqa: F811 (the fixture above, by name)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llm.hf import HFBackend

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_autocoder_path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_autocoder_path)
    backend = HFBackend(model, tokenizer, model_id="tiny-autocoder")
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def sandbox():
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox

    try:
        return make_sandbox("local")
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")


@pytest.fixture
def session(sandbox):
    from interpreter.session import Session

    with Session(sandbox) as session:
        yield session


def config(**kwargs) -> LoopConfig:
    from llm.base import GenerationParams

    return LoopConfig(generation=GenerationParams(max_new_tokens=120), **kwargs)


def ask(prompt: str) -> list[dict]:
    return [{"role": "user", "content": prompt}]


def kinds(events) -> list[str]:
    """Event type names, consecutive TextDeltas and OutputChunks collapsed, block boundaries left out."""
    out: list[str] = []
    for event in events:
        name = type(event).__name__
        if name.startswith("Block"):
            continue
        if not (out and out[-1] == name and name in ("TextDelta", "OutputChunk")):
            out.append(name)
    return out


@pytest.mark.parametrize(
    ("style", "execution_content"),
    [
        ("demo", "result.stdout:\n42\n\nresult.stderr:\nNone"),
        ("tokens", "42"),
    ],
)
def test_model_runs_its_block_sees_the_output_and_answers(backend, session, style, execution_content):
    sc = SCENARIOS["print"]
    events = list(run_loop(backend, ask("print"), session, config(render_style=style)))

    assert kinds(events) == [
        "TextDelta",
        "ExecutionStarted",
        "OutputChunk",
        "ExecutionFinished",
        "RoundFinished",
        "TextDelta",
        "RoundFinished",
        "Done",
    ]
    started = next(e for e in events if isinstance(e, ExecutionStarted))
    assert (started.language, started.code) == ("python", sc.code)
    assert [(e.stream, e.text) for e in events if isinstance(e, OutputChunk)] == [("stdout", "42\n")]
    # The block's boundaries came as events: opened, its code growing, closed just before it ran.
    blocks = [e for e in events if isinstance(e, BlockOpened | BlockUpdated | BlockClosed)]
    assert isinstance(blocks[0], BlockOpened) and blocks[0].wrapped
    assert blocks[-1] == BlockClosed("python", sc.code)
    updates = [e.code for e in blocks if isinstance(e, BlockUpdated)]
    assert updates and all(sc.code.startswith(code) for code in updates)
    assert events.index(blocks[-1]) < events.index(started)
    finished = next(e for e in events if isinstance(e, ExecutionFinished))
    assert finished.exec_id == started.exec_id and finished.result.status == "ok"

    done = events[-1]
    assert done.reason == "end_of_turn"
    without_runs = [{k: v for k, v in m.items() if k != "runs"} for m in done.messages]
    assert without_runs == [
        {"role": "user", "content": "print"},
        {"role": "assistant", "content": sc.reply},
        {"role": "execution", "content": execution_content},
        {"role": "assistant", "content": sc.final},
    ]
    # The execution turn carries the structured run, which renders the same text in the same style.
    (run_,) = done.messages[2]["runs"]
    assert (run_["language"], run_["code"], run_["status"], run_["stdout"]) == (
        "python",
        sc.code,
        "ok",
        "42\n",
    )
    other = "tokens" if style == "demo" else "demo"
    again = render_dialogue(done.messages, style=style)[2]["content"]
    if style == "tokens":
        again = again.removeprefix(f"{OUTPUT_START}\n").removesuffix(f"\n{OUTPUT_STOP}")
    assert again == execution_content
    assert render_dialogue(done.messages, style=other)[2]["content"] != execution_content
    # The streamed text is the dialogue's assistant text, special tokens included.
    streamed = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert streamed == sc.reply + sc.final
    assert final_answer(done.messages) == sc.final


def test_error_output_goes_back_to_the_model(backend, session):
    events = list(run_loop(backend, ask("fail"), session, config(max_rounds=1)))
    done = events[-1]
    execution = done.messages[2]
    assert execution["role"] == "execution"
    assert execution["content"].startswith("result.stdout:\nNone\nresult.stderr:\n")
    assert execution["content"].endswith("ZeroDivisionError: division by zero")
    # The model was asked again with the traceback (what the tiny model makes of a traceback this long,
    # which it never saw in training, is not the point here).
    assert sum(isinstance(e, RoundFinished) for e in events) == 2
    assert done.messages[3]["role"] == "assistant"


def test_kernel_state_persists_across_rounds_and_chats(backend, session):
    list(run_loop(backend, ask("print"), session, config()))
    # The same session's kernel still has the model's earlier cell in its history.
    result = session.run_block("python", "print(len(In) >= 2)")
    assert result.stdout == "True\n"


def test_sh_block_installs_through_the_package_installer(backend, session):
    require(package_index_reachable(), "PyPI (pypi.org:443) is not reachable: pip install tqdm needs it")
    sc = SCENARIOS["install"]
    events = list(run_loop(backend, ask("install"), session, config(sh_ends_turn=True)))
    started = next(e for e in events if isinstance(e, ExecutionStarted))
    assert (started.language, started.code) == ("sh", "pip install tqdm")
    finished = next(e for e in events if isinstance(e, ExecutionFinished))
    assert finished.result.status == "ok", finished.result
    done = events[-1]
    assert done.reason == "end_of_turn"
    execution = done.messages[2]["content"]
    assert execution.startswith("pip_result.stdout: \n") and "Successfully installed tqdm" in execution
    assert "result.stdout" not in execution.replace("pip_result", "")  # no python block ran this round
    assert [m["role"] for m in done.messages] == ["user", "assistant", "execution", "assistant"]
    assert done.messages[1]["content"] == sc.reply
    # The package is importable in the session's kernel afterwards.
    assert session.run_block("python", "import tqdm; print('ok')").stdout == "ok\n"


def test_output_streams_while_the_code_runs(backend, session):
    # "ask" mode: the user edits the block before it runs; the loop runs the edited code.
    slow = "import time\nprint('first', flush=True)\ntime.sleep(1.5)\nprint('second')"
    stamps: list[tuple[float, object]] = []
    for event in run_loop(
        backend, ask("print"), session, config(execution_mode="ask"), approve=lambda b: slow
    ):
        stamps.append((time.monotonic(), event))
    first = next(t for t, e in stamps if isinstance(e, OutputChunk) and "first" in e.text)
    finished = next(t for t, e in stamps if isinstance(e, ExecutionFinished))
    assert finished - first > 1.0, "output was delivered after the code finished, not while it ran"
    done = stamps[-1][1]
    # The dialogue shows the code that actually ran.
    assert done.messages[1]["content"].endswith(block_text("python", slow))
    assert "first\nsecond" in done.messages[2]["content"]


def test_ask_mode_skip_tells_the_model(backend, session):
    seen = []
    events = list(
        run_loop(
            backend, ask("print"), session, config(execution_mode="ask"), approve=lambda b: seen.append(b)
        )
    )
    assert [b.code for b in seen] == [SCENARIOS["print"].code]
    assert not any(isinstance(e, ExecutionStarted) for e in events)
    assert "The user chose not to run this code." in events[-1].messages[2]["content"]


def test_cancel_mid_execution_stops_quickly_and_keeps_the_session(backend, session):
    cancel = Cancel()
    session.run_block("python", "kept = 7")
    events = []
    cancelled_at = None
    for event in run_loop(backend, ask("sleep"), session, config(), cancel=cancel):
        events.append(event)
        if isinstance(event, ExecutionStarted):
            # Cancel from another thread while the consumer is not pulling: the Cancel interrupts at once.
            threading.Timer(0.5, cancel.set).start()
            time.sleep(1.0)
            cancelled_at = time.monotonic() - 0.5
    elapsed = time.monotonic() - cancelled_at
    assert elapsed < 5, f"stopping took {elapsed:.1f} s"
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "cancelled"
    finished = next(e for e in events if isinstance(e, ExecutionFinished))
    assert finished.result.error is not None and finished.result.error.name == "KeyboardInterrupt"
    # The interrupt landed while the consumer slept (the Cancel called the loop), not when it pulled again.
    assert finished.result.duration_s < 0.9, finished.result.duration_s
    # What was generated and run is preserved; the model was not asked again.
    assert [m["role"] for m in done.messages] == ["user", "assistant", "execution"]
    assert done.messages[1]["content"] == SCENARIOS["sleep"].reply
    assert "KeyboardInterrupt" in done.messages[2]["content"]
    assert sum(isinstance(e, RoundFinished) for e in events) == 1
    # Interrupt, not restart: the kernel's state is still there.
    assert session.run_block("python", "print(kept)").stdout == "7\n"


def test_cancel_during_generation_keeps_the_partial_reply(backend, session):
    cancel = threading.Event()
    events = []
    for event in run_loop(backend, ask("print"), session, config(), cancel=cancel):
        events.append(event)
        if isinstance(event, TextDelta):
            cancel.set()
    assert not any(isinstance(e, ExecutionStarted) for e in events)
    done = events[-1]
    assert done.reason == "cancelled"
    partial = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert partial and SCENARIOS["print"].reply.startswith(partial) and partial != SCENARIOS["print"].reply
    assert done.messages == [{"role": "user", "content": "print"}, {"role": "assistant", "content": partial}]


def test_max_rounds_zero_runs_nothing(backend, session):
    events = list(run_loop(backend, ask("print"), session, config(max_rounds=0)))
    assert not any(isinstance(e, ExecutionStarted) for e in events)
    assert any(isinstance(e, Notice) and "limit of 0 executions" in e.message for e in events)
    assert events[-1].reason == "max_rounds"
    assert events[-1].messages[-1]["content"].endswith(RUN_STOP)


def test_plain_answer_without_code_ends_the_turn(backend, session):
    events = list(run_loop(backend, ask("hello"), session, config()))
    assert kinds(events) == ["TextDelta", "RoundFinished", "Done"]
    assert events[-1].reason == "end_of_turn"
    assert final_answer(events[-1].messages) == SCENARIOS["hello"].reply


def test_turn_end_hook_continues_the_dialogue(backend, session):
    follow_ups = iter(["print"])
    hook_calls = []

    def on_turn_end(messages):
        hook_calls.append(len(messages))
        return next(follow_ups, None)

    done = list(run_loop(backend, ask("hello"), session, config(on_turn_end=on_turn_end)))[-1]
    assert hook_calls == [2, 6]
    assert [m["role"] for m in done.messages] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "execution",
        "assistant",
    ]
    assert done.messages[-1]["content"] == SCENARIOS["print"].final


def test_tokens_style_reaches_the_model_wrapped(backend, session):
    seen = []

    class Recording:
        """Passes everything through to the real backend and keeps what the model was shown."""

        def stream(self, messages, params, cancel=None, stats=None):
            seen.append(messages)
            return backend.stream(messages, params, cancel, stats)

    list(
        run_loop(Recording(), ask("print"), session, config(render_style="tokens", system_prompt="Run code."))
    )
    assert seen[1][0] == {"role": "system", "content": "Run code."}
    assert seen[1][-1] == {"role": "user", "content": f"{OUTPUT_START}\n42\n{OUTPUT_STOP}"}


def test_kv_cache_is_reused_across_rounds(backend, session):
    rounds = [e for e in run_loop(backend, ask("print"), session, config()) if isinstance(e, RoundFinished)]
    assert len(rounds) == 2
    second = rounds[1]
    assert 0 < second.prefill_tokens < second.prompt_tokens / 2


def test_backend_failure_is_one_error_line_then_done(backend, session):
    from llm.base import GenerationParams

    broken = LoopConfig(generation=GenerationParams(stop=None))  # the backend cannot iterate its stops
    events = list(run_loop(backend, ask("print"), session, broken))
    assert kinds(events) == ["ErrorEvent", "Done"]
    assert isinstance(events[0], ErrorEvent) and "\n" not in events[0].message
    assert events[0].message.startswith("model backend failed: TypeError")
    assert events[1].reason == "error" and events[1].messages == ask("print")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"execution_mode": "sometimes"}, "unknown execution mode"),
        ({"render_style": "xml"}, "unknown render style"),
        ({"max_rounds": -1}, "max_rounds"),
        ({"execution_mode": "ask"}, "approve callback"),
    ],
)
def test_bad_configuration_is_a_clear_error(backend, session, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_loop(backend, ask("print"), session, config(**kwargs))


def test_missing_generation_params_is_a_clear_error(backend, session):
    with pytest.raises(ValueError, match="generation is required"):
        run_loop(backend, ask("print"), session, LoopConfig())


def test_closing_the_event_stream_mid_execution_interrupts_the_code(backend, session):
    # What the app does when the browser goes away: it stops pulling and closes the generator.
    events = run_loop(backend, ask("sleep"), session, config())
    for event in events:
        if isinstance(event, ExecutionStarted):
            break
    time.sleep(0.3)
    events.close()
    start = time.monotonic()
    assert session.run_block("python", "print('free')", timeout_s=20).stdout == "free\n"
    assert time.monotonic() - start < 5, "the abandoned 30 s sleep was still holding the kernel"


def test_code_that_ignores_the_interrupt_gets_the_kernel_restarted(backend, session):
    stubborn = "import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass"
    cancel = threading.Event()
    session.run_block("python", "kept = 7")
    events = []
    cfg = config(execution_mode="ask", cancel_grace_s=1.0)
    for event in run_loop(backend, ask("sleep"), session, cfg, cancel=cancel, approve=lambda b: stubborn):
        events.append(event)
        if isinstance(event, ExecutionStarted):
            threading.Timer(0.3, cancel.set).start()
            cancelled_at = time.monotonic() + 0.3
    assert time.monotonic() - cancelled_at < 10
    assert events[-1].reason == "cancelled"
    finished = next(e for e in events if isinstance(e, ExecutionFinished))
    assert finished.result.state_lost and "restarted" in finished.result.message
    assert any(isinstance(e, Notice) and "state lost" in e.message for e in events)
    # A fresh kernel: it answers, and the old variable is gone.
    result = session.run_block("python", "print('kept' in globals())", timeout_s=20)
    assert result.stdout == "False\n"
