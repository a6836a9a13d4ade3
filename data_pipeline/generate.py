"""`python -m data_pipeline generate`: seeds in, execution-verified dialogues out, resumable and concurrent.

Order of work, so bad input fails in one line before anything is paid for or written:
  1. seeds (file, folder, hub id or a source tree), prompts, prices, shard;
  2. the sandbox (its availability checked) and the decontamination references;
  3. the teacher: the OpenAI-compatible server is asked for its model list (an unreachable server, a wrong
     key or an unknown model is one line), or the local model is loaded; then the run folder's identity;
  4. then items run: `--concurrency` at a time through the one concurrent runner (interpreter.batch), model
     calls bounded by `--max-model-calls` and sandbox executions by `--max-executions`, each item with a
     kernel of its own from the pool: a fresh one, or with `--kernel-reuse N` one that served an earlier
     item and was reset inside the sandbox (interpreter.recycle); results are written in seed order as
     they complete.
A budget stop, Ctrl-C or SIGTERM stops cleanly: nothing new starts, items in flight are dropped (redone from
the cache next time), and the summary says how to continue. At the end (all items done) duplicates are
removed and `summary.json` written.

What it deliberately does not do: define an item's steps (data_pipeline.item), the verification rule
(data_pipeline.verify) or the file layout (data_pipeline.runfolder).
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

from data_pipeline.cache import CACHE_FILE, CallCache
from data_pipeline.cleaning import Decontaminator, dedup_folder
from data_pipeline.client import ModelClient
from data_pipeline.item import (
    FAILED,
    REJECTED,
    STAGE,
    STOPPED,
    VERIFIED,
    ItemRunner,
    ItemSession,
    ItemSettings,
    item_id,
)
from data_pipeline.limits import Budget, Prices, RateLimiter
from data_pipeline.prompts import load_prompts
from data_pipeline.runfolder import DIALOGUES_FILE, REJECTED_FILE, REMOVED_FILE, RunFolder, fingerprint

PIPELINE_VERSION = 1  # bump when the item procedure changes in a way the prompts' versions do not show


class SetupError(ValueError):
    """Bad input found before any paid work; the message is one line."""


def parse_shard(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise SetupError(f"--shard must look like K/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= k < n:
        raise SetupError(f"--shard K/N needs 0 <= K < N, got {text!r}")
    return k, n


def in_shard(item: str, shard: tuple[int, int] | None) -> bool:
    return shard is None or int(item, 16) % shard[1] == shard[0]


@dataclass
class Progress:
    """What the progress bar and the final summary show."""

    total: int
    done: int = 0
    verified: int = 0
    rejected: int = 0
    removed: int = 0
    failed: int = 0
    attempts: int = 0
    tokens: int = 0
    cost: float = 0.0
    reasons: collections.Counter = field(default_factory=collections.Counter)

    def postfix(self) -> dict:
        finished = self.verified + self.rejected + self.removed
        return {
            "verified": f"{self.verified / finished:.0%}" if finished else "-",
            "attempts": f"{self.attempts / finished:.2f}" if finished else "-",
            "tokens": self.tokens,
            "cost": f"${self.cost:.2f}",
        }


def load_seed_list(args) -> list:
    from data_pipeline import seeds

    # Without --shard the first --limit seeds are the items: stop reading there (a source tree is big).
    limit = args.limit if not args.shard else None
    try:
        if args.seeds is not None:
            return seeds.load_seeds(args.seeds, args.seed_field, limit=limit)
        return seeds.seeds_from_source(args.seeds_from_source or None, limit=limit)
    except seeds.SeedError as exc:
        raise SetupError(str(exc)) from None


def build_params(args):
    """Decoding for both roles (the paper used one model for both)."""
    from llm.base import GenerationParams

    return GenerationParams(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens
    )


def backend_flags(args, role: str) -> argparse.Namespace:
    """One role's backend as the flags llm.options understands (the one place that turns flags into a backend)."""
    from llm.options import DEFAULT_DTYPE, DEFAULT_QUANTIZE

    if role == "teacher" and getattr(args, "teacher_backend", "openai") == "hf":
        # The self-learning stage: a local model (the student's checkpoint) plays the teacher's roles.
        if not args.teacher_model:
            raise SetupError("--teacher-backend hf needs --teacher-model (a model folder or hub id)")
        return argparse.Namespace(
            backend="hf",
            model=args.teacher_model,
            quantize=args.quantize,
            dtype=args.dtype,
            **dict.fromkeys(
                ("base_url", "api_key", "api_key_file", "tokenizer", "max_retries", "request_timeout")
            ),
            completions=False,
        )
    if role == "teacher" or args.programmer_backend in (None, "openai"):
        base_url = (
            args.teacher_base_url if role == "teacher" else args.programmer_base_url or args.teacher_base_url
        )
        if not base_url and not os.environ.get("OPENAI_BASE_URL"):
            raise SetupError("the teacher needs --teacher-base-url URL (e.g. https://api.openai.com/v1)")
        return argparse.Namespace(
            backend="openai",
            model=args.teacher_model if role == "teacher" else args.programmer_model or args.teacher_model,
            base_url=base_url,
            api_key=args.api_key,
            api_key_file=args.api_key_file,
            completions=False,
            tokenizer=None,
            max_retries=args.max_retries,
            request_timeout=args.request_timeout,
            quantize=DEFAULT_QUANTIZE,
            dtype=DEFAULT_DTYPE,
        )
    if not args.programmer_model:
        raise SetupError("--programmer-backend hf needs --programmer-model (a folder or hub id)")
    return argparse.Namespace(
        backend="hf",
        model=args.programmer_model,
        quantize=args.quantize,
        dtype=args.dtype,
        **dict.fromkeys(
            ("base_url", "api_key", "api_key_file", "tokenizer", "max_retries", "request_timeout")
        ),
        completions=False,
    )


