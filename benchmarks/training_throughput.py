"""Training throughput on CPU: this package's SFT path against a plain transformers Trainer, same data.

    python -m benchmarks.training_throughput [--dialogues 96] [--steps 12] [--repeats 3]

Both sides train the tiny base model of the training tests (2-layer Llama, fp32, one thread) for the same
number of steps with the same TrainingArguments, batch size and seed, on the same dialogues:
- ours: `training.sft.encode_dataset` (render_dialogue + chat template + the per-turn consistency check and
  the assistant-only labels, through datasets.map) and `training.batching.PadCollator`;
- baseline: the same rendered messages tokenized once with `apply_chat_template` and
  `DataCollatorForLanguageModeling(mlm=False)` (labels = every token, no masking, no checks).
Timed: data preparation + `Trainer.train()`; tokens/s counts the non-padding tokens of the steps run. The
printed ratio is ours / baseline (the goal: overhead of rendering and masking at most 5 %). Runs
alternate and the median is reported, since the machine is shared.

It also reports the share of non-padding tokens among computed tokens with padding (micro-batches of 8)
and with packing (`training.batching`) at two row lengths.

The dialogues are synthetic but shaped like the data pipeline's output (a question, one or two
execution rounds with outputs of varied length, a final answer), since no pipeline run ships with the
repository.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path


def synthetic_dialogues(n: int, seed: int = 0) -> list[dict]:
    from interpreter.protocol import block_text

    rng = random.Random(seed)
    words = [
        "list",
        "sum",
        "value",
        "error",
        "index",
        "print",
        "data",
        "frame",
        "plot",
        "file",
        "result",
        "test",
        "case",
        "loop",
        "string",
        "number",
    ]
    records = []
    for i in range(n):
        question = "Write a function that " + " ".join(rng.choice(words) for _ in range(rng.randint(3, 8)))
        messages = [{"role": "user", "content": question}]
        for _ in range(rng.randint(1, 2)):
            code = "\n".join(
                f"x{j} = {rng.randint(0, 99)} + {rng.choice(words)!r}.count('a')"
                for j in range(rng.randint(1, 4))
            )
            messages.append({"role": "assistant", "content": "Let me run it.\n" + block_text("python", code)})
            out = "\n".join(" ".join(rng.choice(words) for _ in range(4)) for _ in range(rng.randint(1, 4)))
            messages.append({"role": "execution", "content": out})
        messages.append(
            {"role": "assistant", "content": "It works: " + " ".join(rng.choice(words) for _ in range(4))}
        )
        records.append({"id": f"syn-{i}", "messages": messages, "meta": {}})
    return records


def _quiet():
    from transformers.trainer_callback import PrinterCallback

    return PrinterCallback


def _args(out: str, steps: int):
    from training.config import SFTConfig
    from training.sft import training_arguments

    config = SFTConfig(
        base="",
        data=["x"],
        out=out,
        max_steps=steps,
        micro_batch=8,
        grad_accum=1,
        lr=1e-3,
        logging_steps=10**6,
        save_steps=10**6,
        lr_scheduler="constant",
    )
    args = training_arguments(config, "fp32")
    args.save_strategy = "no"
    return config, args


def run_ours(base: Path, data: Path, steps: int) -> tuple[float, int]:
    from transformers import AutoModelForCausalLM, Trainer

    from training.batching import PadCollator
    from training.sft import encode_dataset, load_tokenizer
    from training.tokens import prepare_tokens

    PrinterCallback = _quiet()
    with tempfile.TemporaryDirectory() as out:
        config, args = _args(out, steps)
        config.base, config.data, config.chat_template, config.end_of_turn = (
            str(base),
            [str(data)],
            "deepseek_coder",
            "<|EOT|>",
        )
        tokenizer = load_tokenizer(config)
        model = AutoModelForCausalLM.from_pretrained(base)
        prepare_tokens(model, tokenizer, config.end_of_turn)
        tokenizer.eos_token = config.end_of_turn
        model.config.use_cache = False
        start = time.perf_counter()
        dataset, _ = encode_dataset(config, tokenizer, [tokenizer.eos_token_id])
        trainer = Trainer(
            model=model, args=args, train_dataset=dataset, data_collator=PadCollator(tokenizer.pad_token_id)
        )
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        elapsed = time.perf_counter() - start
        return elapsed, trainer.state.num_input_tokens_seen


def run_baseline(base: Path, records: list[dict], steps: int) -> tuple[float, int]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, DataCollatorForLanguageModeling, Trainer

    from interpreter.protocol import render_dialogue
    from training.sft import load_tokenizer
    from training.tokens import prepare_tokens

    PrinterCallback = _quiet()
    with tempfile.TemporaryDirectory() as out:
        config, args = _args(out, steps)
        config.base, config.chat_template, config.end_of_turn = str(base), "deepseek_coder", "<|EOT|>"
        tokenizer = load_tokenizer(config)
        model = AutoModelForCausalLM.from_pretrained(base)
        prepare_tokens(model, tokenizer, config.end_of_turn)
        tokenizer.eos_token = config.end_of_turn
        model.config.use_cache = False
        start = time.perf_counter()
        ids = [
            tokenizer.apply_chat_template(
                render_dialogue(r["messages"], "tokens"), tokenize=True, return_dict=False
            )
            for r in records
        ]
        dataset = Dataset.from_dict({"input_ids": ids})
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
        trainer.remove_callback(PrinterCallback)
        trainer.train()
        elapsed = time.perf_counter() - start
        return elapsed, trainer.state.num_input_tokens_seen


def packing_report(base: Path, data: Path) -> list[str]:
    from training.batching import non_padding_share, packed_rows
    from training.config import SFTConfig
    from training.sft import encode_dataset, load_tokenizer
    from training.tokens import add_tokens

    config = SFTConfig(
        base=str(base), data=[str(data)], out="-", chat_template="deepseek_coder", end_of_turn="<|EOT|>"
    )
    tokenizer = load_tokenizer(config)
    add_tokens(tokenizer, config.end_of_turn)
    tokenizer.eos_token = config.end_of_turn
    dataset, _ = encode_dataset(config, tokenizer, [tokenizer.eos_token_id])
    lengths = [len(x) for x in dataset["input_ids"]]
    lines = [
        f"dialogues: {len(lengths)}, tokens {sum(lengths):,} (min {min(lengths)}, median {int(statistics.median(lengths))}, max {max(lengths)})",
        f"non-padding share, padded micro-batches of 8: {non_padding_share(lengths, 8):.1%}",
    ]
    for width in (1024, 4096):
        rows = packed_rows(dataset["input_ids"], dataset["labels"], width)
        packed = [len(r) for r in rows["input_ids"]]
        lines.append(
            f"non-padding share, packed into rows of <= {width} ({len(packed)} rows), micro-batches of 8: "
            f"{non_padding_share(packed, 8):.1%}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.training_throughput", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--dialogues", type=int, default=96)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(1)
    hf_logging.set_verbosity_error()
    from tests.training.tiny_base import cached_tiny_base, write_jsonl

    base = cached_tiny_base()
    records = synthetic_dialogues(args.dialogues)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_jsonl(Path(tmp) / "dialogues.jsonl", records)
        ours, baseline = [], []
        for _ in range(args.repeats):
            t, n = run_ours(base, data, args.steps)
            ours.append(n / t)
            t, n = run_baseline(base, records, args.steps)
            baseline.append(n / t)
        report = packing_report(base, data)
    o, b = statistics.median(ours), statistics.median(baseline)
    print(
        f"tiny model, CPU, 1 thread, {args.steps} steps x 8 dialogues, median of {args.repeats} alternating runs"
    )
    print(
        f"ours (render + consistency check + masks):   {o:10,.0f} tokens/s   runs {', '.join(f'{x:,.0f}' for x in ours)}"
    )
    print(
        f"baseline (plain Trainer, naive collator):    {b:10,.0f} tokens/s   runs {', '.join(f'{x:,.0f}' for x in baseline)}"
    )
    print(f"ratio ours/baseline: {o / b:.3f} (overhead {max(0.0, 1 - o / b):.1%}; goal <= 5 %)")
    for line in report:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
