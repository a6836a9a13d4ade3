"""The stand-in's few-shot dialogues (app.standin_prompt) through the real loop, and the log wrapper.

The backend here is a recorder that answers a fixed text (no model): what is checked is what the model is
shown, what the chat keeps, and what the app logs, not the model's skill (benchmarks/chat_tasks.py).
"""

from __future__ import annotations

import ast
import logging
import re

import pytest

from app.activity_log import logged
from app.standin_prompt import (
    EXAMPLES_SHOWN,
    REPLY_PREFIX,
    STANDIN_SYSTEM,
    choose_examples,
    data_lines,
    example_messages,
    question_kind,
    reply_prefix,
    with_examples,
)
from interpreter.loop import Done, LoopConfig, run_loop
from interpreter.protocol import RUN_START, RUN_STOP, detect_blocks
from llm.base import GenerationParams
from tests.conftest import require


class Recorder:
    """Answers `replies` in turn (the last one again when they run out), as an HF backend would stream
    them: a reply prefix first, then the text after it."""

    name = "recorder"

    def __init__(self, *replies: str):
        self.replies = list(replies)
        self.seen: list[list[dict]] = []
        self.prefixes: list[str] = []

    def stream(self, messages, params, cancel=None, stats=None, *, reply_prefix=""):
        self.seen.append(messages)
        self.prefixes.append(reply_prefix)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if reply_prefix:
            yield reply_prefix
        yield reply


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


def _run(loop, dialogue, backend, session=None):
    config = LoopConfig(generation=GenerationParams(), execution_mode="always")
    return list(loop(backend, dialogue, session, config))


def test_examples_are_autocoder_dialogues_with_runnable_blocks():
    messages = example_messages()
    assert [m["role"] for m in messages[:4]] == ["user", "assistant", "execution", "assistant"]
    for call, result in zip(messages[1::4], messages[2::4], strict=True):
        (block,) = detect_blocks(call["content"])  # one block in the execution tokens, runnable
        assert block.wrapped and not block.problem and call["content"].endswith(RUN_STOP)
        assert RUN_START in call["content"] and result["runs"][0]["code"] == block.code
        assert result["content"].startswith("result.stdout:")  # as the loop renders a real run


@pytest.mark.local_sandbox
def test_model_sees_the_examples_and_the_chat_keeps_only_its_own_dialogue(session):
    call = f"print(2 + 2)\n```{RUN_STOP}"
    backend = Recorder(call, "The answer is 4.")
    dialogue = [{"role": "user", "content": "What is 2 + 2?"}]
    events = _run(with_examples(run_loop), dialogue, backend, session)
    seen = backend.seen[0]
    assert seen[0] == {"role": "system", "content": STANDIN_SYSTEM}
    chosen = example_messages(dialogue[0]["content"])
    assert [m["content"] for m in seen[1:-1]] == [m["content"] for m in chosen] and seen[-1] == dialogue[0]
    assert len(seen) == 1 + 4 * EXAMPLES_SHOWN + 1
    assert any(RUN_START in m["content"] for m in seen)
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "end_of_turn"
    assert [m["role"] for m in done.messages] == ["user", "assistant", "execution", "assistant"]
    assert done.messages[0] == dialogue[0]
    assert done.messages[1]["content"] == f"{REPLY_PREFIX}# What is 2 + 2?\n{call}"
    assert done.messages[-1] == {"role": "assistant", "content": "The answer is 4."}

    # A chat's own system prompt replaces the stand-in's and stays first in what the chat keeps.
    backend = Recorder(call, "Hi.")
    mine = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"}]
    done = _run(with_examples(run_loop), mine, backend, session)[-1]
    assert backend.seen[0][0] == mine[0] and STANDIN_SYSTEM not in str(backend.seen[0])
    assert done.messages[:2] == mine


def test_activity_log_says_one_line_per_message(caplog):
    caplog.set_level(logging.INFO, logger="app")
    events = _run(logged(run_loop), [{"role": "user", "content": "Hi"}], Recorder("Hello."))
    assert isinstance(events[-1], Done)
    lines = [r.getMessage() for r in caplog.records if r.name == "app"]
    assert (
        len(lines) == 1
        and "message answered (end_of_turn)" in lines[0]
        and "1 round, 0 executions" in lines[0]
    )


@pytest.mark.local_sandbox
def test_first_reply_starts_inside_a_block_and_the_answer_after_the_run_is_the_models(session):
    backend = Recorder(f"print(2 + 3)\n```{RUN_STOP}", "2 + 3 is 5.")
    dialogue = [{"role": "user", "content": "Add 2 and 3."}]
    done = _run(with_examples(run_loop), dialogue, backend, session)[-1]
    # Seeded once, with the block's opening and the question as a comment; the answer after the result is free.
    assert backend.prefixes == [f"{REPLY_PREFIX}# Add 2 and 3.\n", ""] == [reply_prefix("Add 2 and 3."), ""]
    assert isinstance(done, Done) and done.reason == "end_of_turn"
    user, call, execution, answer = done.messages
    assert call == {
        "role": "assistant",
        "content": f"{REPLY_PREFIX}# Add 2 and 3.\nprint(2 + 3)\n```{RUN_STOP}",
    }
    assert execution["role"] == "execution" and execution["runs"][0]["stdout"] == "5\n"
    assert answer == {"role": "assistant", "content": "2 + 3 is 5."}
    # A dialogue that does not end with the user's message (nothing to answer) is not seeded.
    backend = Recorder("Hello.")
    _run(with_examples(run_loop), [*dialogue, {"role": "assistant", "content": "Hi."}], backend)
    assert backend.prefixes == [""]


