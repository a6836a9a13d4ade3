"""Supervised fine-tuning on dialogue records: load, add tokens, encode, train with the Trainer, save.

The steps of `run_sft(config)`:
1. TrainingArguments first: with a DeepSpeed ZeRO-3 config that makes `from_pretrained` load the model
   already partitioned across ranks (transformers' HfDeepSpeedConfig), as a 33B model needs.
2. The base tokenizer gets the chosen chat template and the execution tokens; the end-of-turn token becomes
   its eos (and the generation_config's), so the chat stops there (`training.tokens`).
3. The model (bf16 on a GPU, fp32 on CPU; 4-bit nf4 for QLoRA), new embedding rows initialised, LoRA
   adapters through peft when asked (the embedding and output rows of the new tokens then train too).
4. Dialogues (`training.data`) encoded (`training.encode`; `datasets.map` over --num-proc processes),
   counted by outcome, padded or packed (`training.batching`).
5. `transformers.Trainer` trains: seeds fixed, checkpoints every `save_steps`, `--resume` continues from
   the last complete checkpoint (after a kill mid-save too), progress lines (`training.progress`).
6. The model (or adapter), tokenizer, chat template and generation_config are saved in --out, which
   `python -m app --model OUT` and `python -m evaluation run --model OUT` load (merge an adapter first).

Every rank encodes the data itself (deterministic, so all ranks agree); on one node that is repeated
work, not a correctness issue. What it deliberately does not do: launch processes (deepspeed, torchrun,
accelerate launch and srun do; see training/README.md) or merge adapters (`training.merge`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from pathlib import Path

from training.batching import PACKING_ATTENTION, PackedCollator, PadCollator, non_padding_share, packed_rows
from training.config import SFTConfig
from training.data import load_dialogues
from training.encode import KEPT, EncodeOptions, Encoder
from training.templates import load_chat_template
from training.tokens import embedding_rows, prepare_tokens

log = logging.getLogger(__name__)

META_FILE = "autocoder_training.json"  # what a trained folder was trained with (read by `merge`)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class TrainingError(RuntimeError):
    """A run that cannot start or go on; the message is one line that says what to do."""


def _main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def say(message: str) -> None:
    if _main_process():
        print(message, flush=True)


def last_checkpoint(out: Path) -> Path | None:
    """The newest checkpoint in `out` that was completely written (trainer_state.json is saved last)."""
    found = []
    for child in out.glob("checkpoint-*") if out.is_dir() else []:
        m = _CHECKPOINT.match(child.name)
        if m and (child / "trainer_state.json").is_file():
            found.append((int(m.group(1)), child))
    return max(found)[1] if found else None


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _dtype(config: SFTConfig):
    import torch

    name = config.dtype
    if name == "auto":
        name = "bf16" if _on_gpu() and torch.cuda.is_bf16_supported() else "fp32"
    return name, {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def training_arguments(config: SFTConfig, dtype_name: str):
    from transformers import TrainingArguments

    report = [] if config.report_to in ("", "none") else [s.strip() for s in config.report_to.split(",")]
    return TrainingArguments(
        output_dir=config.out,
        per_device_train_batch_size=config.micro_batch,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        data_seed=config.seed,
        bf16=dtype_name == "bf16",
        fp16=dtype_name == "fp16",
        deepspeed=config.deepspeed,
        gradient_checkpointing=config.gradient_checkpointing,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        report_to=report,
        disable_tqdm=True,
        remove_unused_columns=False,  # the packed collator needs the "lengths" column
        include_num_input_tokens_seen="non_padding",
        use_cpu=not _on_gpu(),
        dataloader_num_workers=0,
    )


def load_tokenizer(config: SFTConfig):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(config.base)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load the tokenizer of {config.base}: {_first_line(exc)}") from None
    if config.chat_template:
        try:
            tokenizer.chat_template = load_chat_template(config.chat_template)
        except ValueError as exc:
            raise TrainingError(str(exc)) from None
    if not getattr(tokenizer, "chat_template", None):
        raise TrainingError(
            f"{config.base} has no chat template; pass --chat-template deepseek_coder, codeqwen or a .jinja file"
        )
    return tokenizer


def load_model(config: SFTConfig, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"dtype": dtype, "attn_implementation": config.attn_implementation}
    if config.qlora:
        try:
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise TrainingError("--qlora needs bitsandbytes (pip install bitsandbytes)") from None
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if dtype == torch.float32 else dtype,
        )
        if _on_gpu():
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        return AutoModelForCausalLM.from_pretrained(config.base, **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"cannot load {config.base}: {_first_line(exc)}") from None


def _module_name(model, module) -> str:
    for name, candidate in model.named_modules():
        if candidate is module:
            return name.rsplit(".", 1)[-1]
    raise TrainingError("cannot find the embedding modules by name for LoRA")


def wrap_lora(config: SFTConfig, model, train_embeddings: bool):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if config.qlora:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=config.gradient_checkpointing
        )
    targets = config.lora_targets
    target_modules = (
        targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
    )
    save = []
    if train_embeddings:
        # New tokens need trainable rows: the adapter saves these two matrices whole.
        save.append(_module_name(model, model.get_input_embeddings()))
        out = model.get_output_embeddings()
        if out is not None and out.weight is not model.get_input_embeddings().weight:
            save.append(_module_name(model, out))
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=target_modules,
        modules_to_save=save or None,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    trainable, total = model.get_nb_trainable_parameters()
    say(f"LoRA: {trainable:,} of {total:,} parameters train ({100 * trainable / total:.2f} %)")
    return model


def encode_dataset(config: SFTConfig, tokenizer, eot_ids: list[int]):
    """The training dataset (datasets.Dataset) and the per-outcome counts."""
    from datasets import Dataset

    dialogues = load_dialogues(config.data, config.data_split, config.limit)
    encoder = Encoder(
        tokenizer,
        EncodeOptions(
            style=config.render_style,
            system_prompt=config.system_prompt,
            execution_role=config.execution_role,
            max_length=config.max_length,
            overflow=config.overflow,
        ),
        eot_ids,
    )

    if config.num_proc and config.num_proc > 1:
        # Many processes through datasets.map (worth it for the pipeline's 100k+ dialogues).
        def encode(row):
            e = encoder.encode(json.loads(row["messages"]))
            return {
                "input_ids": e.input_ids,
                "labels": e.labels,
                "status": e.status,
                "turns_cut": e.turns_cut,
            }

        raw = Dataset.from_dict({"messages": [json.dumps(d.messages) for d in dialogues]})
        encoded = raw.map(
            encode,
            remove_columns=["messages"],
            num_proc=config.num_proc,
            desc="rendering",
            load_from_cache_file=False,
        )
        rows = list(
            zip(encoded["input_ids"], encoded["labels"], encoded["status"], encoded["turns_cut"], strict=True)
        )
    else:
        # One process: a plain loop (no JSON and Arrow round trip per record).
        rows = []
        for dialogue in dialogues:
            e = encoder.encode(dialogue.messages)
            rows.append((e.input_ids, e.labels, e.status, e.turns_cut))
    counts = Counter(status for _, _, status, _ in rows)
    counts["turns_cut"] = sum(cut for _, _, _, cut in rows)
    kept = [(ids, labels) for ids, labels, status, _ in rows if status in KEPT]
    dataset = Dataset.from_dict({"input_ids": [ids for ids, _ in kept], "labels": [lab for _, lab in kept]})
    return dataset, counts


def describe_counts(counts: Counter) -> str:
    parts = [f"{counts.get('ok', 0)} kept whole"]
    if counts.get("truncated"):
        parts.append(
            f"{counts['truncated']} cut at a turn boundary ({counts['turns_cut']} assistant turns cut)"
        )
    for status, why in (
        ("too_long", "dropped as too long"),
        ("no_assistant", "dropped without an assistant turn"),
        ("inconsistent", "dropped: inference prompt not a prefix of the training ids"),
        ("template_error", "dropped: rejected by the chat template"),
    ):
        if counts.get(status):
            parts.append(f"{counts[status]} {why}")
    return "dialogues: " + ", ".join(parts)


def run_sft(config: SFTConfig) -> Path:
    out = Path(config.out)
    resume_from = last_checkpoint(out)
    if resume_from is not None and not config.resume:
        raise TrainingError(f"{out} holds checkpoints; pass --resume to continue that run, or another --out")
    if config.packing and config.attn_implementation not in PACKING_ATTENTION:
        raise TrainingError(
            f"--packing needs an attention implementation that honours position ids ({', '.join(PACKING_ATTENTION)})"
        )

    import torch  # after the checks above: a refused run answers at once
    from transformers import Trainer, set_seed
    from transformers.trainer_callback import PrinterCallback

    from training.progress import ProgressLog

    set_seed(config.seed)
    dtype_name, dtype = _dtype(config)
    args = training_arguments(config, dtype_name)  # before the model: ZeRO-3 partitions it while loading
    _ = args.device  # sets up the process group now (it is lazy), so zero.Init sees every rank
    if config.deepspeed and not _on_gpu():
        import deepspeed

        # On CPU accelerate starts a plain gloo group; DeepSpeed's comm layer must wrap it too, or
        # zero.Init and the engine count one rank.
        deepspeed.init_distributed(dist_backend="gloo")

    tokenizer = load_tokenizer(config)
    model = load_model(config, dtype)
    added = prepare_tokens(model, tokenizer, config.end_of_turn)
    if config.end_of_turn:
        tokenizer.eos_token = config.end_of_turn
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # labels of padding are -100 whatever the id
    eot_ids = sorted({int(tokenizer.eos_token_id)} | _generation_eos(model))
    model.generation_config.eos_token_id = eot_ids if len(eot_ids) > 1 else eot_ids[0]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    say(
        f"tokens: {len(added.new_ids)} added (ids {added.new_ids}), embedding rows "
        + (f"resized to {added.resized_to}" if added.resized_to else f"{embedding_rows(model)} (no resize)")
        + f"; new rows = mean of the old ones (max deviation {added.deviation:.2g})"
    )

    dataset, counts = encode_dataset(config, tokenizer, eot_ids)
    say(describe_counts(counts))
    if len(dataset) == 0:
        raise TrainingError("no dialogue is left to train on (see the counts above)")
    lengths = [len(ids) for ids in dataset["input_ids"]]
    padded_share = non_padding_share(lengths, config.micro_batch, config.seed)
    if config.packing:
        from datasets import Dataset

        dataset = Dataset.from_dict(packed_rows(dataset["input_ids"], dataset["labels"], config.max_length))
        packed_share = non_padding_share(
            [len(r) for r in dataset["input_ids"]], config.micro_batch, config.seed
        )
        say(
            f"packing: {len(lengths)} dialogues in {len(dataset)} rows; non-padding share "
            f"{packed_share:.1%} packed vs {padded_share:.1%} padded"
        )
        collator = PackedCollator(tokenizer.pad_token_id)
    else:
        say(f"non-padding share {padded_share:.1%} (micro-batch {config.micro_batch}; --packing raises it)")
        collator = PadCollator(tokenizer.pad_token_id)
    say(
        f"training on {sum(lengths):,} tokens, {sum(sum(1 for x in lab if x != -100) for lab in dataset['labels']):,} supervised"
    )

    model.config.use_cache = False  # no KV cache in training (saved as True again for inference)
    if config.lora:
        model = wrap_lora(config, model, train_embeddings=bool(added.new_ids) or added.resized_to is not None)

    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[ProgressLog()],
    )
    trainer.remove_callback(PrinterCallback)
    if resume_from is not None:
        say(f"resuming from {resume_from}")
    elif config.resume:
        say(f"--resume: no complete checkpoint in {out}; starting from the beginning")
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except torch.OutOfMemoryError:
        raise TrainingError(
            "out of GPU memory; lower --micro-batch (raise --grad-accum), add --gradient-checkpointing, "
            "or use --lora/--qlora or a DeepSpeed ZeRO-3 config"
        ) from None

    (model.get_base_model() if config.lora else model).config.use_cache = True
    trainer.save_model(str(out))  # under ZeRO-3 the 16-bit weights are gathered first (see the DS JSON)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(out)
        model.generation_config.save_pretrained(out)
        meta = {
            "base": config.base,
            "adapter": config.lora,
            "embedding_rows": embedding_rows(model.get_base_model() if config.lora else model),
            "render_style": config.render_style,
            "system_prompt": config.system_prompt,
            "execution_role": config.execution_role,
            "end_of_turn": tokenizer.eos_token,
            "chat_template": config.chat_template,
            "dialogue_counts": dict(counts),
        }
        (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        if config.lora:
            say(
                f"adapter saved in {out}; write a full model with: python -m training merge --adapter {out} --out DIR"
            )
        else:
            say(
                f"model saved in {out}; chat with: python -m app --model {out} --render-style {config.render_style}"
            )
    _leave_process_group()
    return out


def _leave_process_group() -> None:
    """All ranks leave together and tear the process group down before the interpreter exits: a rank whose
    gloo threads were still alive at exit aborted ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _generation_eos(model) -> set[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    values = eos if isinstance(eos, list | tuple) else [eos]
    return {int(v) for v in values if v is not None}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
