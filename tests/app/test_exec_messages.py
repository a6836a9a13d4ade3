"""Execution messages in a real browser (issue 11, problems 5 and 6): code at full contrast, a colour per
status (ok, error, timed out, running), "(no output)" for a silent run, earlier executions collapsed (one
click opens them), and in execution mode "always" each block shown once, on screen and in the notebook.

One `python -m app` on the scripted OpenAI-compatible server (tests/app/scripted_app.py), in execution
mode "always" with a 5 s execution timeout; each test is its own page, so its own chat and kernel.
Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import time

import nbformat
import pytest

from tests.app.conftest import screenshot
from tests.app.scripted_app import bot_text, scripted_app, titles, wait_bot_count, wait_idle
from tests.app.test_browser import open_chat, send, wait_count

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.local_sandbox]

# The opacity an element is drawn with: its own times every ancestor's, up to the chat.
EFFECTIVE_OPACITY = """el => { let o = 1;
    for (let e = el; e && e.id !== 'chatbot'; e = e.parentElement) o *= parseFloat(getComputedStyle(e).opacity);
    return o; }"""

# (colour of the title's status mark, or of its text when it has none; the message's left border colour)
TITLE_COLOURS = """t => [getComputedStyle(t.querySelector('a') || t.querySelector('p') || t).color,
    getComputedStyle(t.closest('.thought-group')).borderLeftColor]"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    with scripted_app(
        tmp_path_factory.mktemp("exec-app"), "--execution-mode", "always", "--exec-timeout", "5"
    ) as (
        app,
        _server,
    ):
        yield app


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(float(x)) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3])


def test_status_is_colour_coded_and_code_is_not_dimmed(app, page):
    """Problem 5: success, error, timeout and running titles differ at a glance; code reads at full contrast."""
    open_chat(page, app.url)
    send(page, "run: print('fine')")
    ok = titles(page, "Ran python")
    wait_count(ok, 1)
    wait_bot_count(page, "done.", 1)
    wait_idle(page)
    code = page.locator("#chatbot .thought-group", has_text="Ran python").locator(
        "code", has_text="print('fine')"
    )
    opacity = code.first.evaluate(EFFECTIVE_OPACITY)
    assert opacity > 0.99, f"the executed code is drawn at opacity {opacity:.2f} (dimmed)"

    send(page, "run: print(1/0)")
    error = titles(page, "ZeroDivisionError")
    wait_count(error, 1)
    wait_bot_count(page, "done.", 2)
    wait_idle(page)

    send(page, "run: import time; time.sleep(20)")
    running = titles(page, "Running python")
    running.first.wait_for(timeout=60_000)
    running_colours = running.first.evaluate(TITLE_COLOURS)
    screenshot(page, "exec-status-running")
    timed_out = titles(page, "timed out")
    timed_out.first.wait_for(timeout=60_000)
    wait_bot_count(page, "done.", 3)
    page.wait_for_function(  # earlier executions are collapsed (wait out the closing slide)
        "el => !el.closest('.thought-group').innerText.includes('division by zero')",
        arg=error.first.element_handle(),
        timeout=10_000,
    )
    screenshot(page, "exec-status-colours")

    colours = {
        "ok": ok.first.evaluate(TITLE_COLOURS),
        "error": error.first.evaluate(TITLE_COLOURS),
        "timeout": timed_out.first.evaluate(TITLE_COLOURS),
        "running": running_colours,
    }
    marks = {name: rgb(mark) for name, (mark, _border) in colours.items()}
    borders = {name: rgb(border) for name, (_mark, border) in colours.items()}
    assert len(set(marks.values())) == 4, f"status marks share a colour: {marks}"
    assert len(set(borders.values())) == 4, f"status borders share a colour: {borders}"
    red, green = marks["error"], marks["ok"]
    assert green[1] > green[0] and red[0] > red[1], f"ok should read green and error red: {marks}"


def test_silent_run_says_so_collapses_later_and_shows_each_block_once(app, page):
    """Problem 6: "(no output)", earlier executions collapsed but expandable, and in execution mode
    "always" the model's bare block becomes the execution message (once on screen, once in the notebook)."""
    open_chat(page, app.url)
    send(page, "bare: x = 6 * 7")
    wait_count(titles(page, "Ran python"), 1)
    wait_bot_count(page, "done.", 1)
    wait_idle(page)
    shown = bot_text(page)
    assert "(no output)" in shown, f"a silent run should say so: {shown}"
    assert shown.count("x = 6 * 7") == 1, f"the block should be shown once: {shown}"
    screenshot(page, "exec-no-output")

    send(page, "bare: print(x)")
    wait_count(titles(page, "Ran python"), 2)
    wait_bot_count(page, "done.", 2)
    wait_idle(page)
    first, second = page.locator("#chatbot .thought-group", has_text="Ran python").all()
    page.wait_for_function("el => el.innerText.includes('42')", arg=second.element_handle(), timeout=10_000)
    # A later message exists: the earlier execution is collapsed (from the moment the new answer streams).
    page.wait_for_function(
        "el => !el.innerText.includes('x = 6 * 7')", arg=first.element_handle(), timeout=10_000
    )
    assert bot_text(page).count("print(x)") == 1
    screenshot(page, "exec-earlier-collapsed")
    first.locator(".title").click()
    page.wait_for_function(
        "el => el.innerText.includes('x = 6 * 7') && el.innerText.includes('(no output)')",
        arg=first.element_handle(),
        timeout=10_000,
    )
    time.sleep(0.5)  # the opening slide, for the screenshot
    screenshot(page, "exec-earlier-expanded")

    page.click("#export >> text=Export")
    page.click("#export-ipynb")
    link = page.locator("#export-file a[download$='.ipynb']")
    link.wait_for(timeout=30_000)
    with page.expect_download() as download:
        link.click()
    notebook = nbformat.read(download.value.path(), as_version=4)
    assert [c.source for c in notebook.cells if c.cell_type == "code"] == ["x = 6 * 7", "print(x)"]
    said = [c.source for c in notebook.cells if c.cell_type == "markdown" and "**User:**" not in c.source]
    assert not any("x = 6 * 7" in s or "print(x)" in s for s in said), f"code repeated in markdown: {said}"
    assert page.external_requests == []
