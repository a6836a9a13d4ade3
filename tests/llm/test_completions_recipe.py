"""The README's quantized-AutoCoder recipe (a GGUF served by llama.cpp or Ollama) against the scripted server.

The scripted OpenAI-compatible server (tests/fixtures/openai_server.py) is made to behave like such a server:
its chat endpoint renders replies without special tokens (`strip_special`), its completions endpoint keeps
them and also writes the end-of-turn token as text. Through the app's own flags, the one loop and a real
local-sandbox kernel: via the chat endpoint the model's code never runs (the symptom the README names); via
`--completions --tokenizer <the model's folder>` it runs and the answer is right, with no end-of-turn text
left in it. The last tests pin the end-of-turn handling of the openai backend over real HTTP.
"""

from __future__ import annotations

import re

import pytest

from interpreter.protocol import RUN_START, RUN_STOP, SPECIAL_TOKENS
from llm.base import GenerationParams, StreamStats
from llm.openai_backend import OpenAIBackend

QUESTION = "What is 7 squared?"
EOT = "<|EOT|>"  # the tiny model's eos (tests/fixtures/tiny_models.py), as AutoCoder's tokenizer has it


def quantized_server_model(body: dict) -> list[str]:
    """A deterministic 'model' behind either endpoint: asks to run code, then answers from its output."""
    completions = "prompt" in body
    seen = body["prompt"] if completions else "\n".join(m["content"] for m in body["messages"])
    if "result.stdout:" not in seen:  # the question
        n = int(re.search(r"(\d+) squared", seen).group(1))
        reply = ["Let me compute it.\n", RUN_START, f"```python\nprint({n} ** 2)\n```", RUN_STOP]
        return reply
    number = re.search(r"\d+", seen.split("result.stdout:")[-1]).group()
    # A completions server writes the end of the turn as text when it renders special tokens.
    return [f"The answer is {number}.", EOT] if completions else [f"The answer is {number}."]


def run_recipe(openai_server, *extra_flags: str) -> list[dict]:
    """`python -m app`'s backend flags as the README gives them, then one question through the loop."""
    from app.cli import parse_args
    from interpreter.loop import Done, LoopConfig, run_loop
    from interpreter.session import Session
    from llm.options import backend_from_args
    from tests.interpreter.conftest import sandbox_or_skip

    args = parse_args(
        [
            "--backend", "openai",
            "--base-url", openai_server.base_url,
            "--model", "tiny-autocoder",
            "--api-key", openai_server.api_key,
            *extra_flags,
        ]
    )  # fmt: skip
    backend = backend_from_args(args)
    session = Session(sandbox_or_skip("local"), timeout_s=20)
    try:
        config = LoopConfig(generation=GenerationParams(), max_rounds=2)
        events = list(run_loop(backend, [{"role": "user", "content": QUESTION}], session, config))
    finally:
        session.close()
        backend.close()
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "end_of_turn", done
    return done.messages


@pytest.mark.local_sandbox
def test_chat_endpoint_loses_the_execution_tokens_and_completions_keeps_them(
    openai_server, tiny_autocoder_path
):
    openai_server.reply_for = quantized_server_model
    openai_server.strip_special = frozenset(SPECIAL_TOKENS)

    # The symptom: the chat endpoint streams the code without its execution tokens, so nothing runs.
    via_chat = run_recipe(openai_server)
    assert openai_server.requests[-1]["path"] == "/v1/chat/completions"
    assert [m["role"] for m in via_chat] == ["user", "assistant"]
    assert "print(7 ** 2)" in via_chat[-1]["content"] and RUN_START not in via_chat[-1]["content"]
    assert "49" not in via_chat[-1]["content"]

    # The fix: the completions endpoint with the prompt rendered by the model's own chat template.
    sent_before = len(openai_server.requests)
    via_completions = run_recipe(openai_server, "--completions", "--tokenizer", str(tiny_autocoder_path))
    requests = openai_server.requests[sent_before:]
    assert [r["path"] for r in requests] == ["/v1/completions", "/v1/completions"]
    assert requests[0]["prompt"] == f"<|user|>{QUESTION}{EOT}<|assistant|>"
    assert [m["role"] for m in via_completions] == ["user", "assistant", "execution", "assistant"]
    assert via_completions[1]["content"].endswith(f"print(7 ** 2)\n```{RUN_STOP}")
    assert "49" in via_completions[2]["content"]  # the kernel really ran it
    assert via_completions[-1] == {"role": "assistant", "content": "The answer is 49."}  # no <|EOT|> left


