"""Uploads and Retry in a real browser (issue 11, problems 7 and 8): an upload shows in the chat and the model
is told its name and size with the next message (and the export keeps that line); Clear says that the
workdir's files stay; Retry samples (--retry-temperature) and keeps the earlier answers browsable while the
model's dialogue holds only the current one.

One `python -m app` on the scripted OpenAI-compatible server (tests/app/scripted_app.py); each test is its
own page, so its own chat and kernel. Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.app.conftest import screenshot
from tests.app.scripted_app import last_user_text, scripted_app, titles, wait_bot_count, wait_idle
from tests.app.test_browser import chat_text, open_chat, send, wait_text

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.local_sandbox]

NOTE = "[Files uploaded to the working directory: data.csv (12 B)]"


@pytest.fixture(scope="module")
def app_and_server(tmp_path_factory):
    with scripted_app(tmp_path_factory.mktemp("uploads-app")) as both:
        yield both


def export_jsonl(page) -> dict:
    page.click("#export >> text=Export")
    page.click("#export-jsonl")
    link = page.locator("#export-file a[download$='.jsonl']")
    link.wait_for(timeout=30_000)
    with page.expect_download() as download:
        link.click()
    (line,) = Path(download.value.path()).read_text().splitlines()
    return json.loads(line)


def test_uploads_are_shown_and_told_to_the_model_and_clear_says_it_keeps_them(app_and_server, page, tmp_path):
    """Problem 7."""
    app, server = app_and_server
    open_chat(page, app.url)
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n3,4\n")  # 12 bytes
    page.set_input_files("#upload input[type=file]", str(data))
    page.locator("#workdir-files a[download='data.csv']").wait_for(timeout=60_000)
    wait_text(page, "data.csv (12 B)")  # in the chat at upload time
    screenshot(page, "upload-noted")

    send(page, "say: I see it.")
    wait_bot_count(page, "I see it.")
    wait_idle(page)
    told = last_user_text(server.requests[-1])
    assert told == f"{NOTE}\n\nsay: I see it.", f"the model was not told of the upload: {told!r}"
    assert "data.csv (12 B)" in chat_text(page)  # the user's turn names the upload
    screenshot(page, "upload-told")

    send(page, "say: Still here.")
    wait_bot_count(page, "Still here.")
    wait_idle(page)
    assert last_user_text(server.requests[-1]) == "say: Still here."  # told once, not with every message
    record = export_jsonl(page)
    users = [m["content"] for m in record["messages"] if m["role"] == "user"]
    assert users == [f"{NOTE}\n\nsay: I see it.", "say: Still here."]

    page.click("#clear")
    toast = page.locator("text=Kept: the 1 file in the workdir (data.csv)")
    toast.first.wait_for(timeout=30_000)
    assert "variables and imports are gone" in toast.first.inner_text()
    screenshot(page, "clear-says-what-it-keeps")
    page.locator("#workdir-files a[download='data.csv']").wait_for(timeout=10_000)
    assert page.external_requests == []


def test_retry_samples_and_keeps_earlier_answers_browsable(app_and_server, page):
    """Problem 8."""
    app, server = app_and_server
    open_chat(page, app.url)
    send(page, "count: hi")
    wait_bot_count(page, "to hi (temperature 0.0)")
    wait_idle(page)
    first = chat_text(page).split("answer ")[1].split(" ")[0]

    page.click("#retry")
    earlier = titles(page, "Earlier answer 1 of 2")
    earlier.first.wait_for(timeout=30_000)
    wait_bot_count(page, "to hi (temperature 0.7)")  # Retry samples (--retry-temperature, default 0.7)
    wait_idle(page)
    assert server.requests[-1].get("temperature") == 0.7
    assert f"answer {first} to hi" not in chat_text(page)  # the earlier answer is collapsed...
    screenshot(page, "retry-earlier-collapsed")
    earlier.first.click()
    wait_text(page, f"answer {first} to hi (temperature 0.0)")  # ...and one click opens it
    time.sleep(0.5)  # the opening slide, for the screenshot
    screenshot(page, "retry-earlier-expanded")

    page.click("#retry")
    titles(page, "Earlier answer 2 of 3").first.wait_for(timeout=30_000)
    assert titles(page, "Earlier answer 1 of 3").count() == 1
    wait_bot_count(page, "answer 3 to hi")
    wait_idle(page)  # the dialogue is the chat's once the answer is over
    record = export_jsonl(page)
    said = [m["content"] for m in record["messages"] if m["role"] == "assistant"]
    assert len(said) == 1 and "temperature 0.7" in said[0], f"the model's dialogue: {said}"
    assert [m["content"] for m in record["messages"] if m["role"] == "user"] == ["count: hi"]
    screenshot(page, "retry-three-answers")