def build_backend(args, role: str):
    """The backend for one role; BackendError or ValueError (one line) when it cannot be reached or loaded."""
    from llm.options import backend_from_args

    return backend_from_args(backend_flags(args, role))


def model_name(backend, fallback: str) -> str:
    """The name recorded for a backend's model: the served name (openai) or the folder / hub id (hf)."""
    for attribute in ("model_id", "model"):
        value = getattr(backend, attribute, None)
        if isinstance(value, str) and value:
            return value
    return fallback


def run_identity(args, questioner: str, programmer: str, prompts) -> dict:
    identity = {
        "pipeline_version": PIPELINE_VERSION,
        "questioner_model": questioner,
        "programmer_model": programmer,
        "prompts": prompts.versions,
        "max_attempts": args.max_attempts,
        "decoding": {
            "temperature": args.temperature,
            "top_p": args.top_p,
            "max_new_tokens": args.max_new_tokens,
        },
        "seed": args.seed,
    }
    stage = getattr(args, "stage", STAGE)
    if (
        stage != STAGE
    ):  # only when not "teaching", so folders made before this key existed keep their identity
        identity["stage"] = stage
    # Items are named by the seed and this fingerprint: the same item in every shard layout (the shard is
    # part of the folder's identity, not of the item's).
    identity["fingerprint"] = fingerprint(identity)
    identity["shard"] = args.shard or ""
    return identity


def _install_signal_handlers(stop: threading.Event) -> dict:
    """Ctrl-C or SIGTERM: stop cleanly (a second Ctrl-C interrupts). Returns the handlers to restore."""

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        print("\nstopping: nothing new starts; items in flight are redone next run", file=sys.stderr)
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, handler)
    return previous


