"""Crash-safe JSON lines: the appender survives a SIGKILL mid-write, the reader resumes, bad lines are named."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from interpreter.jsonl import JsonlAppender, iter_jsonl, read_jsonl, repair_torn_tail

ROOT = Path(__file__).resolve().parents[2]

# The child appends records in a loop through the real JsonlAppender. Its file is wrapped so that each
# line reaches the disk in 4 KiB pieces (flushed, with a pause between): a SIGKILL then almost always lands
# inside a line, which is the crash this module has to survive.
CHILD = textwrap.dedent(
    """
    import sys, time
    from interpreter.jsonl import JsonlAppender

    class PiecewiseFile:
        def __init__(self, f):
            self.f = f
        def write(self, data):
            for i in range(0, len(data), 4096):
                self.f.write(data[i : i + 4096])
                self.f.flush()
                time.sleep(0.0005)
        def __getattr__(self, name):
            return getattr(self.f, name)

    appender = JsonlAppender(sys.argv[1])
    appender._file = PiecewiseFile(appender._file)
    i = int(sys.argv[2])
    while True:
        appender.append({"n": i, "payload": "x" * 200_000})
        i += 1
    """
)


def _kill_mid_write(path: Path, start: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(start)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        base = path.stat().st_size if path.exists() else 0
        # Let it write a few lines, then kill it wherever it is.
        while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < base + 700_000):
            time.sleep(0.01)
        time.sleep(0.013)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_appender_killed_mid_write_leaves_a_file_the_reader_resumes_from(tmp_path):
    path = tmp_path / "out.jsonl"
    torn_seen = False
    expected = 0
    for _attempt in range(5):
        _kill_mid_write(path, expected)
        torn = not path.read_bytes().endswith(b"\n")
        torn_seen = torn_seen or torn
        rows = read_jsonl(path)  # the torn tail is ignored, nothing before it is lost
        assert [r["n"] for r in rows] == list(range(len(rows)))
        assert len(rows) >= expected + 3
        with (
            pytest.raises(ValueError, match=rf"{path.name}:{len(rows) + 1}: ")
            if torn
            else contextlib.nullcontext()
        ):
            read_jsonl(path, strict=True)
        expected = len(rows)
        if torn_seen:
            break
    assert torn_seen, "the child was never killed inside a line; the test did not exercise the crash"
    # Resume: a new appender repairs the tail and the next record lands on its own line.
    with JsonlAppender(path) as appender:
        appender.append({"n": expected, "payload": "resumed"})
    rows = read_jsonl(path, strict=True)
    assert [r["n"] for r in rows] == list(range(expected + 1))
    assert rows[-1]["payload"] == "resumed"


def test_torn_tail_cut_and_complete_tail_kept(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b": "unfini')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert repair_torn_tail(path) == len('{"a": 3, "b": "unfini')
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'
    # A complete last object that only lost its newline is kept (and finished) rather than cut.
    path.write_text('{"a": 1}\n{"a": 2}')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    with JsonlAppender(path) as appender:
        appender.append({"a": 3})
    assert read_jsonl(path, strict=True) == [{"a": 1}, {"a": 2}, {"a": 3}]


def test_bad_line_in_the_middle_is_named_in_one_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(ValueError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert message.startswith(f"{path}:3: not valid JSON")
    assert "\n" not in message
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a JSON object \(a list\)"):
        read_jsonl(path)
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not UTF-8"):
        read_jsonl(path)


def test_line_numbers_skip_nothing_and_missing_file_is_empty(tmp_path):
    assert read_jsonl(tmp_path / "none.jsonl") == []
    path = tmp_path / "n.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n')
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (3, {"a": 2})]


def test_unserialisable_object_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "u.jsonl"
    with JsonlAppender(path) as appender:
        appender.append({"ok": "é"})
        with pytest.raises(TypeError):
            appender.append({"bad": object()})
        with pytest.raises(TypeError):
            appender.append([1, 2])  # type: ignore[arg-type]
    assert path.read_text(encoding="utf-8") == json.dumps({"ok": "é"}, ensure_ascii=False) + "\n"
    with pytest.raises(ValueError, match="closed"):
        appender.append({"late": 1})
