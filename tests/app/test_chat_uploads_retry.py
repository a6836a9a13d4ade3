"""app.chat's bookkeeping of uploads and retries, without a browser: which message tells the model of an
upload (and which after Undo, Retry or Clear), and the answers a Retry keeps on screen but out of the
model's dialogue.

Real parts only: the app's own loop runner (`app.server.make_loop_runner`) on the real OpenAI backend,
streaming over HTTP from the scripted server (tests/app/scripted_app.py's replies), a kernel in the local
sandbox.
"""

from __future__ import annotations

import argparse

import pytest

from app.chat import ChatSessions, Settings
from app.uploads import model_note
from app.view import TextPart
from tests.app.scripted_app import last_user_text, make_reply
from tests.conftest import require

pytestmark = [pytest.mark.local_sandbox]


@pytest.fixture
def chat(openai_server):
    """(a chat, ask(message, temperature=0.0) -> its finished turn)."""
    from app.server import make_loop_runner
    from interpreter.sandboxes.base import Limits, SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session
    from llm.openai_backend import OpenAIBackend

    try:
        sandbox = make_sandbox("local", Limits())
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    openai_server.reply_for = make_reply()
    backend = OpenAIBackend(openai_server.base_url, openai_server.models[0], openai_server.api_key)
    run_loop = make_loop_runner(backend, argparse.Namespace(render_style="demo", exec_timeout=None))
    sessions = ChatSessions(lambda: Session(sandbox).start(), idle_timeout_s=3600)
    chat = sessions.get("k")

    def ask(message: str, temperature: float = 0.0):
        *_, turn = chat.run(message, Settings(temperature=temperature), run_loop)
        return turn

    yield chat, ask
    sessions.close_all()


def said(chat) -> list[str]:
    return [m["content"] for m in chat.dialogue if m["role"] == "assistant"]


def test_uploads_are_told_once_and_again_after_undo_but_not_after_clear(chat, openai_server):
    chat, ask = chat
    files = ["data.csv (12 B)", "b.txt (1 B)"]
    chat.add_uploads(files[:1])
    chat.add_uploads(files[1:])
    turn = ask("count: a")
    told = f"{model_note(files)}\n\ncount: a"
    assert last_user_text(openai_server.requests[-1]) == told
    assert turn.uploads == files and turn.user == "count: a"  # the chat shows the message as typed
    assert chat.dialogue[0] == {"role": "user", "content": told}
    ask("count: b")
    assert last_user_text(openai_server.requests[-1]) == "count: b"  # once only

    chat.undo()
    chat.undo()  # the message that told of the uploads is gone: the next one tells again
    ask("count: c")
    assert last_user_text(openai_server.requests[-1]) == f"{model_note(files)}\n\ncount: c"

    chat.add_uploads(["late.csv (3 B)"])
    chat.clear()  # a new conversation: nothing pending is told (the files stay in the workdir)
    ask("count: d")
    assert last_user_text(openai_server.requests[-1]) == "count: d"


def test_retry_keeps_earlier_answers_on_screen_and_only_the_current_one_in_the_dialogue(chat):
    chat, ask = chat
    ask("count: q")
    assert said(chat) == ["answer 1 to q (temperature 0.0)"]
    chat.undo(retry=True)
    turn = ask("count: q", temperature=0.7)
    assert said(chat) == ["answer 2 to q (temperature 0.7)"]
    assert [[p.prose() for p in parts if type(p) is TextPart] for parts in turn.earlier] == [
        ["answer 1 to q (temperature 0.0)"]
    ]
    chat.undo(retry=True)
    turn = ask("count: q", temperature=0.7)
    assert len(turn.earlier) == 2 and said(chat) == ["answer 3 to q (temperature 0.7)"]
    # A plain Undo, then another message: no earlier answers come along.
    chat.undo()
    assert ask("count: other").earlier == []