def generate(args) -> int:
    from interpreter.batch import run_batch
    from interpreter.loop import Cancel
    from interpreter.recycle import RecyclingPool
    from interpreter.sandboxes.base import Limits, SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session
    from llm.base import BackendError

    # 1. Cheap checks on the input.
    shard = parse_shard(args.shard)
    if args.max_attempts < 1:
        raise SetupError("--max-attempts must be at least 1")
    if args.concurrency < 1:
        raise SetupError("--concurrency must be at least 1")
    prompts = load_prompts(args.prompts)
    prices = Prices.load(args.prices)
    seed_list = load_seed_list(args)
    if not seed_list:
        raise SetupError("no seeds: the seed source holds no non-empty seed")

    # 2. Sandbox and decontamination references (local, free).
    limits = Limits(memory_mb=args.memory_mb) if args.memory_mb else Limits()
    try:
        sandbox = make_sandbox(args.sandbox, limits)
    except SandboxUnavailable as exc:
        raise SetupError(str(exc)) from None
    decontaminator = None
    if args.decontaminate:
        from data_pipeline.decontaminate import DecontaminationError

        try:
            decontaminator = Decontaminator(args.mbpp_plus_file, args.ds1000_file)
        except DecontaminationError as exc:
            raise SetupError(str(exc)) from None

    # 3. The teacher (and the programmer when it is another model): reached before anything is paid.
    try:
        teacher = build_backend(args, "teacher")
        programmer_backend = teacher if args.programmer_backend is None else build_backend(args, "programmer")
    except BackendError as exc:
        raise SetupError(str(exc)) from None
    questioner_model = model_name(teacher, args.teacher_model or "teacher")
    programmer_model = model_name(programmer_backend, args.programmer_model or questioner_model)
    if args.max_cost is not None:
        local_teacher = getattr(args, "teacher_backend", "openai") == "hf"
        paid = set() if local_teacher else {questioner_model}
        if args.programmer_backend != "hf" and not (local_teacher and args.programmer_backend is None):
            paid.add(programmer_model)
        for name in sorted(paid):
            if not prices.knows(name):
                raise SetupError(
                    f"--max-cost needs a price for {name!r}: add it to {prices.source} or pass --prices FILE"
                )

    identity = run_identity(args, questioner_model, programmer_model, prompts)
    folder = RunFolder(args.out)
    folder.claim(identity)  # the first thing written, once every check has passed

    # The items of this run: every seed's id under this configuration, this shard only, first --limit.
    jobs, seen = [], set()
    for seed in seed_list:
        iid = item_id(seed.id, identity["fingerprint"])
        if iid in seen or not in_shard(iid, shard):
            continue
        seen.add(iid)
        jobs.append((iid, seed))
        if args.limit is not None and len(jobs) >= args.limit:
            break
    done_ids = folder.completed_ids()

    # A loop Cancel, not a plain Event: the loop subscribes to it instead of watching it from a polling
    # thread per item (32 items in flight were 32 threads waking 20 times a second).
    stop = Cancel()
    budget = Budget(folder.path, args.max_cost)
    cache = None if args.no_cache else CallCache(folder.file(CACHE_FILE))
    model_slots = threading.Semaphore(args.max_model_calls or args.concurrency)
    clients = {}

    def client(backend, name):
        if id(backend) not in clients:
            local = backend.__class__.__name__ == "HFBackend"
            clients[id(backend)] = ModelClient(
                backend,
                name,
                prices=prices,
                budget=budget,
                cache=cache,
                limiter=RateLimiter(args.rpm, args.tpm),
                call_slots=threading.Semaphore(1) if local else model_slots,  # one local model, one call
                seed=args.seed,
                stop_event=stop,
            )
        return clients[id(backend)]

    questioner = client(teacher, questioner_model)
    programmer = client(programmer_backend, programmer_model)
    exec_slots = threading.Semaphore(args.max_executions or max(1, os.cpu_count() or 1))
    # Kernels: `--warm-kernels` started ahead (one per CPU), and with `--kernel-reuse N` reset and handed to
    # the next job, up to N jobs each (interpreter.recycle); a failed attempt parks its kernel until the
    # revision (ItemSession.park).
    warm = (os.cpu_count() or 1) if args.warm_kernels is None else args.warm_kernels
    pool = RecyclingPool(
        lambda: Session(sandbox, timeout_s=args.execution_timeout),
        reuse=args.kernel_reuse,
        warm=min(warm, args.concurrency),
    )
    settings = ItemSettings(
        questioner_params=build_params(args),
        programmer_params=build_params(args),
        max_attempts=args.max_attempts,
        execution_timeout_s=args.execution_timeout,
    )
    runner = ItemRunner(
        questioner,
        programmer,
        prompts,
        settings,
        # Without reuse every kernel is fresh: parking between attempts would cost each failing item a start.
        lambda: ItemSession(
            pool.acquire, exec_slots, pool.release, park_between_attempts=args.kernel_reuse > 0
        ),
        stop,
        identity,
    )
    progress = Progress(total=len(jobs) - len(done_ids & seen))
    bar = _Bar(progress, args.progress)
    writers = {name: folder.writer(name) for name in (DIALOGUES_FILE, REJECTED_FILE, REMOVED_FILE)}

    def work(seed, cancel: threading.Event):
        return runner.run(seed, item_id(seed.id, identity["fingerprint"]))

    def on_result(iid: str, outcome) -> None:
        from interpreter.dialogue import Dialogue

        if outcome.status in (VERIFIED, REJECTED):
            record = outcome.record
            target = DIALOGUES_FILE if outcome.status == VERIFIED else REJECTED_FILE
            if outcome.status == VERIFIED and decontaminator is not None:
                removal = decontaminator.check(record)
                if removal is not None:
                    record["meta"]["removed"] = removal
                    target = REMOVED_FILE
            writers[target].append(Dialogue.from_json(record, f"item {iid}"))
            progress.done += 1
            progress.attempts += record["meta"]["attempts"]
            progress.tokens += sum(
                u["prompt_tokens"] + u["completion_tokens"] for u in record["meta"]["usage"].values()
            )
            if target == DIALOGUES_FILE:
                progress.verified += 1
            elif target == REJECTED_FILE:
                progress.rejected += 1
                progress.reasons[_reason_kind(outcome.reason)] += 1
            else:
                progress.removed += 1
        elif outcome.status == FAILED:
            progress.failed += 1
            progress.reasons[f"failed (redone next run): {outcome.reason}"] += 1
        progress.cost = budget.spent - budget.spent_before
        if budget.exhausted:
            stop.set()
        bar.update(progress, outcome.status != STOPPED)

    previous_handlers = _install_signal_handlers(stop)
    started = time.monotonic()
    try:
        summary = run_batch(
            jobs,
            work,
            concurrency=args.concurrency,
            on_result=on_result,
            skip=done_ids,
            cancel=stop,
            progress=False,
        )
    finally:
        for sig, old in previous_handlers.items():
            signal.signal(sig, old)
        bar.close()
        for writer in writers.values():
            writer.close()
        pool.close()
        budget.close()
        if cache is not None:
            cache.close()
        for backend in {id(teacher): teacher, id(programmer_backend): programmer_backend}.values():
            backend.close()
    complete = not summary.cancelled and progress.failed == 0
    duplicates = dedup_folder(folder) if complete else 0
    report = {
        "items": len(jobs),
        "already_done": len(done_ids & seen),
        "this_run": {
            "verified": progress.verified,
            "rejected": progress.rejected,
            "removed_by_decontamination": progress.removed,
            "failed": progress.failed,
            "not_run": summary.not_run,
        },
        "removed_as_duplicates": duplicates,
        "failure_reasons": dict(progress.reasons.most_common()),
        "cost_usd_this_run": round(budget.spent - budget.spent_before, 6),
        "cost_usd_total": round(budget.spent, 6),
        "cache": {"hits": cache.hits, "misses": cache.misses} if cache is not None else None,
        "elapsed_s": round(time.monotonic() - started, 2),
        "kernels": {
            "reuse": args.kernel_reuse,
            "started": pool.stats["started"],
            "reused": pool.stats["reused"],
            "retired": dict(pool.retire_reasons.most_common()),
            "items_waited_s": round(pool.stats["wait_s"], 2),
        },
        "complete": complete,
    }
    folder.write_summary(report)
    _print_summary(report, args, budget)
    if budget.exhausted:
        return 3
    return 0 if complete else 1


