"""Generate -> detect -> execute -> feed back, as a stream of typed events. The one loop everything uses.

`run_loop(backend, dialogue, session, config)` asks the backend for the assistant's reply, watches the
stream with `protocol.BlockDetector`, and when a block closes stops generation, runs the block in the
session (python in its kernel, sh through its package installer), appends the assistant turn and an
`execution` turn (rendered by `protocol.render_result`) to the dialogue, and generates again: at most
`max_rounds` executions, each followed by one more generation so the model sees its last result (the
original demo's MAX_TRY). The app renders the events; the evaluation and the data pipeline consume the
same events and the final `Done.messages`.

Rounds and turns, following how the released checkpoints were used:
- a python block (and any block with a problem, see protocol's table) ends the turn: generation stops;
- an sh block does not, by default (`sh_ends_turn=False`): the released models write the package
  install and then the python block in one turn, and the demo fed both results back together
  (`pip_result.*` then `result.*`). The sh block runs as soon as it closes while the stream goes on. With
  `sh_ends_turn=True` every block ends the turn and RUN_STOP is passed to the backend as a stop string.
  A backend that always stops at RUN_STOP just ends the turn after the sh block; both are handled.

Cancellation: setting `cancel` (from any thread) stops generation (the backend gets a cancel event),
interrupts a running execution (`session.interrupt()`, right away, from a relay thread; code that
ignores the interrupt for `cancel_grace_s` gets its kernel killed, which the session replaces with a fresh
one, state lost), and the loop ends with `Done(reason="cancelled")` holding everything generated and run
so far.

Threads: `session.run_block` runs in a worker thread; its `on_output` callback may be called from any
thread and only puts chunks on a queue, which the generator drains, so OutputChunk events arrive while the
code runs. The generator itself is meant to be consumed by one thread.

What it deliberately does not do: import `llm` (the backend is any object with `stream(messages, params,
cancel, stats)`; generation params are passed through opaquely), apply chat templates, render events for
a UI, or know the model's end-of-turn token (backends stop there).
"""

from __future__ import annotations

import copy
import dataclasses
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from interpreter import protocol
from interpreter.kernel import ExecutionResult
from interpreter.protocol import RUN_STOP, Block, Note, RunRecord, Text


@dataclass
class TextDelta:
    text: str  # assistant text, special tokens included


@dataclass
class ExecutionStarted:
    exec_id: str
    language: str  # "python" | "sh"
    code: str


@dataclass
class OutputChunk:
    exec_id: str
    stream: str  # "stdout" | "stderr"
    text: str


@dataclass
class ExecutionFinished:
    exec_id: str
    result: ExecutionResult


@dataclass
class RoundFinished:
    round: int  # 1-based count of generation rounds done
    # What the backend reported for this round's generation (0 when it reports nothing).
    prompt_tokens: int = 0
    prefill_tokens: int = 0  # prompt tokens actually computed (fewer than prompt_tokens with a reused cache)
    generated_tokens: int = 0


@dataclass
class Notice:
    message: str  # e.g. a malformed block the loop told the model about


@dataclass
class Done:
    messages: list[dict]  # the whole dialogue in DESIGN.md's format, execution turns included
    # "end_of_turn" | "max_rounds" | "cancelled" | "max_tokens" | "error" (after an ErrorEvent)
    reason: str


@dataclass
class ErrorEvent:
    message: str  # one line


Event = (
    TextDelta
    | ExecutionStarted
    | OutputChunk
    | ExecutionFinished
    | RoundFinished
    | Notice
    | Done
    | ErrorEvent
)

# approve(block) -> the code to run (possibly edited by the user), or None to skip it ("ask" mode).
ApproveCallback = Callable[[Block], "str | None"]
# on_turn_end(messages) -> a user message to continue the dialogue with, or None to finish.
TurnEndHook = Callable[[list[dict]], "str | None"]

DECLINED_NOTE = "The user chose not to run this code."
DEFAULT_MAX_ROUNDS = 3  # executions fed back per question, as in the original demo (its MAX_TRY)


