"""Generate -> detect -> execute -> feed back, as a stream of typed events. The one loop everything uses.

`run_loop(backend, dialogue, session, config)` asks the backend for the assistant's reply, watches the
stream with `protocol.BlockDetector`, and when a block closes stops generation, runs the block in the
session (python in its kernel, sh through its package installer), appends the assistant turn and an
`execution` turn (`interpreter.dialogue.execution_message`: the text the model saw and the structured
runs) to the dialogue, and generates again: at most `max_rounds` executions per question, each followed
by one more generation so the model sees its last result (the original demo's MAX_TRY). The budget starts
again when `on_turn_end` asks a follow-up question. The app renders the events; the evaluation and the
data pipeline consume the same events and the final `Done.messages`.

Events tell a consumer everything it needs to draw the reply without parsing the model's text again:
`TextDelta` carries the raw text (special tokens included), `BlockOpened` / `BlockUpdated` /
`BlockClosed` say where a block begins, its language and code so far, and how it ended, and the
`Execution*` events follow a block that runs.

Rounds and turns, following how the released checkpoints were used:
- a python block (and any block with a problem, see protocol's table) ends the turn: generation stops;
- an sh block does not, by default (`sh_ends_turn=False`): the released models write the package
  install and then the python block in one turn, and the demo fed both results back together
  (`pip_result.*` then `result.*`). The sh block runs as soon as it closes while the stream goes on. With
  `sh_ends_turn=True` every block ends the turn and RUN_STOP is passed to the backend as a stop string.
  A backend that always stops at RUN_STOP just ends the turn after the sh block; both are handled.

Cancellation: setting `cancel` (from any thread) stops generation (the backend gets a cancel event),
interrupts a running execution (`session.interrupt()`; code that ignores it for `cancel_grace_s` gets
its kernel killed with `session.kill()`, and the session starts a fresh one, state lost), and the loop
ends with `Done(reason="cancelled")` holding everything generated and run so far. That happens the moment
the event is set, even while nobody pulls the generator, and nothing polls: a `Cancel` (this module's
event) calls the loop from the setting thread; a plain `threading.Event` cannot call anyone, so one thread
per such event (not per loop; see `_PlainEventWatch`) sleeps in its `wait()` and relays the set to every
loop then using that event. Pass a `Cancel` to have no thread at all.

Threads and speed: `session.run_block` runs in one worker thread per execution; its `on_output` callback
only puts chunks on a queue that the generator blocks on (no polling), so OutputChunk events arrive while
the code runs. The loop starts the code before it announces it, and announces it (with the text that
closed the block) only once the first output arrived or `announce_wait_s` passed: a consumer that
redraws on every event would otherwise redraw exactly while the kernel needs the CPU. The generator is
meant to be consumed by one thread.

What it deliberately does not do: import `llm` (the backend is any object with `stream(messages, params,
cancel, stats)`, see `Backend`; generation params are passed through), apply chat templates, render
events for a UI, or know the model's end-of-turn token (backends stop there).
"""

from __future__ import annotations

import copy
import dataclasses
import queue
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from interpreter import protocol
from interpreter.dialogue import execution_message
from interpreter.protocol import RUN_STOP, Block, Note, Opened, Text
from interpreter.results import ExecutionResult, RunRecord

# -- what the loop needs from its collaborators ---------------------------------------------------------

# Called with ("stdout" | "stderr", text) as output arrives.
OutputCallback = Callable[[str, str], None]


class GenerationParamsLike(Protocol):
    """What the loop reads of the opaque generation params (e.g. llm.base.GenerationParams)."""

    stop: list[str]
    max_new_tokens: int


class StreamStatsLike(Protocol):
    """What a backend fills in during `stream` (llm.base.StreamStats has these fields)."""

    prompt_tokens: int
    prefill_tokens: int
    generated_tokens: int
    stop_reason: str  # "end_of_turn" | "stop" | "max_tokens" | "cancelled", or "" when unknown


ParamsT = TypeVar("ParamsT", bound=GenerationParamsLike, contravariant=True)


