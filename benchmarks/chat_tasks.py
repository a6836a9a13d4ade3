"""Task suite for the chat's model: 20 simple, checkable prompts run through the app's real loop.

`python -m benchmarks.chat_tasks` loads the model the chat would load (the Gemma 3 270M stand-in on a
machine without a GPU), then asks it each task through `app.server.make_loop_runner` (the app's own
loop settings, few-shot examples included) with a real sandbox session (`--sandbox`, default auto). A task
passes when the code the model ran printed the expected value (the executions' stdout and rich text output;
an answer written without running code does not count), or, for the plot, when the named PNG file exists in
the workdir. It prints one line per task (pass/fail, seconds, executions) and the success rate.

The same suite runs against any backend: `--backend openai --base-url URL [--model NAME]` makes it a
smoke test for a served AutoCoder (all of llm.options' flags apply). `--tasks 1,5,18` runs a subset.

What it deliberately does not do: judge prose, retry a task, or assert a threshold (a model's rate is a
measurement; tests/app/test_chat_tasks.py only checks that the suite itself runs).
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CSV_NAME = "sales.csv"
CSV_TEXT = "item,price,quantity\napple,10,3\npear,20,1\nplum,30,4\nfig,40,2\n"


def number(value: float | int) -> re.Pattern:
    """`value` printed as a whole number or a float ("12", "12.0", "12.00"), not inside a longer number, and
    the last number an execution printed ("[18, 7, 12]" does not answer "the largest is 18")."""
    whole = int(value)
    last = r"(?!.*\d)"  # with DOTALL: no digit anywhere after it
    if whole == value:
        return re.compile(rf"(?<![\d.]){whole}(?:\.0+)?(?![\d.]){last}", re.DOTALL)
    return re.compile(rf"(?<![\d.]){re.escape(str(value))}\d*(?![\d]){last}", re.DOTALL)


def text(value: str) -> re.Pattern:
    return re.compile(re.escape(value))


@dataclass(frozen=True)
class Task:
    prompt: str
    expect: re.Pattern | None = None  # in the executions' printed output
    file: str = ""  # a PNG the code must produce in the workdir
    needs_csv: bool = False

    def passed(self, printed: list[str], workdir: Path) -> bool:
        """Whether one execution's printed output (of `printed`, one per execution) answers the task."""
        if self.file:
            path = workdir / self.file
            return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert self.expect is not None
        return any(self.expect.search(out) for out in printed)


TASKS: tuple[Task, ...] = (
    Task("Compute 17 * 23.", number(391)),
    Task("What is 2 to the power of 20?", number(1048576)),
    Task("Compute the 20th Fibonacci number.", number(6765)),
    Task("Compute the factorial of 10.", number(3628800)),
    Task("Compute the sum of the numbers from 1 to 100.", number(5050)),
    Task("Compute the square root of 144.", number(12)),
    Task("What is 15 percent of 80?", number(12)),
    Task("Reverse the string 'hello world'.", text("dlrow olleh")),
    Task("Convert the string 'autocoder' to upper case.", text("AUTOCODER")),
    Task("How many times does the letter 's' appear in 'mississippi'?", number(4)),
    Task("How many words are in the sentence 'the quick brown fox jumps over the lazy dog'?", number(9)),
    Task("Sort the list [5, 3, 9, 1, 7] in ascending order.", text("[1, 3, 5, 7, 9]")),
    Task("Find the largest number in the list [4, 18, 7, 12].", number(18)),
    Task("Compute the average of the list [2, 4, 6, 8].", number(5)),
    Task("Remove the duplicates from the list [3, 1, 3, 2, 1] and sort the result.", text("[1, 2, 3]")),
    Task("Is 97 a prime number? Print True or False.", re.compile(r"\bTrue\b")),
    Task("Plot a sine wave with matplotlib and save it as sine.png.", file="sine.png"),
    Task("Plot the squares of 1 to 10 as a bar chart and save it as bars.png.", file="bars.png"),
    Task(
        f"The file {CSV_NAME} has columns item, price and quantity. Print the mean of the price column.",
        number(25),
        needs_csv=True,
    ),
    Task(
        f"The file {CSV_NAME} has columns item, price and quantity. Print the total of the quantity column.",
        number(10),
        needs_csv=True,
    ),
)


@dataclass
class Outcome:
    number: int
    passed: bool
    seconds: float
    executions: int
    reason: str  # the loop's Done reason, or the error
    printed: str = ""
    answer: str = ""
    dialogue: list = field(default_factory=list, repr=False)  # the dialogue the chat would keep


def build_parser() -> argparse.ArgumentParser:
    from app.cli import DEFAULT_MAX_ROUNDS
    from interpreter.protocol import EXECUTION_MODES
    from interpreter.sandboxes.select import SANDBOX_NAMES
    from llm.options import add_backend_arguments

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chat_tasks", description=__doc__.splitlines()[0]
    )
    add_backend_arguments(parser)
    suite = parser.add_argument_group("suite")
    suite.add_argument(
        "--sandbox", choices=SANDBOX_NAMES, default="auto", help="where code runs (default auto)"
    )
    suite.add_argument("--tasks", default="", help="comma-separated task numbers (1-based; default all 20)")
    suite.add_argument("--max-rounds", type=int, default=DEFAULT_MAX_ROUNDS, help="executions per task")
    suite.add_argument(
        "--execution-mode", choices=EXECUTION_MODES, default=None, help="default: as the app chooses"
    )
    suite.add_argument("--max-new-tokens", type=int, default=None, help="per round (default: the app's)")
    suite.add_argument("--verbose", action="store_true", help="print each task's reply and output")
    return parser


