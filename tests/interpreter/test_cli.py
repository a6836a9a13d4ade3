"""`python -m interpreter exec`: a real subprocess, a real sandboxed kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from interpreter.cli import build_parser

pytestmark = pytest.mark.local_sandbox


def run_cli(*args: str, code: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "interpreter", *args],
        input=code,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_exec_json_prints_one_object_with_the_result():
    done = run_cli(
        "exec",
        "--sandbox",
        "local",
        "--json",
        code="import sys\nprint('out')\nprint('err', file=sys.stderr)\n2 + 3",
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "ok"
    assert result["stdout"] == "out\n" and result["stderr"] == "err\n"
    assert result["outputs"][0]["data"]["text/plain"] == "5"
    assert result["error"] is None and result["duration_s"] > 0


def test_exec_exits_zero_when_the_code_fails():
    done = run_cli("exec", "--sandbox", "local", "--json", code="raise ValueError('bad value')")
    assert done.returncode == 0
    result = json.loads(done.stdout)
    assert result["status"] == "error"
    assert result["error"]["name"] == "ValueError" and result["error"]["value"] == "bad value"


def test_exec_human_output_streams_text_then_a_status_line():
    done = run_cli("exec", "--sandbox", "local", code="print('hello')\n1/0")
    assert done.returncode == 0
    assert done.stdout.startswith("hello\n")
    assert "ZeroDivisionError" in done.stderr
    assert "[error," in done.stderr.splitlines()[-1]


def test_exec_timeout_flag_applies():
    done = run_cli("exec", "--sandbox", "local", "--json", "--timeout", "1", code="while True:\n    pass")
    assert done.returncode == 0
    assert json.loads(done.stdout)["status"] == "timeout"


def test_exec_memory_flag_applies():
    done = run_cli(
        "exec", "--sandbox", "local", "--json", "--memory-mb", "256", code="x = b'x' * (1024 ** 3)"
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["status"] == "memory_limit"


def test_exec_fails_with_one_line_when_no_sandbox_can_start():
    # Without bubblewrap and unshare on PATH the local sandbox cannot run.
    env = dict(os.environ, PATH="/nonexistent")
    done = run_cli("exec", "--sandbox", "local", code="print(1)", env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bubblewrap" in lines[0]


def test_bad_flags_are_refused_with_usage():
    done = run_cli("exec", "--sandbox", "nowhere")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


def test_parser_has_exec_and_image_commands():
    parser = build_parser()
    args = parser.parse_args(["exec", "--sandbox", "none", "--timeout", "5", "--memory-mb", "300", "--json"])
    assert (args.sandbox, args.timeout, args.memory_mb, args.json) == ("none", 5.0, 300, True)
    assert callable(args.func)


def test_exec_accepts_code_that_is_not_valid_utf8():
    done = subprocess.run(
        [sys.executable, "-m", "interpreter", "exec", "--sandbox", "local", "--json"],
        input=b"print('ok')  # \xff\xfe\n",
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["stdout"] == "ok\n"
