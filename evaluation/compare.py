"""Does a solution's output match the canonical solution's output? EvalPlus's rules, applied on the host.

Mirrors `evalplus.eval.unsafe_execute` (v0.3.1, Apache-2.0) so that verdicts agree task by task:
exact `==` first; then the per-task special oracles (HumanEval's `find_zero` checks that the returned point is
a root; a few MBPP+ tasks compare as sets, accept any non-None value, or use a corrected reference); then, for
float outputs, `numpy.allclose` with the task's atol (1e-6 when the task gives none and the expected value is a
float or a list of floats) and rtol 1e-7, after requiring the same type and length.

EvalPlus keeps the raised atol for the rest of a task's inputs once it met a float; `OutputChecker` carries that
state the same way.

What this module deliberately does not do: run anything of the solution (outputs arrive as plain data, see
evaluation.wire) or decide timeouts (evaluation.execution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Special oracles, by name (set on evaluation.problems.Problem.oracle when a dataset is loaded).
ORACLE_FIND_ZERO = "find_zero"  # HumanEval/32
ORACLE_SET_EQ = "set_eq"  # MBPP+: order of the returned items does not matter
ORACLE_NOT_NONE = "not_none"  # MBPP+: the reference returns an object; only "is it None" is compared
ORACLE_ALWAYS = "always"  # MBPP+ 164 (are_equivalent): any output that does not raise
ORACLE_SUM_DIV = "sum_div"  # MBPP+ 295: 0 also accepted
ORACLE_SURFACE_AREA = "surface_area"  # MBPP+ 581: a corrected reference
ORACLE_DIGIT_DISTANCE = "digit_distance"  # MBPP+ 558: a corrected reference

# EvalPlus's lists of MBPP+ entry points with special oracles (evalplus/eval/_special_oracle.py).
MBPP_OUTPUT_NOT_NONE_TASKS = ("check_str", "text_match_three", "text_starta_endb")
MBPP_OUTPUT_SET_EQ_TASKS = (
    "similar_elements",
    "find_char_long",
    "common_in_nested_lists",
    "extract_singly",
    "larg_nnum",
    "intersection_array",
    "find_dissimilar",
    "Diff",
)
_MBPP_SINGLE_ORACLES = {
    "are_equivalent": ORACLE_ALWAYS,
    "sum_div": ORACLE_SUM_DIV,
    "surface_Area": ORACLE_SURFACE_AREA,
    "digit_distance_nums": ORACLE_DIGIT_DISTANCE,
}


def humaneval_oracle(entry_point: str) -> str | None:
    return ORACLE_FIND_ZERO if entry_point == "find_zero" else None


def mbpp_oracle(entry_point: str) -> str | None:
    if entry_point in _MBPP_SINGLE_ORACLES:
        return _MBPP_SINGLE_ORACLES[entry_point]
    if entry_point in MBPP_OUTPUT_SET_EQ_TASKS:
        return ORACLE_SET_EQ
    if entry_point in MBPP_OUTPUT_NOT_NONE_TASKS:
        return ORACLE_NOT_NONE
    return None


def _poly(xs: list, x: float) -> float:
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def _surface_area(base_edge, height):
    slant_height = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant_height) / 2)


def _digit_distance_nums(num1, num2):
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width), strict=True))


def is_floats(x: object) -> bool:
    """A float, or a non-empty list/tuple of floats (EvalPlus's test for "compare with a tolerance")."""
    if isinstance(x, float):
        return True
    if isinstance(x, list | tuple) and x:
        return all(isinstance(i, float) for i in x)
    return False


@dataclass
class OutputChecker:
    """Compares the outputs of one part of one task, input by input, in order."""

    atol: float
    oracle: str | None = None

    def matches(self, args: list, out: object, expected: object) -> bool:
        try:
            return self._matches(args, out, expected)
        except Exception:  # a mismatch in shape or type while comparing, e.g. allclose on a str
            return False

    def _matches(self, args: list, out: object, expected: object) -> bool:
        exact = out == expected
        if self.oracle == ORACLE_FIND_ZERO:
            return abs(_poly(*args, out)) <= self.atol
        if self.oracle == ORACLE_ALWAYS:
            exact = True
        elif self.oracle == ORACLE_SUM_DIV:
            exact = exact or out == 0
        elif self.oracle == ORACLE_SURFACE_AREA:
            exact = exact or abs(out - _surface_area(*args)) <= self.atol
        elif self.oracle == ORACLE_DIGIT_DISTANCE:
            exact = exact or out == _digit_distance_nums(*args)
        elif self.oracle == ORACLE_SET_EQ:
            exact = set(out) == set(expected)
        elif self.oracle == ORACLE_NOT_NONE:
            exact = out == expected if isinstance(out, bool) else expected == (out is not None)

        if self.atol == 0 and is_floats(expected):
            self.atol = 1e-6  # EvalPlus keeps this for the task's later inputs too
        if not exact and self.atol != 0:
            if type(out) is not type(expected):
                return False
            if isinstance(expected, list | tuple) and len(out) != len(expected):
                return False
            return bool(np.allclose(out, expected, rtol=1e-07, atol=self.atol))
        return bool(exact)
