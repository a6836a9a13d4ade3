"""The command line: `python -m data_pipeline generate | stats | merge`.

    python -m data_pipeline generate --seeds PATH --out DIR --teacher-base-url URL --teacher-model NAME
    python -m data_pipeline stats DIR
    python -m data_pipeline merge SHARD_DIR... --out DIR

Every bad input ends with one line on stderr and exit status 2 (before any paid work for `generate`).
What it deliberately does not do: any of the work (data_pipeline.generate, .stats, .merge).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from data_pipeline.item import DEFAULT_MAX_ATTEMPTS
from interpreter.recycle import DEFAULT_KERNEL_REUSE
from llm.hf_loading import DTYPE_CHOICES, QUANTIZE_CHOICES
from llm.openai_backend import DEFAULT_MAX_RETRIES, DEFAULT_REQUEST_TIMEOUT_S
from llm.options import DEFAULT_DTYPE, non_negative_int
from llm.select import BACKEND_NAMES

EXIT_BAD_INPUT = 2
STAGES = (
    "teaching",
    "self-learning",
)  # AIEV-Instruct's two stages (data_pipeline.aiev switches between them)


def add_generate_parser(commands) -> argparse.ArgumentParser:
    p = commands.add_parser(
        "generate",
        help="seeds -> execution-verified multi-turn dialogues (AIEV-Instruct's teaching stage)",
        description="Run AIEV-Instruct: a questioner turns each seed into a problem, a programmer solves it with "
        "unit tests, the code runs in a sandbox, failures are analysed and fixed until verified or rejected.",
    )
    seeds = p.add_argument_group("seeds")
    source = seeds.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--seeds",
        metavar="PATH",
        help="JSONL or Parquet file, a folder of them, or a datasets hub id (e.g. ise-uiuc/Magicoder-OSS-Instruct-75K)",
    )
    source.add_argument(
        "--seeds-from-source",
        metavar="DIR",
        nargs="?",
        const="",
        help="cut OSS-Instruct-style snippets from a local source tree (default: the installed standard library)",
    )
    seeds.add_argument("--seed-field", default="seed", help="column holding the seed text (default: seed)")
    seeds.add_argument("--limit", type=int, metavar="N", help="use only the first N items (after --shard)")

    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="DIR", help="run folder (created; rerun to resume)")
    out.add_argument("--shard", metavar="K/N", help="only items whose id falls in shard K of N (0 <= K < N)")
    out.add_argument(
        "--push-to-hub", metavar="REPO", help="after the run, push dialogues.jsonl to this hub dataset"
    )
    out.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")

    teacher = p.add_argument_group("teacher (questioner, and programmer unless given below)")
    teacher.add_argument(
        "--teacher-base-url", metavar="URL", help="OpenAI-compatible server, e.g. https://api.openai.com/v1"
    )
    teacher.add_argument(
        "--teacher-model", metavar="NAME", help="served model name (default: the server's first)"
    )
    key = teacher.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key",
        metavar="KEY",
        help="API key (visible in the process list: prefer --api-key-file or $OPENAI_API_KEY)",
    )
    key.add_argument("--api-key-file", type=Path, metavar="PATH", help="read the API key from PATH")
    teacher.add_argument(
        "--teacher-backend",
        choices=BACKEND_NAMES,
        default="openai",
        help="hf: --teacher-model is a local model loaded in-process (the student in the self-learning stage)",
    )
    teacher.add_argument(
        "--stage",
        choices=STAGES,
        default=STAGES[0],
        help="recorded in every item's meta (self-learning: the student generates; python -m data_pipeline aiev)",
    )
    teacher.add_argument(
        "--programmer-backend", choices=BACKEND_NAMES, help="another model as the programmer"
    )
    teacher.add_argument("--programmer-model", metavar="NAME", help="its served name, or hf folder / hub id")
    teacher.add_argument("--programmer-base-url", metavar="URL", help="its server (default: the teacher's)")
    teacher.add_argument(
        "--quantize", default="none", choices=QUANTIZE_CHOICES, help="hf programmer (default none)"
    )
    teacher.add_argument("--dtype", default=DEFAULT_DTYPE, choices=DTYPE_CHOICES, help="hf programmer")
    teacher.add_argument(
        "--max-retries",
        type=int,
        default=DEFAULT_MAX_RETRIES,
        metavar="N",
        help="retries of a request after 429, 5xx, a timeout or a dropped connection, with backoff and "
        f"jitter, honouring Retry-After (default {DEFAULT_MAX_RETRIES})",
    )
    teacher.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT_S,
        metavar="S",
        help=f"seconds a request may wait for the server (default {DEFAULT_REQUEST_TIMEOUT_S:g})",
    )

    gen = p.add_argument_group("generation")
    gen.add_argument(
        "--max-attempts", type=int, default=DEFAULT_MAX_ATTEMPTS, help="programmer attempts per item"
    )
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--max-new-tokens", type=int, default=2048)
    gen.add_argument("--seed", type=int, default=0, help="sampling seed, part of the cache key")
    gen.add_argument("--prompts", metavar="DIR", help="prompt folder (default: data_pipeline/prompts)")

    run = p.add_argument_group("execution and concurrency")
    run.add_argument(
        "--sandbox",
        default="auto",
        choices=("auto", "docker", "local", "none"),
        help="where code runs (none: dev only)",
    )
    run.add_argument("--execution-timeout", type=float, default=30.0, metavar="S", help="per block")
    run.add_argument("--memory-mb", type=int, metavar="N", help="sandbox memory limit")
    run.add_argument("--concurrency", type=int, default=8, help="items in flight")
    run.add_argument(
        "--max-model-calls", type=int, metavar="N", help="model calls at once (default: --concurrency)"
    )
    run.add_argument(
        "--max-executions", type=int, metavar="N", help="sandbox executions at once (default: CPUs)"
    )
    run.add_argument(
        "--warm-kernels",
        type=non_negative_int,
        metavar="N",
        help="kernels started ahead in the pool (default: one per CPU; more would boot no sooner, each "
        "slowing the others)",
    )
    run.add_argument(
        "--kernel-reuse",
        type=non_negative_int,
        default=DEFAULT_KERNEL_REUSE,
        metavar="N",
        help="items one kernel serves in turn, reset inside the sandbox between them (variables, imports, "
        "files, cwd, environment, patched builtins) and retired after an sh block, a timeout, a crash or "
        f"lost state; 0: a fresh kernel per item, strict isolation, slower (default {DEFAULT_KERNEL_REUSE}; "
        "see data_pipeline/README.md)",
    )

    cost = p.add_argument_group("cost and rate limits")
    cost.add_argument("--rpm", type=int, metavar="N", help="requests per minute (per model)")
    cost.add_argument("--tpm", type=int, metavar="N", help="tokens per minute (per model)")
    cost.add_argument("--max-cost", type=float, metavar="USD", help="stop cleanly once this much is spent")
    cost.add_argument(
        "--prices", metavar="FILE", help="per-model prices (default: data_pipeline/prices.json)"
    )
    cost.add_argument("--no-cache", action="store_true", help="do not read or write the model-call cache")

    clean = p.add_argument_group("decontamination")
    clean.add_argument(
        "--no-decontamination", dest="decontaminate", action="store_false", help="skip the benchmark check"
    )
    clean.add_argument("--mbpp-plus-file", metavar="FILE", help="also check against MBPP+ (EvalPlus release)")
    clean.add_argument("--ds1000-file", metavar="FILE", help="also check against DS-1000 (its JSONL)")
    p.set_defaults(func=cmd_generate)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data_pipeline", description="AIEV-Instruct data generation"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_generate_parser(commands)

    st = commands.add_parser(
        "stats", help="the dataset table (items, rounds, multi-turn share, ...) and plots"
    )
    st.add_argument("dir", metavar="DIR", help="a run folder (or a merged one)")
    st.add_argument("--plots", metavar="DIR", help="where the PNG plots go (default: DIR)")
    st.add_argument("--json", action="store_true", help="print the table as JSON")
    st.set_defaults(func=cmd_stats)

    mg = commands.add_parser("merge", help="join shard folders, de-duplicating across them")
    mg.add_argument("shards", nargs="+", metavar="SHARD_DIR")
    mg.add_argument("--out", required=True, metavar="DIR")
    mg.set_defaults(func=cmd_merge)

    from data_pipeline.aiev.cli import add_aiev_parsers

    add_aiev_parsers(commands)  # `aiev` and `aiev-report`: the rounds over generate, training and evaluation
    return parser


def cmd_generate(args) -> int:
    from data_pipeline.generate import generate

    code = generate(args)
    if code == 0 and args.push_to_hub:
        from data_pipeline.hub import push_to_hub

        push_to_hub(args.out, args.push_to_hub)
    return code


def cmd_stats(args) -> int:
    from data_pipeline.stats import print_stats

    return print_stats(args.dir, plots=args.plots, as_json=args.json)


def cmd_merge(args) -> int:
    from data_pipeline.merge import merge

    return merge(args.shards, args.out)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        # Bad input of every kind is a ValueError carrying one line (SetupError, SeedError, PromptError,
        # RunFolderError, DialogueError, BackendError's flags, ...); OSError: an unreadable or full disk.
        text = str(exc).strip()
        print(f"error: {text.splitlines()[0] if text else type(exc).__name__}", file=sys.stderr)
        return EXIT_BAD_INPUT
