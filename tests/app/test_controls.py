"""The chat page's controls, busy state, errors, log and layout, in a real browser (issue 11, problems 2, 4,
9 and 10). One `python -m app` for the whole module, on the scripted OpenAI-compatible server (real HTTP),
code in the local sandbox; each test opens its own page, which is its own chat. Screenshots go to
artifacts/screenshots/controls-*.png.

- Problem 4: one Send/Stop button that follows the state; "Thinking…" in the chat before the first token;
  a toast when sending while busy; no orange busy outlines on the message box or the Files panel; Stop
  also calls off a message still waiting in the queue.
- Problem 2: user-level errors (Retry/Export on an empty chat, Undo/Clear while answering) are toasts, never
  red "Error" marks over the chat or the message box, which stays usable.
- Problem 9: after a browser session the log has one line per message and per execution, the sandbox once,
  no traceback for those user-level errors, no per-request HTTP lines.
- Problem 10: the approval box sits right under the chat and is on screen with the code; long code lines
  wrap while streaming; no label over the messages; at 390 px the Send/Stop button is on screen.
"""

from __future__ import annotations

import re
import time

import pytest

from interpreter.protocol import RUN_START, RUN_STOP
from tests.app.conftest import AppProcess, screenshot
from tests.app.scripted_model import FINAL, scripted_reply
from tests.conftest import require
from tests.fixtures.openai_server import ScriptedOpenAIServer

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.local_sandbox]

SLEEP = "run: import time; time.sleep(30)"
LONG_LINE = "print('" + "wrap-me-" * 30 + "')"  # 247 characters: wider than the chat on any screen


