"""Ask a model for solutions, the way AutoCoder's authors evaluated it, and keep every sample on disk.

The user turn is "Write a solution to the following problem:" and the problem in a python fence; the
backend applies the model's chat template with add_generation_prompt=True; decoding is greedy with 1024
new tokens unless asked otherwise. The reply is cut to the solution by evaluation.sanitize.

Two modes:
- plain: one reply per sample;
- with the interpreter: the model may run code through `interpreter.loop.run_loop` in a fresh sandboxed
  `Session` (up to `max_rounds` executions, each result fed back) before its final answer; the solution is
  taken from its assistant turns (the last block that defines the entry point).

Samples are appended to `samples.jsonl` (EvalPlus's {"task_id", "solution"}, through
`interpreter.jsonl`) and the dialogues to `transcripts.jsonl` (`interpreter.dialogue` records; meta:
"source": "evaluation", "task_id", "sample_index" and the generation settings of `GenerationConfig.to_json`)
as they are made; a rerun on the same folder resumes after the samples already there.
With `concurrency` > 1 the samples are generated that many at a time
through the one concurrent runner (`interpreter.batch.run_batch`, each dialogue with its own session from
a warm pool) and still written in the serial order, so the files are the same as a serial run's.

What this module deliberately does not do: score (evaluation.scoring) or load models (llm.select).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from evaluation.problems import Problem
from evaluation.sanitize import sanitize
from interpreter.dialogue import Dialogue, DialogueWriter
from interpreter.jsonl import JsonlAppender, read_jsonl
from interpreter.kernel import DEFAULT_EXECUTION_TIMEOUT_S
from interpreter.loop import LoopConfig
from llm.base import DEFAULT_MAX_NEW_TOKENS

INSTRUCTION = "Write a solution to the following problem:\n```python\n{prompt}\n```"
SAMPLES_FILE = "samples.jsonl"
TRANSCRIPTS_FILE = "transcripts.jsonl"


def user_prompt(problem: Problem, instruction: str = INSTRUCTION) -> str:
    return instruction.format(prompt=problem.prompt.strip())


@dataclass
class GenerationConfig:
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    with_interpreter: bool = False
    max_rounds: int = LoopConfig.max_rounds  # the loop's default, defined there once
    execution_timeout_s: float = DEFAULT_EXECUTION_TIMEOUT_S
    # The user turn; "{prompt}" is the problem. The data pipeline's rounds (data_pipeline.aiev) pass "{prompt}"
    # alone: an item's problem is already a request, asked as the programmer was asked it.
    instruction: str = INSTRUCTION

    def params(self):
        from llm.base import GenerationParams

        return GenerationParams(
            temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens
        )

    def to_json(self) -> dict:
        data = {
            "prompt": self.instruction,
            "chat_template": "the model's, add_generation_prompt=True",
            "n_samples": self.n_samples,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "with_interpreter": self.with_interpreter,
        }
        if self.with_interpreter:
            data["max_rounds"] = self.max_rounds
        return data


def read_samples(path: Path) -> list[dict]:
    """The samples in `path`; a line torn by an interrupted run is ignored (and repaired when appending)."""
    return read_jsonl(path)


def _plain_reply(backend, problem: Problem, config: GenerationConfig, cancel=None) -> list[dict]:
    messages = [{"role": "user", "content": user_prompt(problem, config.instruction)}]
    reply = "".join(backend.stream(messages, config.params(), cancel))
    return messages + [{"role": "assistant", "content": reply}]


def _interpreter_reply(
    backend, problem: Problem, config: GenerationConfig, session, cancel=None
) -> list[dict]:
    from interpreter.loop import Done, ErrorEvent, run_loop

    dialogue = [{"role": "user", "content": user_prompt(problem, config.instruction)}]
    loop_config = LoopConfig(
        generation=config.params(),
        # A model that never learnt the execution tokens (the stand-in) gets its fenced blocks run.
        execution_mode="auto" if getattr(backend, "speaks_execution_tokens", True) else "always",
        max_rounds=config.max_rounds,
        execution_timeout_s=config.execution_timeout_s,
    )
    errors = []
    for event in run_loop(backend, dialogue, session, loop_config, cancel=cancel):
        if isinstance(event, ErrorEvent):
            errors.append(event.message)
        if isinstance(event, Done):
            if event.reason == "error":
                # The interpreter could not do its job (kernel or backend failure): a score would be
                # meaningless. Stop; the samples written so far are kept and a rerun resumes.
                raise RuntimeError(f"{problem.task_id}: the interpreter loop failed: {'; '.join(errors)}")
            return event.messages
    raise RuntimeError(f"the interpreter loop ended without a result: {'; '.join(errors) or 'no Done event'}")


def solution_from_dialogue(messages: list[dict], entry_point: str | None) -> str:
    """The solution in the assistant's turns (with the interpreter, the last block that defines it wins)."""
    text = "\n".join(m["content"] for m in messages if m["role"] == "assistant")
    return sanitize(text, entry_point)


