"""Few-shot dialogues that teach the small stand-in model AutoCoder's format, and the loop wrapper using them.

The stand-in (Gemma 3 270M, a base model; see llm.standin) never learnt the execution tokens. A base model
copies the shape of the text before it, so every stand-in generation sees short example exchanges in
AutoCoder's own format first: a block wrapped in RUN_START```python ... ```RUN_STOP that computes the answer
and prints it, the execution's result as the loop renders it, then a one-sentence answer. The examples are
dialogue messages like the user's own (user, assistant, execution turns), so the chat template renders
them exactly as it renders the live conversation, and the result text comes from protocol.render_result.

The reply to each user message is seeded with REPLY_PREFIX (RUN_START and the opening fence), prefilled
rather than generated: left to choose, a 270M model often answers from memory (wrongly) instead of writing
code; started inside a block, it writes code. Later rounds of the same question (after an execution) are
not seeded, so the model reads the result and answers in a sentence, or writes a fix.

`with_examples(run_loop)` puts the examples in front of the dialogue (after its system message), seeds the
first reply, and takes the examples out of the dialogue the loop hands back, so the chat, its exports and
its history never show them.

The examples deliberately are not the tasks of benchmarks/chat_tasks.py with other data: each uses another
operation (gcd rather than factorial, replace rather than reverse, a column's minimum rather than its mean,
plotted points rather than a sine wave; tests/app/test_standin_prompt.py checks they share neither a prompt
nor an expected answer with a task). They teach the format and common idioms, not the answers. What this
module does not do: load the model (llm.select) or choose the execution mode (app.server).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from interpreter.loop import Done
from interpreter.protocol import RUN_START, RUN_STOP, render_result
from interpreter.results import ExecutionResult, RunRecord

# The system message replaces the template's plain preamble (and its answer-without-code examples).
STANDIN_SYSTEM = (
    "The following are conversations between a user and an assistant. The assistant answers every task "
    "with a short Python program that computes the answer and prints it. After the program has run, the "
    "assistant states the printed result in one sentence."
)

# What every reply to a user message starts with (prefilled; see the module docstring): the opening of a
# block, then the question as a comment (`reply_prefix`), which a small model then follows closely.
REPLY_PREFIX = f"{RUN_START}```python\n"
QUESTION_COMMENT = True


def reply_prefix(question: str) -> str:
    """What the reply to `question` starts with: REPLY_PREFIX and the question's first line as a comment."""
    if not QUESTION_COMMENT:
        return REPLY_PREFIX
    line = next((part.strip() for part in question.splitlines() if part.strip()), "")
    return f"{REPLY_PREFIX}# {line[:200]}\n" if line else REPLY_PREFIX


# (question, code, what the code printed, one-sentence answer): short programs that define the question's
# data, compute the answer and print it, one common idiom each (a math import, a comprehension, a loop, a
# function, string methods, pandas, matplotlib).
_EXAMPLES: tuple[tuple[str, str, str, str], ...] = (
    (
        "Plot the points (1, 3), (2, 5) and (3, 4) as a line and save it as points.png.",
        "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [3, 5, 4])\nplt.savefig('points.png')\n"
        "print('saved points.png')",
        "saved points.png",
        "The plot is saved as points.png.",
    ),
    (
        "Draw a pie chart of the values 3, 5 and 2 and save it as pie.png.",
        "import matplotlib.pyplot as plt\nplt.pie([3, 5, 2])\nplt.savefig('pie.png')\nprint('saved pie.png')",
        "saved pie.png",
        "The chart is saved as pie.png.",
    ),
    (
        "The file scores.csv has columns student and score. Print the lowest score.",
        "import pandas as pd\ndf = pd.read_csv('scores.csv')\nprint(df['score'].min())",
        "41",
        "The lowest score is 41.",
    ),
    (
        "The file cities.csv has columns city and population. How many rows does it have?",
        "import pandas as pd\ndf = pd.read_csv('cities.csv')\nprint(len(df))",
        "7",
        "The file has 7 rows.",
    ),
    (
        "Replace every 'a' in the string 'banana' with 'o'.",
        "text = 'banana'\nprint(text.replace('a', 'o'))",
        "bonono",
        "The result is bonono.",
    ),
    (
        "Split the string 'red,green,blue' at the commas.",
        "text = 'red,green,blue'\nprint(text.split(','))",
        "['red', 'green', 'blue']",
        "The parts are ['red', 'green', 'blue'].",
    ),
    (
        "Add 100 to every number in the list [3, 1, 4].",
        "numbers = [3, 1, 4]\nprint([n + 100 for n in numbers])",
        "[103, 101, 104]",
        "The result is [103, 101, 104].",
    ),
    (
        "Keep only the even numbers of the list [5, 8, 2, 7].",
        "numbers = [5, 8, 2, 7]\nprint([n for n in numbers if n % 2 == 0])",
        "[8, 2]",
        "The even numbers are [8, 2].",
    ),
    (
        "Start at 3 and keep doubling while the number is below 100. Print the final number.",
        "n = 3\nwhile n < 100:\n    n = n * 2\nprint(n)",
        "192",
        "The final number is 192.",
    ),
    (
        "Write a function that returns the cube of a number, and print the cube of 4.",
        "def cube(x):\n    return x ** 3\n\nprint(cube(4))",
        "64",
        "The cube of 4 is 64.",
    ),
    (
        "What is the greatest common divisor of 90 and 24?",
        "import math\nprint(math.gcd(90, 24))",
        "6",
        "The greatest common divisor of 90 and 24 is 6.",
    ),
    (
        "What is 1000 divided by 8, minus 3?",
        "print(1000 / 8 - 3)",
        "122.0",
        "1000 divided by 8, minus 3, is 122.0.",
    ),
)
# How many examples a question gets: the ones whose words it shares most (see `choose_examples`).
EXAMPLES_SHOWN = 4
_COMMON_WORDS = frozenset(
    ("a", "an", "and", "are", "as", "at", "by", "do", "does", "every", "file", "for", "from", "has", "have")
    + ("how", "in", "is", "it", "its", "many", "of", "on", "or", "print", "the", "this", "to", "what", "with")
)


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in _COMMON_WORDS}