@dataclass
class LoopConfig:
    # Opaque generation parameters handed to `backend.stream` (e.g. llm.base.GenerationParams). The loop
    # only copies it and, when blocks end the turn, adds RUN_STOP to a copy of its `stop` list.
    generation: Any = None
    max_rounds: int = (
        DEFAULT_MAX_ROUNDS  # executions fed back to the model (the demo's MAX_TRY); 0 runs nothing
    )
    execution_mode: str = "auto"  # protocol.EXECUTION_MODES
    render_style: str = "demo"  # protocol.RENDER_STYLES: "demo" for released checkpoints, "tokens" for ours
    head_chars: int = protocol.DEFAULT_HEAD_CHARS  # model-visible output: first chars kept per stream
    tail_chars: int = protocol.DEFAULT_TAIL_CHARS  # ... and last chars
    system_prompt: str | None = None  # used when the dialogue has none (protocol.render_dialogue)
    execution_role: str = "user"  # role execution turns take in what the model sees
    sh_ends_turn: bool = False  # see the module docstring
    bare_python: bool | None = None  # detect bare ```python fences; None means "only in always mode"
    execution_timeout_s: float | None = None  # per block; None leaves the session's default
    cancel_grace_s: float = 5.0  # after an interrupt, wait this long before killing a kernel that ignores it
    # Called when the model ends its turn without asking to run code: return a user message to go on
    # (e.g. the data pipeline's questioner, an evaluation asking for the final function), None to stop.
    on_turn_end: TurnEndHook | None = None

    def validate(self) -> None:
        if self.generation is None:
            raise ValueError("LoopConfig.generation is required: pass e.g. llm.base.GenerationParams()")
        if self.execution_mode not in protocol.EXECUTION_MODES:
            raise ValueError(
                f"unknown execution mode {self.execution_mode!r}; use one of {', '.join(protocol.EXECUTION_MODES)}"
            )
        if self.render_style not in protocol.RENDER_STYLES:
            raise ValueError(
                f"unknown render style {self.render_style!r}; use one of {', '.join(protocol.RENDER_STYLES)}"
            )
        if self.max_rounds < 0:
            raise ValueError("max_rounds must be >= 0")

    @property
    def detects_bare_python(self) -> bool:
        return self.execution_mode == "always" if self.bare_python is None else self.bare_python


@dataclass
class _Stats:
    """Duck-typed stand-in for llm.base.StreamStats (interpreter does not import llm)."""

    prompt_tokens: int = 0
    prefill_tokens: int = 0
    generated_tokens: int = 0
    stop_reason: str = ""  # "end_of_turn" | "stop" | "max_tokens" | "cancelled", when the backend says


def _params_with_stop(params: Any, extra: list[str]) -> Any:
    """A copy of the opaque params whose `stop` list also holds `extra` (the caller's object is untouched)."""
    if not extra:
        return params
    stop = list(getattr(params, "stop", None) or [])
    stop += [s for s in extra if s not in stop]
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return dataclasses.replace(params, stop=stop)
    params = copy.copy(params)
    params.stop = stop
    return params


def final_answer(messages: list[dict]) -> str:
    """The content of the last assistant turn ("" when there is none)."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            return message["content"]
    return ""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class _CancelRelay:
    """Turns the caller's cancel event into immediate action from a small thread: it sets the running
    generation's cancel event and interrupts a running execution, even while nobody pulls the generator."""

    def __init__(self, cancel: threading.Event, session: Any):
        self.cancel = cancel
        self.session = session
        self.generation: threading.Event | None = None
        self.executing = False
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="autocoder-loop-cancel", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            if self.cancel.wait(timeout=0.05):
                self.fire()
                return

    def fire(self) -> None:
        with self._lock:
            if self.generation is not None:
                self.generation.set()
            if self.executing:
                self.executing = False  # interrupt once
                try:
                    self.session.interrupt()
                except Exception:  # the generator reports what comes of it; the relay must not die loudly
                    pass

    def stop(self) -> None:
        self._done.set()


