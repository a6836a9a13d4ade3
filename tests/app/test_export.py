"""Exports: a chat as a valid Jupyter notebook (cells and outputs, plots included) and as the dialogue record.

The execution results come from a real kernel in the local sandbox, so the notebook carries exactly what
a chat would: streams, a matplotlib PNG from display_data, an error with its traceback.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from app.export import dialogue_jsonl, notebook_json
from app.view import TextPart, Turn, uploads_text
from interpreter.dialogue import SCHEMA_VERSION, DialogueError, execution_message, read_dialogues
from interpreter.loop import (
    Done,
    ExecutionFinished,
    ExecutionStarted,
    OutputChunk,
    RoundFinished,
    stream_events,
)
from interpreter.protocol import OUTPUT_START, OUTPUT_STOP, RUN_START, RUN_STOP, render_dialogue
from interpreter.results import RunRecord
from tests.conftest import require

PLOT = "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session

    try:
        sandbox = make_sandbox("local")
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    with Session(sandbox, base_dir=tmp_path_factory.mktemp("sessions")) as s:
        yield s


def _say(turn: Turn, text: str) -> None:
    """The text and block events the loop sends for this reply."""
    for event in stream_events([text]):
        turn.apply(event)


def _run(turn: Turn, session, exec_id: str, code: str):
    _say(turn, f"Running it.\n{RUN_START}```python\n{code}\n```{RUN_STOP}")
    turn.apply(ExecutionStarted(exec_id, "python", code))
    result = session.run_block("python", code, on_output=lambda s, t: turn.apply(OutputChunk(exec_id, s, t)))
    turn.apply(ExecutionFinished(exec_id, result))
    turn.apply(RoundFinished(1))
    return result


@pytest.mark.local_sandbox
def test_notebook_has_cells_outputs_and_plots(session):
    turn = Turn("print, plot, fail", 0)
    _run(turn, session, "p", "print(6*7)")
    _run(turn, session, "g", PLOT)
    _run(turn, session, "f", "1/0")
    _say(turn, f"All done. Not run: {RUN_START}```js\nconsole.log(1)\n```{RUN_STOP}")
    turn.apply(Done([], "end_of_turn"))
    text = notebook_json([turn], system_prompt="Be brief.", meta={"model": "tiny"})
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert [c.source for c in code_cells] == ["print(6*7)", PLOT, "1/0"]
    assert [c.execution_count for c in code_cells] == [1, 2, 3]
    assert code_cells[0].outputs[0] == {"output_type": "stream", "name": "stdout", "text": "42\n"}
    assert any("image/png" in o.get("data", {}) for o in code_cells[1].outputs), code_cells[1].outputs
    error = [o for o in code_cells[2].outputs if o.output_type == "error"]
    assert error and error[0].ename == "ZeroDivisionError"
    markdown = [c.source for c in notebook.cells if c.cell_type == "markdown"]
    assert markdown[0] == "**System:**\n\nBe brief." and markdown[1] == "**User:**\n\nprint, plot, fail"
    assert "**Assistant:**\n\nAll done. Not run:" in markdown
    assert "**Assistant:**\n\n```js\nconsole.log(1)\n```" in markdown  # a block that did not run: as written
    assert not any("API_RUN" in m for m in markdown)
    assert notebook.metadata["autocoder"] == {"model": "tiny"}


@pytest.mark.local_sandbox
def test_dialogue_record_is_one_json_line_with_full_results(session, tmp_path):
    turn = Turn("print", 0)
    result = _run(turn, session, "p", "print(6*7)")
    dialogue = [
        {"role": "user", "content": "print"},
        {"role": "assistant", "content": turn.raw_text()},
        execution_message([RunRecord("python", "print(6*7)", result)], "demo"),
    ]
    text = dialogue_jsonl("chat1", dialogue, [turn], meta={"model": "tiny"})
    assert text.endswith("\n") and text.count("\n") == 1
    record = json.loads(text)
    assert set(record) == {"id", "messages", "meta", "schema"} and record["id"] == "chat1"
    assert record["schema"] == SCHEMA_VERSION
    assert record["messages"] == dialogue
    assert record["meta"]["model"] == "tiny" and record["meta"]["source"] == "app"
    (execution,) = record["meta"]["executions"]
    assert execution["code"] == "print(6*7)" and execution["result"]["stdout"] == "42\n"
    assert execution["result"]["status"] == "ok"
    # The one reader reads it back, and the execution renders in the project's tokens style from its runs.
    path = tmp_path / "chat.jsonl"
    path.write_text(text, encoding="utf-8")
    (again,) = read_dialogues(path)
    assert again.messages == dialogue
    assert (
        render_dialogue(again.messages, style="tokens")[2]["content"] == f"{OUTPUT_START}\n42\n{OUTPUT_STOP}"
    )


def test_a_broken_dialogue_is_refused_with_one_line():
    with pytest.raises(DialogueError, match=r"^chat c1: message 0: role must be one of") as info:
        dialogue_jsonl("c1", [{"role": "robot", "content": "hi"}], [])
    assert "\n" not in str(info.value)


@pytest.mark.local_sandbox
def test_always_mode_blocks_are_one_code_cell_and_uploads_and_retries_are_said(session):
    """Issue 11 (problems 6 to 8): a bare fence that ran is its code cell only; the user cell names the
    uploads the model was told of; an answer Retry replaced is not in the notebook."""
    code = "x = 6 * 7"
    turn = Turn("set x", 0, uploads=["data.csv (12 B)"])
    turn.earlier = [[TextPart("An answer Retry replaced.", True)]]
    for event in stream_events([f"Sure.\n```python\n{code}\n```\n"], bare_python=True):
        turn.apply(event)
    turn.apply(ExecutionStarted("b", "python", code))
    turn.apply(ExecutionFinished("b", session.run_block("python", code)))
    turn.apply(RoundFinished(1))
    _say(turn, "x is set.")
    turn.apply(Done([], "end_of_turn"))
    notebook = nbformat.reads(notebook_json([turn]), as_version=4)
    nbformat.validate(notebook)
    assert [(c.cell_type, c.source) for c in notebook.cells] == [
        ("markdown", f"**User:**\n\n{uploads_text(['data.csv (12 B)'])}\n\nset x"),
        ("markdown", "**Assistant:**\n\nSure."),
        ("code", code),
        ("markdown", "**Assistant:**\n\nx is set."),
    ]
    assert notebook.cells[2].outputs == []  # it ran and showed nothing
