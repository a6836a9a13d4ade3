"""The stand-in's few-shot dialogues (app.standin_prompt) through the real loop, and the log wrapper.

The backend here is a recorder that answers a fixed text (no model): what is checked is what the model is
shown, what the chat keeps, and what the app logs, not the model's skill (benchmarks/chat_tasks.py).
"""

from __future__ import annotations

import logging

from app.activity_log import logged
from app.standin_prompt import STANDIN_SYSTEM, example_messages, with_examples
from interpreter.loop import Done, LoopConfig, run_loop
from interpreter.protocol import RUN_START, RUN_STOP, detect_blocks
from llm.base import GenerationParams


class Recorder:
    name = "recorder"

    def __init__(self, reply: str):
        self.reply = reply
        self.seen: list[list[dict]] = []

    def stream(self, messages, params, cancel=None, stats=None):
        self.seen.append(messages)
        yield self.reply


def _run(loop, dialogue, backend):
    config = LoopConfig(generation=GenerationParams(), execution_mode="always")
    return list(loop(backend, dialogue, None, config))


def test_examples_are_autocoder_dialogues_with_runnable_blocks():
    messages = example_messages()
    assert [m["role"] for m in messages[:4]] == ["user", "assistant", "execution", "assistant"]
    for call, result in zip(messages[1::4], messages[2::4], strict=True):
        (block,) = detect_blocks(call["content"])  # one block in the execution tokens, runnable
        assert block.wrapped and not block.problem and call["content"].endswith(RUN_STOP)
        assert RUN_START in call["content"] and result["runs"][0]["code"] == block.code
        assert result["content"].startswith("result.stdout:")  # as the loop renders a real run


def test_model_sees_the_examples_and_the_chat_keeps_only_its_own_dialogue():
    backend = Recorder("The answer is 4.")
    dialogue = [{"role": "user", "content": "What is 2 + 2?"}]
    events = _run(with_examples(run_loop), dialogue, backend)
    (seen,) = backend.seen
    assert seen[0] == {"role": "system", "content": STANDIN_SYSTEM}
    assert len(seen) == 1 + len(example_messages()) + 1 and seen[-1] == dialogue[0]
    assert any(RUN_START in m["content"] for m in seen)
    done = events[-1]
    assert isinstance(done, Done) and done.reason == "end_of_turn"
    assert done.messages == [*dialogue, {"role": "assistant", "content": "The answer is 4."}]

    # A chat's own system prompt replaces the stand-in's and stays first in what the chat keeps.
    backend = Recorder("Hi.")
    mine = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"}]
    done = _run(with_examples(run_loop), mine, backend)[-1]
    assert backend.seen[0][0] == mine[0] and STANDIN_SYSTEM not in str(backend.seen[0])
    assert done.messages[:2] == mine


def test_activity_log_says_one_line_per_message(caplog):
    caplog.set_level(logging.INFO, logger="app")
    events = _run(logged(run_loop), [{"role": "user", "content": "Hi"}], Recorder("Hello."))
    assert isinstance(events[-1], Done)
    lines = [r.getMessage() for r in caplog.records if r.name == "app"]
    assert (
        len(lines) == 1
        and "message answered (end_of_turn)" in lines[0]
        and "1 round, 0 executions" in lines[0]
    )
