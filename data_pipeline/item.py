"""One AIEV-Instruct item, seed to verified (or rejected) dialogue: the paper's steps I-IV.

    I.   Initialisation: an empty message list and, on first execution, a fresh sandboxed kernel of the
         item's own (from the warm pool); one model may play both roles.
    II.  Proposal: the questioner turns the seed into a problem (message 1); the programmer answers with
         an explanation, install blocks and one python block of solution plus unit tests (message 2).
    III. Execution feedback: the interpreter loop runs the blocks and appends the result (3). On failure
         the questioner writes an analysis (4), handed to the programmer as the next user turn, whose
         revised code (5) is run again; repeat.
    IV.  Termination: when an attempt passes `data_pipeline.verify` (its output is turn 6) the item is
         verified; after `max_attempts` programmer attempts that did not, it is rejected with the reason.

Execution goes through the project's one loop (`interpreter.loop.run_loop`) with one execution per
question (`max_rounds=1`, reset by each questioner turn); the loop's `on_turn_end` hook is step III/IV's
decision point: it judges the attempt that just ended and returns the questioner's analysis or None.
After seeing a result the programmer says a sentence and ends its turn (its prompt asks for that); a
programmer that writes new code there instead has that unrun turn dropped and gets the questioner's
analysis first, so the steps keep their order. Bare ```python and ```sh / ```bash fences are run and
recorded in token form (`record_bare_as_tokens`), so the data teaches the tokens.

What it deliberately does not do: schedule items, write files, or decide what "verified" means
(data_pipeline.verify does).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from data_pipeline import verify
from data_pipeline.client import ModelClient, Usage
from data_pipeline.limits import RunStopped
from data_pipeline.prompts import (
    PROGRAMMER_REVISION,
    PROGRAMMER_SYSTEM,
    QUESTIONER_ANALYSIS,
    QUESTIONER_PROPOSAL,
    PromptSet,
)
from interpreter.loop import (
    BlockClosed,
    Done,
    ErrorEvent,
    ExecutionFinished,
    ExecutionStarted,
    LoopConfig,
    RoundFinished,
    run_loop,
)
from interpreter.results import RunRecord

STAGE = "teaching"
VERIFIED, REJECTED, FAILED, STOPPED = "verified", "rejected", "failed", "stopped"
DEFAULT_MAX_ATTEMPTS = 7  # the cap reported for the paper
ERROR_CHARS = 2000  # of a failing run's output shown to the questioner
# A failed attempt whose blocks ran longer than this keeps its kernel until the revision (ItemSession.park):
# replaying them would cost more than the kernel start it saves.
REPLAY_MAX_S = 2.0
REPLAY_DIVERGED_FLAG = "replay_diverged"

_PIP = re.compile(r"\bpip3?\s+install\s+([^\n;&|]+)")


@dataclass
class ItemSettings:
    questioner_params: object  # llm.base.GenerationParams
    programmer_params: object
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    execution_timeout_s: float = 30.0
    render_style: str = "demo"  # how results are shown to the teacher; runs keep the structure anyway


@dataclass
class ItemOutcome:
    status: str  # VERIFIED | REJECTED | FAILED (an infrastructure failure; redone next run) | STOPPED
    record: dict | None = None  # the dialogue record (for VERIFIED and REJECTED)
    reason: str = ""


def item_id(seed_id: str, fingerprint: str) -> str:
    """Stable id of the item made from a seed under a configuration."""
    return hashlib.sha256(f"{seed_id}:{fingerprint}".encode()).hexdigest()[:16]


class ItemSession:
    """The item's sandbox session, taken from the pool on first use; executions wait for a free slot
    (the bound on concurrent sandbox executions, separate from the one on model calls).

    On `close` the session goes back through `release(session, retire)`: `retire` is None when a reset
    can clean what the item did (the pool may then hand the kernel to a later item, see
    interpreter.recycle), else the first reason it must not be reused (an sh block, a timeout, a crash,
    lost state, an output flood, an interrupt or kill: `interpreter.recycle.retire_reason`).

    Between attempts (`park`): a failed attempt's kernel would sit idle for three model calls (the
    programmer's sentence, the questioner's analysis, the revision), seconds each with a real teacher, so
    a run held one kernel per failing item in flight. Parked, it goes back to the pool; the next
    `run_block` takes a kernel and first replays the item's earlier blocks into it, their output dropped,
    so the revision runs on the state it would have found in one kernel (as "restart and run all" does in
    a notebook). Only where that replay is cheap and faithful: python blocks only, nothing that retires a
    kernel (an install, a timeout, a crash), at most `REPLAY_MAX_S` of execution so far; anything else
    keeps its kernel. A replayed block that ends otherwise than it did (code that depends on time or
    randomness) sets `replay_diverged`, recorded as a flag on the item."""

    def __init__(
        self,
        acquire: Callable[[], object],
        slots: threading.Semaphore,
        release: Callable[[object, str | None], None] | None = None,
        park_between_attempts: bool = True,
    ):
        self._acquire = acquire
        self._release = release
        self._slots = slots
        self._session = None
        self._lock = threading.Lock()
        self._may_park = park_between_attempts and release is not None
        # What ran in the item's kernel state, in order: (normalised language, language, code, timeout_s,
        # result).
        self._history: list[tuple] = []
        self.retire: str | None = None  # the first reason this kernel must not serve another item
        self.replay_diverged = False

    def _real(self):
        with self._lock:
            if self._session is None:
                self._session = self._acquire()
                self._replay(self._session)
            return self._session

    def _execute(self, session, language, code, on_output, timeout_s):
        from interpreter.protocol import normalize_language
        from interpreter.recycle import retire_reason

        lang = normalize_language(language or "python") or language
        if lang == "sh" and self.retire is None:
            self.retire = retire_reason("sh", None)  # before it runs: a failed install may leave files too
        with self._slots:
            result = session.run_block(language, code, on_output=on_output, timeout_s=timeout_s)
        if self.retire is None:
            self.retire = retire_reason(lang, result)
        self._history.append((lang, language, code, timeout_s, result))
        return result

    def _replay(self, session) -> None:
        earlier, self._history = self._history, []
        for _, language, code, timeout_s, original in earlier:
            if _ending(self._execute(session, language, code, None, timeout_s)) != _ending(original):
                self.replay_diverged = True

    def run_block(self, language, code, on_output=None, timeout_s=None):
        return self._execute(self._real(), language, code, on_output, timeout_s)

    def park(self) -> bool:
        """Give the kernel back until the next `run_block` (see the class docstring); False when this item
        keeps it: replaying would be slow or not faithful."""
        with self._lock:
            ran_s = sum(getattr(result, "duration_s", 0.0) for *_, result in self._history)
            if (
                not self._may_park
                or self._session is None
                or self.retire is not None
                or ran_s > REPLAY_MAX_S
                or any(lang != "python" for lang, *_ in self._history)
            ):
                return False
            session, self._session = self._session, None
        self._release(session, None)
        return True

    def interrupt(self) -> None:
        if self._session is not None:
            self.retire = self.retire or "the item's execution was interrupted"
            self._session.interrupt()

    def kill(self) -> bool:
        if self._session is None:
            return False
        self.retire = self.retire or "the item's kernel was killed"
        return bool(self._session.kill())

    def is_alive(self) -> bool:
        return self._session is not None and self._session.is_alive()

    @property
    def kernel(self):
        return self._session.kernel if self._session is not None else None

    def close(self) -> None:
        """Give the kernel back (to be reset for another item, or retired). A later `run_block` would take
        another kernel from the pool: the item calls this early only once no execution can follow."""
        with self._lock:
            session, self._session = self._session, None
            self._history.clear()
        if session is None:
            return
        try:
            if self._release is not None:
                self._release(session, self.retire)
                return
        except Exception:  # noqa: BLE001 - a pool that cannot take it back: the session is closed below
            pass
        with contextlib.suppress(Exception):
            session.close()


def _ending(result) -> tuple:
    """How an execution ended, as far as the state it leaves goes: its status and error type."""
    error = getattr(result, "error", None)
    return getattr(result, "status", None), getattr(error, "name", None)


def _analysis_inputs(runs: list[verify.Run], verdict: verify.Verdict) -> tuple[str, str]:
    """What the questioner's analysis reads of a failed attempt: its code and its failure."""
    return verify.python_code(runs), _failure_text(runs, verdict)