# -- the end-of-turn text in completions mode, over real HTTP --------------------------------------------


def complete(server, tokenizer_path, reply: list[str], **params) -> tuple[str, StreamStats]:
    """What the backend streams (and its stats) when the server streams `reply`: in completions mode with
    the tokenizer at `tokenizer_path`, or in chat mode when it is None."""
    server.reply = reply
    mode = {"completions": True, "tokenizer": str(tokenizer_path)} if tokenizer_path is not None else {}
    backend = OpenAIBackend(base_url=server.base_url, model="tiny-autocoder", api_key=server.api_key, **mode)
    stats = StreamStats()
    try:
        messages = [{"role": "user", "content": "hi"}]
        text = "".join(backend.stream(messages, GenerationParams(**params), stats=stats))
    finally:
        backend.close()
    return text, stats


@pytest.mark.parametrize(
    "pieces",
    [
        ["The answer", " is 49.", EOT],
        ["The answer is 49.<|E", "OT|>"],  # split across chunks
        ["The answer is 49.<", "|", "EOT", "|>"],
    ],
)
def test_the_end_of_turn_text_at_the_end_of_a_completion_is_dropped(
    openai_server, tiny_autocoder_path, pieces
):
    text, stats = complete(openai_server, tiny_autocoder_path, pieces)
    assert text == "The answer is 49."
    assert stats.stop_reason == "end_of_turn"


def test_the_end_of_turn_text_mid_completion_ends_the_reply_there(openai_server, tiny_autocoder_path):
    # A server whose stop token differs from the template's turn end (a GGUF's eos) writes on after it.
    text, stats = complete(
        openai_server, tiny_autocoder_path, ["Done.", EOT, "<|user|>and then the model", " plays the user"]
    )
    assert text == "Done."
    assert stats.stop_reason == "end_of_turn"


@pytest.mark.parametrize(
    "pieces, expected",
    [
        (["a <|E", "ND|> b"], "a <|END|> b"),  # looked like the start of <|EOT|>, was not
        (["ends with <|EO"], "ends with <|EO"),  # held back, then the reply ended: it was text
        (["x = 1 <", "2"], "x = 1 <2"),
    ],
)
def test_text_that_only_begins_like_the_end_of_turn_is_kept(
    openai_server, tiny_autocoder_path, pieces, expected
):
    text, stats = complete(openai_server, tiny_autocoder_path, pieces)
    assert text == expected
    assert stats.stop_reason == "end_of_turn"  # the server's finish_reason "stop"


def test_a_stop_string_still_ends_the_text_with_nothing_held_back(openai_server, tiny_autocoder_path):
    text, stats = complete(
        openai_server,
        tiny_autocoder_path,
        [f"run it\n{RUN_START}```python\nprint(1 <", f" 2)\n```{RUN_STOP}", "ignored"],
        stop=[RUN_STOP],
    )
    assert text == f"run it\n{RUN_START}```python\nprint(1 < 2)\n```{RUN_STOP}"
    assert stats.stop_reason == "stop"


def test_the_chat_endpoint_leaves_the_text_alone(openai_server):
    # No tokenizer in chat mode: the server ends turns itself, and its text is passed on as it is.
    text, _ = complete(openai_server, None, ["literal ", EOT])
    assert text == f"literal {EOT}"