def _shape(prompt: str) -> str:
    """A prompt without its data (numbers, quoted strings, file names): what task it is."""
    prompt = re.sub(r"'[^']*'|\S+\.(?:png|csv)|\[[^\]]*\]|\([^)]*\)|\d+", "", prompt.lower())
    return " ".join(re.findall(r"[a-z]+|[-+*/%]+", prompt))


def test_examples_are_not_the_benchmarks_tasks_with_other_data():
    # The few-shot examples teach the format; the task suite measures the model (see the module docstring).
    # Each example was chosen by hand to be another operation than every task; this catches the mechanical
    # slips: a task reworded with other data (the earlier examples "reverse 'python'", "sort descending",
    # "mean of the age column" and "12 * 34 + 5" score 100, 95, 83 and 90 here), a shared answer or file.
    from rapidfuzz import fuzz

    from benchmarks.chat_tasks import TASKS

    messages = example_messages()
    questions = [m["content"] for m in messages[0::4]]
    printed = [m["runs"][0]["stdout"] for m in messages[2::4]]
    for task in TASKS:
        for question, output in zip(questions, printed, strict=True):
            assert fuzz.ratio(_shape(question), _shape(task.prompt)) < 80, (question, task.prompt)
            assert not (task.expect and task.expect.search(output)), (question, task.prompt)
            assert not (task.file and task.file in question)
    assert _shape("Reverse the string 'python'.") == _shape("Reverse the string 'hello world'.")


def test_a_question_gets_the_examples_nearest_it_the_nearest_last():
    plot = choose_examples("Plot a histogram of [1, 2, 2] and save it as hist.png.")
    assert len(plot) == EXAMPLES_SHOWN and "plt" in plot[-1][1] and "plt" in plot[-2][1]
    csv = choose_examples("The file items.csv has columns name and weight. Print the heaviest weight.")
    assert "df[" in csv[-1][1] and "df" in csv[-2][1]
    assert [question_kind(e[0]) for e in csv[-2:]] == ["csv", "csv"]
    # A list question gets the list examples, a text question the string ones, whatever their words.
    assert {question_kind(e[0]) for e in choose_examples("Print the mode of [1, 2, 2].")} == {"list"}
    assert {question_kind(e[0]) for e in choose_examples("Is 'level' a palindrome?")} == {"text"}
    # A question like no example gets the general computations (the pool's last entries).
    assert [e[0] for e in choose_examples("Compute 3 + 4.")][-1].startswith("What is the greatest common")
    # Multi-line questions become a one-line comment.
    assert reply_prefix("Add 2 and 3.\nThen print it.") == f"{REPLY_PREFIX}# Add 2 and 3.\n"


def test_the_questions_data_is_bound_to_names_before_the_models_code():
    assert data_lines("Sort the list [5, 3, 9] in ascending order.") == "numbers = [5, 3, 9]\n"
    assert data_lines("Join ['a', 'b'] with dashes.") == "items = ['a', 'b']\n"
    # The longest quoted string is the text; an apostrophe is not a quote.
    assert data_lines("How often does 's' appear in 'mississippi'?") == "text = 'mississippi'\n"
    assert data_lines("Don't print the user's name.") == ""
    assert data_lines("The file my-data.csv has a column x. Print its sum.") == (
        "import pandas as pd\ndf = pd.read_csv('my-data.csv')\n"
    )
    assert data_lines("Draw a histogram of [1, 2, 2] and save it as out.png.") == (
        "import matplotlib.pyplot as plt\nimport numpy as np\npath = 'out.png'\nnumbers = [1, 2, 2]\n"
    )
    # Not data: a bracket that does not parse, no quotes, a bare number.
    assert data_lines("Compute 17 * 23 [approximately].") == ""
    # Hostile-looking text stays data: repr() quotes it, nothing of it becomes code.
    line = data_lines("Reverse 'x\\'); import os; ('y'.")
    assert line.startswith("text = ") and ast.literal_eval(line[len("text = ") :]) == "x\\"
    prefix = reply_prefix("Reverse the string 'abc'.")
    assert prefix == f"{REPLY_PREFIX}# Reverse the string 'abc'.\ntext = 'abc'\n"


def test_each_example_prints_what_it_says(tmp_path):
    # The examples' results are written by hand: run each example's code (data lines included) and
    # compare, so a model is never shown a result its code would not print.
    import os
    import subprocess
    import sys

    (tmp_path / "cities.csv").write_text("city,population\n" + "x,1\n" * 7)
    (tmp_path / "scores.csv").write_text("student,score\nana,41\nbo,77\n")
    (tmp_path / "trips.csv").write_text("city,km\nlyon,812\nbonn,3\n")
    messages = example_messages()
    for execution in messages[2::4]:
        run = execution["runs"][0]
        done = subprocess.run(
            [sys.executable, "-c", run["code"]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "MPLBACKEND": "Agg"},
        )
        assert done.returncode == 0 and done.stdout == run["stdout"], (run["code"], done.stdout, done.stderr)
