"""Running `python -m training` in subprocesses for the training tests: the command, its environment,
and the progress lines it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.training.tiny_base import EOT, cached_tiny_base

ROOT = Path(__file__).resolve().parents[2]
STEP_LINE = re.compile(
    r"^step (\d+)/(\d+) epoch \S+ loss (\S+) lr (\S+) tokens/s (\S+) ETA (\S+)$", re.MULTILINE
)


def sft_command(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "training", "sft",
        "--base", str(cached_tiny_base()), "--data", str(data), "--out", str(out),
        "--chat-template", "deepseek_coder", "--end-of-turn", EOT,
        "--micro-batch", "8", "--grad-accum", "1", "--lr-scheduler", "constant", "--logging-steps", "10",
        "--max-length", "256", *extra,
    ]  # fmt: skip


def env() -> dict:
    # One thread per process: these matrices are tiny and the CI machine is shared.
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(ROOT)}


def run_cli(args: list[str], timeout: int = 600) -> str:
    run = subprocess.run(args, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout


def losses(log: str) -> list[float]:
    return [float(m.group(3)) for m in STEP_LINE.finditer(log)]
