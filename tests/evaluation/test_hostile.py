"""Hostile solutions, in the real local sandbox: each is contained and scored as a failure, and the run goes on
(the same run scores the correct samples next to them as passed)."""

from __future__ import annotations

import os
import uuid

import pytest

from evaluation.execution import check_payload
from evaluation.problems import InputTests, Problem, ProgramTests
from evaluation.scoring import score_problems
from interpreter.sandboxes.base import Limits, SandboxUnavailable
from interpreter.sandboxes.select import make_sandbox
from tests.conftest import require

pytestmark = [pytest.mark.local_sandbox, pytest.mark.slow]

CANONICAL = "def secret(x):\n    return x * 7919 + 12345\n"
# The expected outputs are 20264 and 28183; a solution that could read them anywhere would pass.
FIND_EXPECTED = """
import gc, io, os, sys

_TARGETS = {int("2026" + "4"), int("2818" + "3")}
_NEEDLES = [str(t).encode() for t in _TARGETS]


def _in_files():
    for root in ("/work", "/tmp", "/ipc", "/pkgs", "/dev/shm", "/proc/self/fd"):
        for dirpath, _, files in os.walk(root):
            for name in files:
                try:
                    data = io.open(os.path.join(dirpath, name), "rb").read(10**7)
                except Exception:
                    continue
                if any(n in data for n in _NEEDLES):
                    return True
    for path in ("/proc/self/cmdline", "/proc/self/environ", "/proc/1/cmdline", "/proc/1/environ"):
        try:
            if any(n in io.open(path, "rb").read() for n in _NEEDLES):
                return True
        except Exception:
            pass
    return False


def _in_memory():
    mine = {id(_TARGETS), id(_NEEDLES)}
    for obj in gc.get_objects():
        if id(obj) in mine:
            continue
        try:
            values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple, set)) else ()
            if any(type(v) is int and v in _TARGETS for v in values):
                return True
        except Exception:
            pass
    frame = sys._getframe()
    while frame is not None:
        if frame.f_code.co_filename != "<solution>" and any(
            type(v) is int and v in _TARGETS for v in frame.f_locals.values()
        ):
            return True
        frame = frame.f_back
    return False
"""

HOSTILE_INPUT_SOLUTIONS = {
    # name: (solution, expected verdict)
    "canonical": (CANONICAL, "passed"),
    "noisy but correct": (
        "import sys\ndef secret(x):\n    print('x' * 10**7)\n    sys.stderr.write('y' * 10**7)\n    return x * 7919 + 12345\n",
        "passed",
    ),
    "endless loop": ("def secret(x):\n    while True:\n        pass\n", "timeout"),
    "endless loop at import": ("while True:\n    pass\n" + CANONICAL, "timeout"),
    "loop that swallows the timer": (
        "def secret(x):\n    while True:\n        try:\n            while True:\n                pass\n"
        "        except BaseException:\n            pass\n",
        "timeout",
    ),
    "memory bomb": (
        "def secret(x):\n    hog = []\n    while True:\n        hog.append(bytearray(64 * 2**20))\n",
        "exception",
    ),
    "fork bomb": (
        "import posix\ndef secret(x):\n    while True:\n        try:\n            posix.fork()\n"
        "        except OSError:\n            pass\n",
        "timeout",
    ),
    "os.system": (
        "import os\ndef secret(x):\n    os.system('true')\n    return x * 7919 + 12345\n",
        "exception",
    ),
    "exit": ("def secret(x):\n    exit(0)\n", "exception"),
    "hard exit": ("import os\ndef secret(x):\n    os._exit(0)\n", "exception"),
    "kills itself": (
        "import posix, signal\ndef secret(x):\n    posix.kill(posix.getpid(), signal.SIGKILL)\n",
        "exception",
    ),
    "network": (
        "import socket\ndef secret(x):\n    socket.create_connection(('1.1.1.1', 80), timeout=3)\n    return x * 7919 + 12345\n",
        "exception",
    ),
    "reads files and memory for the expected outputs": (
        FIND_EXPECTED
        + "\ndef secret(x):\n    return x * 7919 + 12345 if _in_files() or _in_memory() else -1\n",
        "wrong answer",
    ),
    "__eq__ that always says yes": (
        "class Liar:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
        "def secret(x):\n    return Liar()\n",
        "wrong answer",
    ),
}


@pytest.fixture(scope="module")
def small_sandbox():
    """Small limits so the bombs go off quickly."""
    try:
        return make_sandbox(
            "local", Limits(memory_mb=512, max_processes=32, max_file_size_mb=64, cpu_time_s=120)
        )
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")


def _input_problem() -> Problem:
    return Problem(
        "hostile/input", "", "secret", [InputTests([[1], [2]], name="base")], canonical_solution=CANONICAL
    )


def test_the_sandbox_never_receives_the_expected_outputs():
    from evaluation.execution import PartReference

    refs = {"base": PartReference(times=[0.0, 0.0], outputs=[20264, 28183])}
    payload, _ = check_payload(_input_problem(), CANONICAL, refs, __import__("evaluation").TimeLimits())
    assert "20264" not in repr(payload) and "28183" not in repr(payload)


