"""The tiny model fixture does what other suites rely on, through the real renderer of interpreter.protocol.

The loop and browser tests assume: each scripted prompt yields its execution block exactly, whatever the
system prompt; after any execution result, rendered in either of the protocol's styles, the model says
FINAL and ends its turn; a second prompt in the same chat gets its own script (chats of more than two
exchanges are beyond what a model this small keeps straight).
"""

import itertools

import pytest

from interpreter.kernel import ExecutionError, ExecutionResult
from interpreter.protocol import RUN_STOP, RunRecord, detect_blocks, render_dialogue, render_result
from llm.base import GenerationParams, StreamStats
from llm.select import load_backend
from tests.fixtures.tiny_models import FINAL, SCENARIOS

pytestmark = pytest.mark.model

RESULTS = [
    ExecutionResult(status="ok", stdout="42\n"),
    ExecutionResult(
        status="ok",
        outputs=[
            {
                "output_type": "display_data",
                "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure size 640x480 with 1 Axes>"},
                "metadata": {},
            }
        ],
    ),
    ExecutionResult(
        status="error",
        error=ExecutionError(
            "ZeroDivisionError",
            "division by zero",
            "Traceback (most recent call last):\n  Cell In[1], line 1\n----> 1 print(1/0)\nZeroDivisionError: division by zero",
        ),
    ),
    ExecutionResult(
        status="timeout", message="timed out after 30 s; kernel restarted, state lost", state_lost=True
    ),
    ExecutionResult(status="ok", stdout="".join(f"line {i}\n" for i in range(50))),
]
SYSTEM_PROMPTS = [None, "You are a helpful assistant that runs code."]


@pytest.fixture(scope="module")
def backend(tiny_autocoder_path):
    return load_backend("hf", str(tiny_autocoder_path))


def reply(backend, messages):
    stats = StreamStats()
    text = "".join(
        backend.stream(messages, GenerationParams(stop=[RUN_STOP], max_new_tokens=120), stats=stats)
    )
    return text, stats.stop_reason


@pytest.mark.parametrize("name", [n for n, sc in SCENARIOS.items() if sc.final])
def test_prompt_yields_its_block_under_any_system_prompt(backend, name):
    sc = SCENARIOS[name]
    for system in SYSTEM_PROMPTS:
        messages = render_dialogue([{"role": "user", "content": sc.prompt}], system_prompt=system)
        text, reason = reply(backend, messages)
        assert (text, reason) == (sc.reply, "stop")
        [block] = detect_blocks(text)
        assert (block.language, block.code) == (sc.language, sc.code)


@pytest.mark.parametrize("style", ["demo", "tokens"])
@pytest.mark.parametrize("name", [n for n, sc in SCENARIOS.items() if sc.final])
def test_after_any_result_it_answers_final_and_ends_the_turn(backend, name, style):
    sc = SCENARIOS[name]
    for result, system in itertools.product(RESULTS, SYSTEM_PROMPTS):
        content = render_result([RunRecord(sc.language, sc.code, result)], style=style)
        dialogue = [
            {"role": "user", "content": sc.prompt},
            {"role": "assistant", "content": sc.reply},
            {"role": "execution", "content": content},
        ]
        text, reason = reply(backend, render_dialogue(dialogue, style=style, system_prompt=system))
        assert (text, reason) == (FINAL, "end_of_turn"), content


@pytest.mark.parametrize("style", ["demo", "tokens"])
@pytest.mark.parametrize(
    "pair",
    [("print", "plot"), ("plot", "sleep"), ("sleep", "print"), ("hello", "fail"), ("install", "hello")],
)
def test_a_second_prompt_in_the_same_chat_gets_its_own_script(backend, style, pair):
    # Chats of two exchanges are part of the script; longer ones are not (the app tests clear between).
    dialogue = []
    for name in pair:
        sc = SCENARIOS[name]
        dialogue.append({"role": "user", "content": sc.prompt})
        assert reply(backend, render_dialogue(dialogue, style=style)) == (
            sc.reply,
            "stop" if sc.final else "end_of_turn",
        )
        dialogue.append({"role": "assistant", "content": sc.reply})
        if sc.final:
            result = render_result([RunRecord(sc.language, sc.code, RESULTS[0])], style=style)
            dialogue.append({"role": "execution", "content": result})
            assert reply(backend, render_dialogue(dialogue, style=style)) == (FINAL, "end_of_turn"), name
            dialogue.append({"role": "assistant", "content": FINAL})
