"""`python -m evaluation run|score`: generate and score a benchmark, or score an existing samples file.

    python -m evaluation run --benchmark humaneval+ --model Bin12345/AutoCoder_S_6.7B --out runs/he+
    python -m evaluation run --benchmark mbpp --backend openai --base-url http://localhost:8000/v1 --concurrency 16 \
        --out runs/mbpp
    python -m evaluation run --benchmark humaneval --model M --with-interpreter --compare-plain --out runs/ablation
    python -m evaluation score --benchmark humaneval+ --samples runs/he+/samples.jsonl

Every error is one line on stderr and exit status 2.

What this module deliberately does not do: anything but parse arguments and call the package's functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from evaluation.datasets import BENCHMARKS, MBPP_PLUS_ENV, Benchmark, DatasetError, load_benchmark
from evaluation.execution import TimeLimits
from evaluation.generation import GenerationConfig, generate, read_samples
from evaluation.problems import DEFAULT_MIN_TIME_LIMIT_S, DEFAULT_TIME_LIMIT_FACTOR
from evaluation.results import comparison_table, results_document, summary_table, write_results
from evaluation.scoring import DEFAULT_SANDBOX, ScoringError, make_eval_sandbox, score_problems
from interpreter.loop import LoopConfig
from interpreter.sandboxes.select import SANDBOX_NAMES
from llm.base import DEFAULT_MAX_NEW_TOKENS
from llm.options import add_backend_arguments, backend_from_args, check_backend_args

# Samples generated at once. An OpenAI-compatible server (vLLM, llama.cpp) batches concurrent requests;
# the in-process hf backend generates one reply at a time, so more would only interleave them.
DEFAULT_CONCURRENCY = {"hf": 1, "openai": 8}


def _add_common(parser: argparse.ArgumentParser) -> None:
    data = parser.add_argument_group("data")
    data.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    data.add_argument(
        "--mbpp-plus-file",
        default=None,
        help=f"MBPP+ jsonl(.gz) (default: ${MBPP_PLUS_ENV}); needed for mbpp+",
    )
    data.add_argument("--limit", type=int, default=None, help="only the first K problems")
    run = parser.add_argument_group("test execution")
    run.add_argument("--sandbox", default=DEFAULT_SANDBOX, choices=SANDBOX_NAMES)
    run.add_argument("--workers", type=int, default=None, help="parallel test programs (default: CPU count)")
    run.add_argument(
        "--min-time-limit", type=float, default=DEFAULT_MIN_TIME_LIMIT_S, help="seconds per input, at least"
    )
    run.add_argument(
        "--time-limit-factor",
        type=float,
        default=DEFAULT_TIME_LIMIT_FACTOR,
        help="x the canonical solution's time",
    )
    run.add_argument(
        "--cache-dir", type=Path, default=None, help="reference outputs cache (default ~/.cache/autocoder)"
    )
    run.add_argument("--no-cache", action="store_true", help="recompute the canonical solutions' outputs")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluation", description="HumanEval(+)/MBPP(+) pass@k")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="generate with a model, then score")
    _add_common(run)
    add_backend_arguments(run)  # --backend --model --base-url --api-key(-file) ... (llm.options)
    gen = run.add_argument_group("generation")
    gen.add_argument("--n-samples", type=int, default=1)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--max-new-tokens", type=int, default=DEFAULT_MAX_NEW_TOKENS)
    gen.add_argument(
        "--with-interpreter", action="store_true", help="let the model run code before answering"
    )
    gen.add_argument(
        "--max-rounds",
        type=int,
        default=LoopConfig.max_rounds,
        help=f"executions fed back (with --with-interpreter; default {LoopConfig.max_rounds})",
    )
    gen.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="samples generated at once, each dialogue with its own kernel; the output is the same as a serial "
        f"run's (default: {DEFAULT_CONCURRENCY['hf']} for --backend hf, {DEFAULT_CONCURRENCY['openai']} for "
        "openai, whose servers batch concurrent requests)",
    )
    gen.add_argument(
        "--compare-plain",
        action="store_true",
        help="with --with-interpreter: also generate without it and print both scores side by side",
    )
    run.add_argument(
        "--out", type=Path, required=True, help="folder for samples.jsonl, transcripts, results.json"
    )

    score = sub.add_parser("score", help="score an existing samples file (EvalPlus format)")
    _add_common(score)
    score.add_argument("--samples", type=Path, required=True, help="jsonl of {task_id, solution}")
    score.add_argument(
        "--out", type=Path, default=None, help="folder for results.json (default: the samples' folder)"
    )
    return parser


def _check_args(args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.command == "run":
        if args.n_samples < 1:
            raise ValueError("--n-samples must be at least 1")
        if args.n_samples > 1 and args.temperature == 0:
            raise ValueError(
                "--n-samples > 1 with greedy decoding gives identical samples; set --temperature > 0"
            )
        if args.compare_plain and not args.with_interpreter:
            raise ValueError("--compare-plain compares against --with-interpreter; add --with-interpreter")
        if args.max_rounds < 0:
            raise ValueError("--max-rounds must be >= 0")
        if args.max_new_tokens < 1:
            raise ValueError("--max-new-tokens must be at least 1")
        if args.concurrency is None:
            args.concurrency = DEFAULT_CONCURRENCY[args.backend]
        if args.concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        check_backend_args(args)


def _benchmark(args: argparse.Namespace) -> tuple[Benchmark, set[str]]:
    """The benchmark cut to --limit, and the task ids of the whole benchmark."""
    benchmark = load_benchmark(args.benchmark, mbpp_plus_file=args.mbpp_plus_file)
    all_ids = {p.task_id for p in benchmark.problems}
    if args.limit is not None:
        benchmark.problems = benchmark.problems[: args.limit]
    return benchmark, all_ids


def _score(
    args,
    benchmark: Benchmark,
    all_ids: set[str],
    samples_path: Path,
    sandbox,
    out_dir: Path,
    generation: dict | None,
) -> dict:
    samples = read_samples(samples_path)
    if not samples:
        raise ScoringError(f"{samples_path} holds no samples")
    for sample in samples:
        if not isinstance(sample.get("solution"), str) and not isinstance(sample.get("completion"), str):
            raise ScoringError(
                f"{samples_path}: sample for {sample.get('task_id')!r} has no 'solution' string"
            )
    present = {s.get("task_id") for s in samples}
    unknown = sorted(str(t) for t in present if t not in all_ids)
    if unknown:
        raise ScoringError(
            f"{samples_path}: {len(unknown)} task ids are not in {benchmark.info.label} (e.g. {unknown[0]!r}); "
            "check --benchmark"
        )
    problems = [p for p in benchmark.problems if p.task_id in present]
    chosen = {p.task_id for p in problems}
    samples = [s for s in samples if s["task_id"] in chosen]  # --limit drops the later tasks' samples
    if len(problems) < len(benchmark.problems):
        print(
            f"note: scoring the {len(problems)} of {len(benchmark.problems)} tasks that have samples",
            file=sys.stderr,
        )
    report = score_problems(
        problems,
        samples,
        sandbox=sandbox or make_eval_sandbox(args.sandbox),
        workers=args.workers,
        time_limits=TimeLimits(args.min_time_limit, args.time_limit_factor),
        cache_dir=args.cache_dir,
        use_cache=not args.no_cache,
        progress=not args.no_progress,
    )
    document = results_document(benchmark, report, generation=generation, samples_file=str(samples_path))
    path = write_results(out_dir, document)
    print(summary_table(document))
    print(f"results: {path}")
    return document


def _load_backend(args: argparse.Namespace):
    return backend_from_args(args)


def _run(args: argparse.Namespace) -> int:
    benchmark, all_ids = _benchmark(args)
    sandbox = make_eval_sandbox(args.sandbox)
    backend = _load_backend(args)
    if getattr(backend, "notice", ""):
        print(f"note: {backend.notice}", file=sys.stderr)
    model_info = {"backend": args.backend, "model": getattr(backend, "model_id", None) or args.model}
    modes = [True] if not args.compare_plain else [False, True]
    if not args.with_interpreter:
        modes = [False]
    documents = {}
    try:
        for with_interpreter in modes:
            config = GenerationConfig(
                n_samples=args.n_samples,
                temperature=args.temperature,
                top_p=args.top_p,
                max_new_tokens=args.max_new_tokens,
                with_interpreter=with_interpreter,
                max_rounds=args.max_rounds,
            )
            out_dir = (
                args.out / ("interpreter" if with_interpreter else "plain") if len(modes) > 1 else args.out
            )
            samples_path = generate(
                backend,
                benchmark.problems,
                out_dir,
                config,
                sandbox=sandbox,
                progress=not args.no_progress,
                concurrency=args.concurrency,
            )
            generation = {**model_info, **config.to_json()}
            documents[with_interpreter] = _score(
                args, benchmark, all_ids, samples_path, sandbox, out_dir, generation
            )
    finally:
        backend.close()
    if len(documents) == 2:
        table = comparison_table(documents[False], documents[True], args.max_rounds)
        print(table)
        (args.out / "comparison.txt").write_text(table + "\n", encoding="utf-8")
        (args.out / "comparison.json").write_text(
            json.dumps(
                {
                    "without_interpreter": documents[False]["scores"],
                    "with_interpreter": documents[True]["scores"],
                },
                indent=1,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


def _score_command(args: argparse.Namespace) -> int:
    if not args.samples.is_file():
        raise ScoringError(f"samples file {args.samples} does not exist")
    benchmark, all_ids = _benchmark(args)
    _score(args, benchmark, all_ids, args.samples, None, args.out or args.samples.parent, None)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from interpreter.sandboxes.base import SandboxUnavailable
    from llm.base import BackendError

    try:
        _check_args(args)
        return _run(args) if args.command == "run" else _score_command(args)
    except (
        DatasetError,
        ScoringError,
        SandboxUnavailable,
        BackendError,
        ValueError,
        OSError,
        RuntimeError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: samples written so far are kept; rerun the same command to resume", file=sys.stderr
        )
        return 130
