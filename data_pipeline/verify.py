"""What "verified" means, defined once: the rules an item's final attempt must pass, and the tests it carries.

An item is VERIFIED when its programmer's final attempt
  1. ran python code, and every block of the attempt (python and sh) finished with status "ok" and no error;
  2. carries unit tests that exercise the solution: at least one reachable `assert` whose expression calls a
     function or class the program defines (directly, or through a name assigned from such a call), or a
     `unittest.TestCase` with a test method doing so that is run (unittest.main or a TestRunner) and whose
     output reports OK (a unittest failure does not raise in a notebook kernel, so the output is checked);
  3. and, for unittest, the run's output has no "FAILED (" line.
An assert is reachable when it sits at module level (loops, ifs and with blocks included) or in a function
that module-level code calls (directly or through other such functions); a `def test_x(): assert ...` that
nothing calls tests nothing.

Tests are compared between attempts: an attempt with fewer tests than the one before, or one that drops or
changes an assertion the previous attempt had, is flagged "tests_weakened"
(the item stays verified but carries the flag; `stats` counts them). Every attempt's test code is kept.

What it deliberately does not do: run anything (the interpreter loop did) or judge whether the tests are
good tests beyond the rules above.
"""

from __future__ import annotations

import ast
import threading
from dataclasses import dataclass, field

STATUS_OK = "ok"

# Rejection reasons (one place, used in meta and the failure summary).
NO_CODE = "no code ran"
RUN_FAILED = "the code failed"
NO_TESTS = "no tests"
TESTS_DO_NOT_CALL = "the tests do not call the solution"
UNITTEST_FAILED = "unittest reported failures"
UNITTEST_NOT_RUN = "unittest cases defined but not run"

WEAKENED_FLAG = "tests_weakened"


@dataclass
class Run:
    """One executed block of an attempt, as the loop reported it."""

    language: str
    code: str
    status: str  # ExecutionResult.status, or "not_run"
    stdout: str = ""
    stderr: str = ""
    error_name: str = ""  # e.g. "NameError"; "" when none
    traceback: str = ""
    note: str = ""  # why a block did not run


@dataclass
class TestReport:
    """What the tests of one attempt's program look like."""

    assertions: list[str] = field(default_factory=list)  # source of asserts that call the solution
    unittest_cases: list[str] = field(default_factory=list)  # "Class.test_method" that call the solution
    other_asserts: int = 0  # asserts that do not exercise the solution (or are unreachable)
    runs_unittest: bool = False
    solution_names: list[str] = field(default_factory=list)
    test_code: str = ""  # the test part of the program, for the item's meta
    syntax_error: str = ""

    @property
    def count(self) -> int:
        return len(self.assertions) + len(self.unittest_cases)


@dataclass
class Verdict:
    verified: bool
    reason: str = ""  # "" when verified, else one of the reasons above (with detail)
    tests: TestReport = field(default_factory=TestReport)


def _names_called(node: ast.AST) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute):
                names.add(func.attr)
                root = func
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name):
                    names.add(root.id)
    return names


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _is_test_name(name: str) -> bool:
    return name.startswith("test") or name.startswith("Test")


def _module_level_nodes(tree: ast.Module) -> list[ast.AST]:
    """Statements that run at import: everything but function and class bodies."""
    out: list[ast.AST] = []

    def visit(statements) -> None:
        for node in statements:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            out.append(node)
            visit([c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)])

    visit(tree.body)
    return out


def _shallow_calls(node: ast.AST) -> set[str]:
    """Names called by a statement, not looking inside nested defs or classes."""
    names = set()
    stack = [node]
    while stack:
        sub = stack.pop()
        if sub is not node and isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(sub, ast.Call):
            names |= _names_called(ast.Call(func=sub.func, args=[], keywords=[]))
        stack.extend(ast.iter_child_nodes(sub))
    return names


# One ast.parse at a time: CPython 3.11 building AST objects in two threads at once can fail with
# "SystemError: AST constructor recursion depth mismatch" (seen with 32 items in flight).
_PARSE_LOCK = threading.Lock()


