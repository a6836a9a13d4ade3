"""What the chat shows: the loop's events folded into turns, and turns rendered as Gradio chat messages.

A `Turn` is one user message and everything the loop produced for it, in order: assistant prose, blocks
the model wrote, and executions. `Turn.apply(event)` folds one loop event in; `render_turns` turns the
whole history into the role/content dicts of `gr.Chatbot`. Where a block begins and ends, and its
language and code so far, come from the loop's block events (`BlockOpened`, `BlockUpdated`,
`BlockClosed`): this module never parses the model's text for tokens. So the raw execution tokens never
reach the screen: a block the model is still writing shows as a pending "writing code" message, a block
that runs as its execution message (code, stdout/stderr as they arrive, inline images, error, duration,
running/done status), and a block that did not run as the code the model wrote. So a block that ran is
on screen once, as its execution (also a bare ```python fence in execution mode "always").

Execution messages: the title starts with a status mark that the page's CSS (`EXEC_CSS`) colours (running,
ok, error, timed out, ...), the body says "(no output)" when a finished run showed nothing, and only the
last turn's latest execution stays open: earlier finished ones are collapsed (Gradio's status "done"),
one click away (and while a new message is answered, all of the history's are). A turn also shows the
files uploaded before it (`Turn.uploads`) and, collapsed, the answers Retry replaced (`Turn.earlier`),
which the model's dialogue no longer holds.

What this module deliberately does not do: talk to Gradio's server, run anything, or keep the dialogue the
model sees (the loop's `Done.messages` is that; see `app.chat`). Images are written to files by the
`ImageStore` given to `render_turns`, because the Chatbot shows files, not base64.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from interpreter.loop import (
    BlockClosed,
    BlockOpened,
    BlockUpdated,
    Done,
    ErrorEvent,
    ExecutionFinished,
    ExecutionStarted,
    Notice,
    OutputChunk,
    RoundFinished,
    TextDelta,
)
from interpreter.protocol import SPECIAL_TOKENS
from interpreter.results import (
    STATUS_CRASHED,
    STATUS_ERROR,
    STATUS_MEMORY,
    STATUS_OK,
    STATUS_TIMEOUT,
    ExecutionResult,
)

# More than this many characters of one execution's output are cut from the middle on screen (the export
# keeps everything): re-rendering megabytes on every streamed update would freeze the browser.
DISPLAY_OUTPUT_CHARS = 50_000

IMAGE_MIME_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/svg+xml": ".svg"}


@dataclass
class TextPart:
    raw: str = ""  # the assistant's text as generated (outside blocks; a stray token may be in it)
    # The round that produced it is over (nothing more streams into it).
    finished: bool = False

    def prose(self) -> str:
        """The text to show: special tokens removed, and a tail that may be the start of one still
        streaming in (a prose slice ends where a block opens, so only a stray token can be here)."""
        text = self.raw
        for token in SPECIAL_TOKENS:
            text = text.replace(token, "")
        return text if self.finished else _strip_partial_token(text)


@dataclass
class BlockPart(TextPart):
    """A block the model wrote; `raw` is its text, tokens included (a TextPart, so the turn's raw text is
    all TextParts in order). Shown as code while written and when it did not run; hidden once an
    execution shows it."""

    language: str = ""
    code: str = ""
    closed: bool = False
    problem: str = ""  # why it could not run ("" when it could)
    ran: bool = False  # an ExecPart (running, asking or done) shows it now


@dataclass
class ExecPart:
    exec_id: str
    language: str
    code: str
    chunks: list[list[str]] = field(default_factory=list)  # [stream, text], consecutive same-stream merged
    result: ExecutionResult | None = None
    state: str = "running"  # "asking" | "running" | "finished" | "skipped"

    def add_output(self, stream: str, text: str) -> None:
        if self.chunks and self.chunks[-1][0] == stream:
            self.chunks[-1][1] += text
        else:
            self.chunks.append([stream, text])


@dataclass
class NotePart:
    text: str
    kind: str = "notice"  # "notice" | "error" | "stopped"


Part = TextPart | BlockPart | ExecPart | NotePart


@dataclass
class Turn:
    """One user message and what the loop produced for it."""

    user: str
    dialogue_start: int  # len(dialogue) before this user message: Undo/Retry cut the dialogue back to it
    parts: list[Part] = field(default_factory=list)
    done_reason: str | None = None
    # Files uploaded since the last message, told to the model with this one ("data.csv (1.2 kB)").
    uploads: list[str] = field(default_factory=list)
    # The answers Retry replaced, oldest first (shown collapsed; the model's dialogue has only `parts`).
    earlier: list[list[Part]] = field(default_factory=list)

    def apply(self, event: object) -> None:
        if isinstance(event, TextDelta):
            block = self._open_block()
            if block is not None:
                block.raw += event.text
                return
            last = self.parts[-1] if self.parts else None
            if type(last) is TextPart and not last.finished:
                last.raw += event.text
            else:
                self.parts.append(TextPart(event.text))
        elif isinstance(event, BlockOpened):
            self._finish_text()
            self.parts.append(BlockPart())
        elif isinstance(event, BlockUpdated):
            block = self._open_block()
            if block is not None:
                block.language, block.code = event.language, event.code
        elif isinstance(event, BlockClosed):
            block = self._open_block()
            if block is not None:
                block.closed, block.problem = True, event.problem
                if event.language or event.code:
                    block.language, block.code = event.language, event.code
                block.finished = True
        elif isinstance(event, ExecutionStarted):
            self._finish_text()
            self._block_now_running()
            asking = self._find_exec(state="asking")
            if asking is not None:
                asking.exec_id, asking.language, asking.code, asking.state = (
                    event.exec_id,
                    event.language,
                    event.code,
                    "running",
                )
            else:
                self.parts.append(ExecPart(event.exec_id, event.language, event.code))
        elif isinstance(event, OutputChunk):
            part = self._find_exec(exec_id=event.exec_id)
            if part is not None:
                part.add_output(event.stream, event.text)
        elif isinstance(event, ExecutionFinished):
            part = self._find_exec(exec_id=event.exec_id)
            if part is not None:
                part.result = event.result
                part.state = "finished"
        elif isinstance(event, RoundFinished):
            self._finish_text(round_over=True)
        elif isinstance(event, Notice):
            self._finish_text()
            self.parts.append(NotePart(event.message))
        elif isinstance(event, ErrorEvent):
            self._finish_text(round_over=True)
            self.parts.append(NotePart(event.message, kind="error"))
        elif isinstance(event, Done):
            self._finish_text(round_over=True)
            self.done_reason = event.reason
            for part in self.parts:
                if isinstance(part, ExecPart) and part.state in ("running", "asking"):
                    part.state = "finished" if part.result else "skipped"
            if event.reason == "cancelled":
                self.parts.append(NotePart("stopped", kind="stopped"))

    def ask(self, language: str, code: str) -> None:
        """The loop waits for the user to approve this block (execution mode "ask")."""
        self._finish_text()
        self._block_now_running()
        self.parts.append(ExecPart(exec_id="", language=language, code=code, state="asking"))

    def skip_asked(self) -> None:
        part = self._find_exec(state="asking")
        if part is not None:
            part.state = "skipped"

    def executions(self) -> list[ExecPart]:
        return [p for p in self.parts if isinstance(p, ExecPart)]

    def raw_text(self) -> str:
        """Everything the model wrote in this turn, tokens included."""
        return "".join(p.raw for p in self.parts if isinstance(p, TextPart))

    def _open_block(self) -> BlockPart | None:
        """The block being written, if any (a note about it may have come after it)."""
        for part in reversed(self.parts):
            if isinstance(part, NotePart):
                continue
            return part if isinstance(part, BlockPart) and not part.closed else None
        return None

    def _block_now_running(self) -> None:
        """The last closed block is shown by the execution message from now on."""
        for part in reversed(self.parts):
            if isinstance(part, BlockPart) and part.closed and not part.ran:
                part.ran = True
                return

    def _finish_text(self, round_over: bool = False) -> None:
        """Text stops growing; at the end of a round a block still open was cut off (never closed)."""
        if self.parts and type(self.parts[-1]) is TextPart:
            self.parts[-1].finished = True
        if round_over:
            block = self._open_block()
            if block is not None:
                block.closed = block.finished = True

    def _find_exec(self, exec_id: str | None = None, state: str | None = None) -> ExecPart | None:
        for part in reversed(self.parts):
            if isinstance(part, ExecPart) and (
                (exec_id is not None and part.exec_id == exec_id)
                or (state is not None and part.state == state)
            ):
                return part
        return None


# ---------------------------------------------------------------------------------------------- display text


def _strip_partial_token(text: str) -> str:
    """Drop a tail that is a proper prefix of a special token (the rest of it has not streamed in yet)."""
    cut = text.rfind("<")
    if cut < 0 or len(text) - cut > max(len(t) for t in SPECIAL_TOKENS):
        return text
    tail = text[cut:]
    if any(token.startswith(tail) for token in SPECIAL_TOKENS):
        return text[:cut]
    return text


def fenced(text: str, info: str = "") -> str:
    """A Markdown code block that survives backticks inside `text`."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text.rstrip(chr(10))}\n{fence}"


