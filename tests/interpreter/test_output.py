"""Host-side output buffering (interpreter/output.py): head + tail per stream, live streaming of the head
only, the kernel's drop marker, the rich-output cap, and errors."""

from __future__ import annotations

import pytest

from interpreter import output
from interpreter.output import CappedStream, ExecutionOutput, strip_ansi


def test_a_capped_stream_keeps_head_and_tail_and_counts_the_middle():
    stream = CappedStream(10)
    assert stream.add("abc") == "abc"
    assert stream.add("defgh") == "de"  # the head holds 5; the rest is kept only for the result
    assert stream.full
    stream.add("ijklmnopqrstuvwxyz")
    assert stream.dropped == 26 - 10
    assert stream.text() == "abcde\n[... 16 characters dropped: output limit reached ...]\nvwxyz"


def test_under_the_cap_the_text_is_unchanged():
    stream = CappedStream(10)
    stream.add("abc")
    stream.add("def")
    assert stream.text() == "abcdef" and stream.dropped == 0


def test_only_the_head_streams_live_with_one_cut_notice():
    seen: list[tuple[str, str]] = []
    run = ExecutionOutput("id", 8, lambda name, text: seen.append((name, text)))
    run.stream("stdout", "0123456789")
    run.stream("stdout", "more")
    run.stream("stderr", "e")
    assert [text for name, text in seen if name == "stdout"][0] == "0123"
    notices = [text for _, text in seen if "output limit reached" in text]
    assert len(notices) == 1
    assert ("stderr", "e") in seen
    result = run.result("ok", 0.0)
    assert result.stdout.startswith("0123") and result.stdout.endswith("more")
    assert result.dropped_chars == 14 - 8
    assert "6 characters dropped" in result.message


def test_the_kernel_marker_is_stripped_and_counted():
    run = ExecutionOutput("id", 100, None)
    run.stream("stdout", "head\x1eautocoder-dropped:1234\x1etail")
    result = run.result("ok", 0.0)
    assert result.dropped_chars == 1234
    assert "\x1e" not in result.stdout and result.stdout.startswith("headtail")


def test_a_broken_callback_stops_streaming_but_not_the_execution():
    def broken(name: str, text: str) -> None:
        raise RuntimeError("ui gone")

    run = ExecutionOutput("id", 100, broken)
    run.stream("stdout", "a")
    run.stream("stdout", "b")
    assert run.on_output is None
    assert run.result("ok", 0.0).stdout == "ab"


def test_rich_outputs_past_the_cap_are_dropped_and_noted(monkeypatch):
    monkeypatch.setattr(output, "RICH_OUTPUT_CAP_CHARS", 10)
    run = ExecutionOutput("id", 100, None)
    run.rich("display_data", {"data": {"text/plain": "12345678"}})
    run.rich("display_data", {"data": {"image/png": "x" * 50}, "metadata": {"a": 1}})
    result = run.result("ok", 0.0)
    assert result.outputs == [
        {"output_type": "display_data", "data": {"text/plain": "12345678"}, "metadata": {}}
    ]
    assert "1 rich outputs dropped" in result.message


@pytest.mark.parametrize(
    ("content", "name", "value"),
    [
        (
            {"ename": "ValueError", "evalue": "\x1b[31mbad\x1b[0m", "traceback": ["\x1b[1mline\x1b[0m"]},
            "ValueError",
            "bad",
        ),
        (
            {"ename": "StdinNotImplementedError", "evalue": "raw_input"},
            "InputNotSupported",
            output.INPUT_MESSAGE,
        ),
    ],
)
def test_errors_are_ansi_free_and_input_gets_a_clear_message(content, name, value):
    run = ExecutionOutput("id", 100, None)
    run.set_error(content)
    assert (run.error.name, run.error.value) == (name, value)
    assert "\x1b" not in run.error.traceback


def test_strip_ansi():
    assert strip_ansi("\x1b[0;31mred\x1b[0m plain") == "red plain"
