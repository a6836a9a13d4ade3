"""Few-shot dialogues that teach the small stand-in model AutoCoder's format, and the loop wrapper using them.

The stand-in (Gemma 3 270M, a base model; see llm.standin) never learnt the execution tokens. A base model
copies the shape of the text before it, so every stand-in generation sees six short example exchanges in
AutoCoder's own format first: one sentence of explanation, a block wrapped in RUN_START```python ...
```RUN_STOP, the execution's result as the loop renders it, then a one-line answer. The examples are
dialogue messages like the user's own (user, assistant, execution turns), so the chat template renders
them exactly as it renders the live conversation, and the result text comes from protocol.render_result.

`with_examples(run_loop)` puts them in front of the dialogue (after its system message) and takes them out
of the dialogue the loop hands back, so the chat, its exports and its history never show them.

The examples deliberately differ from the tasks in benchmarks/chat_tasks.py (same kinds of task, other
numbers, strings and files): they teach the format, not the answers. What this module does not do: load
the model (llm.select) or choose the execution mode (app.server).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from interpreter.loop import Done
from interpreter.protocol import RUN_START, RUN_STOP, render_result
from interpreter.results import ExecutionResult, RunRecord

# The system message replaces the template's plain preamble (and its answer-without-code examples).
STANDIN_SYSTEM = (
    "The following are conversations between a user and an assistant that solves every task by writing "
    "Python code, which is run, and then states the answer in one line."
)

# (question, one sentence, code, what the code printed, one-line answer). The plain arithmetic one comes
# last on purpose: a 270M base model copies the nearest example when unsure, and print(expression) is the
# pattern most tasks need.
_EXAMPLES: tuple[tuple[str, str, str, str, str], ...] = (
    (
        "Plot a cosine curve and save it as cosine.png.",
        "I will plot a cosine curve with matplotlib and save it as cosine.png.",
        "import numpy as np\nimport matplotlib.pyplot as plt\nx = np.linspace(0, 10, 100)\n"
        "plt.plot(x, np.cos(x))\nplt.savefig('cosine.png')\nprint('saved cosine.png')",
        "saved cosine.png",
        "The plot is saved as cosine.png.",
    ),
    (
        "The file data.csv has columns name and age. Print the mean of the age column.",
        "I will read data.csv with pandas and print the mean of the age column.",
        "import pandas as pd\ndf = pd.read_csv('data.csv')\nprint(df['age'].mean())",
        "31.5",
        "The mean age is 31.5.",
    ),
    (
        "Sort the list [8, 2, 6, 4] in descending order.",
        "I will sort the list [8, 2, 6, 4] with sorted and reverse=True.",
        "numbers = [8, 2, 6, 4]\nprint(sorted(numbers, reverse=True))",
        "[8, 6, 4, 2]",
        "The sorted list is [8, 6, 4, 2].",
    ),
    (
        "Reverse the string 'python'.",
        "I will reverse the string 'python' with the slice [::-1].",
        "text = 'python'\nprint(text[::-1])",
        "nohtyp",
        "The reversed string is nohtyp.",
    ),
    (
        "What is the length of the string 'banana'?",
        "I will print the length of the string 'banana' with len.",
        "text = 'banana'\nprint(len(text))",
        "6",
        "The length is 6.",
    ),
    (
        "Compute 12 * 34 + 5.",
        "I will compute 12 * 34 + 5 with Python.",
        "print(12 * 34 + 5)",
        "413",
        "12 * 34 + 5 is 413.",
    ),
)


def example_messages() -> list[dict]:
    """The few-shot exchanges as dialogue messages (user, assistant, execution, assistant) in order."""
    messages: list[dict] = []
    for question, explanation, code, printed, answer in _EXAMPLES:
        result = ExecutionResult(status="ok", stdout=printed + "\n")
        runs = [RunRecord("python", code, result)]
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "content": f"{explanation}\n{RUN_START}```python\n{code}\n```{RUN_STOP}"},
            {"role": "execution", "content": render_result(runs), "runs": [run.to_json() for run in runs]},
            {"role": "assistant", "content": answer},
        ]
    return messages


def with_examples(run_loop: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """`run_loop(backend, dialogue, *rest)` with the examples (and STANDIN_SYSTEM, unless the dialogue has its own
    system message) in front of the dialogue; the Done event's messages are the caller's dialogue again."""
    examples = example_messages()

    def run(backend, dialogue: list[dict], *args, **kwargs) -> Iterator:
        head = 1 if dialogue and dialogue[0]["role"] == "system" else 0
        system = dialogue[:head] or [{"role": "system", "content": STANDIN_SYSTEM}]
        prefix = [*system, *examples]
        for event in run_loop(backend, [*prefix, *dialogue[head:]], *args, **kwargs):
            if isinstance(event, Done):
                event = Done([*dialogue[:head], *event.messages[len(prefix) :]], event.reason)
            yield event

    return run
