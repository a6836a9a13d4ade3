"""`python -m training merge`: a LoRA/QLoRA adapter folder + its base -> one full model folder.

The base is loaded unquantized (a QLoRA adapter merges into the bf16/fp32 base, not into 4-bit weights),
its embedding matrices resized to the adapter's row count when the run resized them, the adapter applied
and merged with peft (`merge_and_unload`), and the result saved with the adapter folder's tokenizer, chat
template and generation_config, so `python -m app --model OUT` loads it like any model.

What it deliberately does not do: train, or quantize the merged model.
"""

from __future__ import annotations

import json
from pathlib import Path

from training.sft import META_FILE, TrainingError, _first_line, say


def merge_adapter(adapter: str, out: str, base: str | None = None, dtype: str = "auto") -> Path:
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    folder = Path(adapter)
    if not (folder / "adapter_config.json").is_file():
        raise TrainingError(
            f"{adapter} is not an adapter folder (no adapter_config.json); pass --adapter OUT of a --lora run"
        )
    meta = {}
    if (folder / META_FILE).is_file():
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    base = base or meta.get("base") or PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
    if dtype == "auto":
        dtype = "bf16" if torch.cuda.is_available() else "fp32"
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load the base model {base}: {_first_line(exc)}; pass --base") from None
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    rows = meta.get("embedding_rows")
    if rows and rows != model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(rows, mean_resizing=False)  # the adapter holds the trained rows
    model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(str(folder))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    if meta:
        merged_meta = {**meta, "adapter": False, "merged_from": str(folder)}
        (target / META_FILE).write_text(json.dumps(merged_meta, indent=2) + "\n", encoding="utf-8")
    say(f"merged model saved in {target}")
    return target
