"""The same samples give the same verdicts in every real sandbox (docker runs a container per sample)."""

from __future__ import annotations

import pytest

from evaluation.scoring import make_eval_sandbox, score_problems
from interpreter.sandboxes.base import SandboxUnavailable
from tests.conftest import require
from tests.evaluation import samples as S


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("local", marks=pytest.mark.local_sandbox),
        pytest.param("docker", marks=pytest.mark.docker),
    ],
)
def test_verdicts_agree_across_sandboxes(name, humaneval_plus, humaneval, tmp_path):
    try:
        sandbox = make_eval_sandbox(name)
    except SandboxUnavailable as exc:
        require(False, f"{name} sandbox unavailable: {exc}")
    for benchmark in (humaneval_plus, humaneval):
        problems = benchmark.problems[:4]
        samples = S.canonical(problems[:2]) + [
            {"task_id": problems[2].task_id, "solution": S.raises(problems[2].entry_point)},
            {"task_id": problems[3].task_id, "solution": S.syntax_error(problems[3].entry_point)},
        ]
        report = score_problems(problems, samples, sandbox=sandbox, cache_dir=tmp_path / name, progress=False)
        assert [v[0].why for v in report.tasks.values()] == ["passed", "passed", "exception", "syntax error"]
        assert report.sandbox == name
