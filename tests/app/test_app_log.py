"""What `python -m app` writes to its log: the sandbox it chose, one line per execution and per answered
message, no per-request HTTP lines or progress bars, and no traceback for a user-level mistake (Retry or Export on an empty
chat, which answer with a toast instead of an error).

Read from the log file of a real app start (tests/app/conftest.py's start_app, tiny model, local sandbox).
"""

from __future__ import annotations

import re

import pytest

from tests.app.gradio_calls import call_by_index, handler_index, logged_in

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.local_sandbox]


def test_log_has_one_line_per_message_and_execution_and_no_noise(start_app):
    from gradio_client import Client

    app = start_app()
    reply = Client(app.url, verbose=False).predict("print", api_name="/chat")
    assert reply["reason"] == "end_of_turn"

    http = logged_in(app.url)
    for button in ("retry", "export-ipynb"):  # on a chat with nothing in it yet
        index, trigger = handler_index(http, button)
        done = call_by_index(http, index, trigger, [0.0, 1.0, 512, 3, "auto"] if button == "retry" else [])
        assert done.get("success") is not False, done  # answered with a toast, not an error

    app.stop()
    log = app.log()
    assert len(re.findall(r"sandbox: local \(--sandbox local\)", log)) == 1, log
    assert len(re.findall(r"execution ok in \d+\.\d\d s", log)) == 1, log
    assert len(re.findall(r"message answered \(end_of_turn\) in [\d.]+ s: 2 rounds, 1 execution\b", log)) == 1
    assert "Traceback" not in log, log
    assert not re.search(r"HTTP Request:|\"(GET|POST) /", log), log  # no per-request lines by default
    assert "Loading weights" not in log, log  # no progress bars either
