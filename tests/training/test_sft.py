"""`python -m training sft` end to end on CPU with a tiny base model: it learns the execution block, the
chat's hf backend loads the result, and the interpreter loop runs the block in the sandbox and goes on;
LoRA and QLoRA adapters merge into full models; a run killed with SIGKILL resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.training.cli_runs import ROOT, STEP_LINE, env, losses, run_cli, sft_command
from tests.training.tiny_base import (
    EOT,
    FINAL,
    OUTPUT,
    PROMPT,
    REPLY,
    cached_tiny_base,
    training_records,
    write_jsonl,
)

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "dialogues.jsonl", training_records())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("sft") / "model"
    log = run_cli(sft_command(data, out, "--max-steps", "120", "--lr", "5e-3", "--save-steps", "1000"))
    return out, log


def test_loss_falls_and_progress_is_reported(trained):
    out, log = trained
    values = losses(log)
    assert len(values) >= 5
    assert values[-1] < values[0] / 10, values
    assert "dialogues: 16 kept whole" in log
    assert "tokens: 4 added" in log and "(no resize)" in log and "max deviation 0" in log
    last = list(STEP_LINE.finditer(log))[-1]
    assert last.group(1) == last.group(2) == "120" and float(last.group(5).replace(",", "")) > 0
    assert (out / "chat_template.jinja").read_text() == (
        ROOT / "training/templates/deepseek_coder.jinja"
    ).read_text()
    meta = json.loads((out / "autocoder_training.json").read_text())
    assert meta["render_style"] == "tokens" and meta["end_of_turn"] == EOT


def test_trained_model_writes_the_block_and_the_loop_runs_it(trained):
    from interpreter.loop import Done, ExecutionFinished, LoopConfig, run_loop
    from interpreter.sandboxes.base import Limits, SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session
    from llm.base import GenerationParams
    from llm.hf import HFBackend
    from llm.hf_loading import load_model_and_tokenizer

    out, _ = trained
    model, tokenizer, _ = load_model_and_tokenizer(str(out), quantize="none")
    backend = HFBackend(model, tokenizer, model_id=str(out))
    try:
        sandbox = make_sandbox("local", Limits(memory_mb=512, max_processes=64, cpus=1.0))
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    session = Session(sandbox, timeout_s=30)
    session.start()
    try:
        config = LoopConfig(generation=GenerationParams(max_new_tokens=80), render_style="tokens")
        events = list(run_loop(backend, [{"role": "user", "content": PROMPT}], session, config))
    finally:
        session.close()
    finished = [e for e in events if isinstance(e, ExecutionFinished)]
    assert len(finished) == 1 and finished[0].result.stdout == OUTPUT
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "end_of_turn"
    assistant = [m["content"] for m in done.messages if m["role"] == "assistant"]
    assert [a.strip() for a in assistant] == [REPLY, FINAL]


def test_resume_after_sigkill(tmp_path, data):
    out = tmp_path / "run"
    args = sft_command(
        data, out, "--max-steps", "60", "--lr", "5e-3", "--save-steps", "5", "--save-total-limit", "20"
    )
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 300
        while not (out / "checkpoint-5" / "trainer_state.json").exists():
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.safetensors").exists()  # it really died mid-run
    done = sorted(
        int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").exists()
    )
    assert done and done[-1] < 60
    # Without --resume the run refuses to overwrite the checkpoints.
    refused = subprocess.run(args, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--resume" in refused.stderr.strip().splitlines()[-1]
    log = run_cli([*args, "--resume"])
    assert f"resuming from {out / f'checkpoint-{done[-1]}'}" in log
    steps = [int(m.group(1)) for m in STEP_LINE.finditer(log)]
    assert steps and steps[0] > done[-1] and steps[-1] == 60
    state = json.loads((out / "checkpoint-60" / "trainer_state.json").read_text())
    assert state["global_step"] == 60
    # The resumed run went on from the checkpoint's state (optimizer, scheduler, data order), not from 0.
    assert [h["step"] for h in state["log_history"] if "loss" in h][0] <= done[-1]
    assert (out / "model.safetensors").exists()


def _logits(path_or_model, ids):
    import torch
    from transformers import AutoModelForCausalLM

    model = path_or_model
    if isinstance(path_or_model, str | Path):
        model = AutoModelForCausalLM.from_pretrained(path_or_model)
    with torch.no_grad():
        return model.eval()(input_ids=torch.tensor([ids])).logits


@pytest.mark.parametrize("kind", ["lora", "qlora"])
def test_adapter_trains_merges_and_reloads(tmp_path, data, kind):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if kind == "qlora":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            require(False, "bitsandbytes is not installed")
    out = tmp_path / kind
    log = run_cli(
        sft_command(data, out, f"--{kind}", "--max-steps", "40", "--lr", "1e-2", "--save-steps", "1000")
    )
    values = losses(log)
    assert values[-1] < values[0] / 2, values
    assert (
        "LoRA: " in log
        and (out / "adapter_config.json").exists()
        and not (out / "model.safetensors").exists()
    )
    merged = tmp_path / f"{kind}-merged"
    run_cli([sys.executable, "-m", "training", "merge", "--adapter", str(out), "--out", str(merged)])
    tokenizer = AutoTokenizer.from_pretrained(merged)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_dict=False
    )
    ids = ids + tokenizer(REPLY, add_special_tokens=False)["input_ids"]
    # The merged model computes what base + adapter computes (for QLoRA: the unquantized base + adapter).
    base = AutoModelForCausalLM.from_pretrained(cached_tiny_base())
    with_adapter = PeftModel.from_pretrained(base, str(out))
    assert torch.allclose(_logits(merged, ids), _logits(with_adapter, ids), atol=1e-4)
    assert not torch.allclose(_logits(merged, ids), _logits(cached_tiny_base(), ids), atol=1e-3)
    assert (merged / "chat_template.jinja").exists()
    from llm.hf import HFBackend
    from llm.hf_loading import load_model_and_tokenizer

    model, tok, _ = load_model_and_tokenizer(str(merged), quantize="none")
    HFBackend(model, tok)  # the chat accepts it (template, end-of-turn)
    assert tok.eos_token == EOT


def test_packing_run(tmp_path, data):
    out = tmp_path / "packed"
    log = run_cli(
        sft_command(data, out, "--packing", "--micro-batch", "2", "--max-steps", "20", "--lr", "5e-3")
        + ["--save-steps", "1000"]
    )
    assert re.search(r"packing: 16 dialogues in 4 rows; non-padding share \S+ packed vs \S+ padded", log), log
    values = losses(log)
    assert values[-1] < values[0] / 2, values
    assert (out / "model.safetensors").exists()
