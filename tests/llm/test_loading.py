"""Loading through load_backend: quantization on CPU, memory policy, and one-line errors."""

import shutil

import pytest

from interpreter.protocol import RUN_STOP
from llm.base import BackendError, GenerationParams, StreamStats
from llm.hf_loading import (
    HubUnreachable,
    ModelNotFound,
    count_parameters,
    needed_bytes,
    pick_quantization,
    resolve_model,
)
from llm.models import DEFAULT_MODEL
from llm.select import load_backend
from tests.fixtures.tiny_models import SCENARIOS

GIB = 1024**3


def generate(backend, prompt="print"):
    stats = StreamStats()
    text = "".join(
        backend.stream([{"role": "user", "content": prompt}], GenerationParams(stop=[RUN_STOP]), stats=stats)
    )
    return text, stats


@pytest.mark.model
@pytest.mark.parametrize(("quantize", "layer_class"), [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_bitsandbytes_quantized_tiny_model_generates_on_cpu(tiny_autocoder_path, quantize, layer_class):
    import torch

    backend = load_backend("hf", str(tiny_autocoder_path), quantize=quantize)
    q_proj = backend.model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == layer_class
    assert q_proj.weight.dtype in (torch.uint8, torch.int8)  # really quantized
    text, stats = generate(backend)
    assert stats.generated_tokens > 5
    # The script survives quantization of a model this confident.
    assert text == SCENARIOS["print"].reply


@pytest.mark.model
def test_dtype_choice_is_applied(tiny_autocoder_path):
    import torch

    backend = load_backend("hf", str(tiny_autocoder_path), dtype="bf16")
    assert backend.model.dtype == torch.bfloat16
    assert load_backend("hf", str(tiny_autocoder_path)).model.dtype == torch.float32  # auto on CPU


def test_missing_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(ModelNotFound, match="does not exist") as err:
        load_backend("hf", str(tmp_path / "no-such-model"))
    assert "\n" not in str(err.value)


def test_folder_without_a_model_is_a_one_line_error(tmp_path):
    with pytest.raises(ModelNotFound, match="no config.json"):
        load_backend("hf", str(tmp_path))


def test_broken_model_folder_is_a_one_line_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(BackendError, match="cannot load") as err:
        load_backend("hf", str(tmp_path))
    assert "\n" not in str(err.value)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_hub_id_offline_without_local_copy_is_a_one_line_error(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachable, match="no local copy") as err:
        load_backend("hf", "someone/some-model")
    assert "\n" not in str(err.value)


def test_explicit_default_model_never_falls_back(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachable):
        load_backend("hf", DEFAULT_MODEL)


def test_hub_unreachable_online_mode_is_a_one_line_error(empty_hub_cache, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # This machine reaches no hub; were it online, the made-up id would be "not found" instead.
    with pytest.raises((HubUnreachable, ModelNotFound)) as err:
        resolve_model("autocoder-tests/definitely-not-a-model")
    assert "\n" not in str(err.value)


@pytest.mark.model
def test_hub_id_with_a_local_copy_loads_offline(empty_hub_cache, tiny_autocoder_path, monkeypatch):
    # The hub cache's own layout: refs/main names a snapshot folder holding the files.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = "0" * 40
    repo = empty_hub_cache / "models--autocoder-tests--tiny"
    shutil.copytree(tiny_autocoder_path, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    backend = load_backend("hf", "autocoder-tests/tiny")
    assert generate(backend)[0] == SCENARIOS["print"].reply


def test_quantize_auto_policy_from_parameter_count_and_free_memory():
    params = 6_700_000_000
    assert pick_quantization("auto", True, params, 80 * GIB) is None  # bf16 fits an 80 GB card
    assert pick_quantization("auto", True, params, 12 * GIB) == "4bit"  # a 12 GB card needs 4-bit
    assert pick_quantization("auto", False, None, None) is None  # CPU: no quantization
    assert pick_quantization("4bit", False, None, None) == "4bit"  # bitsandbytes runs on CPU too
    assert pick_quantization("none", True, params, 80 * GIB) is None
    with pytest.raises(BackendError, match="--backend openai") as err:
        pick_quantization("auto", True, params, 3 * GIB)
    assert "\n" not in str(err.value)
    with pytest.raises(BackendError, match="not enough GPU memory.*--quantize 4bit"):
        pick_quantization(None, True, params, 12 * GIB)
    assert needed_bytes(params, "4bit") < needed_bytes(params, "8bit") < needed_bytes(params, None)


def test_unknown_choices_are_one_line_errors(tiny_autocoder_path):
    with pytest.raises(BackendError, match="unknown quantization"):
        pick_quantization("3bit", False, None, None)
    with pytest.raises(BackendError, match="unknown dtype"):
        load_backend("hf", str(tiny_autocoder_path), dtype="fp8")
    with pytest.raises(BackendError, match="unknown backend"):
        load_backend("vllm")


@pytest.mark.model
def test_parameter_count_comes_from_the_config_alone(tiny_autocoder_path):
    backend = load_backend("hf", str(tiny_autocoder_path))
    real = sum(p.numel() for p in backend.model.parameters())
    assert count_parameters(str(tiny_autocoder_path), True) == real


def _policy_in_child(code: str, env_policy: str | None) -> list:
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_policy is not None:
        env["OMP_WAIT_POLICY"] = env_policy
    script = f"import json, os\n{code}\nprint(json.dumps([passive, os.environ.get('OMP_WAIT_POLICY')]))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_openmp_threads_wait_passively_unless_torch_came_first_or_the_user_chose():
    load = "from llm.hf_loading import prefer_passive_openmp\npassive = prefer_passive_openmp()\nimport torch"
    assert _policy_in_child(load, None) == [True, "PASSIVE"]
    # Too late once torch (and its libgomp) is loaded: nothing is pretended.
    late = "import torch\nfrom llm.hf_loading import prefer_passive_openmp\npassive = prefer_passive_openmp()"
    assert _policy_in_child(late, None) == [False, None]
    # The user's own choice stands.
    assert _policy_in_child(load, "ACTIVE") == [False, "ACTIVE"]
    assert _policy_in_child(load, "passive") == [True, "passive"]
