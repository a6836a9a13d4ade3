"""Load a transformers causal LM for `HFBackend`: find it, pick dtype and quantization, place it.

- Finding: a local folder, or a hub id (the local HF cache first; the hub only when it is reachable).
  Failures become one-line `BackendError`s: `ModelNotFound`, `HubUnreachable` (no local copy), and
  not enough GPU memory.
- dtype "auto": bf16 on a GPU (fp16 where bf16 is unsupported), fp32 on CPU.
- quantize "4bit" | "8bit" through bitsandbytes (nf4, double quantization, bf16 compute); "auto" picks
  4-bit when the GPU's free memory cannot hold the bf16 weights (estimated from the config's parameter
  count, without loading), and nothing on CPU. bitsandbytes 0.50 also runs 4/8-bit on CPU, so an explicit
  request is honoured there.
- device_map="auto" on a GPU; plain CPU placement otherwise.
- OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE unless the environment sets a policy; see
  `prefer_passive_openmp`), set before torch is first imported.

Deliberately not here: generation (llm.hf) and the stand-in fallback policy (llm.select).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from llm.base import BackendError

log = logging.getLogger(__name__)

QUANTIZE_CHOICES = ("none", "auto", "4bit", "8bit")
DTYPE_CHOICES = ("auto", "bf16", "fp16", "fp32", "bfloat16", "float16", "float32")
_GIB = 1024**3
# Activations, the KV cache and CUDA's own context need room beyond the weights.
_HEADROOM = 1.2
_HEADROOM_BYTES = 1.5 * _GIB


class ModelNotFound(BackendError):
    """The named model is neither a local folder nor a model on the hub."""


class HubUnreachable(BackendError):
    """The hub cannot be reached and the model has no local copy."""


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _looks_like_path(model: str) -> bool:
    # Hub ids are "name" or "owner/name"; anything else with a separator or a leading dot/tilde is a path.
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or os.sep != "/" and os.sep in model


def resolve_model(model: str) -> tuple[str, bool]:
    """Where to load `model` from: (folder or hub id, local_files_only)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelNotFound(f"{model} is a folder but not a model (no config.json); pass a model folder")
        return str(path), True
    if path.exists() or _looks_like_path(model):
        raise ModelNotFound(f"model folder {model} does not exist; pass a model folder or a hub id")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    def local_copy() -> str | None:
        try:
            folder = snapshot_download(model, local_files_only=True)
        except Exception:  # not cached (the exception type varies across huggingface_hub versions)
            return None
        return folder if (Path(folder) / "config.json").exists() else None

    if _hub_offline():
        folder = local_copy()
        if folder is None:
            raise HubUnreachable(
                f"{model} has no local copy and the hub is off (HF_HUB_OFFLINE=1); download it or pass a folder"
            )
        return folder, True
    from huggingface_hub import model_info

    try:
        model_info(model, timeout=10)
    except GatedRepoError as exc:
        raise ModelNotFound(
            f"{model} is gated on the hub: accept its license there and set HF_TOKEN"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise ModelNotFound(f"model {model} not found on the Hugging Face hub; check --model") from exc
    except Exception as exc:  # DNS, refused, timeout, proxy: all mean "no hub"
        folder = local_copy()
        if folder is None:
            raise HubUnreachable(
                f"cannot reach the Hugging Face hub ({type(exc).__name__}) and {model} has no local copy; "
                "pass a local folder with --model or use --backend openai"
            ) from exc
        return folder, True
    return model, False


def pick_dtype(dtype: str, on_gpu: bool):
    import torch

    if dtype not in DTYPE_CHOICES:
        raise BackendError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPE_CHOICES)}")
    if dtype == "auto":
        if not on_gpu:
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
        {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, dtype)
    ]