def _runs_since_question(messages: list[dict]) -> list[dict]:
    runs: list[dict] = []
    for message in reversed(messages):
        if message["role"] == "user":
            break
        if message["role"] == "execution":
            runs = list(message.get("runs") or []) + runs
    return runs


def _as_run(run: dict) -> verify.Run:
    error = run.get("error") or {}
    return verify.Run(
        language=run.get("language", "python"),
        code=run.get("code", ""),
        status=run.get("status", ""),
        stdout=run.get("stdout", ""),
        stderr=run.get("stderr", ""),
        error_name=error.get("name", "") if isinstance(error, dict) else "",
        traceback=error.get("traceback", "") if isinstance(error, dict) else "",
        note=run.get("note", ""),
    )


def _failure_text(runs: list[verify.Run], verdict: verify.Verdict) -> str:
    """What the questioner is shown about a failed attempt."""
    if not runs:
        return "The programmer's reply contained no python code block, so nothing ran."
    parts = []
    for run in runs:
        if run.status == "not_run":
            parts.append(f"A {run.language} block was not run: {run.note}")
        elif run.status != verify.STATUS_OK or run.error_name:
            text = "\n".join(t for t in (run.stdout.strip(), run.stderr.strip(), run.traceback.strip()) if t)
            if len(text) > ERROR_CHARS:
                text = text[: ERROR_CHARS // 2] + "\n...\n" + text[-ERROR_CHARS // 2 :]
            parts.append(f"The {run.language} block ended with status {run.status!r}:\n{text}")
    if not parts:  # it ran cleanly, but the tests do not count
        parts.append(f"The code ran without error, but it is not verified: {verdict.reason}.")
    return "\n\n".join(parts)


def packages_installed(runs: list[verify.Run]) -> list[str]:
    names = []
    for run in runs:
        if run.language == "sh" and run.status == verify.STATUS_OK:
            for match in _PIP.finditer(run.code):
                names += [w for w in match.group(1).split() if not w.startswith("-")]
    return sorted(set(names))


@dataclass
class _Attempts:
    """Step III/IV bookkeeping; its `on_turn_end` is the loop's hook."""

    item: ItemRunner
    problem: str
    usage: Usage
    attempts: list[dict] = field(default_factory=list)
    all_runs: list[verify.Run] = field(default_factory=list)
    defined: set[str] = field(default_factory=set)
    last_tests: verify.TestReport | None = None
    verified: bool = False
    reason: str = ""
    flags: set[str] = field(default_factory=set)
    # The questioner's analysis of the attempt that just failed, asked for ahead (`analyse_ahead`): its
    # inputs and the answer to come.
    ahead: tuple[tuple[str, str], Future] | None = None

    def _needs_analysis(self, verdict: verify.Verdict) -> bool:
        """As `on_turn_end` decides: the attempt failed and another one is allowed."""
        return not verdict.verified and len(self.attempts) + 1 < self.item.settings.max_attempts

    def analyse_ahead(self, runs: list[verify.Run], verdict: verify.Verdict) -> None:
        """Ask for the failed attempt's analysis now, in the background, while the programmer writes its
        sentence about the result: the analysis reads only the problem, the code and the error, not that
        sentence, so the item waits for one model call less per failed attempt (seconds with a hosted
        teacher). The same call is made, with the same inputs, only sooner: `on_turn_end` takes its
        answer, or asks again itself should its inputs differ."""
        if not self._needs_analysis(verdict):
            return
        inputs = _analysis_inputs(runs, verdict)
        answer: Future = Future()

        def ask() -> None:
            self.item.questioner.bind_usage(self.usage)  # thread-local: this thread's calls count too
            try:
                answer.set_result(self.item.analyse(self.problem, *inputs))
            except BaseException as exc:  # noqa: BLE001 - raised where the answer is taken
                answer.set_exception(exc)
            finally:
                self.item.questioner.bind_usage(None)

        self.ahead = (inputs, answer)
        threading.Thread(target=ask, name="aiev-analysis", daemon=True).start()

    def _analysis(self, runs: list[verify.Run], verdict: verify.Verdict) -> str:
        inputs = _analysis_inputs(runs, verdict)
        ahead, self.ahead = self.ahead, None
        if ahead is not None and ahead[0] == inputs:
            return ahead[1].result()
        return self.item.analyse(self.problem, *inputs)

    def on_turn_end(self, messages: list[dict]) -> str | None:
        runs = [_as_run(r) for r in _runs_since_question(messages)]
        self.all_runs += runs
        verdict = verify.judge_attempt(runs, self.defined)
        number = len(self.attempts) + 1
        if verdict.tests.count and verify.weakened(self.last_tests, verdict.tests):
            self.flags.add(verify.WEAKENED_FLAG)
        if verdict.tests.count:
            self.last_tests = verdict.tests
        self.defined |= set(verdict.tests.solution_names)
        self.attempts.append(
            {
                "attempt": number,
                "verified": verdict.verified,
                "reason": verdict.reason,
                "tests": verdict.tests.test_code,
                "test_count": verdict.tests.count,
                "errors": sorted({r.error_name or r.status for r in runs if r.status != verify.STATUS_OK}),
            }
        )
        if verdict.verified:  # IV. Termination: verified
            self.verified = True
            return None
        if number >= self.item.settings.max_attempts:  # IV. Termination: rejected
            self.reason = f"not verified after {number} attempts: {verdict.reason}"
            return None
        # III. Execution feedback: the questioner reads the failure and writes an analysis (message 4),
        # which goes to the programmer with the error above it (message 5 answers it).
        analysis = self._analysis(runs, verdict)
        return self.item.prompts[PROGRAMMER_REVISION].fill(analysis=analysis)


class ItemRunner:
    """Runs items one at a time per thread; shared by all worker threads (it holds no per-item state)."""

    def __init__(
        self,
        questioner: ModelClient,
        programmer: ModelClient,
        prompts: PromptSet,
        settings: ItemSettings,
        new_session: Callable[[], ItemSession],
        stop: threading.Event,
        identity: dict,
    ):
        self.questioner = questioner
        self.programmer = programmer
        self.prompts = prompts
        self.settings = settings
        self.new_session = new_session
        self.stop = stop
        self.identity = identity

    # -- the questioner's two steps -------------------------------------------------------------------

    def propose(self, seed_text: str) -> str:
        """II. Proposal: the seed -> a problem statement (message 1)."""
        prompt = self.prompts[QUESTIONER_PROPOSAL].fill(seed=seed_text)
        reply = self.questioner.complete(
            [{"role": "user", "content": prompt}], self.settings.questioner_params, self.stop
        )
        return reply.strip()

    def analyse(self, problem: str, code: str, error: str) -> str:
        """III. The questioner's natural-language analysis of a failed attempt (message 4)."""
        prompt = self.prompts[QUESTIONER_ANALYSIS].fill(
            problem=problem, code=code or "(no code)", error=error
        )
        reply = self.questioner.complete(
            [{"role": "user", "content": prompt}], self.settings.questioner_params, self.stop
        ).strip()
        return reply or "The attempt failed; read the error above and fix the code."

    def loop_config(self, hook) -> LoopConfig:
        return LoopConfig(
            generation=self.settings.programmer_params,
            max_rounds=1,  # one execution per question: every failure goes through the questioner
            execution_mode="always",  # a teacher's bare ```python fences run too ...
            bare_python=True,
            bare_sh=True,  # ... and its bare ```sh / ```bash fences (installs, commands) ...
            record_bare_as_tokens=True,  # ... and are recorded in token form
            render_style=self.settings.render_style,
            system_prompt=self.prompts[PROGRAMMER_SYSTEM].text,
            execution_role="user",
            execution_timeout_s=self.settings.execution_timeout_s,
            on_turn_end=hook,
        )

    # -- one item -------------------------------------------------------------------------------------

    def run(self, seed, item_id: str) -> ItemOutcome:
        usage = Usage()
        self.questioner.bind_usage(usage)
        self.programmer.bind_usage(usage)
        started = time.monotonic()
        session = None
        try:
            # I. Initialisation
            messages: list[dict] = []
            # II. Proposal (message 1)
            problem = self.propose(seed.text)
            if not problem:
                return self._record(
                    seed, item_id, messages, None, usage, started, "the questioner proposed no problem"
                )
            messages.append({"role": "user", "content": problem})
            session = self.new_session()
            attempts = _Attempts(self, problem, usage)
            config = self.loop_config(attempts.on_turn_end)
            while True:
                done, error = self._drive(
                    run_loop(self.programmer, messages, session, config, cancel=self.stop),
                    lambda runs: _after_attempt_ran(session, attempts, runs),
                )
                if self.stop.is_set() or done is None or done.reason == "cancelled":
                    return ItemOutcome(STOPPED, reason="the run was stopped")
                messages = done.messages
                if done.reason == "error":
                    return ItemOutcome(FAILED, reason=error or "the loop failed")
                if (
                    done.reason in ("max_rounds", "max_tokens")
                    and not attempts.verified
                    and not attempts.reason
                ):
                    if done.reason == "max_rounds" and messages and messages[-1]["role"] == "assistant":
                        messages = messages[:-1]  # new code written before the questioner spoke: not run
                    follow = attempts.on_turn_end(messages)
                    if follow:
                        messages.append({"role": "user", "content": follow})
                        continue
                break
            if session.replay_diverged:
                attempts.flags.add(REPLAY_DIVERGED_FLAG)
            return self._record(seed, item_id, messages, attempts, usage, started, attempts.reason)
        except RunStopped as exc:
            return ItemOutcome(STOPPED, reason=str(exc))
        except Exception as exc:  # a backend failure after its retries: the item is redone next run
            if self.stop.is_set():
                return ItemOutcome(STOPPED, reason="the run was stopped")
            first = str(exc).strip().splitlines()
            return ItemOutcome(
                FAILED, reason=f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")
            )
        finally:
            self.questioner.bind_usage(None)
            self.programmer.bind_usage(None)
            if session is not None:
                session.close()

    def _drive(self, events, after_round: Callable[[list[verify.Run]], None]) -> tuple[Done | None, str]:
        """Consume the loop's events: its Done and the last error line (a model call refused because the run
        is stopping ends the loop with an error; `run` sees the stop event and reports STOPPED).

        `after_round` gets the runs of each round that ran something, as soon as the round ends: with one
        execution per question nothing runs again before the questioner speaks, so an attempt that passes
        gives its kernel back here, while the programmer writes its closing sentence (the kernel would
        otherwise sit idle for a whole model call; fewer kernels are then needed at once), and one that
        fails parks it until the revision (`ItemSession.park`) and has its analysis asked for at once
        (`_Attempts.analyse_ahead`)."""
        done, error = None, ""
        started: dict[str, ExecutionStarted] = {}
        runs: list[verify.Run] = []
        for event in events:
            if isinstance(event, ErrorEvent):
                error = event.message
            elif isinstance(event, Done):
                done = event
            elif isinstance(event, BlockClosed) and event.problem and event.problem != "dropped":
                record = RunRecord(event.language or "python", event.code, None, event.note)
                runs.append(_as_run(record.to_json()))  # recorded as not run, as the loop does
            elif isinstance(event, ExecutionStarted):
                started[event.exec_id] = event
            elif isinstance(event, ExecutionFinished) and event.exec_id in started:
                begun = started.pop(event.exec_id)
                runs.append(_as_run(RunRecord(begun.language, begun.code, event.result).to_json()))
            elif isinstance(event, RoundFinished):
                if runs and not self.stop.is_set():
                    after_round(runs)
                runs = []
        return done, error

    def _record(
        self, seed, item_id, messages, attempts: _Attempts | None, usage: Usage, started, reason: str
    ):
        runs = attempts.all_runs if attempts else []
        verified = bool(attempts and attempts.verified)
        meta = {
            "stage": self.identity.get("stage", STAGE),  # "self-learning" when the student generates
            "verified": verified,
            "seed": {"id": seed.id, "source": seed.source, "licence": seed.licence, "text": seed.text},
            "questioner_model": self.questioner.model,
            "programmer_model": self.programmer.model,
            "prompt_versions": self.identity["prompts"],
            "config_fingerprint": self.identity["fingerprint"],
            "attempts": len(attempts.attempts) if attempts else 0,
            "max_attempts": self.settings.max_attempts,
            "tests": attempts.attempts if attempts else [],
            "flags": sorted(attempts.flags) if attempts else [],
            "packages_installed": packages_installed(runs),
            "error_types": sorted({r.error_name or r.status for r in runs if r.status != verify.STATUS_OK}),
            "usage": usage.to_json(),
            "cost_usd": round(usage.cost_usd, 6),
            "timings": {
                "item_s": round(time.monotonic() - started, 3),
                "execution_s": round(sum(_duration(m) for m in messages), 3),
            },
        }
        if not verified:
            meta["reason"] = reason or "not verified"
        record = {"id": item_id, "messages": messages, "meta": meta, "schema": 1}
        json.dumps(record)  # fail here, not in the writer, if anything is not JSON
        return ItemOutcome(VERIFIED if verified else REJECTED, record, meta.get("reason", ""))


def _after_attempt_ran(session: ItemSession, attempts: _Attempts, runs: list[verify.Run]) -> None:
    """An attempt's code has run: a passing attempt gives its kernel back, a failing one parks it and has
    its analysis asked for ahead (see `ItemRunner._drive`)."""
    verdict = verify.judge_attempt(runs, attempts.defined)
    if verdict.verified:
        session.close()
        return
    session.park()
    attempts.analyse_ahead(runs, verdict)


def _duration(message: dict) -> float:
    return sum(float(r.get("duration_s") or 0.0) for r in message.get("runs") or [])
