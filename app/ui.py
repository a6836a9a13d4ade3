"""The Gradio page and its event handlers, plus the one public API endpoint, `/chat`.

Layout: the chat; right under it an approval box (execution mode "ask": the code, editable, with Run/Skip)
that appears only while the loop waits; the prompt box with one Send/Stop button (Send when idle, Stop
while answering); Retry/Undo/Clear under it; on the side (below, on a phone), Settings, Files (upload into
the workdir, download what the code wrote), Export (.ipynb, dialogue .jsonl) and Chats (`app.history_panel`:
New chat, past chats, open a dialogue record, Re-run its code). Styling: app.page_style.
Every handler finds its chat through Gradio's session hash (`app.chat.ChatSessions`); on load the page's
session is bound to its browser's chat (`app.chat_history`), so a reload shows the same chat and kernel.

Busy and errors: a message shows at once with a "Thinking…" placeholder until the model's first words; a
message sent while one is answered is refused with a toast. Nothing a user can cause raises an error
overlay: user-level problems are toasts (gr.Warning) or lines in the chat; refusals fail the call with a
toast and no traceback in the log.

Chat handlers share one concurrency group ("chat", limit `--concurrency`): more waiting chats queue, and
Gradio shows each its place in the queue. Stop and Run/Skip have no limit, so they never wait behind the
answer they act on. All handlers except `/chat` are private (left out of the API listing), which is not
access control (Gradio still runs them by index): so every handler checks its caller itself
(`app.auth.caller_of`: a session, with --auth a signed-in user, and a chat that user owns) and refuses
otherwise. Everything shown in the chat goes through `app.safe_markdown` (no raw HTML, no remote images).

API (`gradio_client`):

    from gradio_client import Client
    client = Client("http://127.0.0.1:7860/")          # each Client is its own chat with its own kernel
    reply = client.predict("print the first 10 squares", api_name="/chat")
    reply = client.predict("now plot them", temperature=0.2, max_rounds=4, api_name="/chat")
    reply["reply"]       # the new messages: assistant text and execution turns (DESIGN.md format)
    reply["executions"]  # this message's executions: code, language and full result (stdout, stderr,
                         # rich outputs such as base64 PNGs, error, duration, status)
    reply["reason"]      # why the answer ended: end_of_turn | max_rounds | max_tokens | cancelled
    reply["dialogue"]    # the whole chat as a dialogue record {"id", "messages", "meta"}

`new_chat=True` starts over (fresh kernel). Execution mode "ask" needs a person and is refused by the API.

What this module deliberately does not do: parse flags, load the model or start the server (see
`app.server`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from app import export
from app.auth import AccessDenied, Caller, caller_of
from app.chat import BusyError, Chat, ChatSessions, LoopRunner, SessionLimitError, Settings
from app.files import snapshot_for_download, upload_into, workdir_files
from app.history_panel import add_history_panel
from app.page_style import PAGE_CSS, PAGE_JS, QUIET
from app.safe_markdown import sanitize_messages
from app.uploads import describe
from app.view import EXEC_CSS, ImageStore, render_turn, render_turns, uploads_text
from interpreter.protocol import EXECUTION_MODES

log = logging.getLogger("app")

CSS = PAGE_CSS  # the page's own look (app.page_style); app.server passes CSS to launch()
# -- execution messages: normal-contrast code, colour per status (app.view owns the marks): begin --
CSS += EXEC_CSS
# -- execution messages: end --


@dataclass
class AppContext:
    """Everything the handlers need, built once by `app.server`."""

    chats: ChatSessions
    run_loop: LoopRunner
    scratch: Path  # server-private temp folder: download snapshots, exports
    defaults: Settings = field(default_factory=Settings)
    model_name: str = ""
    backend_name: str = ""
    notice: str = ""
    sandbox_name: str = ""
    pool: Any = None  # interpreter.pool.SessionPool that start_kernel draws from (closed at exit)
    auth_required: bool = False  # --auth is on: every call needs a signed-in user
    retry_temperature: float = 0.7  # --retry-temperature: Retry samples when the panel's temperature is 0
    history: Any = None  # app.chat_history.ChatHistory: browser-held chat ids and past chats

    @property
    def images(self) -> ImageStore:
        return ImageStore(image_folder())

    def export_meta(self) -> dict:
        return {"model": self.model_name, "backend": self.backend_name, "sandbox": self.sandbox_name}


def image_folder() -> Path:
    """Plots are written straight into Gradio's file cache: Gradio then serves them as they are, instead of
    hashing and copying every image of the chat again on each streamed update."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()) / f"autocoder-images-{os.getpid()}"