def _reason_kind(reason: str) -> str:
    """Group rejection reasons for the summary (drop the attempt count)."""
    return reason.split(": ", 1)[1] if reason.startswith("not verified after") else reason


def _print_summary(report: dict, args, budget: Budget) -> None:
    run = report["this_run"]
    lines = [
        f"{report['items']} items ({report['already_done']} done before): this run {run['verified']} verified, "
        f"{run['rejected']} rejected, {run['removed_by_decontamination']} removed by decontamination, "
        f"{run['failed']} failed, {run['not_run']} not run; {report['removed_as_duplicates']} duplicates removed; "
        f"${report['cost_usd_this_run']:.4f} spent (${report['cost_usd_total']:.4f} in this folder)"
    ]
    if report["failure_reasons"]:
        lines.append("failure reasons:")
        lines += [f"  {count:5d}  {reason}" for reason, count in report["failure_reasons"].items()]
    if budget.exhausted:
        lines.append(
            f"stopped: cost limit ${args.max_cost:.2f} reached; rerun with a higher --max-cost to continue"
        )
    elif not report["complete"]:
        lines.append(
            "not complete: rerun the same command to continue (finished items are kept, calls are cached)"
        )
    print("\n".join(lines), file=sys.stderr)


class _Bar:
    def __init__(self, progress: Progress, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=progress.total, unit="item", file=sys.stderr, dynamic_ncols=True)

    def update(self, progress: Progress, advanced: bool) -> None:
        if self.bar is not None:
            if advanced:
                self.bar.update(1)
            self.bar.set_postfix(progress.postfix(), refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
