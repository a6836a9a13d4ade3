"""Training throughput on CPU: this package's SFT path against a plain transformers Trainer, same data.

    python -m benchmarks.training_throughput [--dialogues 96] [--steps 24] [--repeats 3]

Both sides train the tiny base model of the training tests (2-layer Llama, fp32, one thread) for the same
number of steps with the same TrainingArguments, batch size and seed, on the same dialogues:
- ours: `training.sft.encode_dataset` (render_dialogue + chat template + the per-turn consistency check and
  the assistant-only labels) and `training.batching.PadCollator`;
- baseline: the same rendered messages tokenized once with `apply_chat_template` and
  `DataCollatorForLanguageModeling(mlm=False)` (labels = every token, no masking, no checks).
Timed separately: data preparation (reading, rendering, tokenizing, masking) and `Trainer.train()`; the
tokens counted are the non-padding tokens of the steps run (24 steps = 2 epochs of the 96 dialogues, as
the paper's 2 epochs). The primary figure is tokens per CPU second of this process (one torch thread, no
dataloader workers), which a shared, loaded machine disturbs far less than wall time; wall time is
printed too. The ratio is ours / baseline (goal: overhead of rendering and masking at most 5 %). Runs
alternate and medians are reported.

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
from dataclasses import dataclass
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


@dataclass
class Timing:
    prep_cpu: float  # data preparation: reading, rendering, tokenizing, masking (process CPU seconds)
    train_cpu: float  # Trainer.train() (process CPU seconds; one torch thread, no dataloader workers)
    prep_wall: float
    train_wall: float
    tokens: int  # non-padding tokens the steps consumed

    def rate(self, cpu: bool = True, prep: bool = True) -> float:
        t = (
            (self.train_cpu + (self.prep_cpu if prep else 0))
            if cpu
            else (self.train_wall + (self.prep_wall if prep else 0))
        )
        return self.tokens / t


class _Clock:
    def __enter__(self):
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.cpu, self.wall = time.process_time() - self.cpu, time.perf_counter() - self.wall


def _setup(base: Path, out: str, steps: int):
    from transformers import AutoModelForCausalLM

    from training.sft import load_tokenizer
    from training.tokens import prepare_tokens

    config, args = _args(out, steps)
    config.base, config.chat_template, config.end_of_turn = str(base), "deepseek_coder", "<|EOT|>"
    tokenizer = load_tokenizer(config)
    model = AutoModelForCausalLM.from_pretrained(base)
    prepare_tokens(model, tokenizer, config.end_of_turn)
    tokenizer.eos_token = config.end_of_turn
    model.config.use_cache = False
    return config, args, tokenizer, model


def _train(model, args, dataset, collator) -> tuple[_Clock, int]:
    from transformers import Trainer

    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.remove_callback(_quiet())
    with _Clock() as clock:
        trainer.train()
    return clock, trainer.state.num_input_tokens_seen


def run_ours(base: Path, data: Path, steps: int) -> Timing:
    from training.batching import PadCollator
    from training.sft import encode_dataset

    with tempfile.TemporaryDirectory() as out:
        config, args, tokenizer, model = _setup(base, out, steps)
        config.data = [str(data)]
        with _Clock() as prep:
            dataset, _ = encode_dataset(config, tokenizer, [tokenizer.eos_token_id])
        train, tokens = _train(model, args, dataset, PadCollator(tokenizer.pad_token_id))
    return Timing(prep.cpu, train.cpu, prep.wall, train.wall, tokens)


def run_baseline(base: Path, data: Path, steps: int) -> Timing:
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling

    from interpreter.jsonl import read_jsonl
    from interpreter.protocol import render_dialogue

    with tempfile.TemporaryDirectory() as out:
        config, args, tokenizer, model = _setup(base, out, steps)
        with _Clock() as prep:
            ids = [
                tokenizer.apply_chat_template(
                    render_dialogue(r["messages"], "tokens"), tokenize=True, return_dict=False
                )
                for r in read_jsonl(data)
            ]
            dataset = Dataset.from_dict({"input_ids": ids})
        collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)
        train, tokens = _train(model, args, dataset, collator)
    return Timing(prep.cpu, train.cpu, prep.wall, train.wall, tokens)


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
    parser.add_argument("--steps", type=int, default=24)  # 2 epochs of 96, as the paper
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
            ours.append(run_ours(base, data, args.steps))
            baseline.append(run_baseline(base, data, args.steps))
        report = packing_report(base, data)
    med = statistics.median
    print(
        f"tiny model, CPU, 1 torch thread, {args.steps} steps x 8 dialogues ({ours[0].tokens:,} tokens), "
        f"median of {args.repeats} alternating runs"
    )
    for label, cpu, prep in (
        ("preparation + training, tokens per CPU second", True, True),
        ("training steps only, tokens per CPU second", True, False),
        ("preparation + training, tokens per wall second", False, True),
    ):
        o = med(t.rate(cpu, prep) for t in ours)
        b = med(t.rate(cpu, prep) for t in baseline)
        print(
            f"{label}: ours {o:,.0f}, plain Trainer {b:,.0f}, ratio {o / b:.3f} (overhead {max(0.0, 1 - o / b):.1%})"
        )
    n = args.dialogues
    print(
        f"preparation per dialogue (CPU): ours {med(t.prep_cpu for t in ours) / n * 1000:.2f} ms "
        f"(render, per-turn consistency check, masks), naive "
        f"{med(t.prep_cpu for t in baseline) / n * 1000:.2f} ms (one apply_chat_template)"
    )
    print("goal: overhead of rendering and masking <= 5 %")
    for line in report:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
