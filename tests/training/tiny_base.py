"""Tiny *base* models for the training tests: untrained 2-layer Llamas with a deepseek-coder-like tokenizer.

Like deepseek-coder-6.7b-base, the tokenizer has a begin and an end-of-sequence token and `<|EOT|>`,
but neither the execution tokens nor a chat template; the embedding matrix has padded, never-trained rows
beyond the tokenizer (`padded=True`: rows rounded up past len(tokenizer) + 8, as deepseek's 32,256 rows
hold 32,022 tokens) or exactly one row per token (`padded=False`, so adding tokens must resize).

`TRAINING_DIALOGUES` is what the CLI tests teach such a model: for the prompt "print" it writes an
execution block, and after the block's output it says "Done.".

What it deliberately is not: a fixture that trains anything (the tests train through the CLI).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from interpreter.protocol import RUN_START, RUN_STOP, SPECIAL_TOKENS

BOS = "<|begin|>"
EOS = "<|end|>"
EOT = "<|EOT|>"

PROMPT = "print"
REPLY = f"I will compute it.\n{RUN_START}```python\nprint(6*7)\n```{RUN_STOP}"
CODE = "print(6*7)"
OUTPUT = "42\n"
FINAL = "Done."


def run_json(code: str, stdout: str, status: str = "ok") -> dict:
    """One RUN of an execution turn (interpreter.dialogue's schema)."""
    return {
        "language": "python",
        "code": code,
        "status": status,
        "stdout": stdout,
        "stderr": "",
        "outputs": [],
        "error": None,
        "duration_s": 0.01,
        "note": "",
    }


def taught_dialogue(system: str | None = None) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    return head + [
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": REPLY},
        {"role": "execution", "content": OUTPUT.rstrip(), "runs": [run_json(CODE, OUTPUT)]},
        {"role": "assistant", "content": FINAL},
    ]


def training_records(copies: int = 8) -> list[dict]:
    """Dialogue records (JSON objects) of the taught exchange, plus a plain one so not every reply runs code."""
    records = []
    for i in range(copies):
        records.append({"id": f"print-{i}", "messages": taught_dialogue(), "meta": {"source": "test"}})
        records.append(
            {
                "id": f"hello-{i}",
                "messages": [
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": "Hello! I write and run code."},
                ],
                "meta": {"source": "test"},
            }
        )
    return records


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _corpus() -> list[str]:
    texts = [REPLY, FINAL, PROMPT, "hello", "Hello! I write and run code.", "Human: ", "Assistant:", OUTPUT]
    texts += ["The quick brown fox jumps over the lazy dog. 0123456789 ()[]{}<>=+-*/_.,:;!?'\"#\n\t"]
    return texts * 4


def build_tiny_base(path: Path, padded: bool = True) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    assert not any(t in " ".join(_corpus()) for t in SPECIAL_TOKENS[2:])
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=[BOS, EOS, EOT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The execution tokens are not special here: a base model's tokenizer splits them into pieces.
    tok.train_from_iterator(_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS)
    tokenizer.add_special_tokens({"additional_special_tokens": [EOT]})
    rows = len(tokenizer)
    if padded:
        rows = -(-(rows + 8) // 64) * 64
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=rows,
        hidden_size=64,  # a multiple of 64 so bitsandbytes' 4-bit kernels accept the layers (QLoRA test)
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def cached_tiny_base(padded: bool = True) -> Path:
    """The tiny base folder, built once per content of this file (concurrent sessions wait on a lock)."""
    import tokenizers
    import torch
    import transformers

    key = hashlib.sha256(Path(__file__).read_bytes())
    key.update(f"{padded} {torch.__version__} {transformers.__version__} {tokenizers.__version__}".encode())
    root = Path(tempfile.gettempdir()) / "autocoder-tests"
    final = root / f"tiny-base-{key.hexdigest()[:16]}"
    if (final / "config.json").exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (final / "config.json").exists():
            staging = Path(tempfile.mkdtemp(prefix="tiny-base-build-", dir=root))
            try:
                build_tiny_base(staging, padded)
                staging.rename(final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return final
