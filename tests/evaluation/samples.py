"""Sample sets with known verdicts, shared by the fidelity and agreement suites.

Each builder returns (samples, expected) where expected maps task_id to the verdict ("why") of its sample
and, for the "+" benchmarks, the verdicts of the base part: what a correct harness must report.
"""

from __future__ import annotations

from evaluation.problems import Problem


def canonical(problems: list[Problem]) -> list[dict]:
    return [{"task_id": p.task_id, "solution": p.canonical_solution} for p in problems]


def returns_sentinel(entry_point: str) -> str:
    # An object of the solution's own class: it reaches the host as an opaque value that equals nothing.
    return f"class _Wrong:\n    pass\n\n\ndef {entry_point}(*args, **kwargs):\n    return _Wrong()\n"


def raises(entry_point: str) -> str:
    return f"def {entry_point}(*args, **kwargs):\n    raise ValueError('not implemented')\n"


def syntax_error(entry_point: str) -> str:
    return f"def {entry_point}(*args, **kwargs)\n    return 1\n"


def loops(entry_point: str) -> str:
    return f"def {entry_point}(*args, **kwargs):\n    while True:\n        pass\n"


# Plausible solutions that pass HumanEval's original inputs but not HumanEval+'s extra ones.
BASE_ONLY = {
    "HumanEval/35": "def max_element(l):\n    m = 0\n    for e in l:\n        if e > m:\n            m = e\n    return m\n",
    "HumanEval/0": (
        "def has_close_elements(numbers, threshold):\n"
        "    return any(abs(a - b) <= threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
    ),
}


def mixed_plus(problems: list[Problem]) -> tuple[list[dict], dict[str, tuple[str, str]]]:
    """HumanEval+ (first 40 tasks + the base-only ones): (why of the sample, why of its base part) per task."""
    kinds = [
        ("canonical", "passed", "passed"),
        ("sentinel", "wrong answer", "wrong answer"),
        ("raises", "exception", "exception"),
        ("syntax", "syntax error", "syntax error"),
    ]
    samples, expected = [], {}
    by_id = {p.task_id: p for p in problems}
    chosen = problems[:40]
    for i, p in enumerate(chosen):
        if p.task_id in BASE_ONLY:
            continue
        kind, why, base_why = kinds[i % len(kinds)]
        if i in (5, 21):
            kind, why, base_why = "loops", "timeout", "timeout"
        solution = {
            "canonical": p.canonical_solution,
            "sentinel": returns_sentinel(p.entry_point),
            "raises": raises(p.entry_point),
            "syntax": syntax_error(p.entry_point),
            "loops": loops(p.entry_point),
        }[kind]
        samples.append({"task_id": p.task_id, "solution": solution})
        expected[p.task_id] = (why, base_why)
    for task_id, solution in BASE_ONLY.items():
        assert task_id in by_id
        samples.append({"task_id": task_id, "solution": solution})
        expected[task_id] = ("wrong answer", "passed")
    return samples, expected


def mixed_program(problems: list[Problem], wrong: dict[str, str]) -> tuple[list[dict], dict[str, str]]:
    """Check-style benchmarks (HumanEval, MBPP): first 30 tasks, plus hand-made wrong answers in `wrong`."""
    kinds = [("canonical", "passed"), ("raises", "exception"), ("syntax", "syntax error")]
    samples, expected = [], {}
    for i, p in enumerate(problems[:30]):
        if p.task_id in wrong or p.meta.get("known_bad"):
            continue
        kind, why = kinds[i % len(kinds)]
        if i == 7:
            kind, why = "loops", "timeout"
        solution = {
            "canonical": p.canonical_solution,
            "raises": raises(p.entry_point),
            "syntax": syntax_error(p.entry_point),
            "loops": loops(p.entry_point),
        }[kind]
        samples.append({"task_id": p.task_id, "solution": solution})
        expected[p.task_id] = why
    for task_id, solution in wrong.items():
        samples.append({"task_id": task_id, "solution": solution})
        expected[task_id] = "wrong answer"
    return samples, expected


HUMANEVAL_WRONG = {
    "HumanEval/0": "def has_close_elements(numbers, threshold):\n    return False\n",
    "HumanEval/2": "def truncate_number(number):\n    return number\n",
}
MBPP_WRONG = {
    "Mbpp/11": "def remove_Occ(s, ch):\n    return s\n",
    "Mbpp/12": "def sort_matrix(M):\n    return M\n",
}
