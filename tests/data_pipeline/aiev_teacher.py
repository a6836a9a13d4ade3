"""A scripted teacher for the aiev tests and benchmark, over the tests' real OpenAI-compatible HTTP server.

Every problem it proposes asks for `answer()` returning 42 (the seed is quoted, so problems differ and survive
de-duplication), and as programmer it always writes the same verified answer (`REPLY`), so a tiny student
trained for a few steps on its items learns to write that answer for any prompt. Asked one of its
problems on its own (how data_pipeline.aiev scores a test item), it answers correctly for seeds marked `level=easy`
and with an off-by-one for `level=hard`: the teacher is weaker than the student on the later rounds' test
splits, so the switch to self-learning happens deterministically.

What it deliberately is not: a model. Replies depend on the request alone, so two runs get the same ones.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from interpreter.protocol import RUN_START, RUN_STOP
from tests.fixtures.openai_server import ScriptedOpenAIServer

MODEL = "aiev-teacher"
API_KEY = "aiev-test-key"
CODE = "def answer():\n    return 42\n\nassert answer() == 42"
REPLY = f"Here.\n{RUN_START}```python\n{CODE}\n```{RUN_STOP}"
FINAL = "Done."  # what the tiny model already says after any execution result
RESULT_PREFIXES = ("result.stdout", "pip_result", "<API_OUTPUT_START>")


def reply(body: dict) -> list[str]:
    messages = body.get("messages") or []
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    last = messages[-1]["content"] if messages else ""
    if "You are the programmer" in system:
        text = FINAL if last.startswith(RESULT_PREFIXES) else REPLY
    elif "Draw inspiration from the snippet" in last:
        snippet = last.split("```", 2)[1].strip()
        text = f"Inspired by this snippet:\n{snippet}\n\nWrite a function `answer()` that returns 42."
    elif "Explain in a few sentences what went wrong" in last:
        text = "The function must return exactly 42."
    elif len(messages) == 1 and last.startswith("Inspired by this snippet"):  # an item's problem, scored
        value = 41 if "level=hard" in last else 42  # weaker on the later rounds' problems
        text = f"```python\ndef answer():\n    return {value}\n```"
    else:
        text = "I do not know this request."
    size = max(1, len(text) // 4)
    return [text[i : i + size] for i in range(0, len(text), size)]


def start_aiev_teacher() -> ScriptedOpenAIServer:
    server = ScriptedOpenAIServer(models=(MODEL,), api_key=API_KEY)
    server.reply_for = reply
    return server.start()


def write_seeds(path: Path, easy: int, hard: int) -> Path:
    """`easy` then `hard` seeds of 12 random words each (seeded), so no two are near-duplicates."""
    rng = random.Random(12)
    words = [f"w{rng.randrange(16**6):06x}" for _ in range(400)]
    with open(path, "w") as f:
        for i in range(easy + hard):
            level = "easy" if i < easy else "hard"
            text = f"# level={level} seed {i}\n" + " ".join(rng.choice(words) for _ in range(12))
            f.write(json.dumps({"seed": text}) + "\n")
    return path
