"""What one execution produces, bounded: the host-side output buffering of `interpreter.kernel`.

`ExecutionOutput` collects the iopub messages of one execute_request: stdout/stderr through a `CappedStream`
each (the first and last half of the cap kept, the middle dropped and counted, only the head streamed live
to the `on_output` callback, plus one notice when the cut starts), rich outputs (execute_result,
display_data) as mime bundles up to RICH_OUTPUT_CAP_CHARS per execution, the error with an ANSI-free
traceback, and finally the `ExecutionResult`. The kernel-side cap (interpreter/kernel_prelude.py) reports
what it dropped with a marker in the stream; `DROPPED_TOKEN` strips it here and adds the count.

What it deliberately does not do: talk to the kernel, count the bytes an execution sends (the byte budget
lives with the sockets, in `interpreter.kernel`), or decide the result's status (the caller does).
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from collections.abc import Callable

from interpreter.results import ExecutionError, ExecutionResult

# Called with ("stdout" | "stderr", text) as output arrives, so a UI can stream it.
OutputCallback = Callable[[str, str], None]

DEFAULT_OUTPUT_CAP_CHARS = 100_000
# Rich outputs (images, html) beyond this many characters per execution are replaced by a note.
RICH_OUTPUT_CAP_CHARS = 20_000_000
# The kernel-side cap's marker: how many characters the kernel dropped (see interpreter/kernel_prelude.py).
DROPPED_TOKEN = re.compile(r"\x1eautocoder-dropped:(\d+)\x1e")

INPUT_MESSAGE = (
    "input() is not available: code runs without a keyboard. Put the values in the code instead "
    "(e.g. replace input() with a literal)."
)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class CappedStream:
    """Keeps the first and last `cap // 2` characters of a stream and counts what fell in between."""

    def __init__(self, cap: int) -> None:
        self.head_cap = cap // 2
        self.tail_cap = cap - self.head_cap
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.dropped = 0

    def add(self, text: str) -> str:
        """Store `text`; return the part that is still within the head (what may be streamed live)."""
        live = ""
        room = self.head_cap - self.head_len
        if room > 0:
            live = text[:room]
            self.head.append(live)
            self.head_len += len(live)
            text = text[room:]
        if text:
            self.tail.append(text)
            self.tail_len += len(text)
            while self.tail_len > self.tail_cap:
                excess = self.tail_len - self.tail_cap
                first = self.tail[0]
                if len(first) <= excess:
                    self.tail.popleft()
                    self.tail_len -= len(first)
                    self.dropped += len(first)
                else:
                    self.tail[0] = first[excess:]
                    self.tail_len -= excess
                    self.dropped += excess
        return live

    @property
    def full(self) -> bool:
        return self.head_len >= self.head_cap

    def text(self) -> str:
        head = "".join(self.head)
        tail = "".join(self.tail)
        if self.dropped:
            return f"{head}\n[... {self.dropped} characters dropped: output limit reached ...]\n{tail}"
        return head + tail


class ExecutionOutput:
    """Collects what one execute_request produces."""

    def __init__(self, msg_id: str, cap: int, on_output: OutputCallback | None) -> None:
        self.msg_id = msg_id
        self.streams = {"stdout": CappedStream(cap), "stderr": CappedStream(cap)}
        self.on_output = on_output
        self.outputs: list[dict] = []
        self.rich_chars = 0
        self.rich_dropped = 0
        self.error: ExecutionError | None = None
        self.reply: dict | None = None
        self.idle = False
        self.cut_notice_sent = {"stdout": False, "stderr": False}

    def stream(self, name: str, text: str) -> None:
        name = name if name in self.streams else "stdout"
        capped = self.streams[name]
        if "\x1e" in text:
            # The kernel's own cap reports what it dropped (see interpreter/kernel_prelude.py).
            def count(match: re.Match) -> str:
                capped.dropped += int(match.group(1))
                return ""

            text = DROPPED_TOKEN.sub(count, text)
        live = capped.add(text)
        if self.on_output is None:
            return
        if live:
            self._emit(name, live)
        if capped.full and capped.tail_len and not self.cut_notice_sent[name]:
            self.cut_notice_sent[name] = True
            self._emit(
                name, "\n[... output limit reached: the rest is cut, its end is kept for the result ...]\n"
            )

    def _emit(self, name: str, text: str) -> None:
        try:
            self.on_output(name, text)
        except Exception:  # noqa: BLE001 - a broken UI callback must not break the execution
            self.on_output = None

    def rich(self, output_type: str, content: dict) -> None:
        data = content.get("data") or {}
        size = sum(len(v) if isinstance(v, str) else len(json.dumps(v)) for v in data.values())
        if self.rich_chars + size > RICH_OUTPUT_CAP_CHARS:
            self.rich_dropped += 1
            return
        self.rich_chars += size
        self.outputs.append(
            {"output_type": output_type, "data": data, "metadata": content.get("metadata") or {}}
        )

    def set_error(self, content: dict) -> None:
        name = content.get("ename", "Error")
        value = content.get("evalue", "")
        if name == "StdinNotImplementedError":
            name, value = "InputNotSupported", INPUT_MESSAGE
        traceback = strip_ansi("\n".join(content.get("traceback") or []))
        self.error = ExecutionError(name=name, value=strip_ansi(value), traceback=traceback)

    def result(
        self, status: str, started: float, *, state_lost: bool = False, message: str = ""
    ) -> ExecutionResult:
        dropped = sum(s.dropped for s in self.streams.values())
        if self.rich_dropped:
            note = f"{self.rich_dropped} rich outputs dropped: over {RICH_OUTPUT_CAP_CHARS} characters"
            message = f"{message}; {note}" if message else note
        if dropped and not message:
            message = f"output capped: {dropped} characters dropped from the middle"
        return ExecutionResult(
            status=status,
            stdout=self.streams["stdout"].text(),
            stderr=self.streams["stderr"].text(),
            outputs=self.outputs,
            error=self.error,
            duration_s=time.monotonic() - started,
            state_lost=state_lost,
            dropped_chars=dropped,
            message=message,
        )