def test_hostile_solutions_are_contained_and_fail_while_the_run_goes_on(small_sandbox, tmp_path):
    names = list(HOSTILE_INPUT_SOLUTIONS)
    samples = [{"task_id": "hostile/input", "solution": HOSTILE_INPUT_SOLUTIONS[n][0]} for n in names]
    report = score_problems(
        [_input_problem()], samples, sandbox=small_sandbox, use_cache=False, progress=False
    )
    got = {name: verdict.why for name, verdict in zip(names, report.tasks["hostile/input"], strict=True)}
    assert got == {name: why for name, (_, why) in HOSTILE_INPUT_SOLUTIONS.items()}


def test_writes_outside_the_workdir_and_shell_commands_do_not_reach_the_host(small_sandbox, tmp_path):
    host_targets = [tmp_path / f"escape-{uuid.uuid4().hex}" for _ in range(3)]
    venv_target = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(os.sys.executable))), "pwned")
    writer = (
        "import io, posix\n"
        "def secret(x):\n"
        f"    for path in {[str(host_targets[0]), '/work/../escape', '/etc/pwned', '/usr/pwned', venv_target, '/pkgs/pwned']!r}:\n"
        "        try:\n"
        "            with io.open(path, 'w') as f:\n"
        "                f.write('x')\n"
        "        except OSError:\n"
        "            pass\n"
        f"    posix.system('touch {host_targets[1]} /tmp/pwned; echo x > {host_targets[2]}')\n"
        "    return -1\n"
    )
    report = score_problems(
        [_input_problem()],
        [
            {"task_id": "hostile/input", "solution": writer},
            {"task_id": "hostile/input", "solution": CANONICAL},
        ],
        sandbox=small_sandbox,
        use_cache=False,
        progress=False,
    )
    assert [v.why for v in report.tasks["hostile/input"]] == ["wrong answer", "passed"]
    assert not any(path.exists() for path in host_targets)
    assert (
        not os.path.exists(venv_target)
        and not os.path.exists("/etc/pwned")
        and not os.path.exists("/usr/pwned")
    )


def test_a_forged_result_file_cannot_run_code_on_the_host(small_sandbox, tmp_path):
    canary = tmp_path / "forged-pickle-ran"
    forger = (
        "import os, pickle, posix\n"
        "class Boom:\n"
        "    def __reduce__(self):\n"
        f"        return (posix.system, ('touch {canary}',))\n"
        "def secret(x):\n"
        "    data = pickle.dumps(('exec', 'ok', Boom()))\n"
        "    fd = posix.open('results.bin', os.O_WRONLY | os.O_TRUNC)\n"
        "    posix.write(fd, len(data).to_bytes(8, 'little') + data)\n"
        "    posix._exit(0)\n"
    )
    report = score_problems(
        [_input_problem()],
        [{"task_id": "hostile/input", "solution": forger}],
        sandbox=small_sandbox,
        use_cache=False,
        progress=False,
    )
    verdict = report.tasks["hostile/input"][0]
    assert not verdict.passed and verdict.why == "exception"
    assert not canary.exists()


def test_check_style_tests_are_not_on_any_file_the_solution_can_read(small_sandbox):
    problem = Problem(
        "hostile/program",
        "",
        "secret",
        [ProgramTests("assert secret(1) == 20264\nassert secret(2) == 28183\n")],
        canonical_solution=CANONICAL,
    )
    cheat = FIND_EXPECTED + "\ndef secret(x):\n    return x * 7919 + 12345 if _in_files() else -1\n"
    samples = [
        {"task_id": "hostile/program", "solution": cheat},
        {"task_id": "hostile/program", "solution": CANONICAL},
        {"task_id": "hostile/program", "solution": "def secret(x):\n    while True:\n        pass\n"},
        {"task_id": "hostile/program", "solution": "import os\ndef secret(x):\n    os.system('true')\n"},
    ]
    report = score_problems([problem], samples, sandbox=small_sandbox, use_cache=False, progress=False)
    assert [v.why for v in report.tasks["hostile/program"]] == [
        "wrong answer",
        "passed",
        "timeout",
        "exception",
    ]


def test_control_the_cheat_does_find_values_that_are_in_the_sandbox(small_sandbox):
    """Without this, the "reads files and memory" verdict above could pass by a broken search."""
    problem = Problem(
        "hostile/leaky",
        "",
        "secret",
        [InputTests([[1], [2], [20264]], name="base")],
        canonical_solution=CANONICAL,
    )
    cheat = FIND_EXPECTED + "\ndef secret(x):\n    return x * 7919 + 12345 if _in_memory() else -1\n"
    report = score_problems(
        [problem],
        [{"task_id": "hostile/leaky", "solution": cheat}],
        sandbox=small_sandbox,
        use_cache=False,
        progress=False,
    )
    assert report.tasks["hostile/leaky"][0].why == "passed"
