"""A scripted 'model' for the OpenAI-compatible test server that answers benchmark problems correctly.

`canonical_solver(problems)` returns a `reply_for(body)` for `ScriptedOpenAIServer`: it finds the problem
from the first user message (the evaluation's instruction) and answers with the canonical solution; when
the dialogue has no execution yet and `run_first` is set, it first asks to run the solution (in the
execution tokens), so the interpreter loop has something to execute. Deterministic, like greedy decoding.
"""

from __future__ import annotations

from evaluation.generation import user_prompt
from interpreter.protocol import RUN_START, RUN_STOP


def canonical_solver(problems, *, run_first: bool = False):
    solutions = {user_prompt(p): p.canonical_solution for p in problems}

    def reply_for(body: dict) -> list[str]:
        messages = body["messages"]
        solution = solutions[messages[0]["content"]]
        if run_first and len(messages) == 1:
            code = f"{solution}\nprint('checked')"
            return ["Let me check it first.\n", f"{RUN_START}```python\n{code}\n```{RUN_STOP}"]
        return ["Here it is:\n", f"```python\n{solution}\n```"]

    return reply_for
