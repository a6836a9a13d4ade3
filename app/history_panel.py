"""The "Chats" panel of the page: New chat, the list of past chats, opening a dialogue record, Re-run.

`add_history_panel(...)` is called by `app.ui.build_ui` inside the side column. It adds the browser-held
chat id (a `gr.BrowserState`), the page-load handler that binds the page to its browser's chat and shows its
conversation (`app.chat_history.ChatHistory.attach`), and the panel's handlers. Every handler checks its
caller first (`app.auth.caller_of`), as all of the page's handlers do; a bad file or a refused request is a
one-line toast, never an error overlay or a traceback.

What this module deliberately does not do: keep or sign anything (`app.chat_history`), or turn records into
turns (`app.record_view`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import gradio as gr

from app.auth import AccessDenied, Caller, caller_of
from app.chat import BusyError, Chat, SessionLimitError, Settings
from app.chat_history import STORAGE_KEY, BrowserIds, ChatHistory, read_record_file
from app.page_style import QUIET
from app.record_view import replay_runner
from app.safe_markdown import sanitize_messages
from app.view import render_turns
from interpreter.dialogue import DialogueError

log = logging.getLogger("app")

RERUN_MESSAGE = "▶ Re-run the code ({count} block(s), in order, in this chat's fresh kernel)"


def history_of(ctx: Any) -> ChatHistory:
    """The context's chat history (one without a store when the context was built without one)."""
    if getattr(ctx, "history", None) is None:
        ctx.history = ChatHistory(ctx.chats, BrowserIds.ephemeral(), None, ctx.export_meta())
    return ctx.history


def _caller(ctx: Any, request: gr.Request | None) -> Caller:
    try:
        return caller_of(request, ctx.auth_required)
    except AccessDenied as exc:
        raise gr.Error(str(exc), print_exception=False) from None


def _bound_chat(ctx: Any, history: ChatHistory, request: gr.Request | None) -> Chat:
    caller = _caller(ctx, request)
    try:
        chat = ctx.chats.get(caller.key, caller.user, caller.client)
    except AccessDenied as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    return chat


def _shown(ctx: Any, chat: Chat) -> list[dict]:
    return sanitize_messages(render_turns(chat.turns, ctx.images))


def _choices(history: ChatHistory, chat: Chat):
    entries = history.entries(chat)
    return gr.update(
        choices=[(e.label(), e.chat_id) for e in entries],
        value=chat.chat_id if any(e.chat_id == chat.chat_id for e in entries) else None,
    )


class ChatsPanel:
    """What `build_ui` keeps of the panel: `follow(event)` refreshes the list of past chats after it."""

    def __init__(self, refresh, past: gr.Radio):
        self._refresh = refresh
        self._past = past

    def follow(self, event) -> None:
        event.then(self._refresh, None, self._past, **QUIET, api_visibility="private")