def _refusal(why: object) -> gr.Error:
    """A refused call: the call fails (API clients see the message), the page shows a toast (its events
    hide Gradio's error marks, see `QUIET`), and the log gets no traceback for what is not a bug."""
    return gr.Error(str(why), print_exception=False)


def _halt() -> gr.Error:
    """Ends an event chain (its `.success` steps do not run) without showing anything: the handler has
    already said why in a toast."""
    return gr.Error("", visible=False, print_exception=False)


# The one Send/Stop button: its label is also what a press does (the handler reads it as an input, so a
# press does what the user saw).
SEND, STOP = "Send", "Stop"


def _send_stop(busy: bool) -> dict:
    return gr.update(value=STOP if busy else SEND, variant="stop" if busy else "primary")


# Shown in the chat from the moment a message is accepted until the model's first words arrive (a model
# may take seconds to start, or the message waits in the queue).
THINKING = {"role": "assistant", "content": "", "metadata": {"title": "Thinking…", "status": "pending"}}


class WaitingMessages:
    """Messages accepted but not yet being answered (they wait in the queue for a free slot), one per page
    (Gradio session), each with a token of its own: a second message in that gap is refused as one during
    the answer is, and Stop calls the waiting one off at once (its queued answer then finds its token gone
    and does nothing, even if the page has sent another message since). Keyed by page, not by chat: an
    entry a closed page leaves behind can never block anyone."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, tuple[str, str]] = {}  # session -> (token, message)

    def add(self, session: str, message: str) -> str | None:
        """Note a page's accepted message; its token, or None if one is already waiting."""
        with self._lock:
            if session in self._waiting:
                return None
            token = uuid.uuid4().hex
            self._waiting[session] = (token, message)
            return token

    def message(self, session: str) -> str | None:
        with self._lock:
            found = self._waiting.get(session)
        return found[1] if found else None

    def holds(self, session: str, token: str) -> bool:
        with self._lock:
            found = self._waiting.get(session)
        return found is not None and found[0] == token

    def stop(self, session: str) -> bool:
        """Stop pressed: the waiting message (if any) will not be answered. Returns whether one waited."""
        with self._lock:
            return self._waiting.pop(session, None) is not None

    def take(self, session: str, token: str) -> bool:
        """Its answer has started (or ended): forget the message; False if Stop had called it off."""
        with self._lock:
            found = self._waiting.get(session)
            if found is None or found[0] != token:
                return False
            del self._waiting[session]
            return True


def _caller(ctx: AppContext, request: gr.Request | None) -> Caller:
    """The checked caller of a handler; a refusal is the one-line error the page shows."""
    try:
        return caller_of(request, ctx.auth_required)
    except AccessDenied as exc:
        raise _refusal(exc) from None


def _chat(ctx: AppContext, request: gr.Request | None) -> Chat:
    """The caller's own chat (made on first use)."""
    caller = _caller(ctx, request)
    try:
        return ctx.chats.get(caller.key, caller.user, caller.client)
    except AccessDenied as exc:
        raise _refusal(exc) from None


def _peek(ctx: AppContext, request: gr.Request | None) -> Chat | None:
    """The caller's own chat if it has one."""
    caller = _caller(ctx, request)
    try:
        return ctx.chats.peek(caller.key, caller.user)
    except AccessDenied as exc:
        raise _refusal(exc) from None


def _shown_turns(turns, images: ImageStore) -> list[dict]:
    return sanitize_messages(render_turns(turns, images))


def _shown_turn(turn, images: ImageStore) -> list[dict]:
    return sanitize_messages(render_turn(turn, images))


def _uploaded_paths(paths: list[str]) -> list[str]:
    """Only files in Gradio's upload folder may be copied into a workdir: a hand-made call naming a host
    path (the handler is reachable by index) is refused."""
    from gradio.utils import get_upload_folder

    folder = os.path.realpath(get_upload_folder())
    for path in paths:
        if os.path.commonpath([folder, os.path.realpath(path)]) != folder:
            raise _refusal("uploads come from the Upload box only")
    return paths


