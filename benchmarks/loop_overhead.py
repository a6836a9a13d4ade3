"""Overhead of the interpreter loop over a bare `model.generate`, and prefill work per round with and without
KV-cache reuse, on the tiny trained model. Run: `python -m benchmarks.loop_overhead`.

1. Tokens per second. The same prompts, the same greedy tokens, in the same process, interleaved:
   - baseline: `model.generate(ids)` on pre-tokenized prompts, stopping where the loop's turn ends
     (end-of-turn or RUN_STOP);
   - loop: `run_loop` through the hf backend (chat template, streaming decode, block detection, events),
     with no execution (max_rounds=0) and the backend's cache reuse off, so both do the same model work.
   The goal is an overhead of 5% or less. The tiny model makes a forward pass cost well under a
   millisecond, so any per-call cost shows far more than it would on a real model.
2. Prefill per round: a 3-round dialogue (a block, the answer after its output, a follow-up question)
   through the full loop with a real sandboxed kernel, with the backend's cache reuse on and off.

What it deliberately does not measure: execution latency (benchmarks/execution_latency.py) or the UI.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def load(model_path: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    return model, tokenizer


def bare_generate(
    model, tokenizer, prompts: list[list[int]], stop_ids: list[int], max_new: int
) -> tuple[int, float, list[str]]:
    """Generated tokens, seconds, decoded texts for `model.generate` over all prompts."""
    import torch

    tokens, texts = 0, []
    start = time.perf_counter()
    with torch.inference_mode():
        for ids in prompts:
            out = model.generate(
                torch.tensor([ids]),
                max_new_tokens=max_new,
                do_sample=False,
                eos_token_id=stop_ids,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = out[0, len(ids) :].tolist()
            tokens += len(new)
            texts.append(tokenizer.decode(new, skip_special_tokens=False))
    return tokens, time.perf_counter() - start, texts


def through_loop(backend, dialogues: list[list[dict]], session, max_new: int) -> tuple[int, float, list[str]]:
    """Generated tokens, seconds, assistant texts for the same prompts through run_loop (no execution)."""
    from interpreter.loop import Done, LoopConfig, RoundFinished, run_loop
    from llm.base import GenerationParams

    config = LoopConfig(generation=GenerationParams(max_new_tokens=max_new), max_rounds=0)
    tokens, texts = 0, []
    start = time.perf_counter()
    for dialogue in dialogues:
        for event in run_loop(backend, dialogue, session, config):
            if isinstance(event, RoundFinished):
                tokens += event.generated_tokens
            elif isinstance(event, Done):
                texts.append(event.messages[-1]["content"])
    return tokens, time.perf_counter() - start, texts


def throughput(model, tokenizer, session, repeats: int, max_new: int) -> None:
    from interpreter.protocol import RUN_STOP
    from llm.hf import HFBackend, end_of_turn_ids
    from tests.fixtures.tiny_models import SCENARIOS

    backend = HFBackend(model, tokenizer, reuse_cache=False, model_id="tiny")
    dialogues = [[{"role": "user", "content": sc.prompt}] for sc in SCENARIOS.values()]
    prompts = [backend.prompt_ids(d) for d in dialogues]
    stop_ids = sorted(end_of_turn_ids(model, tokenizer) | {tokenizer.convert_tokens_to_ids(RUN_STOP)})

    # Warm up both paths (first calls pay one-off costs), and check that they produce the same text.
    _, _, bare_texts = bare_generate(model, tokenizer, prompts, stop_ids, max_new)
    _, _, loop_texts = through_loop(backend, dialogues, session, max_new)
    eot_texts = {tokenizer.convert_ids_to_tokens(i) for i in stop_ids} - {RUN_STOP}
    for bare, looped in zip(bare_texts, loop_texts, strict=True):
        for eot in eot_texts:
            bare = bare.removesuffix(eot)
        if bare != looped:
            print(f"warning: outputs differ: bare {bare!r} vs loop {looped!r}")

    bare_rates, loop_rates = [], []
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        n, s, _ = bare_generate(model, tokenizer, prompts, stop_ids, max_new)
        bare_rates.append(n / s)
        n, s, _ = through_loop(backend, dialogues, session, max_new)
        loop_rates.append(n / s)
    bare, looped = statistics.median(bare_rates), statistics.median(loop_rates)
    tokens = sum(len(t) for t in bare_texts)
    print(f"\nThroughput: {len(prompts)} prompts x {repeats} repeats, greedy, median of repeats")
    print(f"{'path':<38}{'tokens/s':>12}")
    print(f"{'bare model.generate':<38}{bare:>12.1f}")
    print(f"{'hf backend + run_loop':<38}{looped:>12.1f}")
    ratios = sorted(a / b for a, b in zip(loop_rates, bare_rates, strict=True))
    print(f"loop / bare = {looped / bare:.3f}  (overhead {100 * (1 - looped / bare):+.1f}%; goal <= 5%)")
    print(
        f"per-repeat ratios: min {ratios[0]:.3f}, median {statistics.median(ratios):.3f}, max {ratios[-1]:.3f}"
    )
    print(f"(about {tokens} characters generated per pass)")


def prefill_per_round(model, tokenizer, session, max_new: int) -> None:
    from interpreter.loop import Done, LoopConfig, RoundFinished, run_loop
    from llm.base import GenerationParams
    from llm.hf import HFBackend

    follow_ups = iter(["hello"])
    rows = {}
    for reuse in (False, True):
        backend = HFBackend(model, tokenizer, reuse_cache=reuse, model_id="tiny")
        follow_ups = iter(["hello"])
        config = LoopConfig(
            generation=GenerationParams(max_new_tokens=max_new),
            on_turn_end=lambda messages, it=follow_ups: next(it, None),
        )
        rounds = []
        for event in run_loop(backend, [{"role": "user", "content": "print"}], session, config):
            if isinstance(event, RoundFinished):
                rounds.append(event)
            elif isinstance(event, Done):
                roles = [m["role"] for m in event.messages]
        rows[reuse] = rounds
    print(f"\nPrefill per round: dialogue {' -> '.join(roles)}")
    print(f"{'round':>5}{'prompt tokens':>15}{'prefill (no reuse)':>20}{'prefill (reuse)':>17}{'ratio':>8}")
    for off, on in zip(rows[False], rows[True], strict=True):
        ratio = on.prefill_tokens / off.prefill_tokens if off.prefill_tokens else float("nan")
        print(
            f"{off.round:>5}{off.prompt_tokens:>15}{off.prefill_tokens:>20}{on.prefill_tokens:>17}{ratio:>8.2f}"
        )
    total_off = sum(r.prefill_tokens for r in rows[False])
    total_on = sum(r.prefill_tokens for r in rows[True])
    print(
        f"{'all':>5}{sum(r.prompt_tokens for r in rows[False]):>15}{total_off:>20}{total_on:>17}{total_on / total_off:>8.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.loop_overhead", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model folder (default: the tiny test model, built on first use)",
    )
    parser.add_argument(
        "--sandbox", default="local", help="sandbox for the kernel: local, docker, none (default local)"
    )
    parser.add_argument(
        "--repeats", type=int, default=15, help="interleaved repeats of each path (default 15)"
    )
    parser.add_argument("--max-new-tokens", type=int, default=120)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the tiny model's matrices are too small to gain from more, and "
        "more make timings erratic on a shared machine)",
    )
    args = parser.parse_args(argv)

    import torch

    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session
    from tests.fixtures.tiny_models import cached_tiny_autocoder

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    model, tokenizer = load(args.model or cached_tiny_autocoder())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, model {args.model or 'tiny test model'}"
    )
    with Session(make_sandbox(args.sandbox)) as session:
        throughput(model, tokenizer, session, args.repeats, args.max_new_tokens)
        prefill_per_round(model, tokenizer, session, args.max_new_tokens)


if __name__ == "__main__":
    main()
