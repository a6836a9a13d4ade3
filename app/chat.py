"""One chat per browser session: its kernel, its dialogue, its turns, and the loop run for a message.

`ChatSessions` is the registry, keyed by Gradio's session hash: each `gradio_client.Client` (and a page
without a browser-held chat id) gets its own `Chat`; a page that brings the id its browser holds is bound
(`bind`) to that browser's chat, so a reload shows the same chat and kernel (app.chat_history). A kernel
starts on first use and is shut down after `idle_timeout_s` without use (a reaper thread), when an unbound
page closes (Gradio's unload event; a bound page's chat waits for the reaper instead), or when the server
exits (`close_all`, called from atexit).

`Chat.run(...)` runs the interpreter loop for one user message in a worker thread and yields the turn
after each batch of loop events, so a streaming Gradio handler re-renders at most once per batch, never
once per token. Stop sets the loop's cancel event, which ends generation and interrupts the kernel.
In execution mode "ask" the loop's `approve` callback parks the worker until the user presses Run (with
the code, possibly edited) or Skip.

Uploads (`add_uploads`) wait for the next message, which tells the model of them in one line before its
text (app.uploads); Undo hands them on to the message after, Clear drops them (the files stay in the
workdir). `undo(retry=True)` keeps the dropped answer for the same message's next turn (`Turn.earlier`),
shown collapsed but never put back into the dialogue.

Caps: a chat takes a kernel slot when its kernel starts and gives it back when the kernel is shut down
(closed tab, idle reaper, server exit). At most `max_sessions` chats hold a kernel at once, and at most
`max_per_client` per client (the signed-in user, else the client's address); past either, starting a kernel
raises `SessionLimitError`, whose message the chat shows. Below that, `app.server` sets the interpreter's
process-wide cap (`interpreter.session.set_max_sessions`) to the same total, which bounds every kernel,
the warm pool's included (it warms only free slots); its refusal becomes the same `SessionLimitError`.
With a login a chat belongs to the user who opened it: its session id used by another user is refused
(`AccessDenied`).

Locks (tests/app/test_races.py runs each race many times): a chat's answer state (`running`, `cancel`,
`approval`, `kernel_note`) changes only under `_lock`, which is never held while calling out; the kernel
starts and stops under `_kernel_lock` (held for seconds), which may take `_lock` inside it, never the other
way round. So Stop and a second submit never wait for a kernel to boot, a message and the idle reaper agree
on who got there first, and the kernel slot of a reaped kernel is given back before the same chat can take
one for its next kernel.

What this module deliberately does not do: render anything (see `app.view`) or know about Gradio.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from app.auth import AccessDenied
from app.uploads import with_note
from app.view import NotePart, TextPart, Turn
from interpreter.kernel import KernelStartError
from interpreter.loop import BlockOpened, BlockUpdated, Cancel, Done, ErrorEvent, LoopConfig, TextDelta
from interpreter.session import SessionLimitReached
from llm.base import DEFAULT_MAX_NEW_TOKENS

log = logging.getLogger("app")

# Chats (their text, not their kernels) are forgotten after this long without use.
FORGET_AFTER_S = 24 * 3600

# A finished worker puts this on its queue after its last event.
_END = object()

# Batches of nothing but the model's text go out at most this often; any other event (an execution starting,
# its output, a question, the end) goes at once. Every yield re-renders the chat in the browser, and a
# browser that falls behind a fast token stream is still busy with old text when the output of the code
# arrives, on the same few cores the code runs on (see benchmarks.execution_latency). The first text after
# anything else (the start, an execution's result) goes at once: the reader sees the model start at once.
TEXT_INTERVAL_S = 0.05
# The events that may wait for TEXT_INTERVAL_S: the streamed text and the block being written.
_TEXT_EVENTS = (TextDelta, BlockOpened, BlockUpdated)


@dataclass
class Settings:
    """What the user may change per message (the Settings panel, or the API's arguments)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    max_rounds: int = LoopConfig.max_rounds  # the loop's default, defined there once
    execution_mode: str = "auto"


@dataclass
class AskRequest:
    """The loop waits for the user to approve a block (execution mode "ask")."""

    language: str
    code: str


class Approval:
    """A pending approval: the worker waits on it, the Run/Skip handlers resolve it."""

    def __init__(self, language: str, code: str):
        self.language = language
        self.code = code
        self.decision: str | None = None  # the code to run (maybe edited), or None to skip
        self.resolved = threading.Event()

    def resolve(self, code: str | None) -> None:
        self.decision = code
        self.resolved.set()


# Builds the loop's event stream for one message: (dialogue, session, settings, cancel, approve) -> events.
LoopRunner = Callable[
    [list[dict], Any, Settings, threading.Event, Callable[..., str | None]], Iterator[object]
]


WORKER_STOP_TIMEOUT_S = 30.0


class BusyError(RuntimeError):
    """This chat is already answering a message."""


class SessionLimitError(RuntimeError):
    """No kernel slot is free (--max-sessions, or the per-client cap); the message says so for the user."""


class Chat:
    """The state of one browser session's chat."""

    def __init__(
        self,
        key: str,
        start_kernel: Callable[[], Any],
        system_prompt: str | None = None,
        *,
        owner: str | None = None,
        client: str = "",
        slots: KernelSlots | None = None,
    ):
        self.key = key
        self.owner = owner  # the signed-in user who opened it (None without --auth)
        self.client = client  # what the per-client cap counts
        self._slots = slots
        self.chat_id = uuid.uuid4().hex[:12]
        self.system_prompt = system_prompt
        self.turns: list[Turn] = []
        self.dialogue: list[dict] = self._initial_dialogue()
        self._start_kernel = start_kernel
        self._kernel: Any = None
        # Kernel start/stop (slow); may take _lock inside it, never the other way round.
        self._kernel_lock = threading.Lock()
        self._lock = threading.Lock()  # running, cancel, approval, kernel_note (quick; never calls out)
        self.cancel = Cancel()  # acts the moment Stop sets it: the loop needs no polling thread
        self.running = False
        self.approval: Approval | None = None
        self.last_used = time.monotonic()
        self.closed = False
        self.kernel_note = ""  # said once in the next turn after an idle kernel was shut down
        # Called (outside every lock) after an answer ends or the conversation changes: the chat history
        # (app.chat_history) saves the chat's record here. Its failures are logged, never raised.
        self.on_changed: Callable[[Chat], None] | None = None
        # Files uploaded since the last message ("data.csv (1.2 kB)"), not yet told to the model.
        self.uploads: list[str] = []
        # The turn Retry took back: its answer stays browsable in the turn that replaces it.
        self._replaced: Turn | None = None

    def _initial_dialogue(self) -> list[dict]:
        return [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []

    # ------------------------------------------------------------------------------------------ kernel

    def kernel(self) -> Any:
        """The session's kernel, started on first use."""
        with self._kernel_lock:
            if self.closed:
                raise RuntimeError("this chat was closed; reload the page")
            if self._kernel is None:
                started = time.monotonic()
                if self._slots is not None:
                    self._slots.take(self)  # raises SessionLimitError when full
                try:
                    self._kernel = self._start_kernel()
                except SessionLimitReached as exc:  # the interpreter's own cap, under ours
                    self._release_slot()
                    raise SessionLimitError(f"The server is full: {exc}") from None
                except BaseException:
                    self._release_slot()
                    raise
                log.info("chat %s: kernel started in %.1f s", self.chat_id, time.monotonic() - started)
            return self._kernel

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.give_back(self)

    @property
    def kernel_started(self) -> bool:
        return self._kernel is not None

    def workdir(self):
        """The kernel's working directory on the host (uploads go here; files the code writes appear here)."""
        return self.kernel().dirs.work

    def restart_kernel(self) -> None:
        with self._kernel_lock:
            if self._kernel is None:
                return
            try:
                self._kernel.restart()
            except KernelStartError as exc:
                # The fresh kernel did not come up (a sandbox that fails to start, a machine out of memory): drop
                # the whole session rather than leave the chat on a dead one. The next message starts a new
                # kernel and says what was lost.
                log.warning(
                    "chat %s: kernel restart failed (%s); the next message starts a new one",
                    self.chat_id,
                    exc,
                )
                kernel, self._kernel = self._kernel, None
                with self._lock:
                    self.kernel_note = "The kernel could not be restarted; this message got a new one: variables and workdir files are gone."
                _close_quietly(kernel, self.chat_id)
                self._release_slot()

    def shutdown_kernel(self, why: str) -> bool:
        """Close the kernel (its folders go too) but keep the conversation; the next message starts a new
        kernel and the chat says that state and files were lost. Returns whether a kernel was running."""
        with self._kernel_lock:
            with self._lock:
                if self.running:  # a message arrived after the reaper looked: keep the kernel
                    return False
                kernel, self._kernel = self._kernel, None
                if kernel is None:
                    return False
                # Set with the kernel gone, in one step: a message starting now either sees both or neither.
                self.kernel_note = (
                    f"The previous kernel was shut down ({why}): variables and workdir files are gone."
                )
            # Still under the kernel lock: a message's worker waits here for its fresh kernel, so this
            # chat's slot is given back before it takes one again (else the late give-back frees the new one).
            _close_quietly(kernel, self.chat_id)
            self._release_slot()
        return True

    def close(self) -> None:
        self.stop(any_time=True)
        with self._kernel_lock:
            self.closed = True
            kernel, self._kernel = self._kernel, None
        if kernel is not None:
            _close_quietly(kernel, self.chat_id)
        self._release_slot()
        log.info("chat %s: closed", self.chat_id)

    # ------------------------------------------------------------------------------------------ turns

    def touch(self) -> None:
        self.last_used = time.monotonic()

    def stop(self, *, any_time: bool = False) -> bool:
        """Stop the running answer (the Stop button): end generation, interrupt the kernel, cancel a
        pending approval. Returns whether an answer was running (any_time: cancel even if none is)."""
        with self._lock:
            if not (self.running or any_time):
                return False
            cancel, approval = self.cancel, self.approval
        cancel.set()  # outside the lock: the loop's cancel listener interrupts the kernel
        if approval is not None:
            approval.resolve(None)
        return True

    def undo(self, retry: bool = False) -> Turn | None:
        """Drop the last exchange (its user message and everything after it); return it. The uploads it
        told the model of are told again with the next message; with `retry` the next message (the same
        one again) also keeps the dropped answer as an earlier answer."""
        with self._lock:
            if self.running or not self.turns:
                return None
            turn = self.turns.pop()
            del self.dialogue[turn.dialogue_start :]
            self.uploads[:0] = turn.uploads
            self._replaced = turn if retry else None
        self._changed()
        return turn

    def _changed(self) -> None:
        if self.on_changed is None:
            return
        try:
            self.on_changed(self)
        except Exception as exc:  # a full disk must not break the chat
            log.warning("chat %s: saving it to the history failed: %s", self.chat_id, exc)

    def reopen(self, chat_id: str, dialogue: list[dict], turns: list[Turn]) -> None:
        """Show another conversation (from the history or a dialogue record) in this chat, with a fresh
        kernel: the old kernel's state belongs to the conversation shown before."""
        with self._lock:
            if self.running:
                raise BusyError("stop the running answer first")
            self.running = True  # holds the chat while the kernel restarts, as clear() does
            self.turns = list(turns)
            self.dialogue = [dict(m) for m in dialogue]
            self.chat_id = chat_id
            self.kernel_note = ""
        try:
            self.restart_kernel()
        finally:
            with self._lock:
                self.running = False

    def clear(self) -> None:
        """Forget the conversation and give the chat a fresh kernel (files in the workdir stay)."""
        with self._lock:
            if self.running:
                raise BusyError("stop the running answer first")
            self.running = True  # holds the chat: no message starts, and no reaper acts, while it clears
            self.turns.clear()
            self.dialogue = self._initial_dialogue()
            self.chat_id = uuid.uuid4().hex[:12]
            self.uploads.clear()  # a fresh conversation; the files themselves stay in the workdir
            self._replaced = None
        try:
            self.restart_kernel()
        finally:
            with self._lock:
                self.running = False

    def add_uploads(self, descriptions: list[str]) -> None:
        """Files just uploaded into the workdir: the model is told with the next message (app.uploads)."""
        with self._lock:
            self.uploads.extend(descriptions)

    def _next_turn(self, message: str) -> Turn:
        """The turn for a new message (under _lock): it takes the uploads not yet told, and the answers
        a Retry of this same message replaced."""
        turn = Turn(user=message, dialogue_start=len(self.dialogue), uploads=self.uploads)
        self.uploads = []
        replaced, self._replaced = self._replaced, None
        if replaced is not None and replaced.user == message:
            turn.earlier = [*replaced.earlier, replaced.parts]
        return turn

    def run(self, message: str, settings: Settings, run_loop: LoopRunner) -> Iterator[Turn]:
        """Answer one user message; yields the (growing) turn after each batch of loop events."""
        with self._lock:  # check-and-set in one step: two API calls may race, and so may the reaper
            if self.running:
                raise BusyError("this chat is still answering; press Stop first")
            # The new cancel exists before anyone can see `running`: a Stop from then on reaches this answer.
            self.cancel = cancel = Cancel()
            self.running = True
            turn = self._next_turn(message)
            if self.kernel_note:
                turn.parts.append(NotePart(self.kernel_note))
                self.kernel_note = ""
            self.turns.append(turn)
            dialogue = [*self.dialogue, {"role": "user", "content": with_note(message, turn.uploads)}]
        self.touch()
        events: queue.Queue = queue.Queue()
        worker = threading.Thread(
            target=self._work,
            args=(dialogue, settings, run_loop, events, cancel),
            name=f"loop-{self.chat_id}",
            daemon=True,
        )
        worker.start()
        done: Done | None = None
        try:
            yield turn
            finished = False
            streaming_text = False  # the last batch was text only: the next text may wait its turn
            while not finished:
                batch = _next_batch(events, time.monotonic() + TEXT_INTERVAL_S if streaming_text else 0.0)
                streaming_text = all(isinstance(event, _TEXT_EVENTS) for event in batch)
                for event in batch:
                    if event is _END:
                        finished = True
                    elif isinstance(event, AskRequest):
                        turn.ask(event.language, event.code)
                    elif isinstance(event, _Skipped):
                        turn.skip_asked()
                    else:
                        turn.apply(event)
                        if isinstance(event, Done):
                            done = event
                yield turn
        finally:
            # Also reached when the browser goes away mid-answer (the generator is closed): stop the loop.
            if worker.is_alive():
                self.stop()
                # Longer than the loop's own worst case after a cancel (interrupt, grace, kill, give up).
                worker.join(timeout=WORKER_STOP_TIMEOUT_S)
            with self._lock:
                self.dialogue = done.messages if done is not None else [*dialogue, *self._partial_reply(turn)]
                self.approval = None
                self.running = False
            self.touch()
            self._changed()

    @staticmethod
    def _partial_reply(turn: Turn) -> list[dict]:
        """Without the loop's final dialogue (it failed), keep at least what the model said."""
        text = "".join(part.raw for part in turn.parts if isinstance(part, TextPart))
        return [{"role": "assistant", "content": text}] if text else []

    def _work(
        self, dialogue, settings, run_loop: LoopRunner, events: queue.Queue, cancel: threading.Event
    ) -> None:
        def approve(*args, **kwargs) -> str | None:
            language, code = _block_of(args, kwargs)
            approval = Approval(language, code)
            # Under Stop's lock: either Stop sees (and resolves) this approval, or we see its cancel.
            with self._lock:
                if cancel.is_set():
                    return None
                self.approval = approval
            events.put(AskRequest(language, code))
            # A cancel from anywhere resolves the approval as a skip (Stop resolves it too): no polling.
            # A plain threading.Event cannot tell anyone it was set: it is looked at every 0.1 s.
            stop_waiting = (
                cancel.subscribe(lambda: approval.resolve(None)) if isinstance(cancel, Cancel) else None
            )
            try:
                while not approval.resolved.wait(None if stop_waiting else 0.1):
                    if cancel.is_set():
                        return None
            finally:
                if stop_waiting is not None:
                    stop_waiting()
            with self._lock:
                self.approval = None
            if approval.decision is None:
                events.put(_Skipped())
            return approval.decision

        try:
            kernel = self.kernel()
            for event in run_loop(dialogue, kernel, settings, cancel, approve):
                events.put(event)
        except SessionLimitError as exc:  # said to the user as it is: no traceback, no class name
            log.info("chat %s: %s", self.chat_id, exc)
            events.put(ErrorEvent(str(exc)))
        except Exception as exc:  # shown in the chat as one line; the traceback goes to the log
            log.exception("chat %s: the loop failed", self.chat_id)
            events.put(ErrorEvent(f"{type(exc).__name__}: {exc}".splitlines()[0]))
        finally:
            events.put(_END)


def _next_batch(events: queue.Queue, text_until: float = 0.0) -> list:
    """The next event, and every event that already arrived behind it: they are rendered together. While
    the batch holds only text (`_TEXT_EVENTS`), it also takes what arrives until `text_until` (a
    time.monotonic() time); the first other event ends the wait."""
    batch = [events.get()]
    while True:
        try:
            batch.append(events.get_nowait())
            continue
        except queue.Empty:
            pass
        wait = text_until - time.monotonic()
        if wait <= 0 or not all(isinstance(event, _TEXT_EVENTS) for event in batch):
            return batch
        try:
            batch.append(events.get(timeout=wait))
        except queue.Empty:
            return batch


def _close_quietly(kernel: Any, chat_id: str) -> None:
    try:
        kernel.close()
    except Exception as exc:  # a dying sandbox must not keep the others from closing
        log.warning("chat %s: closing its kernel failed: %s", chat_id, exc)


class _Skipped:
    """The user skipped the block the loop asked about (rendered by Turn.apply as a no-op)."""


def _block_of(args: tuple, kwargs: dict) -> tuple[str, str]:
    """(language, code) from whatever the loop passes to `approve`: a block object or the two strings."""
    if len(args) == 1 and not kwargs:
        block = args[0]
        return getattr(block, "language", "python"), getattr(block, "code", str(block))
    if len(args) >= 2:
        return str(args[0]), str(args[1])
    return kwargs.get("language", "python"), kwargs.get("code", "")


class KernelSlots:
    """Counts the chats that hold a kernel, in total and per client, and refuses one past either cap.

    Enforced here, in the app's registry, because that is where chats and clients are known; the
    interpreter's own cap on open sessions (`set_max_sessions`) still applies below it.
    """

    def __init__(self, max_sessions: int | None = None, max_per_client: int | None = None):
        self.max_sessions = max_sessions
        self.max_per_client = max_per_client
        self._holders: dict[int, str] = {}  # id(chat) -> client
        self._lock = threading.Lock()

    def take(self, chat: Chat) -> None:
        with self._lock:
            if id(chat) in self._holders:
                return
            if self.max_sessions is not None and len(self._holders) >= self.max_sessions:
                raise SessionLimitError(
                    f"The server is full: {len(self._holders)} chats already have a kernel (the limit, "
                    "--max-sessions). Try again in a while, when an idle chat's kernel has been shut down."
                )
            mine = sum(1 for client in self._holders.values() if client == chat.client)
            if self.max_per_client is not None and mine >= self.max_per_client:
                raise SessionLimitError(
                    f"You already have {mine} chat{'s' if mine != 1 else ''} with a kernel, the most one "
                    "client may have (--max-sessions-per-client). Close another chat's tab, or wait until "
                    "its kernel is shut down for being idle."
                )
            self._holders[id(chat)] = chat.client

    def give_back(self, chat: Chat) -> None:
        with self._lock:
            self._holders.pop(id(chat), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._holders)


class ChatSessions:
    """All chats of this server, keyed by Gradio session hash; idle ones are reaped."""

    def __init__(
        self,
        start_kernel: Callable[[], Any],
        system_prompt: str | None = None,
        idle_timeout_s: float = 1800.0,
        *,
        max_sessions: int | None = None,
        max_per_client: int | None = None,
    ):
        self._start_kernel = start_kernel
        self._system_prompt = system_prompt
        self.idle_timeout_s = idle_timeout_s
        self.slots = KernelSlots(max_sessions, max_per_client)
        self._chats: dict[str, Chat] = {}
        # Gradio session key -> the key of the chat it shows, for a page that brought a browser-held chat
        # id (app.chat_history): a reload is a new session showing the same chat.
        self._aliases: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def get(self, key: str, user: str | None = None, client: str = "") -> Chat:
        """The chat of session `key`, made on first use and owned by `user` from then on (AccessDenied when
        another user asks for it)."""
        with self._lock:
            key = self._aliases.get(key, key)
            chat = self._chats.get(key)
            if chat is not None and not chat.closed and chat.owner != user:
                raise AccessDenied("this session belongs to another user; reload the page")
            if chat is None or chat.closed:
                chat = self._chats[key] = Chat(
                    key, self._start_kernel, self._system_prompt, owner=user, client=client, slots=self.slots
                )
            chat.touch()
            return chat

    def peek(self, key: str, user: str | None = None) -> Chat | None:
        with self._lock:
            chat = self._chats.get(self._aliases.get(key, key))
        if chat is not None and chat.owner != user:
            raise AccessDenied("this session belongs to another user; reload the page")
        return chat

    def any_running(self) -> bool:
        with self._lock:
            return any(chat.running for chat in self._chats.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._chats)

    def close(self, key: str, user: str | None = None, *, any_owner: bool = False) -> None:
        with self._lock:
            chat = self._chats.get(key)
            if chat is None or (chat.owner != user and not any_owner):
                return
            del self._chats[key]
        chat.close()

    def bind(self, session: str, chat_key: str, user: str | None = None) -> None:
        """From now on session `session` shows the chat `chat_key` (made by `get(chat_key, ...)`); a chat the
        session made for itself before it was bound moves to `chat_key` when that has none yet. A session
        whose chat belongs to another user is refused (AccessDenied): nobody rebinds someone else's page."""
        with self._lock:
            current = self._chats.get(self._aliases.get(session, session))
            if current is not None and not current.closed and current.owner != user:
                raise AccessDenied("this session belongs to another user; reload the page")
            own = self._chats.get(session)
            if own is not None and chat_key not in self._chats and session not in self._aliases:
                del self._chats[session]
                own.key = chat_key
                self._chats[chat_key] = own
            self._aliases[session] = chat_key

    def release(self, session: str, user: str | None = None) -> None:
        """The page of `session` went away (Gradio's unload). A bound session only lets go of its chat,
        whose kernel stays until the idle reaper shuts it down (a reload shows it again); an unbound one
        closes its own chat, as before."""
        with self._lock:
            bound = self._aliases.pop(session, None)
            chat = self._chats.get(bound) if bound is not None else None
        if bound is None:
            self.close(session, user)
        elif chat is not None:
            log.info("chat %s: its page closed; the chat and its kernel stay until idle", chat.chat_id)

    def reap_idle(self, now: float | None = None) -> int:
        """Shut down the kernels of chats unused for longer than the idle timeout (never one that is
        answering); forget chats idle for a day (API clients never send an unload). Returns kernels shut."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [
                c for c in self._chats.values() if not c.running and now - c.last_used > self.idle_timeout_s
            ]
            stale = [
                k for k, c in self._chats.items() if not c.running and now - c.last_used > FORGET_AFTER_S
            ]
        reaped = 0
        for chat in idle:
            if chat.shutdown_kernel(f"idle for more than {self.idle_timeout_s:g} s"):
                log.info("chat %s: kernel shut down after being idle", chat.chat_id)
                reaped += 1
        for key in stale:
            self.close(key, any_owner=True)
        return reaped

    def start_reaper(self) -> None:
        interval = max(0.5, min(60.0, self.idle_timeout_s / 4))

        def reap() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reap_idle()
                except Exception:
                    log.exception("reaping idle chats failed")

        self._reaper = threading.Thread(target=reap, name="chat-reaper", daemon=True)
        self._reaper.start()

    def close_all(self) -> None:
        self._stop.set()
        with self._lock:
            keys = list(self._chats)
        for key in keys:
            self.close(key, any_owner=True)
