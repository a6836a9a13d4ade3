"""The sanitizer on replies shaped like real chat-model answers (prose, several fences, tests, truncation)."""

from __future__ import annotations

import ast

from evaluation.sanitize import longest_parsable, sanitize
from interpreter.protocol import RUN_START, RUN_STOP

TYPICAL = '''Sure! Here is an efficient solution:

```python
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """Check if any two numbers are closer than the threshold."""
    sorted_numbers = sorted(numbers)
    return any(b - a < threshold for a, b in zip(sorted_numbers, sorted_numbers[1:]))
```

You can test it like this:

```python
print(has_close_elements([1.0, 2.0, 3.0], 0.5))  # False
assert has_close_elements([1.0, 2.8, 3.0], 0.3)
```

The function sorts the list first, so it runs in O(n log n).
'''


def names(code: str) -> list[str]:
    return [getattr(n, "name", type(n).__name__) for n in ast.parse(code).body]


def test_typical_reply_keeps_the_solution_block_and_its_import():
    code = sanitize(TYPICAL, "has_close_elements")
    assert names(code) == ["ImportFrom", "has_close_elements"]
    assert "print(" not in code and "assert" not in code


def test_helpers_globals_and_imports_the_entry_point_reaches_are_kept_the_rest_dropped():
    reply = """Here's my approach.
```python
import math
import re
from functools import lru_cache

MOD = 10**9 + 7
UNUSED = 3

def helper(x):
    return _inner(x) % MOD

def _inner(x):
    return math.factorial(x)

class Unrelated:
    pass

def solve(n):
    return helper(n) + cache_me(n)

@lru_cache(maxsize=None)
def cache_me(n):
    return n

if __name__ == "__main__":
    print(solve(5))
solve(3)
```"""
    code = sanitize(reply, "solve")
    body = ast.parse(code).body
    kept = [
        getattr(n, "name", None) or getattr(getattr(n, "targets", [None])[0], "id", type(n).__name__)
        for n in body
    ]
    assert kept == ["Import", "Import", "ImportFrom", "MOD", "helper", "_inner", "solve", "cache_me"]
    assert "@lru_cache(maxsize=None)" in code  # decorators travel with their function
    assert "UNUSED" not in code and "Unrelated" not in code and "__main__" not in code
    namespace: dict = {}
    exec(code, namespace)
    assert namespace["solve"](5) == 125


def test_the_last_block_that_defines_the_entry_point_wins_over_earlier_drafts_and_test_blocks():
    reply = """First attempt:
```python
def add(a, b):
    return a - b
```
Oops, that subtracts. Fixed version:
```python
def add(a, b):
    return a + b
```
And a quick check:
```python
print(add(2, 3))
```"""
    code = sanitize(reply, "add")
    assert "a + b" in code and "a - b" not in code and "print" not in code


def test_truncated_reply_with_an_unclosed_fence_keeps_what_parses():
    reply = """```python
def count_vowels(s):
    return sum(c in "aeiou" for c in s.lower())

def extra(x):
    for i in range(x):
        if i >"""
    code = sanitize(reply, "count_vowels")
    assert names(code) == ["count_vowels"]


def test_unlabelled_fence_and_shell_block_ignored():
    reply = """Install nothing:
```sh
pip install numpy
```
```
def double(x):
    return 2 * x
```"""
    assert sanitize(reply, "double").strip() == "def double(x):\n    return 2 * x"


def test_reply_without_fences_is_treated_as_code_with_prose_cut_away():
    reply = """def is_even(n):
    return n % 2 == 0

This returns True for even numbers."""
    assert names(sanitize(reply, "is_even")) == ["is_even"]


def test_autocoder_execution_blocks_are_read_like_fences():
    reply = f"""Let me test it.
{RUN_START}```python
def square(x):
    return x * x
print(square(3))
```{RUN_STOP}"""
    code = sanitize(reply, "square")
    assert names(code) == ["square"]


def test_class_entry_point_and_methods_kept():
    reply = """```python
class Solution:
    def run(self, x):
        return x + 1
sol = Solution()
```"""
    assert names(sanitize(reply, "Solution")) == ["Solution"]


def test_without_entry_point_everything_defined_is_kept():
    reply = "```python\nimport os\nX = 1\ndef f():\n    return X\nprint(f())\n```"
    assert names(sanitize(reply, None)) == ["Import", "Assign", "f"]


def test_entry_point_missing_from_the_code_keeps_all_definitions():
    reply = "```python\ndef helper():\n    return 1\n```"
    assert names(sanitize(reply, "other")) == ["helper"]


def test_unparsable_reply_comes_back_as_is_so_it_scores_as_a_syntax_error():
    reply = "```python\ndef f(:\n```"
    code = sanitize(reply, "f")
    try:
        ast.parse(code)
    except SyntaxError:
        pass
    else:
        raise AssertionError(f"expected unparsable code, got {code!r}")


def test_longest_parsable_matches_evalplus_idea():
    text = "Here you go:\ndef f():\n    return 1\n\nx = f()\nthat's all"
    assert longest_parsable(text) == "def f():\n    return 1\n\nx = f()"
