"""MBPP+ records that reach every special input conversion and every MBPP oracle of EvalPlus 0.3.1.

Taken from EvalPlus's own code paths:
- `evalplus.data.mbpp.mbpp_deserialize_inputs`: which task ids get tuples, sets, complex numbers, dicts of
  tuples back from JSON (one record per branch below, in `CONVERSIONS`);
- `evalplus.eval.unsafe_execute` with `evalplus.eval._special_oracle`: are_equivalent (any output), sum_div
  (0 also accepted), surface_Area and digit_distance_nums (corrected references), the set-equality and
  not-None entry points, and the atol rules (1e-6 forced for float outputs and kept for the task's later
  inputs; type and length checked before allclose).

Each case is a record in EvalPlus's fields plus samples with the verdict (base passed, base+plus passed)
that EvalPlus's rules give; test_mbpp_plus.py checks that ours and EvalPlus both give exactly these.

A conversion is checked through the verdicts: the canonical solution returns repr(args), and the "typed"
sample raises unless repr(args) is one of the reprs EvalPlus's conversion produces, so a loader (or an input
transport into the sandbox) that builds other types fails that sample in our scorer only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

PROMPT = '"""\nA synthetic MBPP+ task for the agreement test.\n"""\n'


@dataclass
class Case:
    task_id: str
    entry_point: str
    canonical: str
    base: list
    plus: list
    atol: float = 0
    samples: list[tuple[str, str, tuple[bool, bool]]] = field(default_factory=list)  # (label, code, verdict)

    def record(self) -> dict:
        return {
            "task_id": self.task_id,
            "prompt": PROMPT,
            "entry_point": self.entry_point,
            "canonical_solution": self.canonical,
            "base_input": self.base,
            "plus_input": self.plus,
            "atol": self.atol,
            "contract": "",
            "assertion": "",
        }


# One task id per branch of mbpp_deserialize_inputs, with inputs in the JSON shape that branch expects.
CONVERSIONS: dict[str, tuple[list, list]] = {
    "Mbpp/116": ([[[1, 2], [3, 4]]], [[[5], [6, 7, 8]]]),  # each argument a tuple
    "Mbpp/63": ([[[[1, 2], [3, 4]], [[5, 6]]]], [[[[7, 8]], [[9, 10], [11, 12]]]]),  # lists of tuples
    "Mbpp/75": ([[[[1, 2], [3, 4]], 2]], [[[[5, 6]], 3]]),  # a list of tuples, then a plain argument
    "Mbpp/106": ([[[1, 2], [3, 4]]], [[[5], [6, 7]]]),  # a list, then a tuple
    "Mbpp/115": ([[[[1, 2], [], [3]]]], [[[[], [4]]]]),  # a list of sets (an empty list becomes {})
    "Mbpp/124": ([["3.0", "(1+2j)"]], [["-1.5", "(-0-1j)"]]),  # a float and a complex from strings
    "Mbpp/250": ([[[1, 2, 3], 2]], [[[4, 4], 4]]),  # a tuple, then a plain argument
    "Mbpp/259": ([[[[1, 2], [3, 4]], [[5, 6], [7, 8]]]], [[[[1, 1]], [[2, 2]]]]),  # tuples of tuples
    "Mbpp/278": ([[[1, [2, 3], 4]]], [[[[5], 6]]]),  # one tuple whose list items are tuples too
    "Mbpp/307": ([[[1, 2, 3], 1, 5]], [[["a", "b"], 0, "c"]]),  # a tuple, then two plain arguments
    "Mbpp/722": ([[{"a": [1.5, 2], "b": [3, 4]}, 1, 2]], [[{"c": [5, 6]}, 0, 0]]),  # dict values tuples
    "Mbpp/252": ([["(1+2j)"]], [["(-3+0j)"]]),  # a complex from a string
    "Mbpp/580": ([[[1, [2, [3]]], 4]], [[[[5, 6], 7]]]),  # every list, at any depth, a tuple
}


def conversion_cases(evalplus_deserialize) -> list[Case]:
    """`evalplus_deserialize` is EvalPlus's mbpp_deserialize_inputs: the typed sample accepts its types only."""
    cases = []
    for task_id, (base, plus) in CONVERSIONS.items():
        allowed = sorted(repr(tuple(i)) for i in evalplus_deserialize(task_id, base + plus))
        typed = (
            f"ALLOWED = {allowed!r}\n\n\n"
            "def typed_args(*args):\n"
            "    if repr(args) not in ALLOWED:\n"
            "        raise TypeError('inputs converted differently: ' + repr(args))\n"
            "    return repr(args)\n"
        )
        cases.append(
            Case(
                task_id,
                "typed_args",
                "def typed_args(*args):\n    return repr(args)\n",
                base,
                plus,
                samples=[("typed", typed, (True, True))],
            )
        )
    return cases