class Backend(Protocol[ParamsT]):
    """A model backend (llm.base.Backend): streams the assistant's reply as text chunks.

    It stops at the model's end of turn or a stop string, soon after `cancel` is set, and when the
    consumer closes the iterator (the loop does so when a block ends the turn)."""

    def stream(
        self,
        messages: list[dict],
        params: ParamsT,
        cancel: threading.Event | None = None,
        stats: StreamStatsLike | None = None,
    ) -> Iterable[str]: ...


class InterpreterSession(Protocol):
    """Where blocks run (interpreter.session.Session)."""

    def run_block(
        self,
        language: str,
        code: str,
        on_output: OutputCallback | None = None,
        timeout_s: float | None = None,
    ) -> ExecutionResult: ...

    def interrupt(self) -> None: ...

    def kill(self) -> bool: ...

    def is_alive(self) -> bool: ...


# -- events ---------------------------------------------------------------------------------------------


@dataclass
class TextDelta:
    text: str  # assistant text, special tokens included


@dataclass
class BlockOpened:
    """A block begins: the TextDeltas from here to its BlockClosed are the block as the model writes it."""

    wrapped: bool  # False: a bare ```python fence (execution mode "always")


@dataclass
class BlockUpdated:
    """The language and code so far of the block being written (sent when they change)."""

    language: str  # "python" | "sh", the fence tag as written for others, "" before the fence line ends
    code: str


@dataclass
class BlockClosed:
    """The block is complete (or the turn ended inside it). Runnable when `problem` is ""."""

    language: str
    code: str
    problem: str = ""  # protocol.PROBLEM_*: why it cannot run
    note: str = ""  # one line about the problem

    @property
    def runnable(self) -> bool:
        return not self.problem


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
    messages: list[dict]  # the whole dialogue in DESIGN.md's format, execution turns (with runs) included
    # "end_of_turn" | "max_rounds" | "cancelled" | "max_tokens" | "error" (after an ErrorEvent)
    reason: str


@dataclass
class ErrorEvent:
    message: str  # one line


