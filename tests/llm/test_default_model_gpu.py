"""The default-model path on a GPU host: `load_backend("hf", None)` loads AutoCoder, not the stand-in.

These tests run only where a GPU is present (tests.conftest.require_gpu): CI machines have none, so there
they skip with the reason, as on any GPU-less machine; AUTOCODER_EXPECT_GPU=1 makes a missing GPU a failure.
The stand-in's tests (test_standin.py) skip on a GPU host in turn.

The real 6.7B weights are not here (no hub): a copy of the tiny test model is placed in a private hub cache
under the default model's id, so the path the app takes is exercised for real (hub cache lookup, GPU
placement, dtype, no notice), and with an empty cache the documented fallback (stand-in, saying why).
Each case runs in a subprocess because huggingface_hub reads its cache location when first imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llm.models import DEFAULT_MODEL
from tests.conftest import require_gpu

pytestmark = [pytest.mark.model, pytest.mark.slow]

LOAD_DEFAULT = """
import json, torch
from llm.base import GenerationParams, StreamStats
from llm.select import load_backend
backend = load_backend("hf", None)
stats = StreamStats()
text = "".join(backend.stream([{"role": "user", "content": "hello"}], GenerationParams(max_new_tokens=8),
                               stats=stats))
print(json.dumps({
    "notice": backend.notice,
    "model_id": backend.model_id,
    "speaks_execution_tokens": backend.speaks_execution_tokens,
    "device": backend.model.device.type,
    "dtype": str(next(backend.model.parameters()).dtype),
    "bf16": torch.cuda.is_bf16_supported(),
    "generated": stats.generated_tokens,
    "text": text,
}))
"""


def hub_cache_with(repo_id: str, model_folder: Path | None, cache: Path) -> Path:
    """A huggingface_hub cache (models--owner--name/refs/main -> snapshots/<commit>) holding model_folder."""
    cache.mkdir(parents=True, exist_ok=True)
    if model_folder is not None:
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        commit = "0" * 40
        shutil.copytree(model_folder, repo / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
    return cache


def load_default(cache: Path) -> dict:
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_DEFAULT], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_hub_cache_layout_resolves_to_the_copied_model(tiny_autocoder_path, tmp_path):
    # Premise of the GPU test below, checked on every host: the private cache is found as the default model.
    cache = hub_cache_with(DEFAULT_MODEL, tiny_autocoder_path, tmp_path / "hub")
    script = (
        "import json\nfrom llm.hf_loading import resolve_model\n"
        f"print(json.dumps(resolve_model({DEFAULT_MODEL!r})))"
    )
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder, local_only = json.loads(proc.stdout)
    assert local_only is True and Path(folder).parent.parent.name == "models--Bin12345--AutoCoder_S_6.7B"
    assert (Path(folder) / "config.json").read_text() == (tiny_autocoder_path / "config.json").read_text()


def test_gpu_host_loads_the_default_model_on_the_gpu_without_a_notice(tiny_autocoder_path, tmp_path):
    require_gpu("no GPU here: the default model (AutoCoder on a GPU) is not loaded on this host")
    got = load_default(hub_cache_with(DEFAULT_MODEL, tiny_autocoder_path, tmp_path / "hub"))
    assert got["notice"] == "" and got["model_id"] == DEFAULT_MODEL
    assert got["speaks_execution_tokens"] is True
    assert got["device"] == "cuda"
    assert got["dtype"] == ("torch.bfloat16" if got["bf16"] else "torch.float16")
    assert got["generated"] > 0 and got["text"]


def test_gpu_host_without_a_copy_or_hub_falls_back_to_the_standin_and_says_why(tmp_path):
    require_gpu("no GPU here: without one the stand-in is chosen for 'no GPU' (test_standin.py)")
    got = load_default(hub_cache_with(DEFAULT_MODEL, None, tmp_path / "empty-hub"))
    assert "stand-in" in got["notice"] and "hub cannot be reached" in got["notice"]
    assert DEFAULT_MODEL in got["notice"] and "no GPU" not in got["notice"]
    assert got["speaks_execution_tokens"] is False
