"""The chat task suite (benchmarks/chat_tasks.py) runs with the stand-in model and reports its rate.

A subset of five tasks (one per kind: arithmetic, a string, a list sort, a plot, a CSV summary) keeps the
CI time to a few minutes on CPU; `python -m benchmarks.chat_tasks` runs all twenty. The rate is printed,
never asserted: the test fails only when the suite itself breaks (a task that cannot be scored, a loop
error, the few-shot examples leaking into the dialogue the chat keeps).
"""

from __future__ import annotations

import argparse

import pytest

from tests.conftest import require_no_gpu

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.local_sandbox]

SUBSET = [1, 8, 12, 17, 19]  # 17 * 23; reverse a string; sort a list; plot a sine wave; mean of a CSV column


def test_task_definitions_score_right_and_wrong_output(tmp_path):
    from benchmarks.chat_tasks import TASKS, number

    assert len(TASKS) == 20
    assert (
        number(12).search("12.0\n")
        and number(12).search("The answer: 12")
        and number(391).search("17*23=391")
    )
    assert not number(12).search("120") and not number(12).search("1.12") and not number(5).search("5.5")
    # The answer is the last number printed: a listing that merely contains it does not count.
    assert not number(18).search("[18, 7, 12]\n") and not number(12).search("12\n13\n")
    largest = next(t for t in TASKS if "largest" in t.prompt)
    assert largest.passed(["[4, 18]\n", "18\n"], tmp_path) and not largest.passed(["18\n4", "7\n"], tmp_path)
    png = tmp_path / "sine.png"
    plot = next(t for t in TASKS if t.file == "sine.png")
    assert not plot.passed([], tmp_path)
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 16)
    assert plot.passed([], tmp_path)


def test_standin_runs_the_suite_through_the_app_loop(capsys):
    require_no_gpu("this host has a GPU: the default model is AutoCoder itself, not the stand-in")
    from app.standin_prompt import example_messages
    from benchmarks.chat_tasks import TASKS, run_suite, summary
    from interpreter.protocol import RUN_START
    from llm.select import load_standin

    backend = load_standin("the test asks for it")
    args = argparse.Namespace(
        sandbox="local", max_rounds=3, execution_mode=None, max_new_tokens=None, verbose=True
    )
    lines: list[str] = []
    outcomes = run_suite(backend, args, SUBSET, report=lines.append)
    with capsys.disabled():
        print("\n" + "\n".join(lines) + f"\nstand-in on tasks {SUBSET}: {summary(outcomes)}")
    assert [o.number for o in outcomes] == SUBSET
    for outcome in outcomes:
        assert not outcome.reason.startswith("error"), outcome.reason  # the suite broke, not the model
        assert outcome.seconds > 0
        # The few-shot examples never reach the dialogue the chat keeps: it starts with the task itself.
        assert outcome.dialogue[0] == {"role": "user", "content": TASKS[outcome.number - 1].prompt}
    assert RUN_START in "".join(m["content"] for m in example_messages())


@pytest.mark.local_sandbox
def test_suite_runs_against_an_openai_compatible_server(openai_server, capsys):
    # `--backend openai` through the benchmark's own command line, against the tests' real-HTTP server
    # scripted to answer like AutoCoder: a block in the execution tokens, then (after the result) a sentence.
    from benchmarks.chat_tasks import main
    from interpreter.protocol import RUN_START, RUN_STOP

    code = {"Compute 17 * 23.": "print(17 * 23)", "Reverse the string 'hello world'.": "print('hello'[::-1])"}

    def reply(body: dict) -> list[str]:
        last = body["messages"][-1]["content"]
        if last in code:
            return ["I will compute it.\n", f"{RUN_START}```python\n{code[last]}\n```", RUN_STOP]
        return ["Done."]

    openai_server.reply_for = reply
    argv = ["--backend", "openai", "--base-url", openai_server.base_url, "--model", "tiny-autocoder"]
    assert main([*argv, "--api-key", "test-key", "--sandbox", "local", "--tasks", "1,8"]) == 0
    out = capsys.readouterr().out
    # Task 1's code prints 391; task 8's prints "olleh", not the reversed sentence: one pass, one fail.
    assert "task  1 pass" in out and "task  8 FAIL" in out and "success rate 1/2" in out
    assert len(openai_server.requests) == 4  # per task: the block, then the sentence after its result