def count_parameters(source: str, local_only: bool) -> int:
    """Parameter count from the config alone (the model is built on the meta device, no memory used)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(source, local_files_only=local_only)
    with init_empty_weights():
        skeleton = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in skeleton.parameters())


def free_gpu_bytes() -> int:
    import torch

    return sum(torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count()))


def needed_bytes(parameters: int, quantize: str | None) -> int:
    per_param = {None: 2.0, "8bit": 1.1, "4bit": 0.6}[quantize]  # bf16; int8 and nf4 with their scales
    return int(parameters * per_param * _HEADROOM + _HEADROOM_BYTES)


def pick_quantization(
    quantize: str | None, on_gpu: bool, parameters: int | None, free: int | None
) -> str | None:
    """The quantization to load with; raises when the GPU cannot hold the model that way."""
    quantize = None if quantize in (None, "none") else quantize
    if quantize not in (None, "auto", "4bit", "8bit"):
        raise BackendError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZE_CHOICES)}")
    if not on_gpu or parameters is None or free is None:
        return None if quantize == "auto" else quantize
    if quantize == "auto":
        for choice in (None, "4bit"):
            if needed_bytes(parameters, choice) <= free:
                return choice
        quantize = "4bit"  # report the smallest option's shortfall below
    need = needed_bytes(parameters, quantize)
    if need > free:
        hint = (
            "--quantize 4bit or --backend openai"
            if quantize != "4bit"
            else "--backend openai (a served model)"
        )
        raise BackendError(
            f"not enough GPU memory: the model needs about {need / _GIB:.1f} GiB "
            f"({quantize or 'bf16'}) and {free / _GIB:.1f} GiB is free; use {hint}"
        )
    return quantize


def quantization_config(quantize: str | None):
    if quantize is None:
        return None
    try:
        import bitsandbytes  # noqa: F401
        import torch
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise BackendError(
            f"--quantize {quantize} needs bitsandbytes (pip install bitsandbytes); or drop --quantize"
        ) from exc
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def prefer_passive_openmp() -> bool:
    """Make torch's OpenMP threads sleep, not spin, between parallel regions (OMP_WAIT_POLICY=PASSIVE),
    unless the environment chose a policy. True when the policy in force is passive.

    By default libgomp's idle threads spin for a while after every parallel region: after the last token of
    a reply they burn milliseconds of CPU exactly while the code the model asked for starts in its kernel,
    and on a machine with few cores spinning threads that lost their core make every barrier wait for a
    time slice (measured on 2 busy cores with the tiny test model: 19 tokens in 300-700 ms spinning,
    40-150 ms passive, and 5-7 ms of CPU burnt after each reply). libgomp reads the variable once, when
    torch loads it, so it only works before the first `import torch` of the process.
    """
    import sys

    if os.environ.get("OMP_WAIT_POLICY"):
        return os.environ["OMP_WAIT_POLICY"].strip().upper() == "PASSIVE"
    if "torch" in sys.modules:
        log.info("torch was imported before the model load: its OpenMP threads keep the default wait policy")
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def load_model_and_tokenizer(model: str, *, dtype: str = "auto", quantize: str | None = "auto"):
    """(model, tokenizer, chosen quantization) for `model`, a local folder or a hub id."""
    prefer_passive_openmp()  # before torch loads libgomp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, local_only = resolve_model(model)
    on_gpu = torch.cuda.is_available()
    parameters = free = None
    if on_gpu:
        parameters = count_parameters(source, local_only)
        free = free_gpu_bytes()
    quant = pick_quantization(quantize, on_gpu, parameters, free)
    torch_dtype = pick_dtype(dtype, on_gpu)
    kwargs = {"dtype": torch_dtype, "local_files_only": local_only}
    if quant is not None:
        kwargs["quantization_config"] = quantization_config(quant)
        if quant == "8bit" and dtype == "auto":
            kwargs["dtype"] = torch.float16  # int8 matmuls take fp16 inputs; other dtypes are cast every call
    if on_gpu:
        kwargs["device_map"] = "auto"
    log.info("loading %s (%s, quantize=%s)", model, str(torch_dtype).removeprefix("torch."), quant or "none")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only)
        lm = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except torch.OutOfMemoryError as exc:
        raise BackendError(
            "not enough GPU memory to load the model; use --quantize 4bit or --backend openai"
        ) from exc
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"cannot load {model}: {first_line}") from exc
    except RuntimeError as exc:
        if quant is not None and "bitsandbytes" in str(exc).lower():
            raise BackendError(
                f"bitsandbytes cannot run --quantize {quant} here (no usable GPU or CPU backend); "
                "drop --quantize or use --backend openai"
            ) from exc
        raise
    lm.eval()
    return lm, tokenizer, quant
