"""The paper's configuration shrunk to CPU: DeepSpeed ZeRO-3 with 2 processes, started by the `deepspeed`
launcher and by the SLURM batch script on a real single-node SLURM (`srun` inside training/slurm/sft.sbatch)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require
from tests.training.cli_runs import ROOT, env, losses, sft_command
from tests.training.tiny_base import cached_tiny_base, training_records, write_jsonl

pytestmark = [pytest.mark.model, pytest.mark.slow]

ZERO3 = str(ROOT / "training" / "configs" / "deepspeed_zero3.json")
STEPS = "30"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _zero3_args(data: Path, out: Path) -> list[str]:
    args = sft_command(
        data, out, "--max-steps", STEPS, "--lr", "5e-3", "--save-steps", "1000", "--deepspeed", ZERO3
    )
    args = args[args.index("sft") + 1 :]  # the launchers' commands name the sub-command themselves
    args[args.index("--micro-batch") + 1] = "4"  # 2 ranks x 4 = the single-process run's 8 per step
    return args


def _check_trained(out: Path, log: str) -> None:
    """Both ranks trained one model: the loss fell, and the weights ZeRO-3 gathered on save are that model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    values = losses(log)
    assert values and values[-1] < values[0] / 2, values
    assert "max deviation 0" in log  # new rows were the mean after the gathered (partitioned) update
    tok = AutoTokenizer.from_pretrained(out)
    messages = training_records(copies=1)[0]["messages"]
    from training.encode import EncodeOptions, Encoder

    encoded = Encoder(tok, EncodeOptions()).encode(messages)
    ids, labels = torch.tensor([encoded.input_ids]), torch.tensor([encoded.labels])
    with torch.no_grad():
        trained = AutoModelForCausalLM.from_pretrained(out)(input_ids=ids, labels=labels).loss.item()
        base = AutoModelForCausalLM.from_pretrained(cached_tiny_base())
        assert base.config.vocab_size >= len(tok)  # padded rows: the new ids fit without a resize
        before = base(input_ids=ids, labels=labels).loss.item()
    assert trained < before / 2, (trained, before)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "dialogues.jsonl", training_records())


def test_deepspeed_launcher_zero3_two_processes(tmp_path, data):
    launcher = Path(sys.executable).parent / "deepspeed"
    require(launcher.exists(), "the deepspeed launcher is not installed")
    out = tmp_path / "zero3"
    cmd = [
        str(launcher),
        "--num_gpus",
        "2",
        "--master_port",
        str(_free_port()),
        "--module",
        "training",
        "sft",
    ]
    run = subprocess.run(
        cmd + _zero3_args(data, out), cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert run.stdout.count("dialogues: 16 kept whole") == 1  # printed by rank 0 only
    _check_trained(out, run.stdout)


def _start_slurm() -> None:
    script = ROOT / "scripts" / "slurm_single_node.sh"
    try:
        result = subprocess.run([str(script), "start"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        require(False, f"single-node SLURM could not start: {exc}")
        return
    require(result.returncode == 0, f"single-node SLURM could not start: {result.stderr.strip()[-500:]}")


def test_slurm_sbatch_zero3_through_srun(tmp_path, data):
    require(os.geteuid() == 0 or shutil.which("sudo") is not None, "starting SLURM daemons needs root")
    _start_slurm()
    out = tmp_path / "slurm"
    log = tmp_path / "job.log"
    cmd = [
        "sbatch", "--wait", "--nodes=1", "--ntasks-per-node=2", "--gpus-per-node=0", "--cpus-per-task=1",
        "--time=20", f"--output={log}", "--job-name=autocoder-sft-test",
        f"--export=ALL,PYTHON={sys.executable},OMP_NUM_THREADS=1,MASTER_PORT={_free_port()}",
        str(ROOT / "training" / "slurm" / "sft.sbatch"), *_zero3_args(data, out),
    ]  # fmt: skip
    run = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=900)
    text = log.read_text() if log.exists() else ""
    assert run.returncode == 0, run.stderr[-2000:] + text[-4000:]
    assert "1 node(s), 2 process(es)" in text
    assert text.count("dialogues: 16 kept whole") == 1
    _check_trained(out, text)
