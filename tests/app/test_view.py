"""The chat view: loop events folded into turns and rendered as Gradio messages, tokens never shown.

The text and block events come from `interpreter.loop.stream_events`, the loop's own conversion of a
streamed reply (the detector), so the view is tested on exactly what the loop sends."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from app.view import (
    EXEC_CSS,
    NO_OUTPUT,
    STATUS_COLOURS,
    STATUS_MARKS,
    BlockPart,
    ExecPart,
    ImageStore,
    TextPart,
    Turn,
    answer_markdown,
    clip,
    exec_body,
    exec_message,
    exec_status,
    fenced,
    render_turn,
    render_turns,
    uploads_text,
)
from interpreter.kernel import ExecutionError, ExecutionResult
from interpreter.loop import (
    Done,
    ExecutionFinished,
    ExecutionStarted,
    Notice,
    OutputChunk,
    RoundFinished,
    stream_events,
)
from interpreter.protocol import OUTPUT_START, OUTPUT_STOP, RUN_START, RUN_STOP, SPECIAL_TOKENS

BLOCK = f"{RUN_START}```python\nprint(6*7)\n```{RUN_STOP}"


def _png() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    plt.plot([1, 2], [1, 4])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _all_text(messages: list[dict]) -> str:
    parts = []
    for message in messages:
        content = message["content"]
        parts.append(content if isinstance(content, str) else repr(content))
        parts.append(message.get("metadata", {}).get("title", ""))
    return "\n".join(parts)


def feed(turn: Turn, *chunks: str, finished: bool = False) -> None:
    for event in stream_events(chunks, finished=finished):
        turn.apply(event)


def test_tokens_never_reach_the_screen_whatever_the_chunking(tmp_path):
    text = f"I will compute it.\n{BLOCK} and {OUTPUT_START} a partial {OUTPUT_STOP[:7]}"
    for size in (1, 2, 3, 5, 7, len(text)):
        turn = Turn("print", 0)
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        for event in stream_events(chunks):
            turn.apply(event)
            shown = _all_text(render_turn(turn, ImageStore(tmp_path)))
            assert not any(token in shown for token in SPECIAL_TOKENS)
            assert "<API" not in shown, f"partial token shown: {shown!r}"
        assert "I will compute it." in shown
        # Everything the model wrote is kept, tokens included (a failed loop keeps it as the reply).
        assert turn.raw_text() == text


def test_code_being_written_shows_as_pending_draft_then_as_execution(tmp_path):
    turn = Turn("print", 0)
    feed(turn, "Sure.\n", f"{RUN_START}```python\nprint(6")
    messages = render_turn(turn, ImageStore(tmp_path))
    draft = messages[-1]
    assert draft["metadata"]["status"] == "pending" and "Writing python" in draft["metadata"]["title"]
    assert draft["content"] == fenced("print(6", "python")
    events = stream_events(["Sure.\n", f"{RUN_START}```python\nprint(6", f"*7)\n```{RUN_STOP}"])
    turn = Turn("print", 0)
    for event in events:
        turn.apply(event)
    turn.apply(ExecutionStarted("e1", "python", "print(6*7)"))
    turn.apply(OutputChunk("e1", "stdout", "4"))
    turn.apply(OutputChunk("e1", "stdout", "2\n"))
    messages = render_turn(turn, ImageStore(tmp_path))
    running = messages[-1]
    assert running["metadata"]["status"] == "pending" and "Running" in running["metadata"]["title"]
    assert "print(6*7)" in running["content"] and "42" in running["content"]
    assert [m["content"] for m in messages[:2]] == ["print", "Sure."]  # the draft gave way to the execution
    turn.apply(ExecutionFinished("e1", ExecutionResult(status="ok", stdout="42\n", duration_s=0.25)))
    turn.apply(RoundFinished(1))
    feed(turn, "The answer is 42.", finished=True)
    turn.apply(Done([], "end_of_turn"))
    messages = render_turn(turn, ImageStore(tmp_path))
    finished = messages[2]
    assert finished["metadata"] == {"title": "[✓](#exec-ok) Ran python", "duration": 0.25}
    assert messages[-1]["content"] == "The answer is 42."


def test_blocks_that_did_not_run_show_as_the_code_the_model_wrote(tmp_path):
    # Unknown language: closed with a problem, never run.
    turn = Turn("js", 0)
    feed(turn, f"Here:\n{RUN_START}```js\nconsole.log(1)\n```{RUN_STOP}", finished=True)
    turn.apply(Notice("not run: ```js blocks cannot be run here"))
    messages = render_turn(turn, ImageStore(tmp_path))
    assert messages[1:3] == [
        {"role": "assistant", "content": "Here:"},
        {"role": "assistant", "content": fenced("console.log(1)", "js")},
    ]
    # Cut off mid-block (stopped): shown as written, no longer pending.
    turn = Turn("print", 0)
    feed(turn, f"{RUN_START}```python\nfor i in range(3):\n    pri")
    turn.apply(Done([], "cancelled"))
    shown = render_turn(turn, ImageStore(tmp_path))
    assert shown[1] == {"role": "assistant", "content": fenced("for i in range(3):\n    pri", "python")}
    assert isinstance(turn.parts[0], BlockPart) and turn.parts[0].closed
    # A bare fence in "always" mode is a block too.
    turn = Turn("print", 0)
    for event in stream_events(["Check:\n```python\nprint(1)\n```"], bare_python=True):
        turn.apply(event)
    assert [type(p) for p in turn.parts] == [TextPart, BlockPart]
    assert (turn.parts[1].language, turn.parts[1].code, turn.parts[1].closed) == ("python", "print(1)", True)


def test_errors_images_and_interrupts_are_rendered(tmp_path):
    png = _png()
    turn = Turn("plot", 0)
    feed(turn, BLOCK, finished=True)
    turn.apply(ExecutionStarted("a", "python", "plot()"))
    result = ExecutionResult(
        status="ok",
        outputs=[
            {
                "output_type": "display_data",
                "data": {"image/png": png, "text/plain": "<Figure>"},
                "metadata": {},
            }
        ],
    )
    turn.apply(ExecutionFinished("a", result))
    turn.apply(ExecutionStarted("b", "python", "1/0"))
    error = ExecutionError(
        "ZeroDivisionError", "division by zero", "Traceback ...\nZeroDivisionError: division by zero"
    )
    turn.apply(ExecutionFinished("b", ExecutionResult(status="error", error=error)))
    turn.apply(ExecutionStarted("c", "python", "sleep()"))
    interrupted = ExecutionResult(
        status="error", error=ExecutionError("KeyboardInterrupt", "", "KeyboardInterrupt")
    )
    turn.apply(ExecutionFinished("c", interrupted))
    turn.apply(Notice("not run: the user declined"))
    turn.apply(Done([], "cancelled"))
    messages = render_turn(turn, ImageStore(tmp_path))
    images = [m for m in messages if isinstance(m["content"], dict)]
    assert len(images) == 1 and images[0]["content"]["path"].endswith(".png")
    assert base64.b64decode(png) == Path(images[0]["content"]["path"]).read_bytes()
    titles = [m.get("metadata", {}).get("title") for m in messages]
    assert "[✗](#exec-error) python: ZeroDivisionError" in titles
    assert "[■](#exec-interrupted) python: interrupted" in titles
    assert any("division by zero" in m["content"] for m in messages if isinstance(m["content"], str))
    assert messages[-1]["content"] == "■ _stopped_"
    # Rendering again writes no second copy of the image.
    render_turn(turn, ImageStore(tmp_path))
    assert len(list(tmp_path.iterdir())) == 1


def test_ask_mode_parts(tmp_path):
    turn = Turn("print", 0)
    feed(turn, BLOCK, finished=True)
    turn.ask("python", "print(6*7)")
    asking = render_turn(turn, ImageStore(tmp_path))[-1]
    assert (
        asking["metadata"]["status"] == "pending" and "Run this python code?" in asking["metadata"]["title"]
    )
    turn.apply(ExecutionStarted("e", "python", "print(6*8)"))  # the user edited it
    running = render_turn(turn, ImageStore(tmp_path))[-1]
    assert "print(6*8)" in running["content"] and len(turn.executions()) == 1
    turn.ask("python", "print(1)")
    turn.skip_asked()
    assert "not run" in render_turn(turn, ImageStore(tmp_path))[-1]["metadata"]["title"]


def test_output_tokens_and_backticks_in_output_cannot_break_the_markdown():
    turn = Turn("x", 0)
    feed(turn, f"a{OUTPUT_START}b{OUTPUT_STOP}c", finished=True)
    assert render_turn(turn, ImageStore(Path("/nonexistent")))[1]["content"] == "abc"
    block = fenced("```\nnot the end\n```", "text")
    assert block.startswith("````text\n") and block.endswith("\n````")


def test_huge_output_is_clipped_on_screen():
    text = "x" * 200_000
    shown = clip(text, 1000)
    assert len(shown) < 1200 and "199000 characters not shown" in shown


# ---------------------------------------------------------------------------------- issue 11, problems 5-8


def _ran(turn: Turn, exec_id: str, code: str, result: ExecutionResult, prose: str = "Running it.\n") -> None:
    feed(turn, f"{prose}{RUN_START}```python\n{code}\n```{RUN_STOP}", finished=True)
    turn.apply(ExecutionStarted(exec_id, "python", code))
    turn.apply(ExecutionFinished(exec_id, result))
    turn.apply(RoundFinished(1))


def _execs(messages: list[dict]) -> list[dict]:
    return [m for m in messages if "#exec-" in m.get("metadata", {}).get("title", "")]


def test_each_status_has_its_own_mark_and_colour_hook():
    timeout = ExecutionResult(status="timeout", message="timed out after 3 s")
    cases = {
        "ok": _result("ok"),
        "error": _result("error", ExecutionError("NameError", "x", "NameError: x")),
        "timeout": timeout,
        "crashed": ExecutionResult(status="crashed"),
        "interrupted": _result("error", ExecutionError("KeyboardInterrupt", "", "")),
    }
    for status, result in cases.items():
        part = ExecPart("e", "python", "x", result=result, state="finished")
        assert exec_status(part) == status
        assert exec_message(part)["metadata"]["title"].startswith(
            f"[{STATUS_MARKS[status]}](#exec-{status}) "
        )
    assert exec_status(ExecPart("e", "python", "x")) == "running"
    assert exec_status(ExecPart("e", "python", "x", state="skipped")) == "skipped"
    # Every status is coloured, each in a colour of its own, and the code is not dimmed.
    assert set(STATUS_COLOURS) == set(STATUS_MARKS) and len(set(STATUS_COLOURS.values())) >= 7
    for status, colour in STATUS_COLOURS.items():
        assert f'a[href="#exec-{status}"] {{ color: {colour}; }}' in EXEC_CSS
    assert ".message-content" in EXEC_CSS and "opacity: 1" in EXEC_CSS


def _result(status: str, error: ExecutionError | None = None) -> ExecutionResult:
    return ExecutionResult(status=status, error=error)


def test_a_run_that_showed_nothing_says_no_output(tmp_path):
    silent = ExecPart("e", "python", "x = 1", result=ExecutionResult(status="ok"), state="finished")
    assert exec_body(silent).endswith(NO_OUTPUT)
    printed = ExecPart(
        "e", "python", "print(1)", result=ExecutionResult(status="ok", stdout="1\n"), state="finished"
    )
    assert NO_OUTPUT not in exec_body(printed)
    plotted = ExecutionResult(
        status="ok", outputs=[{"output_type": "display_data", "data": {"image/png": _png()}}]
    )
    assert NO_OUTPUT not in exec_body(ExecPart("e", "python", "plot()", result=plotted, state="finished"))
    failed = ExecutionResult(status="error", error=ExecutionError("NameError", "y", "NameError: y"))
    assert NO_OUTPUT not in exec_body(ExecPart("e", "python", "y", result=failed, state="finished"))
    assert NO_OUTPUT not in exec_body(ExecPart("e", "python", "x = 1"))  # still running: output may come
    assert NO_OUTPUT not in exec_body(ExecPart("e", "python", "x = 1", state="skipped"))


def test_only_the_latest_execution_stays_open(tmp_path):
    images = ImageStore(tmp_path)
    first = Turn("a", 0)
    _ran(first, "e1", "x = 1", ExecutionResult(status="ok"))
    _ran(first, "e2", "print(x)", ExecutionResult(status="ok", stdout="1\n"))
    first.apply(Done([], "end_of_turn"))
    one, two = _execs(render_turn(first, images))
    assert one["metadata"]["status"] == "done" and "status" not in two["metadata"]
    second = Turn("b", 4)
    _ran(second, "e3", "print(2)", ExecutionResult(status="ok", stdout="2\n"))
    statuses = [m["metadata"].get("status") for m in _execs(render_turns([first, second], images))]
    assert statuses == ["done", "done", None]
    # A later message collapses them all: a follow-up without code, or a message being answered.
    chatter = Turn("thanks", 6)
    feed(chatter, "You are welcome.", finished=True)
    statuses = [m["metadata"].get("status") for m in _execs(render_turns([first, second, chatter], images))]
    assert statuses == ["done", "done", "done"]
    statuses = [m["metadata"].get("status") for m in _execs(render_turns([first, second], images, False))]
    assert statuses == ["done", "done", "done"]
    # A running execution is open (with its spinner) whatever comes after it.
    third = Turn("c", 8)
    feed(third, BLOCK, finished=True)
    third.apply(ExecutionStarted("e4", "python", "print(6*7)"))
    assert _execs(render_turns([first, third], images))[-1]["metadata"]["status"] == "pending"


def test_in_always_mode_the_bare_block_becomes_the_execution_message(tmp_path):
    turn = Turn("x", 0)
    for event in stream_events(["Sure.\n```python\nprint(42)\n```\n"], bare_python=True):
        turn.apply(event)
    turn.apply(ExecutionStarted("e", "python", "print(42)"))
    turn.apply(OutputChunk("e", "stdout", "42\n"))
    turn.apply(ExecutionFinished("e", ExecutionResult(status="ok", stdout="42\n")))
    turn.apply(RoundFinished(1))
    for event in stream_events(["It printed 42."], bare_python=True):
        turn.apply(event)
    turn.apply(Done([], "end_of_turn"))
    messages = render_turn(turn, ImageStore(tmp_path))
    assert _all_text(messages).count("print(42)") == 1
    assert [m["content"] for m in messages if "metadata" not in m] == ["x", "Sure.", "It printed 42."]


def test_uploads_and_earlier_answers_are_shown_in_their_turn(tmp_path):
    earlier = Turn("count", 0)
    _ran(earlier, "e1", "print(1)", ExecutionResult(status="ok", stdout="1\n"), prose="First try.\n")
    feed(earlier, "It is 1.", finished=True)
    turn = Turn(
        "count", 0, uploads=["data.csv (1.2 kB)"], earlier=[earlier.parts, [TextPart("Second.", True)]]
    )
    feed(turn, "Third.", finished=True)
    messages = render_turn(turn, ImageStore(tmp_path))
    assert messages[0] == {"role": "user", "content": uploads_text(["data.csv (1.2 kB)"])}
    assert "data.csv (1.2 kB)" in messages[0]["content"] and messages[1] == {
        "role": "user",
        "content": "count",
    }
    one, two = messages[2:4]
    assert one["metadata"] == {"title": "↻ Earlier answer 1 of 3 (replaced by Retry)", "status": "done"}
    assert two["metadata"]["title"].startswith("↻ Earlier answer 2 of 3")
    for text in ("First try.", "✓ Ran python", "print(1)", "It is 1."):
        assert text in one["content"]
    assert "#exec-" not in one["content"]  # marks are for titles; inside an answer they are plain
    assert two["content"] == "Second."
    assert messages[4:] == [{"role": "assistant", "content": "Third."}]
    assert "(1 image, not shown in an earlier answer)" in answer_markdown(
        [
            ExecPart(
                "e",
                "python",
                "plot()",
                result=ExecutionResult(
                    status="ok", outputs=[{"output_type": "display_data", "data": {"image/png": _png()}}]
                ),
                state="finished",
            )
        ]
    )