def analyse_tests(program: str, defined_before: set[str] = frozenset()) -> TestReport:
    """The tests in `program` (the attempt's python code) and whether they exercise the solution.

    `defined_before`: solution names defined by earlier blocks of the same kernel (the kernel keeps state
    between attempts, so a fix may redefine only part of the program)."""
    report = TestReport()
    try:
        with _PARSE_LOCK:
            tree = ast.parse(program)
    except SyntaxError as exc:
        report.syntax_error = f"line {exc.lineno}: {exc.msg}"
        return report
    functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
    classes: dict[str, ast.ClassDef] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.setdefault(node.name, node)
        elif isinstance(node, ast.ClassDef):
            classes[node.name] = node
    test_classes = {
        name
        for name, cls in classes.items()
        if any(
            (isinstance(b, ast.Attribute) and b.attr == "TestCase")
            or (isinstance(b, ast.Name) and b.id == "TestCase")
            for b in cls.bases
        )
    }
    top_defs = [
        n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    ]
    solution = {n for n in top_defs if not _is_test_name(n) and n not in test_classes}
    solution |= {n for n in defined_before if not _is_test_name(n)}
    # Method names of solution classes: `obj.push(1)` exercises the solution too.
    methods = {
        item.name
        for name, cls in classes.items()
        if name in solution
        for item in cls.body
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and not item.name.startswith("__")
    }
    report.solution_names = sorted(solution)

    # Reachable functions: called from module level, transitively.
    top = _module_level_nodes(tree)
    reachable: set[str] = set()
    frontier = set().union(*(_shallow_calls(n) for n in top)) if top else set()
    while frontier:
        name = frontier.pop()
        if name in reachable or name not in functions:
            continue
        reachable.add(name)
        frontier |= _shallow_calls(functions[name])

    def derived_names(scope: list[ast.AST]) -> set[str]:
        """Names assigned from expressions that call the solution (`result = solve(3)`)."""
        derived: set[str] = set()
        for _ in range(3):  # a few rounds: `r = solve(1); s = r + 1`
            for node in scope:
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Assign | ast.AnnAssign | ast.AugAssign) and sub.value is not None:
                        calls = _names_called(sub.value) | (_names_used(sub.value) & derived)
                        if calls & (solution | methods | derived):
                            targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                            for target in targets:
                                derived |= _names_used(target)
        return derived

    def exercises(expr: ast.AST, derived: set[str]) -> bool:
        return bool((_names_called(expr) & (solution | methods)) or (_names_used(expr) & derived))

    segments = []
    module_derived = derived_names(top)
    for node in top:
        if isinstance(node, ast.Assert):
            source = ast.get_source_segment(program, node) or ast.unparse(node)
            if exercises(node.test, module_derived):
                report.assertions.append(source)
                segments.append(source)
            else:
                report.other_asserts += 1
    for name in sorted(reachable):
        fn = functions[name]
        if name in solution and not _is_test_name(name):
            continue  # asserts inside the solution are input checks, not tests
        derived = derived_names(list(ast.walk(fn))) | module_derived
        found = False
        for sub in ast.walk(fn):
            if isinstance(sub, ast.Assert):
                if exercises(sub.test, derived):
                    report.assertions.append(ast.get_source_segment(program, sub) or ast.unparse(sub))
                    found = True
                else:
                    report.other_asserts += 1
        if found:
            segments.append(ast.get_source_segment(program, fn) or ast.unparse(fn))
    for name in sorted(test_classes):
        cls = classes[name]
        for item in cls.body:
            if isinstance(item, ast.FunctionDef) and item.name.startswith("test"):
                derived = derived_names(list(ast.walk(item)))
                if exercises(item, derived):
                    report.unittest_cases.append(f"{name}.{item.name}")
        segments.append(ast.get_source_segment(program, cls) or ast.unparse(cls))
    called_at_top = set().union(*(_names_called(n) for n in top)) if top else set()
    report.runs_unittest = bool(test_classes) and bool(
        called_at_top & {"main", "run", "TextTestRunner", "unittest"}
    )
    report.test_code = "\n\n".join(segments)
    return report


def python_code(runs: list[Run]) -> str:
    return "\n\n".join(r.code for r in runs if r.language == "python")


def judge_attempt(runs: list[Run], defined_before: set[str] = frozenset()) -> Verdict:
    """Apply the rules of the module docstring to one attempt's executed blocks."""
    python_runs = [r for r in runs if r.language == "python"]
    tests = analyse_tests(python_code(runs), defined_before) if python_runs else TestReport()
    if not python_runs or all(r.status == "not_run" for r in python_runs):
        notes = "; ".join(r.note for r in runs if r.note)
        return Verdict(False, f"{NO_CODE}" + (f" ({notes})" if notes else ""), tests)
    failed = [r for r in runs if r.status != STATUS_OK or r.error_name]
    if failed:
        first = failed[0]
        what = first.error_name or first.status
        return Verdict(False, f"{RUN_FAILED}: {what}", tests)
    if tests.count == 0:
        if tests.syntax_error:
            return Verdict(False, f"{NO_TESTS} (the code does not parse: {tests.syntax_error})", tests)
        return Verdict(False, TESTS_DO_NOT_CALL if tests.other_asserts else NO_TESTS, tests)
    if tests.unittest_cases and not tests.assertions:
        output = "".join(r.stdout + r.stderr for r in python_runs)
        if not tests.runs_unittest or "Ran " not in output:
            return Verdict(False, UNITTEST_NOT_RUN, tests)
        if "FAILED (" in output or "\nOK" not in "\n" + output:
            return Verdict(False, UNITTEST_FAILED, tests)
    return Verdict(True, "", tests)


def weakened(previous: TestReport | None, current: TestReport) -> bool:
    """True when `current` has fewer tests than `previous` or lost one of its assertions (compared with
    whitespace normalised). A flag for review, not a rejection: a wrong test may rightly be corrected."""
    if previous is None or previous.count == 0:
        return False
    if current.count < previous.count:
        return True
    normal = {" ".join(a.split()) for a in current.assertions}
    return any(" ".join(a.split()) not in normal for a in previous.assertions)