def pick_tasks(spec: str) -> list[int]:
    """1-based task numbers from "1,5,18" (all when empty); a bad number is a one-line ValueError."""
    if not spec.strip():
        return list(range(1, len(TASKS) + 1))
    chosen = []
    for part in spec.split(","):
        try:
            n = int(part)
        except ValueError:
            raise ValueError(f"--tasks wants numbers like 1,5,18, got {part!r}") from None
        if not 1 <= n <= len(TASKS):
            raise ValueError(f"--tasks: there are tasks 1 to {len(TASKS)}, got {n}")
        chosen.append(n)
    return chosen


def app_args(args: argparse.Namespace, backend) -> argparse.Namespace:
    """The app's own flags with this run's choices, so the loop runs exactly as in the chat."""
    from app.cli import parse_args

    app = parse_args(["--sandbox", args.sandbox, "--max-rounds", str(args.max_rounds)])
    app.execution_mode = args.execution_mode or (
        "auto" if getattr(backend, "speaks_execution_tokens", True) else "always"
    )
    return app


def run_task(number_: int, task: Task, run, session, settings) -> Outcome:
    """One task through the app's loop runner on `session`; scored by the printed output or the file."""
    from interpreter.loop import Cancel, Done, ErrorEvent, ExecutionFinished, final_answer
    from interpreter.protocol import result_stdout

    workdir = Path(session.dirs.work)
    if task.file:
        (workdir / task.file).unlink(missing_ok=True)  # the plot must be this task's
    if task.needs_csv:
        from app.files import upload_into

        source = Path(session.dirs.work).parent / f"upload-{CSV_NAME}"
        source.write_text(CSV_TEXT)
        try:
            upload_into(workdir, source, CSV_NAME)
        finally:
            source.unlink(missing_ok=True)
    dialogue = [{"role": "user", "content": task.prompt}]
    printed: list[str] = []
    executions, reason, answer, kept = 0, "", "", []
    start = time.perf_counter()
    for event in run(dialogue, session, settings, Cancel(), None):
        if isinstance(event, ExecutionFinished):
            executions += 1
            printed.append(result_stdout(event.result))
        elif isinstance(event, ErrorEvent):
            reason = f"error: {event.message}"
        elif isinstance(event, Done):
            reason = reason or event.reason
            answer, kept = final_answer(event.messages), event.messages
    seconds = time.perf_counter() - start
    out = "\n".join(printed)
    return Outcome(number_, task.passed(printed, workdir), seconds, executions, reason, out, answer, kept)


def run_suite(backend, args: argparse.Namespace, numbers: list[int], report: Callable[[str], None] = print):
    """Run the chosen tasks with `backend`; returns the outcomes (the benchmark's and the test's entry)."""
    from app.chat import Settings
    from app.server import make_loop_runner
    from interpreter.sandboxes.base import Limits
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session

    app = app_args(args, backend)
    run = make_loop_runner(backend, app)
    settings = Settings(max_rounds=app.max_rounds, execution_mode=app.execution_mode)
    if args.max_new_tokens:
        settings.max_new_tokens = args.max_new_tokens
    outcomes = []
    sandbox = make_sandbox(app.sandbox, Limits())
    for n in numbers:
        # Each task as a new chat: its own session and kernel, so one task's variables (a `str = ...` that
        # shadows the builtin) cannot break the next. Starting it is not counted in the task's time.
        with Session(sandbox) as session:
            session.start()
            outcome = run_task(n, TASKS[n - 1], run, session, settings)
        outcomes.append(outcome)
        mark = "pass" if outcome.passed else "FAIL"
        report(
            f"task {n:2d} {mark} {outcome.seconds:6.1f} s  {outcome.executions} exec  "
            f"{outcome.reason:<12} {TASKS[n - 1].prompt[:60]}"
        )
        if getattr(args, "verbose", False):
            for message in outcome.dialogue[1:]:
                report(f"    {message['role']}: {message['content'][:300]!r}")
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    passed = sum(o.passed for o in outcomes)
    total_s = sum(o.seconds for o in outcomes)
    per = total_s / len(outcomes) if outcomes else 0.0
    return (
        f"success rate {passed}/{len(outcomes)} = {passed / max(1, len(outcomes)):.0%}; "
        f"{per:.1f} s per task on average ({total_s:.0f} s in all)"
    )


def main(argv: list[str] | None = None) -> int:
    import os

    # Read when torch loads its OpenMP runtime: spinning worker threads make a busy CPU many times slower.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from llm.options import backend_from_args, check_backend_args

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_backend_args(args)
        numbers = pick_tasks(args.tasks)
    except ValueError as exc:
        parser.error(str(exc))
    import app.server  # noqa: F401  (imported now: the loop runner is the app's as of this start)

    started = time.perf_counter()
    backend = backend_from_args(args)
    print(
        f"model: {getattr(backend, 'model_id', '') or args.model} (loaded in {time.perf_counter() - started:.1f} s)"
    )
    outcomes = run_suite(backend, args, numbers)
    print(summary(outcomes))
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "chat-tasks"
    sys.exit(main())
