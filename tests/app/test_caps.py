"""Session caps, exercised on a running `python -m app` through real API clients and a real browser page.

Each gradio_client.Client is its own chat; a chat takes a kernel slot when its kernel starts. Past
--max-sessions (in total) or --max-sessions-per-client (all clients here share 127.0.0.1), a new chat is
refused with a message that says so, and the slot comes back when the idle reaper shuts a kernel down. The
warm pool's kernels count against the total too (the interpreter's own cap, set from --max-sessions).
"""

from __future__ import annotations

import time

import pytest

from tests.app.conftest import screenshot
from tests.app.scripted_model import FINAL, start_scripted_app

pytestmark = [pytest.mark.slow, pytest.mark.local_sandbox]


def client_of(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


def test_max_sessions_refuses_a_chat_past_the_total_and_frees_slots_of_idle_kernels(
    start_app, openai_server, monkeypatch
):
    app = start_scripted_app(
        start_app,
        openai_server,
        monkeypatch,
        "--max-sessions",
        "2",
        "--max-sessions-per-client",
        "5",
        "--warm-kernels",
        "1",
        "--idle-timeout",
        "20",  # longer than a kernel start on a busy machine, so the first is not reaped before the third asks
    )
    first, second, third = client_of(app), client_of(app), client_of(app)
    for client in (first, second):
        reply = client.predict("run: print(6*7)", api_name="/chat")
        assert reply["executions"][0]["result"]["stdout"] == "42\n"
    with pytest.raises(Exception, match="server is full") as refused:
        third.predict("run: print(1)", api_name="/chat")
    assert "--max-sessions" in str(refused.value)
    # The warm pool counts too: it may not boot a third kernel while two chats hold theirs.
    time.sleep(2)
    kernels = [d for d in app.session_dirs() if d.is_dir()]  # a session's folder (not its quota image)
    assert len(kernels) <= 2, kernels
    # The two kernels go idle and the reaper shuts both down: their slots are free again. (Wait for both: with
    # only one freed, the warm pool may boot its kernel into that slot first, and the cap then holds.)
    deadline = time.monotonic() + 90
    while app.log().count("kernel shut down after being idle") < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    reply = third.predict("run: print(6*7)", api_name="/chat")
    assert reply["executions"][0]["result"]["stdout"] == "42\n"


@pytest.mark.browser
def test_per_client_cap_refuses_a_clients_extra_chat_with_a_clear_message_in_the_page(
    start_app, openai_server, monkeypatch, page
):
    app = start_scripted_app(
        start_app,
        openai_server,
        monkeypatch,
        "--max-sessions",
        "8",
        "--max-sessions-per-client",
        "1",
        "--warm-kernels",
        "0",
    )
    holder = client_of(app)
    assert holder.predict("run: print(6*7)", api_name="/chat")["executions"][0]["result"]["stdout"] == "42\n"
    with pytest.raises(Exception, match="You already have 1 chat with a kernel"):
        client_of(app).predict("run: print(1)", api_name="/chat")

    # The browser (same address, so the same client) is told so in the chat itself.
    page.goto(app.url)
    page.locator("#prompt textarea").fill("run: print(1)")
    page.locator("#send-stop").click()
    chat = page.locator("#chatbot")
    chat.get_by_text("You already have 1 chat with a kernel", exact=False).wait_for(timeout=60_000)
    screenshot(page, "caps-per-client-refused")
    assert "Traceback" not in chat.inner_text() and FINAL not in chat.inner_text()
    assert page.external_requests == []
