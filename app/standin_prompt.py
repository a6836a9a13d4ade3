"""Few-shot dialogues that teach the small stand-in model AutoCoder's format, and the loop wrapper using them.

The stand-in (Gemma 3 270M, a base model; see llm.standin) never learnt the execution tokens. A base model
copies the shape of the text before it, so every stand-in generation sees short example exchanges in
AutoCoder's own format first: a block wrapped in RUN_START```python ... ```RUN_STOP that computes the answer
and prints it, the execution's result as the loop renders it, then a one-sentence answer. The examples are
dialogue messages like the user's own (user, assistant, execution turns), so the chat template renders
them exactly as it renders the live conversation, and the result text comes from protocol.render_result.

The reply to each user message is seeded (`reply_prefix`), prefilled rather than generated: left to choose,
a 270M model often answers from memory (wrongly) instead of writing code; started inside a block, it writes
code. The seed is REPLY_PREFIX (RUN_START and the opening fence), the question as a comment, then the data
the question gives, bound to names (`data_lines`, read off the question's text alone: its list as
`numbers`, its quoted string as `text`, a CSV file it names read into `df`, a plot's imports and the image
file's name as `path`). The model then writes only the computation on those names; left to write the data
itself it used names it never defined ("print(len(sentence))", "plt.plot(x, sine(x))") and renamed
output files. Later rounds of the same question (after an execution) are not seeded, so the model reads
the result and answers in a sentence, or writes a fix.

Which examples a question gets matters most: the model copies the nearest one's operation (a list question
shown a filter example filtered). So each question gets the examples on its kind of data (`question_kind`:
plot, CSV, list, quoted text, plain numbers), the ones sharing most words with it last, and the examples
use one builtin or method each (len, sum, set, slicing, replace, split, title, math.sqrt, math.gcd,
np.linspace with np.exp, plt.hist) rather than comprehensions a model copies whole. Measured with
`python -m benchmarks.chat_tasks --sandbox local` (2-core CPU): 7/20 before this design, 12/20 after,
at 4 examples shown (3 gave fewer, 5 no more and slower). Greedy decoding of a 270M model is brittle: moving
one example in the pool flips other tasks, so measure the whole suite after any change here.

`with_examples(run_loop)` puts the examples in front of the dialogue (after its system message), seeds the
first reply, and takes the examples out of the dialogue the loop hands back, so the chat, its exports and
its history never show them.

The examples deliberately are not the tasks of benchmarks/chat_tasks.py with other data: each uses another
operation (gcd rather than factorial, replace rather than reverse, a column's minimum rather than its mean,
an exponential curve rather than a sine wave, the length of a list rather than its largest value;
tests/app/test_standin_prompt.py checks they share neither a prompt nor an expected answer with a task, and
that each example's code prints what the example says it printed). They teach the format and common
idioms, not the answers. What this module does not do: load the model (llm.select) or choose the
execution mode (app.server).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator

from interpreter.loop import Done
from interpreter.protocol import RUN_START, RUN_STOP, render_result
from interpreter.results import ExecutionResult, RunRecord

# The system message replaces the template's plain preamble (and its answer-without-code examples).
STANDIN_SYSTEM = (
    "The following are conversations between a user and an assistant. The assistant answers every task "
    "with a short Python program that computes the answer and prints it. After the program has run, the "
    "assistant states the printed result in one sentence. Its programs use Python's built-in functions "
    "(len, sum, min, max, sorted, set), string methods, slicing and the math module."
)

# What every reply to a user message starts with (prefilled; see the module docstring): the opening of a
# block, then the question as a comment and its data (`reply_prefix`), which a small model follows closely.
REPLY_PREFIX = f"{RUN_START}```python\n"


def reply_prefix(question: str) -> str:
    """What the reply to `question` starts with: REPLY_PREFIX, the question's first line as a comment, and
    the literal data the question gives bound to names (`data_lines`; the examples' code relies on them)."""
    line = next((part.strip() for part in question.splitlines() if part.strip()), "")
    comment = f"# {line[:200]}\n" if line else ""
    return f"{REPLY_PREFIX}{comment}{data_lines(question)}"


# A list literal ("[5, 3, 9]", "['a', 'b']") and a quoted string ('hello world', not the apostrophe of "don't").
_LIST_LITERAL = re.compile(r"\[[^\[\]\n]{1,300}\]")
_QUOTED = re.compile(r"(?<![\w'])'([^'\n]{1,300})'(?![\w'])")
_CSV_FILE = re.compile(r"[\w.-]{1,100}\.csv\b")
_IMAGE_FILE = re.compile(r"[\w.-]{1,100}\.(?:png|jpg|jpeg|svg|pdf)\b", re.IGNORECASE)
_PLOT_WORDS = re.compile(r"\b(?:plot|chart|graph|draw|histogram)\b|\.png\b", re.IGNORECASE)


def _list_literal(question: str) -> list | None:
    """The first list literal in `question` that parses as a non-empty list, or None."""
    for match in _LIST_LITERAL.finditer(question):
        try:
            value = ast.literal_eval(match.group())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if isinstance(value, list) and value:
            return value
    return None


def data_lines(question: str) -> str:
    """Assignments of the literal data in `question`, one per line: a CSV file it names read as `df`, its
    list as `numbers` (or `items` when not all numbers), its longest quoted string as `text`. A small model
    that sees the data bound to a name computes with the name; left to itself it often uses an undefined
    one ("print(len(sentence))")."""
    lines = []
    if _PLOT_WORDS.search(question):
        lines.append("import matplotlib.pyplot as plt\nimport numpy as np\n")
        if image := _IMAGE_FILE.search(question):
            lines.append(f"path = {image.group()!r}\n")
    if csv := _CSV_FILE.search(question):
        lines.append(f"import pandas as pd\ndf = pd.read_csv({csv.group()!r})\n")
    value = _list_literal(question)
    if value is not None:
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        lines.append(f"{'numbers' if numeric else 'items'} = {value!r}\n")
    quoted = [m.group(1) for m in _QUOTED.finditer(_LIST_LITERAL.sub("", question))]
    if quoted:
        lines.append(f"text = {max(quoted, key=len)!r}\n")
    return "".join(lines)


# (question, code, what the code printed, one-sentence answer): short programs that compute the answer and
# print it, one common idiom each (a math import, a comprehension, a loop, a function, string methods,
# pandas, matplotlib). The code starts after the lines `data_lines` writes for the question (its list as
# `numbers`, its quoted string as `text`), as the model's own code does.
_EXAMPLES: tuple[tuple[str, str, str, str], ...] = (
    (
        "Plot the points (1, 3), (2, 5) and (3, 4) as a line and save it as trend.png.",
        "x = [1, 2, 3]\ny = [3, 5, 4]\nplt.plot(x, y)\nplt.savefig(path)\nprint('saved', path)",
        "saved trend.png",
        "The plot is saved as trend.png.",
    ),
    (
        "Draw a pie chart of the values 3, 5 and 2 and save it as shares.png.",
        "values = [3, 5, 2]\nplt.pie(values)\nplt.savefig(path)\nprint('saved', path)",
        "saved shares.png",
        "The chart is saved as shares.png.",
    ),
    (
        "Plot the exponential decay exp(-x) for x from 0 to 5 with matplotlib and save it as figure1.png.",
        "x = np.linspace(0, 5, 100)\ny = np.exp(-x)\nplt.plot(x, y)\nplt.savefig(path)\nprint('saved', path)",
        "saved figure1.png",
        "The plot is saved as figure1.png.",
    ),
    (
        "Draw a histogram of the values [2, 3, 3, 5, 5, 5] and save it as spread.png.",
        "plt.hist(numbers)\nplt.savefig(path)\nprint('saved', path)",
        "saved spread.png",
        "The histogram is saved as spread.png.",
    ),
    (
        "The file cities.csv has columns city and population. How many rows does it have?",
        "print(len(df))",
        "7",
        "The file has 7 rows.",
    ),
    (
        "The file scores.csv has columns student and score. Print the lowest value of the score column.",
        "print(df['score'].min())",
        "41",
        "The lowest score is 41.",
    ),
    (
        "The file trips.csv has columns city and km. Print the largest value of the km column.",
        "print(df['km'].max())",
        "812",
        "The longest trip is 812 km.",
    ),
    (
        "Replace every 'a' in the string 'banana' with 'o'.",
        "print(text.replace('a', 'o'))",
        "bonono",
        "The result is bonono.",
    ),
    (
        "Split the string 'red,green,blue' at the commas.",
        "print(text.split(','))",
        "['red', 'green', 'blue']",
        "The parts are ['red', 'green', 'blue'].",
    ),
    (
        "Print the first three letters of the word 'python'.",
        "print(text[:3])",
        "pyt",
        "The first three letters are pyt.",
    ),
    (
        "Capitalize every word of the title 'good morning'.",
        "print(text.title())",
        "Good Morning",
        "The result is Good Morning.",
    ),
    (
        "How many numbers are in the list [3, 1, 4, 1, 5, 9]?",
        "print(len(numbers))",
        "6",
        "The list has 6 numbers.",
    ),
    (
        "Print the list [7, 2, 3] without its first element.",
        "print(numbers[1:])",
        "[2, 3]",
        "Without its first element the list is [2, 3].",
    ),
    (
        "How many different values are in the list [4, 4, 7, 1, 7]?",
        "print(len(set(numbers)))",
        "3",
        "There are 3 different values.",
    ),
    (
        "Add up the squares of the numbers in [1, 2, 3].",
        "print(sum(n ** 2 for n in numbers))",
        "14",
        "The squares add up to 14.",
    ),
    (
        "Make a list of the cubes of 1 to 4.",
        "print([n ** 3 for n in range(1, 5)])",
        "[1, 8, 27, 64]",
        "The cubes are [1, 8, 27, 64].",
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
        "What is 1000 divided by 8, minus 3?",
        "print(1000 / 8 - 3)",
        "122.0",
        "1000 divided by 8, minus 3, is 122.0.",
    ),
    (
        "How long is the hypotenuse of a right triangle with legs 5 and 12?",
        "import math\nprint(math.sqrt(5 ** 2 + 12 ** 2))",
        "13.0",
        "The hypotenuse is 13.0 long.",
    ),
    (
        "A price of 60 rises by 25 percent. What is the new price?",
        "print(60 + 60 * 25 / 100)",
        "75.0",
        "The new price is 75.0.",
    ),
    (
        "What is the greatest common divisor of 90 and 24?",
        "import math\nprint(math.gcd(90, 24))",
        "6",
        "The greatest common divisor of 90 and 24 is 6.",
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


def question_kind(question: str) -> str:
    """What a question works on, by the data it gives: "csv" (names a CSV file), "plot" (asks for a chart),
    "list" (gives a list), "text" (gives a quoted string), else "number"."""
    if _CSV_FILE.search(question):
        return "csv"
    if _PLOT_WORDS.search(question):
        return "plot"
    if _list_literal(question) is not None:
        return "list"
    return "text" if _QUOTED.search(question) else "number"


def choose_examples(question: str, count: int = EXAMPLES_SHOWN) -> list[tuple[str, str, str, str]]:
    """The `count` examples nearest `question`, the closest last (a small model copies the nearest text):
    those on the same kind of data first (`question_kind`: a plot question gets plots, a CSV question
    pandas), among them those sharing most words with it; ties go to the later example (the more general
    ones are last, so a question like no example gets the plain computations)."""
    asked, kind = _words(question), question_kind(question)

    def nearness(i: int) -> tuple:
        example = _EXAMPLES[i][0]
        return (question_kind(example) == kind, len(asked & _words(example)), i)

    ranked = sorted(range(len(_EXAMPLES)), key=nearness, reverse=True)
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