def reply(body: dict) -> list[str]:
    """scripted_reply, plus `slowrun: CODE`: CODE as an execution block, streamed 8 characters a piece (with
    the server's delay_s, the block stays "being written" for a while)."""
    last = (body.get("messages") or [{}])[-1].get("content") or ""
    if isinstance(last, str) and last.startswith("slowrun: "):
        code = last[len("slowrun: ") :]
        pieces = [code[i : i + 8] for i in range(0, len(code), 8)]
        return ["Running it.\n", f"{RUN_START}```python\n", *pieces, f"\n```{RUN_STOP}"]
    return scripted_reply(body)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(app, server): the app on a scripted server, one chat answered at a time (--concurrency 1)."""
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox

    try:
        make_sandbox("local")
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    server = ScriptedOpenAIServer().start()
    server.reply_for = reply
    app = None
    try:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("OPENAI_API_KEY", server.api_key)  # never argv
            flags = ["--backend", "openai", "--base-url", server.base_url, "--model", server.models[0]]
            flags += ["--sandbox", "local", "--concurrency", "1", "--no-history"]
            # Every test's page is a chat of this one client, and a closed page's chat keeps its kernel
            # until the idle reaper: room for all of them.
            flags += ["--max-sessions", "16", "--max-sessions-per-client", "16"]
            app = AppProcess(flags, tmp_path_factory.mktemp("controls-app"), startup_s=600)
        yield app, server
    finally:
        if app is not None:
            app.stop()
        server.stop()


@pytest.fixture
def app(served):
    app, server = served
    server.delay_s = server.latency_s = 0.0
    return app


@pytest.fixture
def server(served):
    return served[1]


# ---------------------------------------------------------------------------------------------- helpers


def open_chat(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#prompt textarea", timeout=60_000)
    wait_label(page, "Send")


def type_and_enter(page, text: str) -> None:
    page.fill("#prompt textarea", text)
    page.keyboard.press("Enter")


def wait_label(page, text: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        "t => document.querySelector('#send-stop')?.innerText.trim() === t", arg=text, timeout=timeout_ms
    )


def wait_text(page, text: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        "t => document.querySelector('#chatbot').innerText.includes(t)", arg=text, timeout=timeout_ms
    )


def chat_text(page) -> str:
    return page.inner_text("#chatbot")


def bot_text(page) -> str:
    """What the assistant's side of the chat says (the user's messages left out)."""
    return "\n".join(page.locator('#chatbot [data-testid="bot"]').all_inner_texts())


def wait_bot_text(page, text: str, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(
        """t => Array.from(document.querySelectorAll('#chatbot [data-testid="bot"]'))
                     .some(b => b.innerText.includes(t))""",
        arg=text,
        timeout=timeout_ms,
    )


def wait_toast(page, text: str, timeout_ms: int = 15_000) -> None:
    page.locator(".toast-body", has_text=text).first.wait_for(timeout=timeout_ms)


# Gradio's red "Error" marks: a status tracker over a component, showing an error, that is really drawn.
ERROR_MARKS = """() => Array.from(document.querySelectorAll('[data-testid="status-tracker"] .error')).filter(e => {
  const tracker = e.closest('[data-testid="status-tracker"]');
  const style = getComputedStyle(tracker), box = e.getBoundingClientRect();
  return !tracker.classList.contains('hide') && style.display !== 'none' && style.visibility !== 'hidden'
    && style.opacity !== '0' && box.width > 0 && box.height > 0;
}).map(e => e.closest('[id]')?.id || '?')"""

# Gradio's orange "busy" outline: a status tracker in its generating state, by the component it covers.
BUSY_OUTLINES = (
    "() => Array.from(document.querySelectorAll('.generating')).map(e => e.closest('[id]')?.id || '?')"
)


def assert_prompt_usable(page) -> None:
    """No error mark anywhere, and the message box takes a click and typing (nothing covers it)."""
    assert page.evaluate(ERROR_MARKS) == [], page.evaluate(ERROR_MARKS)
    box = page.locator("#prompt textarea")
    covered = page.evaluate(
        """el => { const r = el.getBoundingClientRect();
                   return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) !== el; }""",
        box.element_handle(),
    )
    assert not covered, "something covers the message box"
    box.click()
    page.keyboard.type("still usable")
    assert page.input_value("#prompt textarea").endswith("still usable")
    box.fill("")


def box_of(page, selector: str) -> dict:
    found = page.locator(selector).first.bounding_box()
    assert found is not None, f"{selector} is not on the page"
    return found


def overlaps(a: dict, b: dict) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


# ---------------------------------------------------------------------------------------------- problem 4


def test_one_send_stop_button_thinking_placeholder_and_a_toast_when_busy(app, server, browser, page):
    open_chat(page, app.url)
    assert page.locator("#prompt-row button").count() == 1, "one Send/Stop button, not two"
    assert page.locator("#send, #stop").count() == 0

    # Before the first token (the model takes 6 s to start): "Thinking…" in the chat, the button says Stop.
    server.latency_s = 6.0
    page.fill("#prompt textarea", "say: hello there")
    page.click("#send-stop")
    wait_bot_text(page, "Thinking", timeout_ms=5_000)
    wait_label(page, "Stop", timeout_ms=5_000)
    assert "hello there" not in bot_text(page)
    screenshot(page, "controls-01-thinking")
    wait_bot_text(page, "hello there")
    wait_label(page, "Send")
    assert "Thinking" not in bot_text(page) and "stopped" not in bot_text(page), bot_text(page)
    server.latency_s = 0.0

    # While an execution runs: Stop; a message sent now is refused with a toast and stays in the box;
    # no orange outline on the message box or the Files panel (the chat shows the running execution).
    type_and_enter(page, SLEEP)
    page.locator("#chatbot", has_text="Running python").wait_for(timeout=60_000)
    wait_label(page, "Stop")
    outlines = page.evaluate(BUSY_OUTLINES)
    assert not {"prompt", "workdir-files", "upload", "files"} & set(outlines), outlines
    type_and_enter(page, "a second message")
    wait_toast(page, "Still answering")
    assert page.input_value("#prompt textarea") == "a second message"
    assert chat_text(page).count("a second message") == 0
    time.sleep(0.5)  # an error mark would be drawn by now
    assert page.evaluate(ERROR_MARKS) == [], "the refused message left an error mark"
    assert "Running python" in chat_text(page), "the running answer should still show"
    screenshot(page, "controls-02-busy-toast")

    # Stop: the same button; the execution ends at once and the button says Send again.
    pressed = time.monotonic()
    page.click("#send-stop")
    wait_label(page, "Send", timeout_ms=15_000)
    assert time.monotonic() - pressed < 10, "Stop took too long (the code sleeps 30 s)"
    wait_text(page, "stopped")
    assert page.evaluate(ERROR_MARKS) == []
    screenshot(page, "controls-03-stopped")

    # A message waiting in the queue (one chat is answered at a time here): Stop calls it off at once.
    other = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        open_chat(other, app.url)
        type_and_enter(other, SLEEP)
        other.locator("#chatbot", has_text="Running python").wait_for(timeout=60_000)
        page.fill("#prompt textarea", "say: never answered")
        page.click("#send-stop")
        wait_label(page, "Stop")
        wait_bot_text(page, "Thinking")
        page.click("#send-stop")
        wait_label(page, "Send", timeout_ms=10_000)
        page.wait_for_function(
            "() => !document.querySelector('#chatbot').innerText.includes('never answered')"
        )
        assert page.evaluate(ERROR_MARKS) == []
        other.click("#send-stop")  # the slot frees; the called-off message must not be answered then
        wait_label(other, "Send", timeout_ms=15_000)
        type_and_enter(page, "say: answered instead")
        wait_bot_text(page, "answered instead")
        wait_label(page, "Send")
        assert "never answered" not in chat_text(page)
    finally:
        other.close()
    assert page.external_requests == []


# ---------------------------------------------------------------------------------------------- problem 2


def test_user_errors_are_toasts_and_never_block_the_message_box(app, page):
    open_chat(page, app.url)
    for button, said in (("#retry", "nothing to retry yet"), ("#export-ipynb", "nothing to export yet")):
        if button == "#export-ipynb":
            page.click("#export >> text=Export")
        page.click(button)
        wait_toast(page, said)
        assert_prompt_usable(page)

    # Undo and Clear while an answer runs: a toast each; nothing marks the chat or the message box.
    type_and_enter(page, SLEEP)
    page.locator("#chatbot", has_text="Running python").wait_for(timeout=60_000)
    page.click("#undo")
    wait_toast(page, "Stop the running answer first")
    page.click("#clear")
    page.locator(".toast-body", has_text="stop the running answer first").first.wait_for(timeout=15_000)
    time.sleep(0.5)  # an error mark would be drawn by now
    screenshot(page, "controls-04-errors-as-toasts")
    assert_prompt_usable(page)
    assert "Error" not in chat_text(page)

    # After Stop and Clear: an empty chat, nothing left over it.
    page.click("#send-stop")
    wait_label(page, "Send", timeout_ms=15_000)
    page.click("#clear")
    page.wait_for_function("() => !document.querySelector('#chatbot').innerText.includes('sleep')")
    assert_prompt_usable(page)
    screenshot(page, "controls-05-after-clear")


# ---------------------------------------------------------------------------------------------- problem 9


def test_the_log_of_a_browser_session(app, page):
    before = len(app.log())
    open_chat(page, app.url)
    type_and_enter(page, "run: print(6*7)")
    wait_bot_text(page, FINAL)
    wait_label(page, "Send")
    type_and_enter(page, "say: no code this time")
    wait_bot_text(page, "no code this time")
    wait_label(page, "Send")
    type_and_enter(page, SLEEP)
    page.locator("#chatbot", has_text="Running python").wait_for(timeout=60_000)
    page.click("#undo")  # a user-level error: a toast, and no traceback in the log
    wait_toast(page, "Stop the running answer first")
    page.click("#send-stop")
    wait_label(page, "Send", timeout_ms=15_000)
    time.sleep(0.5)  # the last line is written after the page's last update

    session = app.log()[before:]
    whole = app.log()
    assert len(re.findall(r"execution ok in \d+\.\d\d s", session)) == 1, session
    assert len(re.findall(r"execution \w+ in \d+\.\d\d s", session)) == 2, session  # ok, and the stopped one
    answered = re.findall(r"message answered \((\w+)\) in [\d.]+ s", session)
    assert answered == ["end_of_turn", "end_of_turn", "cancelled"], session
    assert "Traceback" not in whole, whole
    assert not re.search(r"HTTP Request:|\"(GET|POST) /", whole), whole  # no per-request lines
    assert len(re.findall(r"sandbox: local \(--sandbox local\)", whole)) == 1, whole


# ---------------------------------------------------------------------------------------------- problem 10


def test_approval_box_sits_under_the_chat_and_comes_into_view(app, page):
    open_chat(page, app.url)
    page.click("#settings >> text=Settings")
    page.locator("#execution-mode label", has_text="ask").click()
    type_and_enter(page, "run: print(6*7)")
    page.wait_for_selector("#approval", state="visible", timeout=60_000)
    time.sleep(1.0)  # the smooth scroll into view
    chat, approval, prompt = box_of(page, "#chatbot"), box_of(page, "#approval"), box_of(page, "#prompt-row")
    assert chat["y"] + chat["height"] <= approval["y"] < chat["y"] + chat["height"] + 40, (chat, approval)
    assert approval["y"] + approval["height"] <= prompt["y"], (approval, prompt)
    run = box_of(page, "#approve-run")
    viewport = page.viewport_size
    assert run["y"] >= 0 and run["y"] + run["height"] <= viewport["height"], "Run is not on screen"
    screenshot(page, "controls-06-approval-under-the-chat")
    page.click("#approve-run")
    wait_bot_text(page, FINAL)
    page.wait_for_selector("#approval", state="hidden", timeout=10_000)


def test_long_code_lines_wrap_while_streaming(app, server, page):
    open_chat(page, app.url)
    server.delay_s = 0.15  # about 5 s to write the block
    type_and_enter(page, f"slowrun: {LONG_LINE}")
    page.locator("#chatbot", has_text="Writing python").wait_for(timeout=60_000)
    page.wait_for_function("() => document.querySelector('#chatbot pre')?.innerText.length > 120")
    cut = page.evaluate(
        "() => Array.from(document.querySelectorAll('#chatbot pre')).filter(p => p.scrollWidth > p.clientWidth + 1).length"
    )
    assert cut == 0, "a code block runs past its edge while streaming"
    screenshot(page, "controls-07-long-line-streaming")
    server.delay_s = 0.0
    wait_bot_text(page, FINAL)
    wait_label(page, "Send")
    cut = page.evaluate(
        "() => Array.from(document.querySelectorAll('#chatbot pre')).filter(p => p.scrollWidth > p.clientWidth + 1).length"
    )
    assert cut == 0, "a finished code block runs past its edge"


def test_no_label_covers_the_messages(app, page):
    open_chat(page, app.url)
    lines = "\n\n".join(f"line {i}" for i in range(40))  # taller than the chat: it scrolls
    type_and_enter(page, f"say: {lines}")
    wait_bot_text(page, "line 39")
    wait_label(page, "Send")
    scroller = page.locator("#chatbot .bubble-wrap").first
    scroller.evaluate("el => el.scrollTop = 0")
    first = box_of(page, "#chatbot .message-row")
    area = scroller.bounding_box()
    labels = [b for b in (lab.bounding_box() for lab in page.locator("#chatbot label").all()) if b]
    assert not [b for b in labels if overlaps(b, area)], "a label lies over the messages"
    panel = page.locator("#chatbot .top-panel").first
    if panel.count() and panel.bounding_box():
        assert not overlaps(panel.bounding_box(), first), "the chat's buttons cover the first message"
    scroller.evaluate("el => el.scrollTop = el.scrollHeight / 2")
    screenshot(page, "controls-08-no-label-over-messages")


AT_BOTTOM = "el => el.scrollTop + el.clientHeight >= el.scrollHeight - 2"


def test_the_chat_follows_the_answer_until_the_reader_scrolls_up(app, page):
    """app.page_style.PAGE_JS (in place of Gradio's autoscroll): at the bottom, the chat stays there as an
    answer grows; scrolled up, a streaming output leaves the reader where they are; sending follows again."""
    open_chat(page, app.url)
    lines = "\n\n".join(f"line {i}" for i in range(40))  # taller than the chat
    type_and_enter(page, f"say: {lines}")
    wait_bot_text(page, "line 39")
    wait_label(page, "Send")
    scroller = page.locator("#chatbot .bubble-wrap").first
    page.wait_for_function(f"() => ({AT_BOTTOM})(document.querySelector('#chatbot .bubble-wrap'))")

    # Output that streams for about three seconds; the reader scrolls up once it has begun.
    type_and_enter(
        page, "run: import time\nfor i in range(60):\n    print(f'row {i}', flush=True)\n    time.sleep(0.05)"
    )
    wait_bot_text(page, "row 5")
    scroller.evaluate("el => el.scrollTop = 0")
    wait_bot_text(page, "row 59")
    wait_label(page, "Send")
    assert scroller.evaluate("el => el.scrollTop") < 50, "the streaming output pulled the reader down"
    screenshot(page, "controls-09-scrolled-up-while-output-streams")

    type_and_enter(page, "say: back to the bottom")
    wait_bot_text(page, "back to the bottom")
    wait_label(page, "Send")
    page.wait_for_function(f"() => ({AT_BOTTOM})(document.querySelector('#chatbot .bubble-wrap'))")


def test_phone_width_keeps_send_stop_on_screen(app, browser):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        open_chat(page, app.url)
        type_and_enter(page, SLEEP)
        page.locator("#chatbot", has_text="Running python").wait_for(timeout=60_000)
        wait_label(page, "Stop")
        page.evaluate("() => window.scrollTo(0, 0)")
        button, prompt = box_of(page, "#send-stop"), box_of(page, "#prompt textarea")
        for name, found in (("Stop", button), ("the message box", prompt)):
            assert found["y"] >= 0 and found["y"] + found["height"] <= 844, (
                f"{name} is below the fold: {found}"
            )
            assert found["x"] >= 0 and found["x"] + found["width"] <= 390, f"{name} is off the side: {found}"
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
        chat, side = box_of(page, "#chatbot"), box_of(page, "#settings")
        assert side["y"] >= chat["y"] + chat["height"], "the side column should go below the chat"
        screenshot(page, "controls-09-phone-stop-on-screen")
        page.tap("#send-stop")
        wait_label(page, "Send", timeout_ms=15_000)
    finally:
        context.close()