def clip(text: str, limit: int = DISPLAY_OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n… {len(text) - limit} characters not shown here (the export has them all) …\n{text[-half:]}"


# ---------------------------------------------------------------------------------------------- messages


class ImageStore:
    """Writes images from display_data to files named by content hash, so each is written once."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path_for(self, mime: str, data: str) -> Path:
        raw = data.encode() if mime == "image/svg+xml" else base64.b64decode(data)
        digest = hashlib.sha256(raw).hexdigest()[:24]
        path = self.folder / f"{digest}{IMAGE_MIME_SUFFIX[mime]}"
        if not path.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            # A temp name of its own: two chats may write the same plot at once.
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(raw)
            os.replace(tmp, path)
        return path


def images_of(result: ExecutionResult | None) -> list[tuple[str, str]]:
    """(mime, data) of every image in a result's rich outputs, in order."""
    found = []
    for output in (result.outputs if result else []) or []:
        data = output.get("data") or {}
        for mime in IMAGE_MIME_SUFFIX:
            if mime in data:
                value = data[mime]
                found.append((mime, value if isinstance(value, str) else "".join(value)))
                break
    return found


# Each execution's title starts with a mark for its status, written as a Markdown link to a fragment naming
# the status ("[✓](#exec-ok)"): Gradio renders a title as Markdown but gives a message no class of its own,
# so `a[href="#exec-ok"]` is the one hook the page's CSS (EXEC_CSS) can colour. The link goes nowhere: the
# CSS makes it unclickable, so a click on it opens or closes the message like the rest of the title.
STATUS_MARKS = {
    "asking": "?",
    "running": "▶",
    "ok": "✓",
    "error": "✗",
    "timeout": "◷",
    "crashed": "✗",
    "interrupted": "■",
    "skipped": "–",
}

STATUS_COLOURS = {  # mid tones that read on the light and the dark theme alike
    "asking": "#ca8a04",
    "running": "#2563eb",
    "ok": "#16a34a",
    "error": "#dc2626",
    "timeout": "#ea580c",
    "crashed": "#9f1239",
    "interrupted": "#6b7280",
    "skipped": "#6b7280",
}


def _exec_css() -> str:
    """Execution messages: code and output at the chat's full contrast (Gradio dims a titled message's
    content and title to 0.8 opacity, twice over), and each status in its colour (mark and left border)."""
    lines = [
        "#chatbot .thought-group .message-content, #chatbot .thought-group .prose { opacity: 1; }",
        '#chatbot .thought-group > .title a[href^="#exec-"] { pointer-events: none; text-decoration: none; '
        "font-weight: 700; }",
    ]
    for status, colour in STATUS_COLOURS.items():
        lines.append(f'#chatbot .thought-group > .title a[href="#exec-{status}"] {{ color: {colour}; }}')
        lines.append(
            f'#chatbot .thought-group:has(> .title a[href="#exec-{status}"]) '
            f"{{ border-left: 4px solid {colour}; }}"
        )
    return "\n".join(lines) + "\n"


EXEC_CSS = _exec_css()


def exec_status(part: ExecPart) -> str:
    """One of STATUS_MARKS' keys."""
    if part.state in ("asking", "skipped"):
        return part.state
    if part.state == "running" or part.result is None:
        return "running"
    result = part.result
    if result.status == STATUS_OK:
        return "ok"
    if result.status == STATUS_ERROR:
        interrupted = result.error is not None and result.error.name == "KeyboardInterrupt"
        return "interrupted" if interrupted else "error"
    if result.status == STATUS_TIMEOUT:
        return "timeout"
    return "crashed" if result.status in (STATUS_MEMORY, STATUS_CRASHED) else "error"


def _exec_title(part: ExecPart, marked: bool = True) -> str:
    """The title: a status mark (a link for the CSS when `marked`, else the bare symbol), then in words."""
    status = exec_status(part)
    mark = f"[{STATUS_MARKS[status]}](#exec-{status})" if marked else STATUS_MARKS[status]
    return f"{mark} {_exec_title_words(part)}"


def _exec_title_words(part: ExecPart) -> str:
    lang = part.language
    if part.state == "asking":
        return f"Run this {lang} code? (Run, edit or Skip it below the chat)"
    if part.state == "skipped":
        return f"{lang}: not run"
    if part.state == "running" or part.result is None:
        return f"Running {lang}…"
    result = part.result
    if result.status == STATUS_OK:
        return f"Ran {lang}"
    if result.status == STATUS_ERROR:
        name = result.error.name if result.error else "error"
        if name == "KeyboardInterrupt":
            return f"{lang}: interrupted"
        return f"{lang}: {name}"
    if result.status == STATUS_TIMEOUT:
        return f"{lang}: timed out"
    if result.status == STATUS_MEMORY:
        return f"{lang}: memory limit exceeded"
    if result.status == STATUS_CRASHED:
        return f"{lang}: kernel crashed"
    return f"{lang}: {result.status}"


NO_OUTPUT = "_(no output)_"


def exec_body(part: ExecPart) -> str:
    sections = [fenced(part.code, part.language)]
    result = part.result
    if result is not None and (result.stdout or result.stderr) and not part.chunks:
        chunks = [["stdout", result.stdout], ["stderr", result.stderr]]
    else:
        chunks = part.chunks
    for stream, text in chunks:
        if text:
            label = "output" if stream == "stdout" else "stderr"
            sections.append(f"**{label}**\n\n{fenced(clip(text), 'text')}")
    if result is not None:
        for output in result.outputs or []:
            data = output.get("data") or {}
            if "text/plain" in data and not any(mime in data for mime in IMAGE_MIME_SUFFIX):
                text = data["text/plain"]
                text = text if isinstance(text, str) else "".join(text)
                sections.append(f"**result**\n\n{fenced(clip(text), 'text')}")
        if result.error is not None and result.error.name != "KeyboardInterrupt":
            sections.append(
                f"**error**\n\n{fenced(clip(result.error.traceback or result.error.value), 'text')}"
            )
        if result.dropped_chars:
            sections.append(f"_{result.dropped_chars} characters of output were dropped by the kernel's cap_")
        if result.state_lost:
            sections.append("⚠ **The kernel was restarted: variables and imports are gone.**")
        if result.message:
            sections.append(f"_{result.message}_")
        if len(sections) == 1 and not result.outputs and part.state == "finished":
            # It ran and printed nothing, returned nothing, drew nothing: say so, or an empty message
            # reads as output still to come.
            sections.append(NO_OUTPUT)
    return "\n\n".join(sections)


def exec_message(part: ExecPart, collapsed: bool = False) -> dict:
    """The execution as a titled chat message. `collapsed`: a later execution exists, so a finished one
    closes (Gradio's status "done"; the user can open it). Running and asking ones stay open with a
    spinner; the latest finished one stays open without a status, so its output is on screen."""
    metadata: dict = {"title": _exec_title(part)}
    if part.state in ("running", "asking"):
        metadata["status"] = "pending"  # spinner, open
    elif collapsed:
        metadata["status"] = "done"
    if part.result is not None:
        metadata["duration"] = round(part.result.duration_s, 3)
    return {"role": "assistant", "content": exec_body(part), "metadata": metadata}


def uploads_text(descriptions: list[str], pending: bool = False) -> str:
    """The chat's note about uploaded files (`pending`: the model is told with the next message)."""
    names = ", ".join(descriptions)
    if pending:
        return f"_Uploaded to the working directory: {names}. The model is told with your next message._"
    return f"_Uploaded to the working directory: {names}_"


def answer_markdown(parts: list[Part]) -> str:
    """An answer as one Markdown text (prose, code, executions with their output, notes), for an answer
    shown inside one message (an earlier answer Retry replaced). Images are not inlined (the Chatbot
    shows images as file messages only); the text says how many there were."""
    sections = []
    for part in parts:
        if isinstance(part, BlockPart):
            if not part.ran:
                sections.append(fenced(part.code, part.language or "python"))
        elif isinstance(part, TextPart):
            prose = part.prose().strip()
            if prose:
                sections.append(prose)
        elif isinstance(part, ExecPart):
            sections.append(f"**{_exec_title(part, marked=False)}**\n\n{exec_body(part)}")
            count = len(images_of(part.result))
            if count:
                sections.append(
                    f"_({count} image{'s' if count > 1 else ''}, not shown in an earlier answer)_"
                )
        elif isinstance(part, NotePart):
            sections.append(f"_{part.kind}: {part.text}_")
    return "\n\n".join(sections) or "_(empty answer)_"


def _last_exec(turn: Turn) -> ExecPart | None:
    executions = turn.executions()
    return executions[-1] if executions else None


def render_turn(turn: Turn, images: ImageStore) -> list[dict]:
    """One turn's messages; its last execution stays open, earlier ones collapse."""
    return _render_turn(turn, images, _last_exec(turn))


def _render_turn(turn: Turn, images: ImageStore, keep_open: ExecPart | None) -> list[dict]:
    messages: list[dict] = []
    if turn.uploads:
        messages.append({"role": "user", "content": uploads_text(turn.uploads)})
    messages.append({"role": "user", "content": turn.user})
    total = len(turn.earlier) + 1
    for number, parts in enumerate(turn.earlier, start=1):
        messages.append(
            {
                "role": "assistant",
                "content": answer_markdown(parts),
                "metadata": {
                    "title": f"↻ Earlier answer {number} of {total} (replaced by Retry)",
                    "status": "done",
                },
            }
        )
    for part in turn.parts:
        if isinstance(part, BlockPart):
            if part.ran:
                continue  # its execution message shows the code
            language = part.language or "python"
            if part.closed:
                # It did not run (a problem, no executions left, stopped): show it as the model wrote it.
                messages.append({"role": "assistant", "content": fenced(part.code, language)})
            else:
                messages.append(
                    {
                        "role": "assistant",
                        "content": fenced(part.code, language),
                        "metadata": {"title": f"✎ Writing {language}…", "status": "pending"},
                    }
                )
        elif isinstance(part, TextPart):
            prose = part.prose().strip()
            if prose:
                messages.append({"role": "assistant", "content": prose})
        elif isinstance(part, ExecPart):
            messages.append(exec_message(part, collapsed=part is not keep_open))
            for mime, data in images_of(part.result):
                messages.append({"role": "assistant", "content": {"path": str(images.path_for(mime, data))}})
        elif isinstance(part, NotePart):
            prefix = {"error": "⚠ **Error:** ", "stopped": "■ _", "notice": "_Note: "}[part.kind]
            suffix = "_" if part.kind in ("stopped", "notice") else ""
            messages.append({"role": "assistant", "content": f"{prefix}{part.text}{suffix}"})
    return messages


def render_turns(turns: list[Turn], images: ImageStore, open_latest: bool = True) -> list[dict]:
    """The whole chat. Executions collapse once a later message exists: only the last turn's last one
    stays open, and with `open_latest=False` (the history above a message being answered) none."""
    keep_open = _last_exec(turns[-1]) if turns and open_latest else None
    messages: list[dict] = []
    for turn in turns:
        messages.extend(_render_turn(turn, images, keep_open))
    return messages
