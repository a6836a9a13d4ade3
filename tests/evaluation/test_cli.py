"""`python -m evaluation score` end to end, results.json contents, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from evaluation.cli import main
from evaluation.datasets import MBPP_PLUS_ENV
from tests.evaluation import samples as S
from tests.llm.backend_flags import check_hf_flags, check_openai_flags


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.local_sandbox
def test_score_command_writes_results_with_dataset_version_and_verdicts(humaneval_plus, tmp_path, capsys):
    problems = humaneval_plus.problems[:4]
    rows = S.canonical(problems[:3]) + [
        {"task_id": problems[3].task_id, "solution": S.raises(problems[3].entry_point)}
    ]
    samples = _write(tmp_path / "samples.jsonl", rows)
    code = main(
        [
            "score",
            "--benchmark",
            "humaneval+",
            "--samples",
            str(samples),
            "--cache-dir",
            str(tmp_path / "c"),
            "--no-progress",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["dataset"]["name"] == "HumanEval+" and results["dataset"]["version"] == "v0.1.10"
    assert len(results["dataset"]["sha256"]) == 64
    assert [s["name"] for s in results["scores"]] == ["HumanEval+ base tests", "HumanEval+"]
    assert all(s["dataset"] == "HumanEval+ v0.1.10" and s["pass@1"] == 0.75 for s in results["scores"])
    assert results["tasks"][problems[3].task_id]["samples"][0]["why"] == "exception"
    assert "ValueError" in results["tasks"][problems[3].task_id]["samples"][0]["detail"]
    assert results["verdicts"] == {"passed": 3, "exception": 1}
    assert "scoring the 4 of 164 tasks" in out.err
    score_lines = [line for line in out.out.splitlines() if line.startswith("HumanEval+")]
    assert len(score_lines) == 2 and all(
        "HumanEval+ v0.1.10" in line and "75.0" in line for line in score_lines
    )


def _one_line_error(args, capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_mbpp_plus_without_data_says_where_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(MBPP_PLUS_ENV, raising=False)
    samples = _write(tmp_path / "s.jsonl", [{"task_id": "Mbpp/2", "solution": ""}])
    err = _one_line_error(["score", "--benchmark", "mbpp+", "--samples", str(samples)], capsys)
    assert (
        "--mbpp-plus-file" in err and MBPP_PLUS_ENV in err and "github.com/evalplus/mbppplus_release" in err
    )


def test_bad_inputs_get_one_line_errors(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    missing = tmp_path / "nope.jsonl"
    assert "does not exist" in _one_line_error(
        ["score", "--benchmark", "humaneval", "--samples", str(missing)], capsys
    )
    foreign = _write(tmp_path / "f.jsonl", [{"task_id": "Mbpp/11", "solution": "x = 1"}])
    err = _one_line_error(["score", "--benchmark", "humaneval", "--samples", str(foreign)], capsys)
    assert "Mbpp/11" in err and "--benchmark" in err
    bad = _write(tmp_path / "b.jsonl", [{"task_id": "HumanEval/0"}])
    assert "solution" in _one_line_error(["score", "--benchmark", "humaneval", "--samples", str(bad)], capsys)
    greedy = ["run", "--benchmark", "humaneval", "--n-samples", "5", "--out", str(tmp_path / "o")]
    assert "--temperature" in _one_line_error(greedy, capsys)
    assert "--with-interpreter" in _one_line_error(
        ["run", "--benchmark", "humaneval", "--compare-plain", "--out", str(tmp_path / "o")], capsys
    )
    # Prompts never go to a public API by default.
    no_url = ["run", "--benchmark", "humaneval", "--backend", "openai", "--out", str(tmp_path / "o")]
    assert "--base-url" in _one_line_error(no_url, capsys)


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "evaluation", "run", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0
    for flag in (
        "--benchmark",
        "--with-interpreter",
        "--max-rounds",
        "--n-samples",
        "--workers",
        "--sandbox",
        "--limit",
    ):
        assert flag in out.stdout


@pytest.mark.local_sandbox
def test_score_limit_scores_the_first_k_tasks_of_a_bigger_samples_file(humaneval, tmp_path, capsys):
    samples = _write(tmp_path / "samples.jsonl", S.canonical(humaneval.problems[:5]))
    args = ["score", "--benchmark", "humaneval", "--samples", str(samples), "--limit", "2", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "o"), "--cache-dir", str(tmp_path / "c")]) == 0, (
        capsys.readouterr().err
    )
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert list(results["tasks"]) == ["HumanEval/0", "HumanEval/1"]
    assert results["scores"][0]["pass@1"] == 1.0


def without_timings(record):
    """A transcript minus how long each execution took (the one thing that differs between two runs)."""
    if isinstance(record, dict):
        return {k: without_timings(v) for k, v in record.items() if k != "duration_s"}
    if isinstance(record, list):
        return [without_timings(v) for v in record]
    return record


# -- backend flags (llm.options) and --concurrency ----------------------------------------------------


def _run_args(tmp_path, *argv):
    from evaluation.cli import _check_args, build_parser

    args = build_parser().parse_args(["run", "--benchmark", "humaneval", "--out", str(tmp_path / "o"), *argv])
    _check_args(args)
    return args


def test_shared_openai_flags_reach_the_backend(openai_server, tiny_autocoder_path, tmp_path):
    """Every backend flag of llm.options is accepted and passed through (--api-key, --tokenizer and
    --completions used to be dropped here)."""
    from evaluation.cli import _load_backend

    check_openai_flags(
        lambda argv: _run_args(tmp_path, *argv), _load_backend, openai_server, tiny_autocoder_path, tmp_path
    )


@pytest.mark.model
def test_shared_hf_flags_reach_the_backend(tiny_autocoder_path, tmp_path):
    from evaluation.cli import _load_backend

    check_hf_flags(lambda argv: _run_args(tmp_path, *argv), _load_backend, tiny_autocoder_path)


def test_concurrency_default_follows_the_backend(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert _run_args(tmp_path).concurrency == 1  # in-process hf generates one reply at a time
    assert _run_args(tmp_path, "--backend", "openai").concurrency == 8
    assert _run_args(tmp_path, "--backend", "openai", "--concurrency", "3").concurrency == 3


def test_bad_backend_and_concurrency_flags_get_one_line_errors(tmp_path, capsys):
    run = ["run", "--benchmark", "humaneval", "--out", str(tmp_path / "o")]
    assert "--concurrency must be at least 1" in _one_line_error([*run, "--concurrency", "0"], capsys)
    assert "only apply to --backend openai" in _one_line_error([*run, "--api-key", "k"], capsys)
    completions = [*run, "--backend", "openai", "--base-url", "http://x/v1", "--completions"]
    assert "--completions needs --tokenizer" in _one_line_error(completions, capsys)


@pytest.mark.local_sandbox
@pytest.mark.slow
@pytest.mark.parametrize("interpreter", [False, True], ids=["plain", "with-interpreter"])
def test_concurrent_run_writes_what_a_serial_run_writes(
    openai_server, humaneval, tmp_path, capsys, interpreter
):
    """`evaluation run --concurrency 4` against the OpenAI-compatible server: same samples, same transcripts,
    same order as --concurrency 1 (with the interpreter: real loop, real sandboxed kernels)."""
    from tests.evaluation.scripted_solver import canonical_solver

    openai_server.reply_for = canonical_solver(humaneval.problems, run_first=interpreter)
    openai_server.latency_s = 0.1
    base = ["run", "--benchmark", "humaneval", "--limit", "5", "--backend", "openai", "--no-progress"]
    base += ["--base-url", openai_server.base_url, "--api-key", openai_server.api_key]
    base += ["--cache-dir", str(tmp_path / "cache")] + (["--with-interpreter"] if interpreter else [])
    outputs = {}
    for concurrency in (1, 4):
        openai_server.max_in_flight = 0
        out = tmp_path / f"c{concurrency}"
        assert main([*base, "--concurrency", str(concurrency), "--out", str(out)]) == 0, (
            capsys.readouterr().err
        )
        # serial: one request at a time; concurrent: several at once
        assert (openai_server.max_in_flight > 1) == (concurrency > 1)
        results = json.loads((out / "results.json").read_text())
        outputs[concurrency] = (
            (out / "samples.jsonl").read_text(),
            [
                without_timings(json.loads(line))
                for line in (out / "transcripts.jsonl").read_text().splitlines()
            ],
            results["scores"],
        )
    assert outputs[4] == outputs[1]
    samples = [json.loads(line) for line in outputs[1][0].splitlines()]
    assert [s["task_id"] for s in samples] == [f"HumanEval/{i}" for i in range(5)]
    assert outputs[1][2][0]["pass@1"] == 1.0  # canonical solutions: the scoring saw real answers
    if interpreter:
        assert any(
            m["role"] == "execution" and "checked" in m["content"] for m in outputs[1][1][0]["messages"]
        )
