"""A verified item as an evaluation problem, and pass@1 with its confidence interval.

The item's problem is its first user turn (the questioner's message 1). Its tests are the unit tests of the
programmer's final, verified attempt as `data_pipeline.verify` cut them out of the program (meta.tests[-1]),
preceded by the program's imports; they run after the answer's code in one namespace
(`evaluation.ProgramTests`), so an answer passes when it defines what the tests call and they raise nothing.
There is no entry point: every top-level definition of the answer is kept (evaluation.sanitize with None),
since an item's tests may call several functions or classes.

What it deliberately does not do: ask models (evaluation.generation) or run tests (evaluation.score_problems).
"""

from __future__ import annotations

import ast
import math

from data_pipeline.cleaning import final_solution
from evaluation.problems import Problem, ProgramTests

Z_95 = 1.959963984540054  # two-sided 95 %


class ItemProblemError(ValueError):
    """A verified item without a problem or tests; one line naming the item."""


def _imports(program: str) -> str:
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return ""
    return "\n".join(
        ast.get_source_segment(program, node) or ""
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
    )


def item_problem(record: dict) -> Problem:
    """The evaluation problem of one verified item record (interpreter.dialogue JSON)."""
    messages, meta = record["messages"], record.get("meta") or {}
    problem = next((m["content"] for m in messages if m["role"] == "user"), "").strip()
    attempts = meta.get("tests") or []
    tests = attempts[-1].get("tests", "") if attempts and isinstance(attempts[-1], dict) else ""
    if not problem or not tests.strip():
        raise ItemProblemError(f"item {record.get('id')}: no problem or no tests to score with")
    imports = _imports(final_solution(messages))
    code = f"{imports}\n\n{tests}" if imports else tests
    return Problem(task_id=record["id"], prompt=problem, entry_point=None, tests=[ProgramTests(code)])


def wilson_interval(passed: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a pass rate (sound at 0 and 1, unlike the normal approximation)."""
    if total <= 0:
        return (0.0, 1.0)
    p = passed / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))
