"""Issue 11, problem 3, in a real browser: "a page reload loses the conversation and its kernel; there is
no history". The model is the scripted OpenAI-compatible server (tests/app/scripted_model.py: "run: CODE"
makes it write CODE as an execution block), so a message can define a variable and a later one use it; the
code runs in the local sandbox. One app for the module. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from tests.app.conftest import screenshot
from tests.app.scripted_app import chat_text, open_chat, scripted_app, send, wait_idle, wait_log, wait_text
from tests.app.scripted_model import FINAL

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.local_sandbox]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """`python -m app` on the scripted server, kernels in the local sandbox, history in a folder of its own."""
    folder = tmp_path_factory.mktemp("history-app")
    history = folder / "chats"
    flags = ("--execution-mode", "auto", "--warm-kernels", "0", "--history-dir", str(history))
    with scripted_app(folder, *flags) as (process, _server):
        process.history = history
        yield process


def wait_count(page, selector: str, text: str, count: int, timeout_s: float = 60.0) -> None:
    locator = page.locator(selector, has_text=text)
    deadline = time.monotonic() + timeout_s
    while locator.count() < count:
        if time.monotonic() > deadline:
            shown = page.locator(selector).all_inner_texts()
            raise AssertionError(f"expected {count} of {selector} with {text!r}, found {shown}")
        time.sleep(0.05)


def ran(page, count: int) -> None:
    wait_count(page, "#chatbot .thought .title", "Ran python", count)


def kernels(app) -> list[Path]:
    return app.session_dirs()


def test_a_reload_keeps_the_chat_and_its_kernel_and_past_chats_reopen(app, page):
    open_chat(page, app.url)
    send(page, "run: x = 5")
    ran(page, 1)
    wait_text(page, FINAL)
    assert len(kernels(app)) == 1
    # Listed among the past chats once answered (title from its first message).
    page.locator("#history-list label", has_text="run: x = 5").wait_for(timeout=30_000)

    # A reload: the conversation is shown again, and the next message uses x in the same kernel.
    page.reload()
    page.wait_for_selector("#prompt textarea", timeout=60_000)
    wait_text(page, "x = 5")
    screenshot(page, "history-01-after-reload")
    send(page, "run: print(x * 2)")
    ran(page, 2)
    execution = page.locator("#chatbot .thought", has_text="print(x * 2)").first
    page.wait_for_function("el => el.innerText.includes('10')", arg=execution.element_handle())
    assert "NameError" not in chat_text(page)
    assert len(kernels(app)) == 1, "the reload must find the same kernel, not start another"

    # New chat: empty, and the old one is listed (title from its first message, time, count).
    wait_idle(page)
    page.click("#new-chat")
    page.wait_for_function("() => !document.querySelector('#chatbot').innerText.includes('x = 5')")
    listed = page.locator("#history-list label", has_text="run: x = 5")
    listed.wait_for(timeout=30_000)
    assert "6 messages" in listed.inner_text()  # two user messages, four assistant ones
    send(page, "run: print('second chat')")
    ran(page, 1)
    wait_text(page, FINAL)
    screenshot(page, "history-02-new-chat-and-list")

    # Reopen the first chat from the list: its conversation, on a restarted kernel, and the chat says so.
    wait_idle(page)  # a reopen in the moment after the answer's last words is refused as busy
    page.locator("#history-list label", has_text="run: x = 5").click()
    wait_text(page, "print(x * 2)")
    wait_text(page, "fresh one")
    assert "second chat" not in chat_text(page)
    assert "Re-run the code" in chat_text(page)
    screenshot(page, "history-03-reopened")
    send(page, "run: print(x)")
    wait_text(page, "NameError")  # the state is gone, as the note said
    # Re-run replays the recorded blocks in order (x = 5, then print(x * 2)) into the fresh kernel.
    wait_idle(page)
    page.click("#rerun-code")
    wait_text(page, "Re-run the code (2 block(s)")
    wait_log(app, "re-ran 2 block(s): 2 ok")
    send(page, "run: print(x + 1)")
    execution = page.locator("#chatbot .thought", has_text="print(x + 1)").first
    execution.wait_for(timeout=60_000)
    page.wait_for_function("el => el.innerText.includes('6')", arg=execution.element_handle())
    screenshot(page, "history-04-rerun-and-continue")
    assert page.external_requests == []

    # Clear starts over; the cleared chat stays listed, no longer marked as shown, and reopens.
    wait_idle(page)
    page.click("#clear")
    page.wait_for_function("() => !document.querySelector('#chatbot').innerText.includes('x = 5')")
    page.wait_for_function("() => !document.querySelector('#history-list input:checked')")
    page.locator("#history-list label", has_text="run: x = 5").click()
    wait_text(page, "print(x + 1)")

    # On disk: a private folder per user and browser, the two chats as dialogue records.
    assert stat.S_IMODE(app.history.stat().st_mode) == 0o700
    records = sorted(app.history.glob("anonymous/*/*.jsonl"))
    assert len(records) == 2, records
    assert all(stat.S_IMODE(os.stat(p.parent).st_mode) == 0o700 for p in records)


def test_another_browser_never_sees_this_browsers_chats(app, browser):
    context = browser.new_context()
    other = context.new_page()
    try:
        open_chat(other, app.url)
        other.locator("#history-list").wait_for()
        time.sleep(1.0)  # the page-load handler has answered
        assert other.locator("#history-list label").count() == 0
        assert "x = 5" not in other.inner_text("#chatbot")
    finally:
        context.close()
