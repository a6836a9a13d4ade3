"""Ask a model for solutions, the way AutoCoder's authors evaluated it, and keep every sample on disk.

The user turn is "Write a solution to the following problem:" and the problem in a python fence; the
backend applies the model's chat template with add_generation_prompt=True; decoding is greedy with 1024
new tokens unless asked otherwise. The reply is cut to the solution by evaluation.sanitize.

Two modes:
- plain: one reply per sample;
- with the interpreter: the model may run code through `interpreter.loop.run_loop` in a fresh sandboxed
  `Session` (up to `max_rounds` executions, each result fed back) before its final answer; the solution is
  taken from its assistant turns (the last block that defines the entry point).

Samples are appended to `samples.jsonl` (EvalPlus's {"task_id", "solution"}) and the dialogues to
`transcripts.jsonl` (the project's dialogue format) as they are made; a rerun on the same folder resumes
after the samples already there.

What this module deliberately does not do: score (evaluation.scoring) or load models (llm.select).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from evaluation.problems import Problem
from evaluation.sanitize import sanitize

INSTRUCTION = "Write a solution to the following problem:\n```python\n{prompt}\n```"
DEFAULT_MAX_NEW_TOKENS = 1024
SAMPLES_FILE = "samples.jsonl"
TRANSCRIPTS_FILE = "transcripts.jsonl"


def user_prompt(problem: Problem) -> str:
    return INSTRUCTION.format(prompt=problem.prompt.strip())


@dataclass
class GenerationConfig:
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    with_interpreter: bool = False
    max_rounds: int = 3
    execution_timeout_s: float = 30.0

    def params(self):
        from llm.base import GenerationParams

        return GenerationParams(
            temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens
        )

    def to_json(self) -> dict:
        data = {
            "prompt": INSTRUCTION,
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


def _read_jsonl_resumable(path: Path) -> list[dict]:
    """Complete lines of a file an interrupted run may have left half-written (the torn tail is cut off)."""
    if not path.exists():
        return []
    rows, good_bytes = [], 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                rows.append(json.loads(line))
            except ValueError:
                break
            good_bytes += len(line)
    if good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return rows


def read_samples(path: Path) -> list[dict]:
    return _read_jsonl_resumable(path)


class _Appender:
    def __init__(self, path: Path):
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, row: dict) -> None:
        self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def _plain_reply(backend, problem: Problem, config: GenerationConfig) -> list[dict]:
    messages = [{"role": "user", "content": user_prompt(problem)}]
    reply = "".join(backend.stream(messages, config.params()))
    return messages + [{"role": "assistant", "content": reply}]


def _interpreter_reply(backend, problem: Problem, config: GenerationConfig, sandbox) -> list[dict]:
    from interpreter.loop import Done, ErrorEvent, LoopConfig, run_loop
    from interpreter.session import Session

    dialogue = [{"role": "user", "content": user_prompt(problem)}]
    loop_config = LoopConfig(
        generation=config.params(),
        # A model that never learnt the execution tokens (the stand-in) gets its fenced blocks run.
        execution_mode="auto" if getattr(backend, "speaks_execution_tokens", True) else "always",
        max_rounds=config.max_rounds,
        execution_timeout_s=config.execution_timeout_s,
    )
    errors = []
    with Session(sandbox, timeout_s=config.execution_timeout_s) as session:
        for event in run_loop(backend, dialogue, session, loop_config):
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
) -> Path:
    """Write `config.n_samples` samples per problem to out_dir/samples.jsonl (resuming); return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    samples_path = out_dir / SAMPLES_FILE
    transcripts_path = out_dir / TRANSCRIPTS_FILE
    done: dict[str, int] = {}
    for row in read_samples(samples_path):
        done[row["task_id"]] = done.get(row["task_id"], 0) + 1
    read_samples(transcripts_path)  # cut a torn line there too
    todo = [(p, i) for p in problems for i in range(done.get(p.task_id, 0), config.n_samples)]
    samples, transcripts = _Appender(samples_path), _Appender(transcripts_path)
    try:
        for problem, index in tqdm(todo, desc="generating", unit="sample", disable=not progress):
            if config.with_interpreter:
                messages = _interpreter_reply(backend, problem, config, sandbox)
            else:
                messages = _plain_reply(backend, problem, config)
            row = {
                "task_id": problem.task_id,
                "solution": solution_from_dialogue(messages, problem.entry_point),
            }
            transcripts.write(
                {
                    "id": f"{run_id}{problem.task_id}#{index}",
                    "messages": messages,
                    "meta": {"task_id": problem.task_id, "sample_index": index, **config.to_json()},
                }
            )
            samples.write(row)
            if on_sample:
                on_sample(row)
    finally:
        samples.close()
        transcripts.close()
    return samples_path