def _settings(temperature, top_p, max_new_tokens, max_rounds, execution_mode) -> Settings:
    return Settings(
        temperature=float(temperature),
        top_p=float(top_p),
        max_new_tokens=int(max_new_tokens),
        max_rounds=int(max_rounds),
        execution_mode=str(execution_mode),
    )


def _asking(chat: Chat) -> str | None:
    """The code the loop waits on approval for, if any."""
    turn = chat.turns[-1] if chat.turns else None
    if turn is None:
        return None
    for part in reversed(turn.parts):
        if getattr(part, "state", None) == "asking":
            return part.code
    return None


def _files_of(ctx: AppContext, chat: Chat) -> list[str]:
    if not chat.kernel_started:
        return []
    try:
        return snapshot_for_download(chat.workdir(), ctx.scratch / "downloads" / chat.key)
    except Exception as exc:
        log.warning("listing the workdir of chat %s failed: %s", chat.chat_id, exc)
        return []


def _cleared_note(chat: Chat, had_kernel: bool) -> str:
    """What Clear did and kept, said exactly: a fresh kernel, and the workdir's files still there."""
    said = "Cleared: the conversation is forgotten"
    if not had_kernel:
        return f"{said}."
    if not chat.kernel_started:  # the restart failed: the session and its folders went (app.chat)
        return f"{said}; the kernel could not be restarted, so the next message gets a new one (workdir files are gone)."
    try:
        names = [str(path) for path in workdir_files(chat.workdir())]
    except Exception as exc:  # listing is a courtesy; Clear itself worked
        log.warning("listing the workdir of chat %s failed: %s", chat.chat_id, exc)
        names = []
    said += " and the kernel restarted (variables and imports are gone)"
    if not names:
        return f"{said}. The workdir is empty."
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"{said}. Kept: the {len(names)} file{'s' if len(names) != 1 else ''} in the workdir ({shown})."