SET_EQ = {  # entry point -> its MBPP task id (tasks 2 and 579 also take tuples)
    "similar_elements": "Mbpp/2",
    "find_char_long": "Mbpp/7",
    "common_in_nested_lists": "Mbpp/111",
    "extract_singly": "Mbpp/140",
    "larg_nnum": "Mbpp/232",
    "intersection_array": "Mbpp/249",
    "find_dissimilar": "Mbpp/579",
    "Diff": "Mbpp/769",
}
NOT_NONE = {"check_str": "Mbpp/737", "text_match_three": "Mbpp/787", "text_starta_endb": "Mbpp/794"}

PASS, FAIL, BASE_ONLY = (True, True), (False, False), (True, False)


def _set_eq_case(name: str, task_id: str, set_eq: bool) -> Case:
    body = "    return sorted(set(a) & set(b){rest}\n"
    code = f"def {name}(a, b):\n" + body
    return Case(
        task_id,
        name,
        code.format(rest=")"),
        [[[3, 4, 5, 6], [5, 7, 4, 10]]],
        [[[1, 2, 2], [2, 1]]],
        samples=[
            ("reversed", code.format(rest=", reverse=True)"), PASS if set_eq else FAIL),
            ("doubled", f"def {name}(a, b):\n    return [x for x in set(a) & set(b) for _ in (1, 2)]\n",
             PASS if set_eq else FAIL),
            ("one missing", code.format(rest=")[1:]"), FAIL),
            ("unhashable", f"def {name}(a, b):\n    return [[x] for x in sorted(set(a) & set(b))]\n", FAIL),
        ],
    )  # fmt: skip


def _not_none_case(name: str, task_id: str) -> Case:
    search = f"import re\n\n\ndef {name}(s):\n    return re.search(r'^[aeiouAEIOU]', s)\n"
    return Case(
        task_id,
        name,
        search,
        [["annie"], ["dawood"]],
        [["Else"], ["x"]],
        samples=[
            ("as bool", search.replace("return re.search", "return bool(re.search").replace(", s)", ", s))"), PASS),
            ("never None", f"def {name}(s):\n    return 'yes'\n", FAIL),
            ("always None", f"def {name}(s):\n    return None\n", FAIL),
            ("lower case only", f"import re\n\n\ndef {name}(s):\n    return re.match('a', s)\n", BASE_ONLY),
        ],
    )  # fmt: skip


