"""The definition of "verified" (data_pipeline.verify), one test per rule."""

from __future__ import annotations

from data_pipeline.verify import (
    NO_CODE,
    NO_TESTS,
    TESTS_DO_NOT_CALL,
    UNITTEST_FAILED,
    UNITTEST_NOT_RUN,
    Run,
    analyse_tests,
    judge_attempt,
    weakened,
)

SOLUTION = "def add(a, b):\n    return a + b\n"


def ok(code: str, stdout: str = "", stderr: str = "") -> Run:
    return Run("python", code, "ok", stdout, stderr)


def test_asserts_that_call_the_solution_count():
    verdict = judge_attempt([ok(SOLUTION + "assert add(1, 2) == 3\nassert add(0, 0) == 0\n")])
    assert verdict.verified and verdict.tests.count == 2


def test_a_name_assigned_from_the_solution_counts():
    verdict = judge_attempt([ok(SOLUTION + "r = add(2, 2)\nassert r == 4\n")])
    assert verdict.verified and verdict.tests.assertions == ["assert r == 4"]


def test_asserts_in_loops_and_called_test_functions_count():
    code = (
        SOLUTION
        + "for i in range(3):\n    assert add(i, 0) == i\ndef test_it():\n    assert add(1, 1) == 2\ntest_it()\n"
    )
    assert judge_attempt([ok(code)]).tests.count == 2


def test_a_test_function_nobody_calls_tests_nothing():
    verdict = judge_attempt([ok(SOLUTION + "def test_it():\n    assert add(1, 1) == 2\n")])
    assert not verdict.verified and verdict.reason == NO_TESTS


def test_asserts_that_do_not_call_the_solution_do_not_count():
    verdict = judge_attempt([ok(SOLUTION + "assert 1 + 1 == 2\nassert True\n")])
    assert not verdict.verified and verdict.reason == TESTS_DO_NOT_CALL


def test_no_code_and_failing_code():
    assert judge_attempt([]).reason.startswith(NO_CODE)
    assert (
        judge_attempt([Run("python", "x", "not_run", note="unclosed block")]).reason
        == f"{NO_CODE} (unclosed block)"
    )
    failed = judge_attempt(
        [Run("python", SOLUTION + "assert add(1, 1) == 3", "error", error_name="AssertionError")]
    )
    assert not failed.verified and failed.reason == "the code failed: AssertionError"
    install = Run("sh", "pip install nothing-here", "error")
    assert judge_attempt([install, ok(SOLUTION + "assert add(1, 1) == 2")]).reason == "the code failed: error"


def test_the_solution_may_come_from_an_earlier_attempt_in_the_same_kernel():
    verdict = judge_attempt([ok("assert add(1, 1) == 2\n")], defined_before={"add"})
    assert verdict.verified


UNITTEST = (
    "import unittest\nclass Stack:\n    def __init__(self):\n        self.items = []\n"
    "    def push(self, x):\n        self.items.append(x)\n"
    "class T(unittest.TestCase):\n    def test_push(self):\n        s = Stack()\n        s.push(1)\n"
    "        self.assertEqual(s.items, [1])\n"
)


def test_unittest_cases_must_run_and_pass():
    runs = UNITTEST + 'unittest.main(argv=[""], exit=False)\n'
    assert judge_attempt([ok(runs, stderr="Ran 1 test in 0.000s\n\nOK\n")]).verified
    failed = judge_attempt([ok(runs, stderr="Ran 1 test in 0.000s\n\nFAILED (failures=1)\n")])
    assert failed.reason == UNITTEST_FAILED
    assert judge_attempt([ok(UNITTEST)]).reason == UNITTEST_NOT_RUN


def test_weakened_tests():
    three = analyse_tests(SOLUTION + "assert add(1, 1) == 2\nassert add(2, 2) == 4\nassert add(0, 5) == 5\n")
    one = analyse_tests(SOLUTION + "assert add(1, 1) == 2\n")
    changed = analyse_tests(
        SOLUTION + "assert add(1, 1) == 2\nassert add(2, 2) == 4\nassert add(0, 5) >= 0\n"
    )
    more = analyse_tests(
        SOLUTION
        + "assert add(1, 1) == 2\nassert add(2, 2) == 4\nassert add(0, 5) == 5\nassert add(3, 3) == 6\n"
    )
    assert weakened(three, one) and weakened(three, changed)
    assert not weakened(three, more) and not weakened(None, one) and not weakened(three, three)


def test_syntax_errors_are_reported_not_raised():
    verdict = judge_attempt([ok("def broken(:\n")])
    assert not verdict.verified and "does not parse" in verdict.reason
