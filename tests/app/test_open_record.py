"""A dialogue record opened in the chat, in a real browser: a chat exported from the Export panel (.jsonl)
and a data-pipeline item are shown as conversations with their executions, their code is re-run on demand
into the fresh kernel, and the chat continues with the model; a malformed file is one toast with the
validator's message. The model is the scripted OpenAI-compatible server (tests/app/scripted_model.py); code
runs in the local sandbox. One app for the module. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import json

import pytest

from interpreter.dialogue import Dialogue, execution_message
from interpreter.protocol import block_text
from interpreter.results import ExecutionError, ExecutionResult, RunRecord
from tests.app.conftest import screenshot
from tests.app.scripted_app import chat_text, open_chat, scripted_app, send, wait_idle, wait_log, wait_text
from tests.app.scripted_model import FINAL

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.local_sandbox]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """`python -m app` on the scripted server, kernels in the local sandbox, history in a folder of its own."""
    folder = tmp_path_factory.mktemp("open-record-app")
    history = folder / "chats"
    flags = ("--execution-mode", "auto", "--warm-kernels", "0", "--history-dir", str(history))
    with scripted_app(folder, *flags) as (process, _server):
        yield process


def open_record(page, path, number: int = 1) -> None:
    page.fill("#record-number input", str(number))
    page.locator("#record-file input[type=file]").set_input_files(str(path))


def output_of(page, code: str, text: str) -> None:
    """The execution message of `code` (the last one) shows `text`."""
    execution = page.locator("#chatbot .thought", has_text=code).last
    execution.wait_for(timeout=60_000)
    if not execution.locator(".title").first.is_visible() or text not in execution.inner_text():
        execution.locator(".title").first.click()  # collapsed: open it
    page.wait_for_function("([el, t]) => el.innerText.includes(t)", arg=[execution.element_handle(), text])


def pipeline_items() -> list[dict]:
    """Two records shaped as the data pipeline writes them (data_pipeline/item.py): system prompt, the
    question, the programmer's blocks with their runs (one failing, then the fix), its answer, and meta."""

    def item(item_id: str, question: str, first: str, fixed: str, stdout: str) -> dict:
        failing = ExecutionResult(
            "error",
            stderr="",
            error=ExecutionError("NameError", "name 'totl' is not defined", "NameError: name 'totl' ..."),
        )
        messages = [
            {"role": "system", "content": "You are a programmer. Run code to check your answer."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"Let me compute it.\n{block_text('python', first)}"},
            execution_message([RunRecord("python", first, failing)]),
            {"role": "assistant", "content": f"A typo; again.\n{block_text('python', fixed)}"},
            execution_message([RunRecord("python", fixed, ExecutionResult("ok", stdout=stdout))]),
            {"role": "assistant", "content": f"The answer is {stdout.strip()}."},
        ]
        meta = {
            "stage": "generate",
            "verified": True,
            "seed": {"id": "s1", "source": "test", "licence": "MIT"},
        }
        return Dialogue(item_id, messages, meta).to_json()

    return [
        item("item-0001", "What is 2 + 2?", "print(2 + 2 + totl)", "print(2 + 2)", "4\n"),
        item(
            "item-0002",
            "Sum the numbers below 5.",
            "total = sum(range(5))\nprint(totl)",
            "total = sum(range(5))\nprint(total)",
            "10\n",
        ),
    ]


def test_an_exported_chat_opens_reruns_and_continues(app, page, browser, tmp_path):
    # A chat, exported from the Export panel as a dialogue record.
    open_chat(page, app.url)
    send(page, "run: y = 7; print(y)")
    wait_text(page, FINAL)
    page.click("#export")  # open the accordion
    wait_idle(page)
    page.click("#export-jsonl")
    link = page.locator("#export-file a").first
    link.wait_for(timeout=30_000)
    with page.expect_download() as download:
        link.click()
    exported = tmp_path / "chat.jsonl"
    download.value.save_as(exported)
    assert json.loads(exported.read_text())["meta"]["source"] == "app"

    # Another browser opens it: a conversation with its execution and output, on a fresh kernel.
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    other = context.new_page()
    try:
        open_chat(other, app.url)
        open_record(other, exported)
        wait_text(other, "y = 7; print(y)")
        output_of(other, "print(y)", "7")
        wait_text(other, "fresh one")
        screenshot(other, "open-record-01-exported-chat")
        wait_idle(other)
        other.click("#rerun-code")
        wait_log(app, "re-ran 1 block(s): 1 ok")
        send(other, "run: print(y * 6)")
        output_of(other, "print(y * 6)", "42")
        assert "NameError" not in chat_text(other)
        screenshot(other, "open-record-02-rerun-and-continued")
    finally:
        context.close()


def test_a_pipeline_item_opens_by_number_and_a_bad_file_is_one_toast(app, page, tmp_path):
    items = tmp_path / "dialogues.jsonl"
    items.write_text("".join(json.dumps(item) + "\n" for item in pipeline_items()))
    open_chat(page, app.url)
    open_record(page, items, number=2)
    wait_text(page, "Sum the numbers below 5.")
    assert "What is 2 + 2?" not in chat_text(page)
    output_of(page, "print(total)", "10")
    wait_text(page, "NameError")  # the failing first attempt, as recorded
    wait_text(page, "record 2 of 2")
    screenshot(page, "open-record-03-pipeline-item")
    wait_idle(page)
    page.click("#rerun-code")
    wait_log(app, "re-ran 2 block(s): 1 ok")  # the recorded typo fails again, the fix defines total
    send(page, "run: print(total + 1)")
    output_of(page, "print(total + 1)", "11")

    # A malformed record: one toast with the validator's message; the chat is left as it was.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(pipeline_items()[0]) + "\n" + '{"id": "x", "messages": [{"role": "robot"}]}\n')
    page.fill("#record-number input", "1")
    page.locator("#record-file input[type=file]").set_input_files(str(bad))
    toast = page.locator(".toast-body", has_text="bad.jsonl: line 2: message 0: role must be one of")
    toast.wait_for(timeout=30_000)
    screenshot(page, "open-record-04-malformed-toast")
    assert "Traceback" not in toast.inner_text() and "/tmp" not in toast.inner_text()
    assert page.locator(".toast-body", has_text="Error").count() == 0
    # Nothing of the file is shown (its first record is valid, but the file is refused as a whole).
    assert "What is 2 + 2?" not in chat_text(page) and "Sum the numbers below 5." in chat_text(page)
    assert "Traceback" not in app.log()