def run_loop(
    backend: Any,
    dialogue: list[dict],
    session: Any,
    config: LoopConfig,
    *,
    cancel: threading.Event | None = None,
    approve: ApproveCallback | None = None,
) -> Iterator[Event]:
    """Run the generate -> execute -> feed back loop on a copy of `dialogue`; yield events, last `Done`.

    Bad arguments raise ValueError (one line) before anything runs. Backend and session failures end the
    loop with ErrorEvent then Done(reason="error"); malformed model output never raises.
    """
    config.validate()
    protocol.validate_dialogue(dialogue)
    if config.execution_mode == "ask" and approve is None:
        raise ValueError('execution mode "ask" needs an approve callback')
    return _Loop(backend, dialogue, session, config, cancel or threading.Event(), approve).run()


class _Loop:
    def __init__(self, backend, dialogue, session, config: LoopConfig, cancel, approve):
        self.backend = backend
        self.messages = [dict(m) for m in dialogue]
        self.session = session
        self.config = config
        self.cancel = cancel
        self.approve = approve
        self.relay: _CancelRelay | None = None

    # -- the loop ---------------------------------------------------------------------------------------

    def run(self) -> Iterator[Event]:
        self.relay = _CancelRelay(self.cancel, self.session)
        try:
            yield from self._rounds()
        finally:
            self.relay.stop()

    def _rounds(self) -> Iterator[Event]:
        cfg = self.config
        executions = 0
        generations = 0
        while True:
            if self.cancel.is_set():
                yield Done(self.messages, "cancelled")
                return
            generations += 1
            turn = _Turn()
            yield from self._generate(turn, may_execute=executions < cfg.max_rounds)
            if turn.error:
                yield ErrorEvent(turn.error)
                self._append_turn(turn)
                yield Done(self.messages, "error")
                return
            if turn.terminal is not None and not self.cancel.is_set():
                if turn.terminal.problem == protocol.PROBLEM_UNCLOSED and turn.hit_max_tokens:
                    # Cut off mid-block by the token limit: telling the model would only repeat that.
                    yield Notice(
                        f"the reply hit the max new tokens limit inside a code block; {turn.terminal.note}"
                    )
                    self._append_turn(turn)
                    yield self._round_finished(generations, turn)
                    yield Done(self.messages, "max_tokens")
                    return
                if executions >= cfg.max_rounds:
                    yield Notice(
                        f"reached the limit of {cfg.max_rounds} executions; the last block was not run"
                    )
                    self._append_turn(turn)
                    yield self._round_finished(generations, turn)
                    yield Done(self.messages, "max_rounds")
                    return
                yield from self._handle_block(turn, turn.terminal)
                if turn.error:
                    yield ErrorEvent(turn.error)
                    self._append_turn(turn)
                    yield Done(self.messages, "error")
                    return
            self._append_turn(turn)
            yield self._round_finished(generations, turn)
            if self.cancel.is_set():
                yield Done(self.messages, "cancelled")
                return
            if turn.records:  # something ran (or was refused): the model gets to see it
                executions += 1
                continue
            if turn.hit_max_tokens:
                yield Notice("the reply hit the max new tokens limit")
                yield Done(self.messages, "max_tokens")
                return
            follow_up = cfg.on_turn_end(list(self.messages)) if cfg.on_turn_end else None
            if follow_up:
                self.messages.append({"role": "user", "content": follow_up})
                continue
            yield Done(self.messages, "end_of_turn")
            return

    def _round_finished(self, number: int, turn: _Turn) -> RoundFinished:
        s = turn.stats
        return RoundFinished(number, s.prompt_tokens, s.prefill_tokens, s.generated_tokens)

    def _append_turn(self, turn: _Turn) -> None:
        text = "".join(turn.text)
        if turn.terminal is not None and turn.terminal.stop_token_missing:
            text += RUN_STOP  # the server stripped the stop string; keep the dialogue canonical
        if text:
            self.messages.append({"role": "assistant", "content": text})
        if turn.records:
            content = protocol.render_result(
                turn.records, self.config.render_style, self.config.head_chars, self.config.tail_chars
            )
            self.messages.append({"role": "execution", "content": content})

    # -- generation -------------------------------------------------------------------------------------

    def _generate(self, turn: _Turn, may_execute: bool) -> Iterator[Event]:
        cfg = self.config
        model_messages = protocol.render_dialogue(
            self.messages, cfg.render_style, cfg.system_prompt, cfg.execution_role
        )
        params = _params_with_stop(cfg.generation, [RUN_STOP] if cfg.sh_ends_turn else [])
        detector = protocol.BlockDetector(bare_python=cfg.detects_bare_python)
        gen_cancel = threading.Event()
        self.relay.generation = gen_cancel
        if self.cancel.is_set():
            gen_cancel.set()
        stream = None
        ended_naturally = False  # the backend finished by itself (not broken off by us)
        try:
            stream = iter(self.backend.stream(model_messages, params, gen_cancel, turn.stats))
            for chunk in stream:
                if self.cancel.is_set():
                    break
                yield from self._detected(turn, detector.feed(chunk), may_execute)
                if turn.terminal is not None or turn.error:
                    break
            else:
                ended_naturally = True
                yield from self._detected(turn, detector.finish(), may_execute)
        except Exception as exc:  # a backend failure ends the loop with one line, never a traceback
            turn.error = f"model backend failed: {_one_line(exc)}"
        finally:
            gen_cancel.set()  # a block closed, or we were cancelled: the backend stops generating
            self.relay.generation = None
            close = getattr(stream, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    pass
        if not ended_naturally:
            return
        if turn.stats.stop_reason:
            turn.hit_max_tokens = turn.stats.stop_reason == "max_tokens"
        else:  # a backend that does not say why it stopped
            max_new = getattr(cfg.generation, "max_new_tokens", None)
            turn.hit_max_tokens = bool(max_new) and turn.stats.generated_tokens >= max_new

    def _detected(self, turn: _Turn, events: list, may_execute: bool) -> Iterator[Event]:
        for event in events:
            if turn.terminal is not None or turn.error:
                return  # whatever follows a turn-ending block is not part of the turn
            if isinstance(event, Text):
                turn.text.append(event.text)
                yield TextDelta(event.text)
            elif isinstance(event, Note):
                yield Notice(event.message)
            elif isinstance(event, Block):
                if event.language == "sh" and event.runnable and not self.config.sh_ends_turn and may_execute:
                    # An install inside the turn: run it now, keep reading the stream.
                    yield from self._handle_block(turn, event)
                else:
                    turn.terminal = event

    # -- execution --------------------------------------------------------------------------------------

    def _handle_block(self, turn: _Turn, block: Block) -> Iterator[Event]:
        if not block.runnable:
            yield Notice(f"not run: {block.note}")
            turn.records.append(RunRecord(block.language or "python", block.code, None, block.note))
            return
        code = block.code
        if self.config.execution_mode == "ask":
            answer = self.approve(block)
            if answer is None or self.cancel.is_set():
                yield Notice("not run: the user declined")
                turn.records.append(RunRecord(block.language, code, None, DECLINED_NOTE))
                return
            if answer != code:
                # The dialogue shows the code that actually ran, so the model continues from the truth.
                yield Notice("running the code as edited by the user")
                edited = protocol.block_text(block.language, answer)
                self._replace_block_text(turn, block, edited)
                code = answer
        result = yield from self._execute(turn, block.language, code)
        if result is not None:
            turn.records.append(RunRecord(block.language, code, result))

    def _replace_block_text(self, turn: _Turn, block: Block, edited: str) -> None:
        text = "".join(turn.text)
        index = text.rfind(block.raw)
        if block.stop_token_missing:
            edited = edited[: -len(RUN_STOP)]
        if index >= 0:
            text = text[:index] + edited + text[index + len(block.raw) :]
        turn.text = [text]

    def _execute(self, turn: _Turn, language: str, code: str) -> Iterator[Event]:
        """Run one block in a worker thread, yielding its output as it arrives; returns the result."""
        if self.cancel.is_set():
            return None  # stopped before it started: nothing to run or interrupt
        exec_id = uuid.uuid4().hex[:12]
        inbox: queue.SimpleQueue = queue.SimpleQueue()

        def on_output(stream: str, text: str) -> None:
            inbox.put(("output", stream, text))

        def work() -> None:
            try:
                kwargs = {"on_output": on_output}
                if self.config.execution_timeout_s is not None:
                    kwargs["timeout_s"] = self.config.execution_timeout_s
                inbox.put(("done", self.session.run_block(language, code, **kwargs)))
            except BaseException as exc:  # reported on the generator's thread
                inbox.put(("failed", exc))

        # Start before announcing it: the code runs even while the consumer is busy with the event, and a
        # cancel arriving meanwhile finds something to interrupt.
        self.relay.executing = True
        worker = threading.Thread(target=work, name=f"autocoder-exec-{exec_id}", daemon=True)
        worker.start()
        interrupted_at: float | None = None
        last_interrupt = 0.0
        forced = False  # the kernel was killed after the grace period
        try:
            yield ExecutionStarted(exec_id, language, code)
            while True:
                try:
                    item = inbox.get(timeout=0.05)
                except queue.Empty:
                    if self.cancel.is_set():
                        now = time.monotonic()
                        if interrupted_at is None:
                            interrupted_at = last_interrupt = now
                            self.relay.fire()
                        elif now - interrupted_at > self.config.cancel_grace_s and not forced:
                            # The code ignores the interrupt (or an sh command runs outside the kernel).
                            forced = True
                            if language != "sh" and self._kill_kernel():
                                continue  # the session sees its kernel die, restarts it and returns
                            return (yield from self._give_up(exec_id, language))
                        elif forced and now - interrupted_at > 2 * self.config.cancel_grace_s + 5:
                            return (yield from self._give_up(exec_id, language))
                        elif now - last_interrupt > 0.5:
                            # An interrupt that landed before the kernel began the cell is lost: repeat it.
                            last_interrupt = now
                            self._interrupt_quietly()
                    continue
                if item[0] == "output":
                    yield OutputChunk(exec_id, item[1], item[2])
                elif item[0] == "done":
                    result: ExecutionResult = item[1]
                    if forced and result.state_lost:
                        grace = self.config.cancel_grace_s
                        result.message = (
                            f"the code ignored the interrupt for {grace:g} s; kernel restarted, state lost"
                        )
                    yield ExecutionFinished(exec_id, result)
                    if result.state_lost:
                        yield Notice(
                            result.message or "the kernel was restarted; its variables and imports are gone"
                        )
                    return result
                else:
                    turn.error = f"could not run the code: {_one_line(item[1])}"
                    return None
        finally:
            self.relay.executing = False
            if worker.is_alive() and interrupted_at is None:
                # The consumer closed the generator mid-execution: do not leave the code running.
                self._interrupt_quietly()

    def _interrupt_quietly(self) -> None:
        try:
            self.session.interrupt()
        except Exception:  # nothing more to do: the grace period ends in a restart
            pass

    def _kill_kernel(self) -> bool:
        """Kill the session's kernel process so its running execution returns: the session notices the
        death, starts a fresh kernel and reports the state as lost. False when there is no such process."""
        process = getattr(getattr(self.session, "kernel", None), "process", None)
        if process is None or not hasattr(process, "kill"):
            return False
        try:
            process.kill()
        except Exception:
            return False
        return True

    def _give_up(self, exec_id: str, language: str) -> Iterator[Event]:
        """Stop waiting for an execution that would not stop; the loop ends without its result."""
        if language == "sh":
            message = "stopped waiting for the command; it may still finish (or time out) in its sandbox"
            lost = False
        else:
            message = "the code would not stop; restart the session's kernel (its state is lost)"
            lost = True
        result = ExecutionResult(status="error", message=message, state_lost=lost)
        yield ExecutionFinished(exec_id, result)
        yield Notice(message)
        return result


@dataclass
class _Turn:
    """What one generation round produced."""

    text: list[str] = field(default_factory=list)
    terminal: Block | None = None  # the block that ended the turn
    records: list[RunRecord] = field(default_factory=list)
    stats: _Stats = field(default_factory=_Stats)
    hit_max_tokens: bool = False
    error: str = ""
