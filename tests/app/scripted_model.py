"""`python -m app` on a scripted model: the OpenAI-compatible test server says what the test tells it to.

A user message `run: CODE` makes the model write CODE as an execution block (with the real execution tokens
from interpreter.protocol); `say: TEXT` makes it answer TEXT. After an execution result it says "done.".
So a test can put any model text or program on the page, the way a prompt-injected model would.
"""

from __future__ import annotations

from interpreter.protocol import RUN_START, RUN_STOP

FINAL = "done."


def scripted_reply(body: dict) -> list[str]:
    messages = body.get("messages") or []
    last = messages[-1]["content"] if messages else ""
    if isinstance(last, list):  # content parts
        last = "".join(part.get("text", "") for part in last)
    if messages and last.startswith("say: "):
        return [last[len("say: ") :]]
    if messages and last.startswith("run: "):
        code = last[len("run: ") :]
        return ["Running it.\n", f"{RUN_START}```python\n{code}\n```{RUN_STOP}"]
    return [FINAL]


def start_scripted_app(start_app, openai_server, monkeypatch, *flags: str):
    """start_app on the scripted server (its key through the environment, never argv)."""
    openai_server.reply_for = scripted_reply
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    return start_app(
        "--backend",
        "openai",
        "--base-url",
        openai_server.base_url,
        "--model",
        openai_server.models[0],
        "--execution-mode",
        "auto",
        *flags,
        tiny_model=False,
    )