def choose_examples(question: str, count: int = EXAMPLES_SHOWN) -> list[tuple[str, str, str, str]]:
    """The `count` examples sharing most words with `question`, the closest last (a small model copies the
    nearest text); ties go to the later example (the more general ones are last). A plot question gets
    plots, a CSV question pandas, a question like no example the plain computations."""
    asked = _words(question)
    ranked = sorted(range(len(_EXAMPLES)), key=lambda i: (-len(asked & _words(_EXAMPLES[i][0])), -i))
    return [_EXAMPLES[i] for i in reversed(ranked[:count])]


def example_messages(question: str | None = None) -> list[dict]:
    """The few-shot exchanges as dialogue messages (user, assistant, execution, assistant) in order: those
    chosen for `question`, or all of them."""
    messages: list[dict] = []
    for asked, code, printed, answer in _EXAMPLES if question is None else choose_examples(question):
        code = reply_prefix(asked)[len(REPLY_PREFIX) :] + code  # the question's comment, when there is one
        result = ExecutionResult(status="ok", stdout=printed + "\n")
        runs = [RunRecord("python", code, result)]
        messages += [
            {"role": "user", "content": asked},
            {"role": "assistant", "content": f"{REPLY_PREFIX}{code}\n```{RUN_STOP}"},
            {"role": "execution", "content": render_result(runs), "runs": [run.to_json() for run in runs]},
            {"role": "assistant", "content": answer},
        ]
    return messages


class FirstReplySeeded:
    """The backend for one loop run: its first reply starts with `prefix` (its `reply_prefix` option), the
    later ones (after executions) are the model's own. Everything else is the backend's."""

    def __init__(self, backend, prefix: str):
        self._backend = backend
        self._prefix = prefix

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def stream(self, messages, params, cancel=None, stats=None):
        prefix, self._prefix = self._prefix, ""
        if not prefix:
            return self._backend.stream(messages, params, cancel, stats)
        return self._backend.stream(messages, params, cancel, stats, reply_prefix=prefix)


def with_examples(run_loop: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """`run_loop(backend, dialogue, *rest)` with the examples (and STANDIN_SYSTEM, unless the dialogue has its own
    system message) in front of the dialogue, the reply to a user message seeded with REPLY_PREFIX; the Done
    event's messages are the caller's dialogue again."""

    def run(backend, dialogue: list[dict], *args, **kwargs) -> Iterator:
        head = 1 if dialogue and dialogue[0]["role"] == "system" else 0
        system = dialogue[:head] or [{"role": "system", "content": STANDIN_SYSTEM}]
        # Examples for the conversation's first question, so they stay put (and cached) as it goes on.
        first = next((m["content"] for m in dialogue if m["role"] == "user"), "")
        prefix = [*system, *example_messages(first)]
        if dialogue and dialogue[-1]["role"] == "user":
            backend = FirstReplySeeded(backend, reply_prefix(dialogue[-1]["content"]))
        for event in run_loop(backend, [*prefix, *dialogue[head:]], *args, **kwargs):
            if isinstance(event, Done):
                event = Done([*dialogue[:head], *event.messages[len(prefix) :]], event.reason)
            yield event

    return run
