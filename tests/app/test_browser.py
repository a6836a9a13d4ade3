"""End to end in a real browser: headless Chromium drives `python -m app` on the tiny trained model, whose
code runs in the local bubblewrap sandbox. Screenshots go to artifacts/screenshots/.

The tiny model answers a few scripted prompts (tests/fixtures/tiny_models.py): "print" runs print(6*7),
"plot" draws a matplotlib figure, "sleep" runs time.sleep(30).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest

from interpreter.protocol import RUN_START
from tests.app.conftest import screenshot
from tests.app.scripted_app import wait_idle
from tests.conftest import require_no_gpu
from tests.fixtures.tiny_models import SCENARIOS

pytestmark = [pytest.mark.browser, pytest.mark.model, pytest.mark.slow, pytest.mark.local_sandbox]

# Records the text of the chat after every DOM change, so the test can see the answer arrive in steps.
RECORD_CHAT_TEXT = """
window.__chatTexts = [];
const chat = document.querySelector('#chatbot');
new MutationObserver(() => {
  const bots = chat.querySelectorAll('[data-testid="bot"]');
  window.__chatTexts.push(Array.from(bots).map(b => b.innerText).join('\\n'));
}).observe(chat, {subtree: true, childList: true, characterData: true});
"""


def intro(name: str) -> str:
    """What the tiny model says before its code block for this prompt."""
    return SCENARIOS[name].reply.split(RUN_START)[0].strip()


def final(name: str) -> str:
    """What the tiny model says after seeing the execution result."""
    return SCENARIOS[name].final


def wait_text(page, text: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        "t => document.querySelector('#chatbot').innerText.includes(t)", arg=text, timeout=timeout_ms
    )


def open_chat(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#prompt textarea", timeout=60_000)


def send(page, text: str) -> None:
    page.fill("#prompt textarea", text)
    page.keyboard.press("Enter")


def titles(page, text: str):
    return page.locator("#chatbot .thought .title", has_text=text)


def wait_count(locator, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while locator.count() < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {count} of {locator}, found {locator.count()}")
        time.sleep(0.05)


def chat_text(page) -> str:
    return page.inner_text("#chatbot")


def test_chat_streams_runs_code_plots_and_stops(start_app, page):
    # Retry samples by default (--retry-temperature); greedy here so the retried answer is the taught one.
    app = start_app("--retry-temperature", "0")
    open_chat(page, app.url)
    page.evaluate(RECORD_CHAT_TEXT)

    # Streamed text, then an execution message with its code and output, then the model's answer.
    send(page, "print")
    wait_text(page, final("print"))
    wait_count(titles(page, "Ran python"), 1)
    assert intro("print") in chat_text(page)
    screenshot(page, "01-print-answered")
    snapshots = page.evaluate("window.__chatTexts")
    said = intro("print")
    # Streamed: the model's words were on screen before its code had run. (Token by token is not visible
    # here: the tiny model writes its whole intro within one of the chat's 50 ms text batches; the batching
    # itself is tested in tests/app/test_chat_streaming.py.)
    ahead = [s for s in snapshots if said in s and "42" not in s]
    assert ahead, f"the reply was not shown before its execution's output: {snapshots[:20]}"
    assert "API_RUN" not in chat_text(page) and "```" not in chat_text(page)
    execution = page.locator("#chatbot .thought", has_text="Ran python").first
    page.wait_for_function(
        "el => el.innerText.includes('42') && el.innerText.includes('print(6*7)')",
        arg=execution.element_handle(),
    )
    screenshot(page, "02-execution-expanded")

    # Retry: the exchange is answered again; the old answer stays one click away, collapsed.
    wait_idle(page)  # a Retry or Clear in the moment after the answer's last words is refused (busy)
    page.click("#retry")
    earlier = page.locator("#chatbot .thought-group > .title", has_text="Earlier answer 1 of 2")
    earlier.first.wait_for(timeout=30_000)  # (first in its bubble, so without Gradio's .thought class)
    wait_text(page, final("print"))
    wait_count(titles(page, "Ran python"), 1)
    assert chat_text(page).count(intro("print")) == 1

    # Clear: a fresh chat (the tiny model only knows short chats) with a fresh kernel.
    wait_idle(page)
    page.click("#clear")
    page.wait_for_function("() => !document.querySelector('#chatbot').innerText.includes('print')")

    # An inline plot from the kernel's display_data.
    send(page, "plot")
    image = page.locator("#chatbot img[src*='.png']").first
    image.wait_for(timeout=60_000)
    page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=image.element_handle())
    assert "/autocoder-images-" in image.get_attribute("src")  # served from where it was written, not copied
    wait_count(titles(page, "Ran python"), 1)
    screenshot(page, "03-inline-plot")
    wait_idle(page)
    page.click("#clear")
    page.wait_for_function("() => document.querySelectorAll('#chatbot img').length === 0")

    # Stop during a 30 s execution: it ends at once, and the kernel still works afterwards.
    send(page, "sleep")
    running = titles(page, "Running python")
    running.first.wait_for(timeout=60_000)
    time.sleep(1.0)
    screenshot(page, "04-long-execution-running")
    pressed = time.monotonic()
    page.click("#send-stop")  # the one Send/Stop button, saying Stop while it answers
    titles(page, "interrupted").first.wait_for(timeout=15_000)
    page.wait_for_selector("#chatbot >> text=stopped", timeout=15_000)
    assert time.monotonic() - pressed < 10, "stop took too long (the code sleeps 30 s)"
    assert running.count() == 0
    assert chat_text(page).count("woke up") <= 1  # at most in the code itself, never as its output
    screenshot(page, "05-stopped")
    # Undo drops the stopped exchange (the kernel stays), so the tiny model sees a chat it knows.
    page.click("#undo")
    page.wait_for_function("() => !document.querySelector('#chatbot').innerText.includes('stopped')")
    assert page.input_value("#prompt textarea") == "sleep"  # Undo gives the message back for editing
    send(page, "print")
    wait_count(titles(page, "Ran python"), 1)
    wait_text(page, final("print"))
    screenshot(page, "06-kernel-works-after-stop")

    assert page.external_requests == [], f"the page contacted other hosts: {page.external_requests}"
    assert app.session_dirs(), "the chat's kernel should have a session folder"
    assert app.stop() == 0
    assert app.session_dirs() == [], "kernels and their folders must be gone when the server exits"


def test_ask_mode_edit_upload_download_and_export(start_app, page, tmp_path):
    app = start_app()
    open_chat(page, app.url)

    # Execution mode "ask": the code waits for approval; the user edits it, then runs it.
    page.click("#settings >> text=Settings")
    page.locator("#execution-mode label", has_text="ask").click()
    send(page, "print")
    page.wait_for_selector("#approval", state="visible", timeout=60_000)
    assert "print(6*7)" in page.inner_text("#approval-code")

    # Upload a file into the session's workdir while the code waits (uploaded before "print", the tiny
    # model would be told of it in that message, and it knows only the bare prompts).
    data = tmp_path / "notes.txt"
    data.write_text("hello from the host\n")
    page.set_input_files("#upload input[type=file]", str(data))
    page.locator("#workdir-files a[download='notes.txt']").wait_for(timeout=60_000)
    edited = "text = open('notes.txt').read()\nopen('shout.txt', 'w').write(text.upper())\nprint(len(text))"
    editor = page.locator("#approval-code .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    editor.fill(edited)
    screenshot(page, "07-ask-mode-edited")
    page.click("#approve-run")
    wait_count(titles(page, "Ran python"), 1)
    page.wait_for_selector("#approval", state="hidden", timeout=10_000)
    execution = page.locator("#chatbot .thought", has_text="Ran python").first
    page.wait_for_function("el => el.innerText.includes('20')", arg=execution.element_handle())

    # The file the code wrote is offered for download, with the content the code gave it.
    link = page.locator("#workdir-files a[download='shout.txt']")
    link.wait_for(timeout=60_000)
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_text() == "HELLO FROM THE HOST\n"
    screenshot(page, "08-download-listed")

    # Export: a valid notebook with the edited code and its output; the dialogue record.
    page.click("#export >> text=Export")
    page.click("#export-ipynb")
    nb_link = page.locator("#export-file a[download$='.ipynb']")
    nb_link.wait_for(timeout=30_000)
    with page.expect_download() as download:
        nb_link.click()
    notebook = nbformat.read(download.value.path(), as_version=4)
    nbformat.validate(notebook)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells[0].source == edited
    assert code_cells[0].outputs[0]["text"] == "20\n"
    page.click("#export-jsonl")
    jsonl_link = page.locator("#export-file a[download$='.jsonl']")
    jsonl_link.wait_for(timeout=30_000)
    with page.expect_download() as download:
        jsonl_link.click()
    (line,) = Path(download.value.path()).read_text().splitlines()
    record = json.loads(line)
    roles = [m["role"] for m in record["messages"]]
    assert roles[:3] == ["user", "assistant", "execution"] and roles.count("user") == 1
    assert "shout.txt" in record["messages"][1]["content"]  # the dialogue holds the code that really ran
    assert "20" in record["messages"][2]["content"]
    screenshot(page, "09-exported")

    # Skip, in a fresh chat (the tiny model only knows short chats): the block is not run, the chat says so.
    wait_idle(page)
    page.click("#clear")
    page.wait_for_function("() => !document.querySelector('#chatbot').innerText.includes('print')")
    send(page, "print")
    page.wait_for_selector("#approval", state="visible", timeout=60_000)
    page.click("#approve-skip")
    titles(page, "not run").first.wait_for(timeout=30_000)
    screenshot(page, "10-skipped")
    assert page.external_requests == []


def test_a_full_server_queues_chats_visibly(start_app, browser, page):
    app = start_app("--concurrency", "1")
    open_chat(page, app.url)
    send(page, "sleep")  # holds the only slot for 30 s
    titles(page, "Running python").first.wait_for(timeout=60_000)
    second = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        open_chat(second, app.url)
        send(second, "print")
        second.wait_for_function(
            "() => /queue/i.test(document.querySelector('#chatbot').innerText)", timeout=15_000
        )
        screenshot(second, "13-waiting-in-queue")
        assert titles(second, "Ran python").count() == 0
        page.click("#send-stop")  # Stop: the slot frees up, the waiting chat is answered
        wait_count(titles(second, "Ran python"), 1)
        wait_text(second, final("print"))
    finally:
        second.close()


def test_closing_the_tab_keeps_its_kernel_for_a_reload_until_the_idle_reaper(start_app, page):
    # A closed tab's chat and kernel stay (a reload or reopened tab finds them: tests/app/test_history.py);
    # the idle reaper shuts the kernel down.
    app = start_app("--warm-kernels", "0", "--idle-timeout", "15")
    open_chat(page, app.url)
    send(page, "print")
    wait_count(titles(page, "Ran python"), 1)
    assert len(app.session_dirs()) == 1
    page.close()
    deadline = time.monotonic() + 30
    while "its page closed" not in app.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "its page closed" in app.log()
    assert len(app.session_dirs()) == 1, "closing the tab must not shut the kernel down at once"
    deadline = time.monotonic() + 60
    while app.session_dirs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert app.session_dirs() == [], "the idle reaper should shut the kernel down"
    assert "kernel shut down after being idle" in app.log()


def test_idle_kernel_is_reaped_and_the_chat_says_so(start_app, page):
    app = start_app("--warm-kernels", "0", "--idle-timeout", "2")
    open_chat(page, app.url)
    send(page, "print")
    wait_count(titles(page, "Ran python"), 1)
    deadline = time.monotonic() + 30
    while app.session_dirs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert app.session_dirs() == [], "an idle kernel should be shut down after --idle-timeout"
    send(page, "print")
    wait_count(titles(page, "Ran python"), 2)
    assert "previous kernel was shut down" in chat_text(page)
    screenshot(page, "11-idle-kernel-reaped")


def test_auth_guards_the_page(start_app, page):
    app = start_app("--auth", "ann:s3cret")
    page.goto(app.url)
    page.wait_for_selector("input[type=password]", timeout=60_000)
    assert page.locator("#prompt").count() == 0
    page.fill("input[type=text]", "ann")
    page.fill("input[type=password]", "wrong")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Incorrect", timeout=15_000)
    page.fill("input[type=text]", "ann")  # the failed attempt emptied the form
    page.fill("input[type=password]", "s3cret")
    page.keyboard.press("Enter")
    page.wait_for_selector("#prompt textarea", timeout=60_000)
    screenshot(page, "12-after-login")


def test_stand_in_model_is_announced(start_app, page):
    """Without a GPU and without --model the app runs the small stand-in and says so, with what to do."""
    require_no_gpu("this host has a GPU: the default model, not the stand-in, loads")
    app = start_app(tiny_model=False)
    open_chat(page, app.url)
    notice = page.inner_text("#notice")
    assert "stand-in" in notice and "--model" in notice
    assert app.log().count("small stand-in model") == 1, app.log()  # the notice once, not per load step
    screenshot(page, "14-stand-in-notice")
    # Issue 11, problem 1: the page's own example is one the stand-in does, by running code (it used to
    # answer without code, or echo the question back).
    example = "What is 2 to the power of 20?"
    assert example in page.inner_text("#chatbot"), "the example is no longer on the page"
    send(page, example)
    # The execution is the first message of its bubble: Gradio gives it .thought-group, not .thought.
    wait_count(page.locator("#chatbot .thought-group > .title", has_text="Ran python"), 1, timeout_s=240)
    execution = page.locator("#chatbot .thought-group", has_text="Ran python").first
    page.wait_for_function("el => el.innerText.includes('1048576')", arg=execution.element_handle())
    screenshot(page, "15-stand-in-runs-the-example")