def add_history_panel(ctx: Any, demo: gr.Blocks, chatbot: gr.Chatbot) -> ChatsPanel:
    """The Chats accordion and the page-load binding (call inside the side column of `build_ui`)."""
    history = history_of(ctx)
    private: dict[str, Any] = {"api_visibility": "private"}
    chat_group: dict[str, Any] = {"concurrency_id": "chat", "concurrency_limit": "default"}
    kept = history.store is not None
    with gr.Accordion("Chats", open=True, elem_id="history"):
        with gr.Row():
            new_chat = gr.Button("New chat", size="sm", elem_id="new-chat")
            rerun = gr.Button("Re-run the code", size="sm", elem_id="rerun-code")
        past = gr.Radio(
            choices=[],
            label="Past chats (newest first)" if kept else "Past chats (off: --no-history)",
            elem_id="history-list",
            interactive=kept,
        )
        record_file = gr.File(
            label="Open a dialogue record (.jsonl: an exported chat, a data-pipeline item, an evaluation "
            "transcript)",
            file_types=[".jsonl", ".json"],
            elem_id="record-file",
            height=100,
        )
        record_number = gr.Number(
            1,
            label="Record number (files with many records)",
            precision=0,
            minimum=1,
            elem_id="record-number",
        )
    browser_id = gr.BrowserState(None, storage_key=STORAGE_KEY, secret=history.ids.browser_state_secret())

    def on_load(token, request: gr.Request):
        caller = _caller(ctx, request)
        try:
            chat, token, reopened = history.attach(caller, token)
        except (AccessDenied, BusyError) as exc:
            raise gr.Error(str(exc), print_exception=False) from None
        return _shown(ctx, chat), _choices(history, chat), token

    def on_new_chat(request: gr.Request):
        chat = _bound_chat(ctx, history, request)
        try:
            history.new_chat(chat)
        except BusyError as exc:
            gr.Warning(str(exc))
            return gr.skip(), gr.skip()
        return [], _choices(history, chat)

    def on_reopen(chat_id, request: gr.Request):
        chat = _bound_chat(ctx, history, request)
        if not chat_id or chat_id == chat.chat_id:
            return gr.skip(), gr.skip()
        try:
            history.reopen(chat, str(chat_id))
        except (DialogueError, BusyError) as exc:
            gr.Warning(str(exc).splitlines()[0])
            return gr.skip(), _choices(history, chat)
        log.info("chat %s: reopened from the history", chat.chat_id)
        return _shown(ctx, chat), _choices(history, chat)

    def on_record(path, number, request: gr.Request):
        chat = _bound_chat(ctx, history, request)
        if not path:
            return gr.skip(), gr.skip(), gr.skip()
        name = Path(str(path)).name
        try:
            record, count = read_record_file(_uploaded(path), int(number or 1))
            blocks = history.open_record(
                chat, record, f"{name}" + (f" (record {int(number or 1)} of {count})" if count > 1 else "")
            )
        except (DialogueError, BusyError, ValueError) as exc:
            # The validator's own message, in one line: "path:line: what is wrong" (the path is the server's
            # upload copy, so only the file name is shown).
            gr.Warning(f"{name}: {_one_line(exc, str(path))}")
            return gr.skip(), None, gr.skip()
        except (RecursionError, MemoryError, UnicodeError) as exc:  # hostile files: nested or huge
            log.info("chat %s: refused a record file: %s", chat.chat_id, type(exc).__name__)
            gr.Warning(f"{name}: not a dialogue record this chat can open ({type(exc).__name__})")
            return gr.skip(), None, gr.skip()
        log.info("chat %s: opened a dialogue record (%d block(s) to re-run)", chat.chat_id, blocks)
        return _shown(ctx, chat), None, _choices(history, chat)

    def on_rerun(request: gr.Request):
        chat = _bound_chat(ctx, history, request)
        blocks = history.take_replay(chat)
        if not blocks:
            gr.Warning("nothing to re-run: this chat's code already ran in its kernel")
            yield gr.skip()
            return
        previous = sanitize_messages(
            render_turns(chat.turns, ctx.images, open_latest=False)
        )  # collapsed above
        runner = replay_runner(blocks, history.exec_timeout_s)
        try:
            for turn in chat.run(RERUN_MESSAGE.format(count=len(blocks)), Settings(), runner):
                yield previous + sanitize_messages(render_turns([turn], ctx.images))
        except (BusyError, SessionLimitError) as exc:
            history.give_back_replay(chat, blocks)
            gr.Warning(str(exc))
            yield gr.skip()
            return
        results = [part.result for part in chat.turns[-1].executions()] if chat.turns else []
        ok = sum(1 for result in results if result is not None and result.status == "ok")
        log.info("chat %s: re-ran %d block(s): %d ok", chat.chat_id, len(blocks), ok)
        yield _shown(ctx, chat)

    # No spinner, orange outline or red "Error" pill over the chat (user-level refusals are toasts); a
    # re-run shows its progress in the chat's corner only, as an answer does.
    demo.load(on_load, browser_id, [chatbot, past, browser_id], **private, **QUIET)
    new_chat.click(on_new_chat, None, [chatbot, past], **private, **QUIET)
    past.input(on_reopen, past, [chatbot, past], **private, **QUIET)
    record_file.upload(
        on_record, [record_file, record_number], [chatbot, record_file, past], **private, **QUIET
    )

    def on_refresh(request: gr.Request):
        caller = _caller(ctx, request)
        try:
            chat = ctx.chats.peek(caller.key, caller.user)
        except AccessDenied:
            return gr.skip()
        return _choices(history, chat) if chat is not None else gr.skip()

    panel = ChatsPanel(on_refresh, past)
    panel.follow(
        rerun.click(
            on_rerun,
            None,
            chatbot,
            show_progress="minimal",
            show_progress_on=[chatbot],
            **private,
            **chat_group,
        )
    )
    return panel


def _uploaded(path) -> str:
    """Only files in Gradio's upload folder may be read: a hand-made call naming a host path is refused."""
    import os

    from gradio.utils import get_upload_folder

    folder = os.path.realpath(get_upload_folder())
    if os.path.commonpath([folder, os.path.realpath(str(path))]) != folder:
        raise ValueError("records come from the Open box only")
    return str(path)


def _one_line(exc: Exception, path: str) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace(f"{path}:", "line ").replace(path, "the file")