def oracle_cases() -> list[Case]:
    cases = [_set_eq_case(name, task_id, True) for name, task_id in SET_EQ.items()]
    cases.append(_set_eq_case("common_elements", "Mbpp/9001", False))  # control: order matters elsewhere
    cases += [_not_none_case(name, task_id) for name, task_id in NOT_NONE.items()]
    cases.append(
        Case(
            "Mbpp/164",
            "are_equivalent",
            "def are_equivalent(a, b):\n    return a % 2 == b % 2\n",
            [[1, 3], [2, 3]],
            [[4, 4]],
            samples=[
                ("any value", "def are_equivalent(a, b):\n    return 'anything'\n", PASS),
                ("a function", "def are_equivalent(a, b):\n    return lambda: 0\n", PASS),
                ("raises", "def are_equivalent(a, b):\n    raise ValueError(a)\n", FAIL),
            ],
        )
    )
    divisors = "def sum_div(n):\n    return sum(d for d in range(1, n) if n % d == 0)\n"
    cases.append(
        Case(
            "Mbpp/295",
            "sum_div",
            divisors,
            [[8], [12]],
            [[7], [1]],
            samples=[
                ("zero", "def sum_div(n):\n    return 0\n", PASS),
                ("zero when large", divisors.replace("return sum", "return 0 if n > 10 else sum"), PASS),
                ("one", "def sum_div(n):\n    return 1\n", FAIL),
            ],
        )
    )
    corrected_area = (
        "import math\n\n\ndef surface_Area(b, h):\n"
        "    return round(b ** 2 + 4 * (b * math.sqrt((b / 2) ** 2 + h ** 2)) / 2)\n"
    )
    cases.append(
        Case(
            "Mbpp/581",
            "surface_Area",
            "def surface_Area(b, s):\n    return 2 * b * s + pow(b, 2)\n",  # MBPP's own (slant height)
            [[3, 4], [4, 5]],
            [[1, 10]],
            samples=[
                ("corrected", corrected_area, PASS),
                ("corrected, not rounded", corrected_area.replace("return round(", "return ("), FAIL),
                ("off by one", corrected_area.replace("/ 2)\n", "/ 2) + 1\n"), FAIL),
            ],
        )
    )
    cases.append(
        Case(
            "Mbpp/1581",  # a task id with no conversion: surface_Area's oracle with a tolerance
            "surface_Area",
            "def surface_Area(b, s):\n    return 2 * b * s + pow(b, 2)\n",
            [[3, 4]],
            [[4, 5]],
            atol=1,
            samples=[
                ("corrected, not rounded", corrected_area.replace("return round(", "return ("), PASS),
                ("off by three", corrected_area.replace("/ 2)\n", "/ 2) + 3\n"), FAIL),
            ],
        )
    )
    original_distance = "def digit_distance_nums(n1, n2):\n    return sum(map(int, str(abs(n1 - n2))))\n"
    cases.append(
        Case(
            "Mbpp/558",
            "digit_distance_nums",
            original_distance,  # MBPP's own, wrong where digits borrow
            [[1, 2], [23, 56]],
            [[19, 91], [5, 123]],
            samples=[
                (
                    "corrected",
                    "def digit_distance_nums(n1, n2):\n    a, b = str(n1), str(n2)\n    w = max(len(a), len(b))\n"
                    "    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(w), b.zfill(w)))\n",
                    PASS,
                ),
                ("sum", "def digit_distance_nums(n1, n2):\n    return n1 + n2\n", FAIL),
            ],
        )
    )
    cases += [
        Case(
            "Mbpp/9101",  # float outputs and atol 0: EvalPlus forces 1e-6
            "third",
            "def third(x):\n    return x / 3\n",
            [[1], [2]],
            [[10], [0.5]],
            samples=[
                ("within 1e-6", "def third(x):\n    return x / 3 + 1e-9\n", PASS),
                ("rounded", "def third(x):\n    return round(x / 3, 2)\n", FAIL),
                ("off above 5", "def third(x):\n    return x / 3 + (1e-3 if x > 5 else 0)\n", BASE_ONLY),
            ],
        ),
        Case(
            "Mbpp/9102",  # the forced 1e-6 stays for the part's later inputs, ints included
            "mixed",
            "def mixed(x):\n    return 0.5 if x == 0 else [x, x + 1]\n",
            [[0], [1]],
            [[1], [0]],
            samples=[
                (
                    "ints a hair off",
                    "def mixed(x):\n    return 0.5 if x == 0 else [x, x + 1 + 1e-9]\n",
                    BASE_ONLY,
                )
            ],
        ),  # fmt: skip
        Case(
            "Mbpp/9103",  # the task's own atol: type and length first, then allclose
            "halves",
            "def halves(x):\n    return [x / 2, x / 4]\n",
            [[1], [3]],
            [[5]],
            atol=0.01,
            samples=[
                ("within atol", "def halves(x):\n    return [x / 2 + 0.005, x / 4]\n", PASS),
                ("beyond atol", "def halves(x):\n    return [x / 2 + 0.05, x / 4]\n", FAIL),
                ("a tuple", "def halves(x):\n    return (x / 2, x / 4)\n", FAIL),
                ("too short", "def halves(x):\n    return [x / 2]\n", FAIL),
            ],
        ),
    ]
    return cases


def all_cases(evalplus_deserialize) -> list[Case]:
    """Every case, each with the canonical solution as its first sample (it passes everywhere)."""
    cases = conversion_cases(evalplus_deserialize) + oracle_cases()
    for case in cases:
        case.samples.insert(0, ("canonical", case.canonical, PASS))
    return cases


def write_jsonl(path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