def build_ui(ctx: AppContext) -> gr.Blocks:
    d = ctx.defaults
    with gr.Blocks(title="AutoCoder") as demo:
        gr.Markdown(
            f"## AutoCoder\nThe model writes code and runs it in a sandboxed kernel of its own "
            f"(`{ctx.sandbox_name}` sandbox). Model: `{ctx.model_name}`."
        )
        gr.Markdown(f"⚠ {ctx.notice}", elem_id="notice", visible=bool(ctx.notice))
        with gr.Row():
            with gr.Column(scale=4):
                chatbot = gr.Chatbot(
                    elem_id="chatbot",
                    height=640,
                    label="Chat",
                    show_label=False,  # Gradio's floating label covered the first message
                    buttons=["copy", "copy_all"],
                    feedback_options=None,
                    autoscroll=False,  # app.page_style.PAGE_JS follows the answer, once per frame
                    # Two tasks of benchmarks.chat_tasks, worded as there, that the GPU-less stand-in does.
                    placeholder="Ask for something that needs code, e.g. *Plot the squares of 1 to 10 as a bar "
                    "chart and save it as bars.png.* or *What is 2 to the power of 20?*",
                )
                # Right under the chat, next to the code it asks about (app.page_style scrolls it into view).
                with gr.Group(visible=False, elem_id="approval") as approval_box:
                    gr.Markdown(
                        "**The model wants to run this code.** Edit it if you like, then Run or Skip."
                    )
                    approval_code = gr.Code(
                        language="python", interactive=True, elem_id="approval-code", lines=6
                    )
                    with gr.Row():
                        run_code = gr.Button("Run", variant="primary", elem_id="approve-run")
                        skip_code = gr.Button("Skip", elem_id="approve-skip")
                with gr.Row(elem_id="prompt-row"):
                    prompt = gr.Textbox(
                        elem_id="prompt",
                        show_label=False,
                        placeholder="Message (Enter to send, Shift+Enter for a new line)",
                        lines=1,
                        max_lines=8,
                        scale=8,
                        min_width=160,
                        autofocus=True,
                    )
                    # Send when idle, Stop while answering (see SEND, STOP).
                    send_stop = gr.Button(SEND, variant="primary", elem_id="send-stop", scale=1, min_width=80)
                with gr.Row(elem_id="actions-row"):
                    retry = gr.Button("↻ Retry", elem_id="retry", size="sm")
                    undo = gr.Button("↶ Undo", elem_id="undo", size="sm")
                    clear = gr.Button("Clear (fresh kernel)", elem_id="clear", size="sm")
            with gr.Column(scale=1, min_width=340):
                with gr.Accordion("Settings", open=False, elem_id="settings"):
                    temperature = gr.Slider(
                        0.0, 2.0, value=d.temperature, step=0.05, label="Temperature (0 = greedy)"
                    )
                    top_p = gr.Slider(0.05, 1.0, value=d.top_p, step=0.05, label="Top-p")
                    max_new_tokens = gr.Slider(
                        16, 8192, value=d.max_new_tokens, step=16, label="Max new tokens per round"
                    )
                    max_rounds = gr.Slider(
                        1, 20, value=d.max_rounds, step=1, label="Max rounds (executions) per message"
                    )
                    execution_mode = gr.Radio(
                        list(EXECUTION_MODES),
                        value=d.execution_mode,
                        label="Execution mode",
                        info="auto: blocks the model marks for running; always: every python block; ask: you approve each",
                        elem_id="execution-mode",
                    )
                with gr.Accordion("Files", open=True, elem_id="files"):
                    upload = gr.File(
                        label="Upload into the workdir", file_count="multiple", elem_id="upload", height=120
                    )
                    workdir_files = gr.File(
                        label="Files in the workdir (download)",
                        file_count="multiple",
                        interactive=False,
                        elem_id="workdir-files",
                    )
                    refresh = gr.Button("Refresh file list", size="sm", elem_id="refresh-files")
                with gr.Accordion("Export", open=False, elem_id="export"):
                    with gr.Row():
                        export_nb = gr.Button("Notebook (.ipynb)", size="sm", elem_id="export-ipynb")
                        export_json = gr.Button("Dialogue (.jsonl)", size="sm", elem_id="export-jsonl")
                    export_file = gr.File(label="Exported file", interactive=False, elem_id="export-file")
                # New chat, past chats, open a dialogue record, re-run its code; binds the page to the
                # browser's chat on load, so a reload keeps the conversation and the kernel.
                chats_panel = add_history_panel(ctx, demo, chatbot)

        settings_inputs = [temperature, top_p, max_new_tokens, max_rounds, execution_mode]
        # What an answer's updates change. Only these: Gradio builds a new component for every output an
        # update skips (gr.skip()), config and schema included, on its event loop, for every streamed
        # update (the Files panel alone cost 3 ms of each). The Files panel is refreshed once, after it.
        chat_outputs = [chatbot, approval_box, approval_code, send_stop]
        unchanged = tuple(gr.skip() for _ in chat_outputs)
        waiting = WaitingMessages()

        def answer(chat: Chat, message: str, settings: Settings):
            """Stream one answer: the chat re-rendered after each batch of loop events, with "Thinking…"
            until the model's first words; the button says Stop until the last update, which says Send."""
            # A message follows the history now: its executions are all collapsed (app.view).
            history = sanitize_messages(render_turns(chat.turns, ctx.images, open_latest=False))
            asking_shown = False
            button = _send_stop(busy=True)  # sent once: every update is re-sent to the page and applied there
            try:
                stream = chat.run(message, settings, ctx.run_loop)
                for turn in stream:
                    asking = _asking(chat)
                    if (asking is not None) != asking_shown:
                        asking_shown = asking is not None
                        box, code = gr.update(visible=asking_shown), (asking if asking_shown else gr.skip())
                    else:
                        box, code = gr.skip(), gr.skip()
                    shown = history + _shown_turn(turn, ctx.images)
                    if not (turn.raw_text().strip() or turn.executions()):
                        shown += sanitize_messages([THINKING])
                    yield shown, box, code, button
                    button = gr.skip()
            except BusyError as exc:  # a race the page's own checks did not catch: said, not raised
                gr.Warning(str(exc))
            yield (
                _shown_turns(chat.turns, ctx.images),
                gr.update(visible=False),
                gr.skip(),
                _send_stop(busy=False),
            )

        # Enter or a press runs three steps. 1: accept the message (shown at once with "Thinking…", the box
        # empties, the button says Stop, `pending` holds it), or refuse it with a toast (it stays in the
        # box), or Stop; `pending` None unless accepted. It never fails for a user's doing: an error marks
        # every output of its event, the chat included, and Gradio skips the `.then` steps of an event
        # that failed while the page's answer is still pending. 2: end the chain unless a message was
        # accepted, with a silent error (this step has no outputs to mark). 3: answer it, in the chat's
        # concurrency group. Outputs of step 1: chat, box, pending, button.

        def on_enqueue(message: str, request: gr.Request):
            """Step 1 for Enter, and for the button saying Send."""
            if not message or not message.strip():
                return gr.skip(), gr.skip(), None, gr.skip()
            chat = _chat(ctx, request)
            token = None if chat.running else waiting.add(request.session_hash, message)
            if token is None:  # answering, or a message already waits for its answer
                gr.Warning("Still answering your last message: wait for it, or press Stop first.")
                return gr.skip(), gr.skip(), None, _send_stop(busy=True)
            shown = _shown_turns(chat.turns, ctx.images) + sanitize_messages(
                [{"role": "user", "content": message}, THINKING]
            )
            return shown, "", {"message": message, "token": token}, _send_stop(busy=True)

        def on_press(label: str, message: str, request: gr.Request):
            """Step 1 for the Send/Stop button; `label` is what it said when pressed (read by this one
            listener, so the label of that moment). Send: as Enter. Stop: stop the answer (its last update
            says Send), or call off the message waiting in the queue (taken off the chat at once); with
            neither (the label missed an update) it just says Send again. Nothing to answer after a Stop."""
            if label != STOP:
                return on_enqueue(message, request)
            if on_stop(request):
                return gr.skip(), gr.skip(), None, gr.skip()
            chat = _peek(ctx, request)
            if waiting.stop(request.session_hash) and chat is not None:
                log.info("chat %s: a message waiting in the queue was called off", chat.chat_id)
                return _shown_turns(chat.turns, ctx.images), gr.skip(), None, _send_stop(busy=False)
            return gr.skip(), gr.skip(), None, _send_stop(busy=False)

        def to_answer(pending) -> None:
            """Step 2: the chain goes on only with an accepted message."""
            if not pending:
                raise _halt()

        def on_submit(
            pending, temperature, top_p, max_new_tokens, max_rounds, execution_mode, request: gr.Request
        ):
            """Step 3: answer the accepted message, unless Stop called it off while it waited."""
            chat = _chat(ctx, request)
            session, token = request.session_hash, (pending or {}).get("token")
            if not token or not waiting.holds(session, token):
                yield unchanged
                return
            settings = _settings(temperature, top_p, max_new_tokens, max_rounds, execution_mode)
            started = False
            try:
                for update in answer(chat, pending["message"], settings):
                    if not started:  # the chat is answering now, so the message no longer waits...
                        started = True
                        if not waiting.take(session, token):  # ...unless Stop called it off just now
                            chat.stop()
                    yield update
            finally:
                waiting.take(session, token)

        def on_retry(temperature, top_p, max_new_tokens, max_rounds, execution_mode, request: gr.Request):
            values = (temperature, top_p, max_new_tokens, max_rounds, execution_mode)
            chat = _chat(ctx, request)
            if chat.running:
                gr.Warning("Stop the running answer first.")
                yield unchanged
                return
            turn = chat.undo(retry=True)  # the new turn keeps this answer as an earlier one (browsable)
            if turn is None:  # a toast, not an error overlay (and no traceback in the log)
                gr.Warning("nothing to retry yet")
                yield unchanged
                return
            settings = _settings(*values)
            if settings.temperature == 0:  # greedy would give the identical answer again
                settings.temperature = ctx.retry_temperature
            yield from answer(chat, turn.user, settings)

        def on_stop(request: gr.Request) -> bool:
            chat = _peek(ctx, request)
            if chat is not None and chat.stop():
                log.info("chat %s: stop requested", chat.chat_id)
                return True
            return False

        def on_undo(request: gr.Request):
            chat = _chat(ctx, request)
            if chat.running:
                gr.Warning("Stop the running answer first.")
                return gr.skip(), gr.skip()
            turn = chat.undo()
            return _shown_turns(chat.turns, ctx.images), (turn.user if turn else gr.skip())

        def on_clear(request: gr.Request):
            chat = _chat(ctx, request)
            had_kernel = chat.kernel_started
            try:
                chat.clear()
            except BusyError as exc:
                gr.Warning(str(exc))
                return gr.skip(), gr.skip(), gr.skip()
            gr.Info(_cleared_note(chat, had_kernel))  # say what Clear kept: the workdir's files
            return [], gr.update(visible=False), None

        def on_approve(code: str, request: gr.Request):
            chat = _peek(ctx, request)
            if chat is None or chat.approval is None:
                gr.Warning("Nothing is waiting for approval.")
                return gr.update(visible=False)
            chat.approval.resolve(code)
            return gr.update(visible=False)

        def on_skip(request: gr.Request):
            chat = _peek(ctx, request)
            if chat is not None and chat.approval is not None:
                chat.approval.resolve(None)
            return gr.update(visible=False)

        def on_upload(paths: list[str] | None, request: gr.Request):
            chat = _chat(ctx, request)
            if not paths:
                return gr.skip(), gr.skip()
            uploaded: list[str] = []
            try:
                workdir = chat.workdir()
                for path in _uploaded_paths(paths):
                    # The size of the host's copy: the workdir's is the sandbox's to change.
                    size = os.path.getsize(path)
                    target = upload_into(workdir, path)
                    uploaded.append(describe(target.name, size))
                    log.info("chat %s: uploaded %s", chat.chat_id, target.name)
            except (SessionLimitError, OSError, ValueError) as exc:
                raise _refusal(f"upload failed: {exc}".splitlines()[0]) from None
            finally:
                chat.add_uploads(uploaded)  # the model is told of them with the next message
            gr.Info(f"{len(paths)} file(s) uploaded to the workdir")
            if chat.running:  # the streaming answer owns the chat view; the note shows in the next turn
                return None, _files_of(ctx, chat), gr.skip()
            note = {"role": "user", "content": uploads_text(chat.uploads, pending=True)}
            return (
                None,
                _files_of(ctx, chat),
                _shown_turns(chat.turns, ctx.images) + sanitize_messages([note]),
            )

        def on_refresh(request: gr.Request):
            chat = _chat(ctx, request)
            return _files_of(ctx, chat)

        def on_export(kind: str, request: gr.Request):
            chat = _chat(ctx, request)
            if not chat.turns:  # a toast, not an error overlay
                gr.Warning("nothing to export yet")
                return gr.skip()
            folder = ctx.scratch / "exports" / chat.key
            folder.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            meta = ctx.export_meta()
            if kind == "ipynb":
                path = folder / f"autocoder-chat-{stamp}.ipynb"
                path.write_text(export.notebook_json(chat.turns, chat.system_prompt, meta), encoding="utf-8")
            else:
                path = folder / f"autocoder-chat-{stamp}.jsonl"
                path.write_text(
                    export.dialogue_jsonl(chat.chat_id, chat.dialogue, chat.turns, meta), encoding="utf-8"
                )
            return str(path)

        private: dict[str, Any] = {"api_visibility": "private"}
        chat_group: dict[str, Any] = {"concurrency_id": "chat", "concurrency_limit": "default"}
        # An answer's progress shows in the chat (and its queue place and time in the chat's corner), never
        # as outlines on the message box or the Files panel; every other event shows none (QUIET).
        answering: dict[str, Any] = {"show_progress": "minimal", "show_progress_on": [chatbot]}
        pending = gr.State(None)  # {"message", "token"}: accepted, between showing it and answering it
        # Steps 1 and 2 are queued (toasts need the queue) but never wait (no concurrency limit). Steps 2
        # and 3 may run again while the page's previous answer is still pending (a called-off message's,
        # queued): Gradio drops a step whose previous run is pending unless its trigger_mode is "multiple".
        at_once: dict[str, Any] = {"concurrency_limit": None, **QUIET, **private}
        step_one = [chatbot, prompt, pending, send_stop]

        def after_answer(event) -> None:
            """Once an answer ends (or fails): the Files panel shows what the code wrote, and the list of past
            chats shows this chat."""
            event.then(on_refresh, None, workdir_files, **QUIET, **private)
            chats_panel.follow(event)

        for pressed in (
            prompt.submit(on_enqueue, prompt, step_one, **at_once),
            send_stop.click(on_press, [send_stop, prompt], step_one, **at_once),
        ):
            accepted = pressed.success(to_answer, pending, None, trigger_mode="multiple", **at_once)
            after_answer(
                accepted.success(
                    on_submit,
                    [pending, *settings_inputs],
                    chat_outputs,
                    trigger_mode="multiple",  # behind a called-off message's answer still in the queue
                    **answering,
                    **private,
                    **chat_group,
                )
            )
        after_answer(
            retry.click(on_retry, settings_inputs, chat_outputs, **answering, **private, **chat_group)
        )
        undo.click(on_undo, None, [chatbot, prompt], **QUIET, **private)
        # After a Clear the list of past chats no longer marks the cleared one as shown (it can be reopened).
        chats_panel.follow(
            clear.click(on_clear, None, [chatbot, approval_box, export_file], **QUIET, **private)
        )
        chats_panel.follow(
            chatbot.clear(on_clear, None, [chatbot, approval_box, export_file], **QUIET, **private)
        )
        run_code.click(on_approve, approval_code, approval_box, concurrency_limit=None, **QUIET, **private)
        skip_code.click(on_skip, None, approval_box, concurrency_limit=None, **QUIET, **private)
        upload.upload(on_upload, upload, [upload, workdir_files, chatbot], **QUIET, **private)
        refresh.click(on_refresh, None, workdir_files, **QUIET, **private)
        demo.load(None, js=PAGE_JS)

        def on_export_ipynb(request: gr.Request):
            return on_export("ipynb", request)

        def on_export_jsonl(request: gr.Request):
            return on_export("jsonl", request)

        export_nb.click(on_export_ipynb, None, export_file, **QUIET, **private)
        export_json.click(on_export_jsonl, None, export_file, **QUIET, **private)

        def chat(
            message: str,
            temperature: float = d.temperature,
            top_p: float = d.top_p,
            max_new_tokens: int = d.max_new_tokens,
            max_rounds: int = d.max_rounds,
            execution_mode: str = d.execution_mode,
            new_chat: bool = False,
            request: gr.Request = None,
        ) -> dict:
            """Send one message to this client's chat and wait for the whole answer.

            Returns {"reply": new messages (assistant and execution turns), "executions": this message's
            executions with their full results, "reason": why the answer ended, "dialogue": the whole chat
            as a DESIGN.md dialogue record}.
            """
            if execution_mode not in ("auto", "always"):
                raise _refusal(
                    "execution_mode must be 'auto' or 'always' through the API ('ask' needs the browser)"
                )
            session = _chat(ctx, request)
            try:
                if new_chat:
                    session.clear()
                session.kernel()  # a full server says so here, as the API's error, not inside the reply
            except (BusyError, SessionLimitError) as exc:
                raise _refusal(exc) from None
            settings = _settings(temperature, top_p, max_new_tokens, max_rounds, execution_mode)
            turn = None
            try:
                for latest in session.run(message, settings, ctx.run_loop):
                    turn = latest
            except BusyError as exc:
                raise _refusal(exc) from None
            assert turn is not None
            record = export.dialogue_record(
                session.chat_id, session.dialogue, session.turns, ctx.export_meta()
            )
            mine = {part.exec_id for part in turn.executions()}
            return {
                "reply": session.dialogue[turn.dialogue_start + 1 :],
                "executions": [e for e in record["meta"]["executions"] if e["exec_id"] in mine],
                "reason": turn.done_reason,
                "dialogue": record,
            }

        gr.api(chat, api_name="chat", **chat_group)

        def on_unload(request: gr.Request):
            waiting.stop(request.session_hash)
            try:
                caller = caller_of(request, ctx.auth_required)
            except AccessDenied:
                return
            # Only the caller's own chat; a page bound to its browser's chat just lets go of it (the idle
            # reaper shuts its kernel down), so a reload finds conversation and kernel as they were.
            ctx.chats.release(caller.key, caller.user)

        demo.unload(on_unload)
    return demo
