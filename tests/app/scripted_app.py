"""One `python -m app` on the scripted OpenAI-compatible server, shared by the tests of a module.

Starting the app (and its warm kernel) is most of a browser test's time, so a module starts it once
(`scripted_app`, a context manager for a module-scoped fixture) and each test opens its own page, which
is its own chat with its own kernel. What the model says is scripted by `reply` (tests/app/scripted_model.py
plus a few commands these tests need).

What it deliberately is not: a fixture for the tiny trained model (tests/app/conftest.py's `start_app`).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.conftest import AppProcess
from tests.app.scripted_model import scripted_reply
from tests.conftest import require
from tests.fixtures.openai_server import ScriptedOpenAIServer

# The line the app puts before a message that follows uploads (app.uploads.model_note).
_UPLOAD_NOTE = re.compile(r"^\[Files uploaded to the working directory: [^\n]*\]\n\n")


# The chat's assistant text only (a user message often quotes what the model is asked to say).
BOT_TEXT = """() => Array.from(document.querySelectorAll('#chatbot [data-testid="bot"]'))
    .map(b => b.innerText).join('\\n')"""


def bot_text(page) -> str:
    return page.evaluate(BOT_TEXT)


def wait_bot_count(page, text: str, count: int = 1, timeout_s: float = 60.0) -> None:
    """Wait until the assistant's messages hold `text` at least `count` times."""
    deadline = time.monotonic() + timeout_s
    while bot_text(page).count(text) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} x {text!r} in the chat, got: {bot_text(page)[-2000:]}")
        time.sleep(0.05)


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the answer is over on the server too: the model's last words reach the page a moment
    before the chat is free again, and a message, Retry or Clear sent in that moment is refused. The one
    Send/Stop button turns back to Send with the answer's last update, after the chat is free."""
    page.wait_for_function(
        "() => document.querySelector('#send-stop').innerText.trim() === 'Send'", timeout=timeout_ms
    )


def chat_text(page) -> str:
    return page.inner_text("#chatbot")


def wait_text(page, text: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        "t => document.querySelector('#chatbot').innerText.includes(t)", arg=text, timeout=timeout_ms
    )


def wait_log(app, text: str, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in app.log():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the app's log:\n{app.log()[-2000:]}")
        time.sleep(0.1)


def open_chat(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#prompt textarea", timeout=60_000)


def send(page, text: str) -> None:
    """Send `text` once the last answer is over (a message sent before that is refused as busy)."""
    wait_idle(page)
    page.fill("#prompt textarea", text)
    page.keyboard.press("Enter")


def titles(page, text: str):
    """Titled messages (executions, earlier answers) whose title holds `text`. Not `.thought`: Gradio gives
    that class only to a message after the first of its bubble."""
    return page.locator("#chatbot .thought-group > .title", has_text=text)


def last_user_text(body: dict) -> str:
    messages = body.get("messages") or []
    last = messages[-1]["content"] if messages else ""
    if isinstance(last, list):  # content parts
        last = "".join(part.get("text", "") for part in last)
    return last


def make_reply():
    """scripted_reply, after any upload note, plus:
    `bare: CODE`: a bare ```python fence (runs in execution mode "always");
    `count: TEXT`: "answer N to TEXT (temperature T)", N counting this server's answers, T the request's."""
    counter = itertools.count(1)

    def reply(body: dict) -> list[str]:
        text = _UPLOAD_NOTE.sub("", last_user_text(body))
        if text.startswith("bare: "):
            return ["Here it is:\n", f"```python\n{text[len('bare: ') :]}\n```\n"]
        if text.startswith("count: "):
            return [
                f"answer {next(counter)} to {text[len('count: ') :]} (temperature {body.get('temperature')})"
            ]
        return scripted_reply({**body, "messages": [*body.get("messages", [])[:-1], {"content": text}]})

    return reply


@contextlib.contextmanager
def scripted_app(log_dir: Path, *flags: str) -> Iterator[tuple[AppProcess, ScriptedOpenAIServer]]:
    """The app on a fresh scripted server (its key through the environment, never argv), local sandbox."""
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox

    try:
        make_sandbox("local")
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    server = ScriptedOpenAIServer().start()
    server.reply_for = make_reply()
    app = None
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("OPENAI_API_KEY", server.api_key)
            app = AppProcess(
                [
                    "--backend",
                    "openai",
                    "--base-url",
                    server.base_url,
                    "--model",
                    server.models[0],
                    "--sandbox",
                    "local",
                    *flags,
                ],
                log_dir,
                startup_s=600,
            )
        yield app, server
    finally:
        if app is not None:
            app.stop()
        server.stop()