def generate(
    backend,
    problems: list[Problem],
    out_dir: Path,
    config: GenerationConfig,
    *,
    sandbox=None,
    run_id: str = "",
    progress: bool = True,
    on_sample: Callable[[dict], None] | None = None,
    concurrency: int = 1,
    cancel: threading.Event | None = None,
) -> Path:
    """Write `config.n_samples` samples per problem to out_dir/samples.jsonl (resuming); return its path.

    `concurrency` samples are generated at once; the files are written in the serial order regardless.
    """
    from interpreter.batch import run_batch

    out_dir.mkdir(parents=True, exist_ok=True)
    samples_path = out_dir / SAMPLES_FILE
    transcripts_path = out_dir / TRANSCRIPTS_FILE
    done: dict[str, int] = {}
    for row in read_samples(samples_path):
        done[row["task_id"]] = done.get(row["task_id"], 0) + 1
    jobs = [
        (f"{run_id}{p.task_id}#{i}", (p, i))
        for p in problems
        for i in range(done.get(p.task_id, 0), config.n_samples)
    ]
    pool = None
    if config.with_interpreter and jobs:
        from interpreter.pool import SessionPool
        from interpreter.session import Session

        # Kernels boot in the background while earlier dialogues run; each dialogue gets a fresh one.
        pool = SessionPool(
            lambda: Session(sandbox, timeout_s=config.execution_timeout_s), size=min(concurrency, len(jobs))
        )

    to_acquire = [len(jobs)]
    lock = threading.Lock()

    def work(job: tuple[Problem, int], stop: threading.Event) -> list[dict]:
        problem, _ = job
        if pool is None:
            return _plain_reply(backend, problem, config, stop)
        with lock:
            to_acquire[0] -= 1
            # Near the end, warm no more kernels than dialogues are left to start.
            pool.size = min(pool.size, to_acquire[0])
        session = pool.acquire(wait_s=60)
        try:
            return _interpreter_reply(backend, problem, config, session, stop)
        finally:
            session.close()

    # Both appenders repair a line torn by an interrupted run before appending after it.
    samples, transcripts = JsonlAppender(samples_path), DialogueWriter(transcripts_path)
    by_id = dict(jobs)

    def write(job_id: str, messages: list[dict]) -> None:
        problem, index = by_id[job_id]
        row = {"task_id": problem.task_id, "solution": solution_from_dialogue(messages, problem.entry_point)}
        meta = {"source": "evaluation", "task_id": problem.task_id, "sample_index": index, **config.to_json()}
        transcripts.append(Dialogue(id=job_id, messages=messages, meta=meta))
        samples.append(row)
        if on_sample:
            on_sample(row)

    try:
        summary = run_batch(
            jobs,
            work,
            concurrency=concurrency,
            on_result=write,
            cancel=cancel,
            progress=progress,
            desc="generating",
        )
        print(f"generation: {summary.line()} (concurrency {concurrency})", file=sys.stderr)
    finally:
        if pool is not None:
            pool.close()
        samples.close()
        transcripts.close()
    return samples_path