Event = (
    TextDelta
    | BlockOpened
    | BlockUpdated
    | BlockClosed
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

# After a cancel, an interrupt that landed before the kernel began the cell is lost: repeat it this often.
REINTERRUPT_S = 0.5


class Cancel(threading.Event):
    """A threading.Event that also calls its listeners the moment it is set (no thread, no polling).

    The app passes one per message so Stop interrupts the kernel at once; any threading.Event works too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[], None]] = []
        self._listeners_lock = threading.Lock()

    def set(self) -> None:
        super().set()
        with self._listeners_lock:
            listeners, self._listeners = self._listeners, []
        for listener in listeners:
            try:
                listener()
            except Exception:  # one broken listener must not keep the others from stopping
                pass

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` once when set (at once if it already is); returns an unsubscribe function."""
        with self._listeners_lock:
            if not self.is_set():
                self._listeners.append(listener)
                return lambda: self._unsubscribe(listener)
        listener()
        return lambda: None

    def _unsubscribe(self, listener: Callable[[], None]) -> None:
        with self._listeners_lock:
            if listener in self._listeners:
                self._listeners.remove(listener)


class _PlainEventWatch:
    """Relays the set of a plain threading.Event to listeners, without polling: one daemon thread per
    event, asleep in `event.wait()` until it is set, shared by every loop using that event.

    A thread cannot be woken from `wait()` without setting the event (notifying its private condition
    would wake every other waiter too, with a false "set"), so the thread of an event that is never set
    stays asleep until the process exits: one per distinct event a caller passes, whatever the number of
    loops (the data pipeline's and the evaluation's stop events are one per run). It keeps that event
    alive; a listener whose loop ended is forgotten at once.
    """

    _lock = threading.Lock()
    _listeners: dict[int, tuple[threading.Event, list[Callable[[], None]]]] = {}  # id(event) -> ...

    @classmethod
    def subscribe(cls, event: threading.Event, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` once when `event` is set (soon, from the watch thread, if it already is);
        returns an unsubscribe function."""
        with cls._lock:
            entry = cls._listeners.get(id(event))
            if entry is None:
                # Keyed by id: the entry holds the event, so its id cannot be reused while it is there.
                entry = cls._listeners[id(event)] = (event, [])
                threading.Thread(
                    target=cls._sleep_until_set, args=(event,), name="autocoder-cancel-watch", daemon=True
                ).start()
            entry[1].append(listener)

        def unsubscribe() -> None:
            with cls._lock:
                if listener in entry[1]:
                    entry[1].remove(listener)

        return unsubscribe

    @classmethod
    def _sleep_until_set(cls, event: threading.Event) -> None:
        event.wait()  # no timeout: woken by set() only
        with cls._lock:
            _, listeners = cls._listeners.pop(id(event))
        for listener in listeners:
            try:
                listener()
            except Exception:  # one broken listener must not keep the others from stopping
                pass


@dataclass
class LoopConfig:
    # Generation parameters handed to `backend.stream` (e.g. llm.base.GenerationParams). The loop only
    # copies them and, when blocks end the turn, adds RUN_STOP to a copy of their `stop` list.
    generation: GenerationParamsLike | None = None
    max_rounds: int = 3  # executions fed back to the model per question (the demo's MAX_TRY); 0 runs nothing
    execution_mode: str = "auto"  # protocol.EXECUTION_MODES
    render_style: str = "demo"  # protocol.RENDER_STYLES: "demo" for released checkpoints, "tokens" for ours
    head_chars: int = protocol.DEFAULT_HEAD_CHARS  # model-visible output: first chars kept per stream
    tail_chars: int = protocol.DEFAULT_TAIL_CHARS  # ... and last chars
    system_prompt: str | None = None  # used when the dialogue has none (protocol.render_dialogue)
    execution_role: str = "user"  # role execution turns take in what the model sees
    sh_ends_turn: bool = False  # see the module docstring
    bare_python: bool | None = None  # detect bare ```python fences; None means "only in always mode"
    # With bare_python: also bare ```sh/```bash/```shell fences (a teacher's installs), run as sh blocks.
    bare_sh: bool = False
    # Executed bare ```python fences are stored in token form (RUN_START```python ...```RUN_STOP) in the
    # recorded assistant text, so dialogues of a teacher that writes bare fences teach the tokens.
    record_bare_as_tokens: bool = False
    execution_timeout_s: float | None = None  # per block; None leaves the session's default
    cancel_grace_s: float = 5.0  # after an interrupt, wait this long before killing a kernel that ignores it
    # How long the loop waits for an execution's first output before announcing it (see the docstring).
    announce_wait_s: float = 0.03
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
        if self.announce_wait_s < 0:
            raise ValueError("announce_wait_s must be >= 0")

    @property
    def detects_bare_python(self) -> bool:
        return self.execution_mode == "always" if self.bare_python is None else self.bare_python


@dataclass
class _Stats:
    """Stand-in for llm.base.StreamStats (interpreter does not import llm)."""

    prompt_tokens: int = 0
    prefill_tokens: int = 0
    generated_tokens: int = 0
    stop_reason: str = ""


P = TypeVar("P", bound=GenerationParamsLike)


def _params_with_stop(params: P, extra: list[str]) -> P:
    """A copy of the params whose `stop` list also holds `extra` (the caller's object is untouched)."""
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


def run_loop(
    backend: Backend[P],
    dialogue: list[dict],
    session: InterpreterSession,
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
    return _Loop(backend, dialogue, session, config, cancel or Cancel(), approve).run()


@dataclass
class _Turn:
    """What one generation round produced."""

    text: list[str] = field(default_factory=list)
    terminal: Block | None = None  # the block that ended the turn
    records: list[RunRecord] = field(default_factory=list)
    stats: _Stats = field(default_factory=_Stats)
    hit_max_tokens: bool = False
    error: str = ""
    blocks: _BlockEvents = field(default_factory=lambda: _BlockEvents(False))
    held: list[Event] = field(default_factory=list)  # events not yet yielded (see `_execute`)


class _BlockEvents:
    """The detector's output as loop events: Text -> TextDelta, Opened -> BlockOpened, Note -> Notice,
    Block -> BlockClosed followed by the Block itself (for the loop to act on), and `update()` for the
    BlockUpdated of a block still open after a chunk."""

    def __init__(self, bare_python: bool, bare_sh: bool = False):
        self.detector = protocol.BlockDetector(bare_python=bare_python, bare_sh=bare_sh)
        self.in_block = False
        self.so_far: tuple[str, str] | None = None  # the last BlockUpdated sent

    def convert(self, found: list) -> Iterator[Event | Block]:
        for event in found:
            if isinstance(event, Text):
                yield TextDelta(event.text)
            elif isinstance(event, Opened):
                if self.in_block:  # a duplicate RUN_START: the unfinished block was dropped
                    yield BlockClosed("", "", "dropped", "replaced by a new block")
                self.in_block, self.so_far = True, None
                yield BlockOpened(event.wrapped)
            elif isinstance(event, Note):
                yield Notice(event.message)
            elif isinstance(event, Block):
                self.in_block = False
                yield BlockClosed(event.language, event.code, event.problem, event.note)
                yield event

    def update(self) -> BlockUpdated | None:
        if not self.in_block:
            return None
        so_far = self.detector.open_block()
        if so_far is None or so_far == self.so_far:
            return None
        self.so_far = so_far
        return BlockUpdated(*so_far)


def stream_events(chunks: Iterable[str], bare_python: bool = False, *, finished: bool = True) -> list[Event]:
    """The text and block events the loop sends for a reply streamed in these chunks, running nothing
    (to replay a stored reply on screen, and for tests of what consumes the events). `finished=False`:
    the reply is still streaming (a block left open stays open)."""
    blocks = _BlockEvents(bare_python)
    events: list[Event] = []
    for chunk in chunks:
        events += [e for e in blocks.convert(blocks.detector.feed(chunk)) if not isinstance(e, Block)]
        update = blocks.update()
        if update is not None:
            events.append(update)
    if finished:
        events += [e for e in blocks.convert(blocks.detector.finish()) if not isinstance(e, Block)]
    return events


class _Loop:
    def __init__(
        self,
        backend: Backend[P],
        dialogue: list[dict],
        session: InterpreterSession,
        config: LoopConfig,
        cancel: threading.Event,
        approve: ApproveCallback | None,
    ):
        self.backend = backend
        self.messages = [dict(m) for m in dialogue]
        self.session = session
        self.config = config
        self.cancel = cancel
        self.approve = approve
        # What a cancel acts on, under _lock: the running generation's cancel event, and the running
        # execution's inbox (a cancel wakes the generator blocked on it).
        self._lock = threading.Lock()
        self._generation: threading.Event | None = None
        self._inbox: queue.SimpleQueue | None = None
        self._interrupt_pending = False

    # -- cancellation -----------------------------------------------------------------------------------

    def _on_cancel(self) -> None:
        """Runs in whichever thread noticed the cancel: stop generating, interrupt the running code."""
        with self._lock:
            generation, inbox = self._generation, self._inbox
            interrupt, self._interrupt_pending = self._interrupt_pending, False
        if generation is not None:
            generation.set()
        if interrupt:
            self._interrupt_quietly()
        if inbox is not None:
            inbox.put(("cancel",))

    def _watch_cancel(self) -> Callable[[], None]:
        """Arrange for `_on_cancel` to run when the caller's cancel is set; returns how to stop watching."""
        if isinstance(self.cancel, Cancel):
            return self.cancel.subscribe(self._on_cancel)
        return _PlainEventWatch.subscribe(self.cancel, self._on_cancel)

    # -- the loop ---------------------------------------------------------------------------------------

    def run(self) -> Iterator[Event]:
        stop_watching = self._watch_cancel()
        try:
            yield from self._rounds()
        finally:
            stop_watching()

    def _rounds(self) -> Iterator[Event]:
        cfg = self.config
        executions = 0  # this question's executions: the budget is per question
        generations = 0
        while True:
            if self.cancel.is_set():
                yield Done(self.messages, "cancelled")
                return
            generations += 1
            turn = _Turn()
            yield from self._generate(turn, may_execute=executions < cfg.max_rounds)
            if turn.error:
                yield from self._release(turn)
                yield ErrorEvent(turn.error)
                self._append_turn(turn)
                yield Done(self.messages, "error")
                return
            if turn.terminal is not None and not self.cancel.is_set():
                if turn.terminal.problem == protocol.PROBLEM_UNCLOSED and turn.hit_max_tokens:
                    # Cut off mid-block by the token limit: telling the model would only repeat that.
                    yield from self._release(turn)
                    yield Notice(
                        f"the reply hit the max new tokens limit inside a code block; {turn.terminal.note}"
                    )
                    self._append_turn(turn)
                    yield self._round_finished(generations, turn)
                    yield Done(self.messages, "max_tokens")
                    return
                if executions >= cfg.max_rounds:
                    yield from self._release(turn)
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
            yield from self._release(turn)
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
                executions = 0  # a new question gets its own budget
                continue
            yield Done(self.messages, "end_of_turn")
            return

    @staticmethod
    def _release(turn: _Turn) -> Iterator[Event]:
        """Yield the events held back at the end of a generation (see `_execute`)."""
        held, turn.held = turn.held, []
        yield from held

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
            cfg = self.config
            self.messages.append(
                execution_message(turn.records, cfg.render_style, cfg.head_chars, cfg.tail_chars)
            )

    # -- generation -------------------------------------------------------------------------------------

    def _generate(self, turn: _Turn, may_execute: bool) -> Iterator[Event]:
        cfg = self.config
        assert cfg.generation is not None  # validate() checked
        model_messages = protocol.render_dialogue(
            self.messages,
            cfg.render_style,
            cfg.system_prompt,
            cfg.execution_role,
            cfg.head_chars,
            cfg.tail_chars,
        )
        params = _params_with_stop(cfg.generation, [RUN_STOP] if cfg.sh_ends_turn else [])
        turn.blocks = _BlockEvents(cfg.detects_bare_python, cfg.bare_sh)
        detector = turn.blocks.detector
        gen_cancel = Cancel()  # calls back: a backend may subscribe instead of watching it
        with self._lock:
            self._generation = gen_cancel
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
            with self._lock:
                self._generation = None
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

    def _detected(self, turn: _Turn, found: list, may_execute: bool) -> Iterator[Event]:
        """Turn one chunk's detector events into loop events. When a block ends the turn, this chunk's
        events are held in `turn.held` (the execution announces them, see `_execute`)."""
        out: list[Event] = []
        for event in turn.blocks.convert(found):
            if turn.terminal is not None or turn.error:
                break  # whatever follows a turn-ending block is not part of the turn
            if isinstance(event, Block):
                sh_in_turn = event.language == "sh" and event.runnable and not self.config.sh_ends_turn
                if sh_in_turn and may_execute:
                    # An install inside the turn: run it now, keep reading the stream.
                    turn.held, out = out, []
                    yield from self._handle_block(turn, event)
                else:
                    turn.terminal = event
                    turn.held = out
                    return
                continue
            if isinstance(event, TextDelta):
                turn.text.append(event.text)
            out.append(event)
        update = turn.blocks.update()
        if update is not None:
            out.append(update)
        yield from out

    # -- execution --------------------------------------------------------------------------------------

    def _handle_block(self, turn: _Turn, block: Block) -> Iterator[Event]:
        if not block.runnable:
            yield from self._release(turn)
            yield Notice(f"not run: {block.note}")
            turn.records.append(RunRecord(block.language or "python", block.code, None, block.note))
            return
        code = block.code
        if self.config.execution_mode == "ask":
            yield from self._release(turn)  # the user sees the block before being asked about it
            assert self.approve is not None  # run_loop checked
            answer = self.approve(block)
            if answer is None or self.cancel.is_set():
                yield Notice("not run: the user declined")
                turn.records.append(RunRecord(block.language, code, None, DECLINED_NOTE))
                return
            if answer != code:
                # The dialogue shows the code that actually ran, so the model continues from the truth.
                yield Notice("running the code as edited by the user")
                self._replace_block_text(turn, block, protocol.block_text(block.language, answer))
                code = answer
        result = yield from self._execute(turn, block.language, code)
        if result is not None:
            turn.records.append(RunRecord(block.language, code, result))
            if not block.wrapped and self.config.record_bare_as_tokens and code == block.code:
                self._replace_block_text(turn, block, protocol.block_text(block.language, code))

    def _replace_block_text(self, turn: _Turn, block: Block, edited: str) -> None:
        text = "".join(turn.text)
        index = text.rfind(block.raw)
        if block.stop_token_missing:
            edited = edited[: -len(RUN_STOP)]
        if index >= 0:
            text = text[:index] + edited + text[index + len(block.raw) :]
        turn.text = [text]

    def _execute(
        self, turn: _Turn, language: str, code: str
    ) -> Generator[Event, None, ExecutionResult | None]:
        """Run one block in a worker thread, yielding its output as it arrives; returns the result."""
        if self.cancel.is_set():
            yield from self._release(turn)
            return None  # stopped before it started: nothing to run or interrupt
        exec_id = uuid.uuid4().hex[:12]
        inbox: queue.SimpleQueue = queue.SimpleQueue()

        def on_output(stream: str, text: str) -> None:
            inbox.put(("output", stream, text))

        timeout = self.config.execution_timeout_s

        def work() -> None:
            try:
                inbox.put(("done", self.session.run_block(language, code, on_output, timeout)))
            except BaseException as exc:  # reported on the generator's thread
                inbox.put(("failed", exc))

        with self._lock:
            self._inbox = inbox
            self._interrupt_pending = True  # a cancel from now on interrupts this execution
        worker = threading.Thread(target=work, name=f"autocoder-exec-{exec_id}", daemon=True)
        # Start it before announcing it: the code runs even while the consumer is busy with the events.
        worker.start()
        early: list[tuple] = []
        if self.config.announce_wait_s > 0:
            try:
                early.append(inbox.get(timeout=self.config.announce_wait_s))
            except queue.Empty:
                pass
        interrupted_at: float | None = None
        last_interrupt = 0.0
        forced = False  # the kernel was killed after the grace period
        finished = False  # the worker handed over its result (it may still be on its way out)
        try:
            yield from self._release(turn)
            yield ExecutionStarted(exec_id, language, code)
            while True:
                if early:
                    item = early.pop()
                else:
                    try:
                        # Block until something happens (output, the end, or a cancel's wake-up); only
                        # after a cancel is there a clock to watch, and then until its next deadline.
                        wait = None
                        if interrupted_at is not None:
                            wait = self._until_next_step(interrupted_at, last_interrupt, forced)
                        item = inbox.get(timeout=wait)
                    except queue.Empty:
                        item = ("tick",)
                if item[0] in ("cancel", "tick"):
                    if not self.cancel.is_set():
                        continue
                    now = time.monotonic()
                    if interrupted_at is None:
                        interrupted_at = last_interrupt = now
                        self._on_cancel()  # interrupts now unless the cancel's thread already did
                    elif now - interrupted_at > self.config.cancel_grace_s and not forced:
                        # The code ignores the interrupt (or an sh command runs outside the kernel).
                        forced = True
                        if language != "sh" and self._kill_kernel():
                            continue  # the session sees its kernel die, restarts it and returns
                        return (yield from self._give_up(exec_id, language))
                    elif forced and now - interrupted_at > 2 * self.config.cancel_grace_s + 5:
                        return (yield from self._give_up(exec_id, language))
                    elif now - last_interrupt > REINTERRUPT_S:
                        last_interrupt = now
                        self._interrupt_quietly()
                    continue
                if item[0] == "output":
                    yield OutputChunk(exec_id, item[1], item[2])
                elif item[0] == "done":
                    finished = True
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
            with self._lock:
                self._inbox = None
                still_pending, self._interrupt_pending = self._interrupt_pending, False
            if worker.is_alive() and still_pending and not finished:
                # The consumer closed the generator mid-execution: do not leave the code running. (Not after
                # the result came: the worker may not have exited yet, and an interrupt sent then reaches an
                # idle kernel, or the next execution.)
                self._interrupt_quietly()

    def _until_next_step(self, interrupted_at: float, last_interrupt: float, forced: bool) -> float:
        """Seconds until the next thing a cancelled execution's wait must do: interrupt again, kill the
        kernel after the grace period, or give up (see `_execute`); a millisecond late, so it is due."""
        grace = self.config.cancel_grace_s
        next_step = interrupted_at + (2 * grace + 5 if forced else grace)
        return max(0.0, min(last_interrupt + REINTERRUPT_S, next_step) - time.monotonic()) + 0.001

    def _interrupt_quietly(self) -> None:
        try:
            self.session.interrupt()
        except Exception:  # nothing more to do: the grace period ends in a restart
            pass

    def _kill_kernel(self) -> bool:
        """Kill the session's kernel so its running execution returns: the session notices the death,
        starts a fresh kernel and reports the state as lost. False when there was nothing to kill."""
        try:
            return self.session.kill()
        except Exception:
            return False

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
