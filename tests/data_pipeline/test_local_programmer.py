"""The self-learning path's plumbing: an in-process transformers model as the programmer (hf backend).

The tiny trained model (tests/fixtures/tiny_models.py) answers the prompt "print" with a python block that
prints 42 and, after its result, "Done."; the scripted teacher is the questioner over HTTP. Its attempt has
no tests, so the item is rejected for that reason after its one attempt, with the model's block really run.
"""

from __future__ import annotations

import shutil

import pytest

from data_pipeline.cli import main
from data_pipeline.prompts import PROMPT_DIR
from interpreter.protocol import RUN_START
from tests.data_pipeline.conftest import generate_args, read_records, write_seeds
from tests.fixtures.tiny_models import tiny_autocoder_path  # noqa: F401 (pytest fixture)

pytestmark = [pytest.mark.model, pytest.mark.local_sandbox, pytest.mark.slow]


def test_tiny_model_as_programmer(tmp_path, teacher, local_sandbox_ok, tiny_autocoder_path):  # noqa: F811
    # The tiny model knows a few system prompts; a prompt folder of one's own pins the one it was trained on.
    prompts = tmp_path / "prompts"
    shutil.copytree(PROMPT_DIR, prompts)
    (prompts / "programmer_system.v2.md").write_text("You are AutoCoder, a helpful code assistant.\n")
    seeds = write_seeds(tmp_path / "seeds.jsonl", ("tiny",))
    out = tmp_path / "out"
    args = generate_args(seeds, out, teacher, "--max-attempts", "1", "--prompts", str(prompts))
    args += ["--programmer-backend", "hf", "--programmer-model", str(tiny_autocoder_path), "--dtype", "fp32"]
    assert main(args) == 0
    (record,) = read_records(out / "rejected.jsonl")
    meta = record["meta"]
    assert (
        meta["programmer_model"] == str(tiny_autocoder_path) and meta["questioner_model"] == "teacher-model"
    )
    assert meta["prompt_versions"]["programmer_system"].startswith("v2+")
    assert meta["reason"] == "not verified after 1 attempts: no tests"
    messages = record["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "execution", "assistant"]
    assert messages[0]["content"] == "print"
    assert f"{RUN_START}```python\nprint(6*7)" in messages[1]["content"]
    assert messages[2]["runs"][0]["stdout"] == "42\n" and messages[3]["content"] == "Done."
    assert meta["usage"][str(tiny_autocoder_path)]["calls"] == 2
