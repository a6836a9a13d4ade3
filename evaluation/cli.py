"""`python -m evaluation run|score`: generate and score a benchmark, or score an existing samples file.

    python -m evaluation run --benchmark humaneval+ --model Bin12345/AutoCoder_S_6.7B --out runs/he+
    python -m evaluation run --benchmark mbpp --backend openai --base-url http://localhost:8000/v1 --out runs/mbpp
    python -m evaluation run --benchmark humaneval --model M --with-interpreter --compare-plain --out runs/ablation
    python -m evaluation score --benchmark humaneval+ --samples runs/he+/samples.jsonl

Every error is one line on stderr and exit status 2.

What this module deliberately does not do: anything but parse arguments and call the package's functions.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from evaluation.datasets import BENCHMARKS, MBPP_PLUS_ENV, Benchmark, DatasetError, load_benchmark
from evaluation.execution import TimeLimits
from evaluation.generation import GenerationConfig, generate, read_samples
from evaluation.problems import DEFAULT_MIN_TIME_LIMIT_S, DEFAULT_TIME_LIMIT_FACTOR
from evaluation.results import comparison_table, results_document, summary_table, write_results
from evaluation.scoring import DEFAULT_SANDBOX, ScoringError, make_eval_sandbox, score_problems
from interpreter.sandboxes.select import SANDBOX_NAMES
from llm.hf_loading import DTYPE_CHOICES, QUANTIZE_CHOICES
from llm.select import BACKEND_NAMES


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
    model = run.add_argument_group("model")
    model.add_argument("--model", default=None, help="hub id or local folder (hf), served name (openai)")
    model.add_argument("--backend", default="hf", choices=BACKEND_NAMES)
    model.add_argument("--quantize", default="auto", choices=QUANTIZE_CHOICES)
    model.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES)
    model.add_argument(
        "--base-url", default=None, help="OpenAI-compatible server, e.g. http://localhost:8000/v1"
    )
    gen = run.add_argument_group("generation")
    gen.add_argument("--n-samples", type=int, default=1)
    gen.add_argument("--temperature", type=float, default=0.0, help="0 is greedy")
    gen.add_argument("--top-p", type=float, default=1.0)
    gen.add_argument("--max-new-tokens", type=int, default=1024)
    gen.add_argument(
        "--with-interpreter", action="store_true", help="let the model run code before answering"
    )
    gen.add_argument(
        "--max-rounds", type=int, default=3, help="executions fed back (with --with-interpreter)"
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
        # Nothing leaves the machine unless asked: never fall back to a public API's default URL.
        if args.backend == "openai" and not args.base_url and not os.environ.get("OPENAI_BASE_URL"):
            raise ValueError("--backend openai needs --base-url URL (or OPENAI_BASE_URL)")


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
    from llm.select import load_backend

    return load_backend(
        args.backend,
        args.model,
        quantize=None if args.quantize == "none" else args.quantize,
        dtype=args.dtype,
        base_url=args.base_url,
    )


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
                backend, benchmark.problems, out_dir, config, sandbox=sandbox, progress=not args.no_progress
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
