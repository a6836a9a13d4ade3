"""AutoCoder's token protocol: special tokens, block detection (also while streaming), result and dialogue rendering.

The tokens
----------
The released AutoCoder checkpoints ask for execution by wrapping one fenced block in two tokens:

    <API_RUN_START>```python
    print(6 * 7)
    ```<API_RUN_STOP>

`RUN_START` / `RUN_STOP` are those two public tokens. The paper adds four special tokens to the tokenizer;
the other two were never published, so this project defines its own: `OUTPUT_START` / `OUTPUT_STOP` wrap
interpreter output in our own training data (render style "tokens"). The released checkpoints never saw
them; they get output as a plain user turn in the original demo's `result.stdout:` format (style "demo").
This module is the only place that spells the four tokens; everything else imports them from here.

What it does
------------
- `BlockDetector`: an incremental detector fed text chunks of any size (a token may be split across
  chunks). It hands back, in order, the text it has consumed (`Text`, exact slices of the input), where
  a block begins (`Opened`, between the prose and the opening token or fence), the blocks it found
  (`Block`) and notes about malformed output (`Note`); `open_block()` says the language and code so far
  of a block still being written. Feeding a text in any chunking gives the same blocks, openings and
  notes as feeding it whole.
- `render_result`: what the model sees of one round's executions, truncated (head and tail).
- `render_dialogue`: a DESIGN.md dialogue (system/user/assistant/execution) -> the messages a model sees.

Defined behaviour for malformed model output (never an exception):

    unclosed block at end of turn     Block(problem="unclosed"): not run; the model is told
    block closed by ``` but no RUN_STOP at end of turn
                                      a normal runnable block with `stop_token_missing=True` (OpenAI-style
                                      servers strip the stop string from their output); nobody is told
    no ``` fence after RUN_START      Block(problem="missing_fence"): not run; the model is told
    no closing ``` before RUN_STOP    runnable; the user gets a Note
    RUN_START inside an open block    the unfinished block before it is dropped; the user gets a Note
    RUN_STOP with no block open       kept as text; the user gets a Note
    unknown language (```js)          Block(problem="unknown_language"): not run; the model is told
    no language (```\\n)               run as python; the user gets a Note
    empty code                        Block(problem="empty"): not run; the model is told

Execution modes (`EXECUTION_MODES`): "auto" runs blocks wrapped in the tokens (how AutoCoder is trained);
"always" also runs every bare fenced python block (for models without the tokens, as OpenCodeInterpreter
does); "ask" detects like "auto" and leaves the decision to an approve callback (see `interpreter.loop`).
`BlockDetector(bare_python=True, bare_sh=True)` also runs bare ```sh / ```bash / ```shell fences (the data
pipeline's teachers write their installs that way; the app does not ask for it).

What it deliberately does not do: run code (see `interpreter.session`), apply a chat template (the
backend does that, with add_generation_prompt=True), or know any model's end-of-turn token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

# The only import of ours: the leaf result types (training imports this module; it must not pull in the
# kernel). RunRecord lived here before interpreter.results; `from interpreter.protocol import RunRecord` works.
from interpreter.results import ExecutionResult, RunRecord

RUN_START = "<API_RUN_START>"  # public (released checkpoints): opens a block the model wants run
RUN_STOP = "<API_RUN_STOP>"  # public (released checkpoints): closes it; the model's turn ends here
OUTPUT_START = "<API_OUTPUT_START>"  # this project's: opens interpreter output (render style "tokens")
OUTPUT_STOP = "<API_OUTPUT_STOP>"  # this project's: closes it

SPECIAL_TOKENS = (RUN_START, RUN_STOP, OUTPUT_START, OUTPUT_STOP)

EXECUTION_MODES = ("auto", "always", "ask")
RENDER_STYLES = ("demo", "tokens")
ROLES = ("system", "user", "assistant", "execution")

# Fence tags the detector accepts, by the language they run as. Keys are lower-cased tags.
LANGUAGE_ALIASES = {
    "python": "python",
    "python3": "python",
    "py": "python",
    "ipython": "python",
    "sh": "sh",
    "bash": "sh",
    "shell": "sh",
    "console": "sh",
}
# A missing tag (```\n) runs as python: the released models only ever run python code without a tag.
DEFAULT_LANGUAGE = "python"

# Model-visible output is cut in the middle beyond this many characters at each end.
DEFAULT_HEAD_CHARS = 1000
DEFAULT_TAIL_CHARS = 1000

# Problem kinds of a Block that is not run.
PROBLEM_UNCLOSED = "unclosed"
PROBLEM_MISSING_FENCE = "missing_fence"
PROBLEM_UNKNOWN_LANGUAGE = "unknown_language"
PROBLEM_EMPTY = "empty"


@dataclass(frozen=True)
class Text:
    """A slice of the input, passed through unchanged (special tokens included)."""

    text: str


@dataclass(frozen=True)
class Note:
    """Something odd in the model's output that did not stop the detector; one line for the user."""

    kind: str  # "duplicate_start" | "stray_stop" | "missing_closing_fence" | "no_language"
    message: str


@dataclass(frozen=True)
class Block:
    """A code block the model asked to run. `problem` is "" when it can run, else why it cannot."""

    language: str  # "python" | "sh" when runnable; the tag as written otherwise
    code: str
    raw: str  # the block as the model wrote it, tokens included
    wrapped: bool = True  # False: a bare ```python fence found in "always" mode
    problem: str = ""
    note: str = ""  # one line for the model and the user when `problem` is set
    stop_token_missing: bool = False  # closed by end of turn after a complete fence (stop string stripped)

    @property
    def runnable(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class Opened:
    """A block begins: the `Text` before it is prose, the `Text` from here to its `Block` is the block."""

    wrapped: bool = True  # False: a bare ```python fence (in "always" mode)


DetectorEvent = Text | Note | Block | Opened


def normalize_language(tag: str) -> str | None:
    """ "python" or "sh" for a fence tag we can run (aliases included), else None."""
    return LANGUAGE_ALIASES.get(tag.strip().lower())


def block_text(language: str, code: str) -> str:
    """The canonical wrapped block, as the released models write it."""
    return f"{RUN_START}```{language}\n{code}\n```{RUN_STOP}"


# A bare opening fence in "always" mode: ```python at a line start, the whole line up to its newline;
# with `bare_sh` also ```sh / ```bash / ```shell (a teacher's installs without the tokens).
_BARE_OPEN = re.compile(r"^```[ \t]*(python3?|py)\b[^\n]*\n", re.MULTILINE | re.IGNORECASE)
_BARE_OPEN_WITH_SH = re.compile(
    r"^```[ \t]*(python3?|py|sh|bash|shell)\b[^\n]*\n", re.MULTILINE | re.IGNORECASE
)
_BARE_CLOSE = re.compile(r"^```", re.MULTILINE)
_OUT, _IN, _BARE = "out", "in", "bare"


class BlockDetector:
    """Finds execution blocks in streamed text. Feed chunks with `feed`, then call `finish` once.

    Text is handed back as soon as no later chunk can change how it is read: a possible partial token at
    the end of the input (e.g. "<API_RU") is held until the next chunk decides it. A `Block` comes right
    after the `Text` that ends with its closing token, so a caller that stops at a block knows exactly how
    much of the stream belongs to the turn.
    """

    def __init__(self, bare_python: bool = False, bare_sh: bool = False):
        self.bare_python = bare_python
        self.bare_sh = bare_sh  # also bare ```sh/```bash/```shell fences (only together with bare_python)
        self._bare_open = _BARE_OPEN_WITH_SH if bare_sh else _BARE_OPEN
        self._bare_language = DEFAULT_LANGUAGE  # of the open bare block
        self._text = ""  # everything fed so far (the scanner needs look-behind for line starts)
        self._pos = 0  # everything before this index is decided
        self._emitted = 0  # everything before this index was handed back as Text
        self._state = _OUT
        self._block_start = 0  # index of the RUN_START / bare fence of the open block
        self._body_start = 0  # index just after it
        self._finished = False

    def feed(self, chunk: str) -> list[DetectorEvent]:
        if self._finished:
            raise RuntimeError("BlockDetector.feed after finish(); make a new detector per turn")
        self._text += chunk
        return self._scan(final=False)

    def finish(self) -> list[DetectorEvent]:
        """End of the turn: decide held text and report a block left open."""
        if self._finished:
            return []
        self._finished = True
        events = self._scan(final=True)
        if self._state == _IN:
            events += self._emit_to(len(self._text))
            events += self._block_at_end()
        elif self._state == _BARE:
            events += self._emit_to(len(self._text))
            raw = self._text[self._block_start :]
            note = (
                f"a ```{self._bare_language} block was not closed before the end of the turn; it was not run"
            )
            events.append(Block(self._bare_language, "", raw, False, PROBLEM_UNCLOSED, note))
        else:
            events += self._emit_to(len(self._text))
        self._state = _OUT
        return events

    def open_block(self) -> tuple[str, str] | None:
        """(language, code so far) of the block being written, from the text handed back so far; None
        outside a block. The language is the runnable name when known ("python", "sh"), else the fence
        tag as written ("" until the fence line is complete); the code lacks a closing fence in progress."""
        if self._state == _OUT or self._finished:
            return None
        body = self._text[self._body_start : self._emitted]
        if self._state == _BARE:
            language, code = self._bare_language, body
        else:
            body = body.lstrip()
            if not body.startswith("```"):
                return "", ""
            first, newline, code = body[3:].partition("\n")
            if not newline:
                return "", ""
            tag = (first.split() or [""])[0]
            language = normalize_language(tag) or tag or DEFAULT_LANGUAGE
        # A closing fence being written ("`", "``", "```" at the start of the last line) is not code.
        last_line_start = code.rfind("\n") + 1
        if code[last_line_start:].strip() and not code[last_line_start:].strip().strip("`"):
            code = code[:last_line_start]
        return language, code.rstrip("\n")

    # -- scanning ---------------------------------------------------------------------------------------

    def _emit_to(self, end: int) -> list[DetectorEvent]:
        if end <= self._emitted:
            return []
        piece = self._text[self._emitted : end]
        self._emitted = end
        return [Text(piece)]

    def _scan(self, final: bool) -> list[DetectorEvent]:
        events: list[DetectorEvent] = []
        while True:
            step = {_OUT: self._scan_out, _IN: self._scan_in, _BARE: self._scan_bare}[self._state](final)
            if step is None:
                break
            events += step
        # Hand back what is decided: everything before a possible partial token or fence line.
        events += self._emit_to(self._pos)
        return events

    def _hold_start(self, tokens: Iterable[str], final: bool) -> int:
        """Index from which the end of the text could still grow into one of `tokens`."""
        if final:
            return len(self._text)
        text = self._text
        hold = len(text)
        for token in tokens:
            for size in range(min(len(token) - 1, len(text) - self._pos), 0, -1):
                if text.endswith(token[:size]):
                    hold = min(hold, len(text) - size)
                    break
        return hold

    def _bare_hold(self, final: bool) -> int:
        """Index of a last line that could still become a bare ```python opening fence."""
        if final or not self.bare_python:
            return len(self._text)
        line_start = self._text.rfind("\n") + 1
        if line_start < self._pos:
            return len(self._text)
        line = self._text[line_start:]
        if "```".startswith(line) or line.startswith("```"):
            return line_start
        return len(self._text)

    def _scan_out(self, final: bool) -> list[DetectorEvent] | None:
        text, pos = self._text, self._pos
        candidates = []
        i = text.find(RUN_START, pos)
        if i >= 0:
            candidates.append((i, "start", None))
        i = text.find(RUN_STOP, pos)
        if i >= 0:
            candidates.append((i, "stray", None))
        if self.bare_python:
            m = self._bare_open.search(text, pos)
            if m:
                candidates.append((m.start(), "bare", m))
        # Only act on a candidate that nothing still arriving could pre-empt: one that starts before any
        # possible partial token or half-written fence line at the end of the text.
        hold = min(self._hold_start((RUN_START, RUN_STOP), final), self._bare_hold(final))
        candidates = [c for c in candidates if c[0] < hold]
        if not candidates:
            if hold > self._pos:
                self._pos = hold
            return None
        index, kind, match = min(candidates, key=lambda c: c[0])
        # Text up to the end of what was decided comes first, then the event: the same order in any chunking.
        if kind == "start":
            self._state = _IN
            self._block_start = index
            self._body_start = self._pos = index + len(RUN_START)
            return [*self._emit_to(index), Opened(True), *self._emit_to(self._pos)]
        if kind == "stray":
            self._pos = index + len(RUN_STOP)
            return [
                *self._emit_to(self._pos),
                Note("stray_stop", f"{RUN_STOP} with no open block; kept as text"),
            ]
        self._state = _BARE
        self._bare_language = normalize_language(match.group(1)) or DEFAULT_LANGUAGE
        self._block_start = index
        self._body_start = self._pos = match.end()
        return [*self._emit_to(index), Opened(False), *self._emit_to(self._pos)]

    def _scan_in(self, final: bool) -> list[DetectorEvent] | None:
        text, pos = self._text, self._pos
        stop = text.find(RUN_STOP, pos)
        again = text.find(RUN_START, pos)
        hold = self._hold_start((RUN_START, RUN_STOP), final)
        found = [(i, k) for i, k in ((stop, "stop"), (again, "start")) if 0 <= i < hold]
        if not found:
            self._pos = max(self._pos, hold)
            return None
        index, kind = min(found)
        if kind == "start":
            dropped = text[self._body_start : index]
            message = (
                f"duplicate {RUN_START}: the unfinished block before it was dropped"
                if dropped.strip()
                else f"duplicate {RUN_START} ignored"
            )
            self._block_start = index
            self._body_start = self._pos = index + len(RUN_START)
            return [
                *self._emit_to(index),
                Note("duplicate_start", message),
                Opened(True),
                *self._emit_to(self._pos),
            ]
        end = index + len(RUN_STOP)
        self._pos = end
        self._state = _OUT
        events = self._emit_to(end)
        block, notes = _parse_wrapped(text[self._block_start : end], text[self._body_start : index])
        return events + notes + [block]

    def _scan_bare(self, final: bool) -> list[DetectorEvent] | None:
        text = self._text
        m = _BARE_CLOSE.search(text, max(self._pos, self._body_start))
        if m:
            end = m.end()
            code = _trim_code(text[self._body_start : m.start()])
            self._pos = end
            self._state = _OUT
            events = self._emit_to(end)
            raw = text[self._block_start : end]
            language = self._bare_language
            if not code.strip():
                note = f"the ```{language} block was empty; nothing was run"
                return [*events, Block(language, "", raw, False, PROBLEM_EMPTY, note)]
            return [*events, Block(language, code, raw, False)]
        # Hold a last line that may still become the closing fence ("`", "``").
        line_start = text.rfind("\n") + 1
        hold = len(text)
        if not final and line_start >= self._body_start and "```".startswith(text[line_start:]):
            hold = line_start
        self._pos = max(self._pos, hold)
        return None

    def _block_at_end(self) -> list[DetectorEvent]:
        """The turn ended inside a wrapped block: complete but for RUN_STOP, or unclosed."""
        raw = self._text[self._block_start :]
        body = self._text[self._body_start :]
        stripped = body.strip()
        if stripped.startswith("```") and stripped.endswith("```") and "\n" in stripped:
            block, notes = _parse_wrapped(raw, body)
            return [*notes, replace(block, stop_token_missing=True)]
        tag = _fence_tag(body)
        note = f"the code block was not closed with ```{RUN_STOP} before the end of the turn; it was not run"
        return [Block(tag or DEFAULT_LANGUAGE, "", raw, True, PROBLEM_UNCLOSED, note)]


def _fence_tag(body: str) -> str:
    s = body.lstrip()
    if not s.startswith("```"):
        return ""
    line = s[3:].split("\n", 1)[0]
    return (line.split() or [""])[0]


def _trim_code(code: str) -> str:
    """Drop blank lines at both ends and trailing whitespace; keep the first line's indentation."""
    lines = code.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines).rstrip()


def _parse_wrapped(raw: str, body: str) -> tuple[Block, list[Note]]:
    """Turn the text between RUN_START and RUN_STOP into a Block (plus notes for the user)."""
    notes: list[Note] = []
    s = body.strip()
    if not s.startswith("```"):
        note = f"the code after {RUN_START} had no ```python or ```sh fence; it was not run"
        return Block("", "", raw, True, PROBLEM_MISSING_FENCE, note), notes
    s = s[3:]
    first, sep, rest = s.partition("\n")
    if not sep:  # everything on one line: ```python print(1)```
        first, _, rest = s.partition(" ")
    tag = (first.split() or [""])[0]
    if tag.endswith("```"):  # ```python``` with nothing else
        tag = tag[:-3]
    rest = rest.rstrip()
    if rest.endswith("```"):
        rest = rest[:-3]
    else:
        notes.append(Note("missing_closing_fence", "the code block had no closing ``` fence; ran it anyway"))
    if not tag:
        language = DEFAULT_LANGUAGE
        notes.append(Note("no_language", f"the code block named no language; ran it as {DEFAULT_LANGUAGE}"))
    else:
        language = normalize_language(tag)
        if language is None:
            note = f"```{tag} blocks cannot be run here; only python and sh blocks run"
            return Block(tag, _trim_code(rest), raw, True, PROBLEM_UNKNOWN_LANGUAGE, note), notes
    code = _trim_code(rest)
    if tag.lower() == "console":  # "$ pip install x" -> "pip install x"
        code = "\n".join(line[2:] if line.startswith("$ ") else line for line in code.split("\n"))
    if not code.strip():
        note = f"the {language} block was empty; nothing was run"
        return Block(language, "", raw, True, PROBLEM_EMPTY, note), notes
    return Block(language, code, raw, True), notes


def detect_blocks(text: str, bare_python: bool = False, bare_sh: bool = False) -> list[Block]:
    """All blocks in a complete text (convenience for finished turns)."""
    detector = BlockDetector(bare_python=bare_python, bare_sh=bare_sh)
    events = detector.feed(text) + detector.finish()
    return [e for e in events if isinstance(e, Block)]


# -- result rendering -------------------------------------------------------------------------------------


def truncate_middle(
    text: str, head_chars: int = DEFAULT_HEAD_CHARS, tail_chars: int = DEFAULT_TAIL_CHARS
) -> str:
    """Keep the first `head_chars` and last `tail_chars` characters, with a marker saying how many went."""
    if head_chars < 0 or tail_chars < 0:
        raise ValueError("head_chars and tail_chars must be >= 0")
    if len(text) <= head_chars + tail_chars:
        return text
    cut = len(text) - head_chars - tail_chars
    tail = text[len(text) - tail_chars :] if tail_chars else ""
    return f"{text[:head_chars]}\n...({cut} characters truncated)...\n{tail}"


def result_stdout(result: ExecutionResult) -> str:
    """stdout plus the text form of rich outputs (a notebook's Out[...] and figures' text/plain)."""
    parts = [result.stdout] if result.stdout else []
    for output in result.outputs:
        plain = output.get("data", {}).get("text/plain")
        if plain:
            if parts and not parts[-1].endswith("\n"):
                parts.append("\n")
            parts.append(plain if isinstance(plain, str) else "".join(plain))
    return "".join(parts)


def result_stderr(result: ExecutionResult) -> str:
    """stderr plus the error's traceback (when the stream did not already carry it) and the one-line message."""
    parts = [result.stderr] if result.stderr else []
    if result.error is not None:
        tb = result.error.traceback or f"{result.error.name}: {result.error.value}"
        if tb not in result.stderr:
            parts.append(tb)
    if result.message and result.status != "ok":
        parts.append(result.message)
    parts = [p for p in parts if p]
    return "\n".join([p.rstrip("\n") for p in parts[:-1]] + parts[-1:])


def _streams(record: RunRecord) -> tuple[str, str]:
    if record.result is None:
        return "", record.note
    return result_stdout(record.result), result_stderr(record.result)


def render_result(
    records: list[RunRecord],
    style: str = "demo",
    head_chars: int = DEFAULT_HEAD_CHARS,
    tail_chars: int = DEFAULT_TAIL_CHARS,
) -> str:
    """The content of the execution turn that follows a round: what the model sees, truncated.

    Style "demo" reproduces the original AutoCoder demo's text exactly (empty streams read "None"; the
    package installs of `sh` blocks come first as `pip_result.*`; the whole text is right-stripped):

        pip_result.stdout: \\n<pip out>\\n pip_result.stderr: \\n<pip err>\\n result.stdout:\\n<out>\\nresult.stderr:\\n<err>

    Style "tokens" is the project's own: the outputs in order, stdout then stderr per block, with no
    labels; `render_dialogue` wraps it in OUTPUT_START/OUTPUT_STOP.
    """
    if style not in RENDER_STYLES:
        raise ValueError(f"unknown render style {style!r}; use one of {', '.join(RENDER_STYLES)}")

    def cut(text: str) -> str:
        return truncate_middle(text, head_chars, tail_chars)

    if style == "tokens":
        parts = []
        for record in records:
            out, err = _streams(record)
            parts += [p.rstrip("\n") for p in (out, err) if p.strip()]
        return cut("\n".join(parts))

    pip = [r for r in records if r.language == "sh"]
    code = [r for r in records if r.language != "sh"]
    text = ""
    if pip:
        outs, errs = zip(*(_streams(r) for r in pip), strict=True)
        text = f"pip_result.stdout: \n{cut(''.join(outs))}\n pip_result.stderr: \n{cut(''.join(errs))}"
    if code:
        outs, errs = zip(*(_streams(r) for r in code), strict=True)
        out, err = "".join(outs), "\n".join(e for e in errs if e)
        body = f"result.stdout:\n{cut(out) or 'None'}\nresult.stderr:\n{cut(err) or 'None'}"
        text = f"{text}\n {body}" if text else body
    return text.rstrip()


# -- dialogue rendering -----------------------------------------------------------------------------------


def validate_dialogue(messages: list[dict]) -> None:
    """Raise ValueError (one line) unless `messages` is a list of {"role", "content"} dicts of known roles
    (execution turns may also carry "runs": a list of RUN objects, see `interpreter.dialogue`)."""
    if not isinstance(messages, list):
        raise ValueError(f"a dialogue is a list of messages, got {type(messages).__name__}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ValueError(f"message {i}: role must be one of {', '.join(ROLES)}")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"message {i}: content must be a string")
        runs = message.get("runs")
        if runs is not None:
            if message["role"] != "execution":
                raise ValueError(f"message {i}: only execution turns carry runs")
            if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
                raise ValueError(f"message {i}: runs must be a list of objects")


def wrap_output(content: str) -> str:
    """Execution output in the project's own format (render style "tokens")."""
    return f"{OUTPUT_START}\n{content}\n{OUTPUT_STOP}"


def render_dialogue(
    messages: list[dict],
    style: str = "demo",
    system_prompt: str | None = None,
    execution_role: str = "user",
    head_chars: int = DEFAULT_HEAD_CHARS,
    tail_chars: int = DEFAULT_TAIL_CHARS,
) -> list[dict]:
    """A DESIGN.md dialogue -> the role/content messages a model sees (the backend applies the template).

    - `execution` turns become `execution_role` turns (default "user": chat templates of the base models
      know only system/user/assistant). A turn with structured "runs" is rendered from them in `style`
      (`render_result`, cut to `head_chars` + `tail_chars`), whatever style it was recorded in: a dialogue
      recorded in "demo" style renders in "tokens" style with no `result.stdout:` text inside the output
      tokens. A turn without runs (older files) uses its "content": style "demo" passes it as is; style
      "tokens" wraps it in OUTPUT_START/OUTPUT_STOP (unless it already is).
    - `system_prompt` is used when the dialogue has no system message of its own; None adds nothing (the
      released checkpoints were run without one, so their template's default applies), "" likewise.
    - Other turns pass through unchanged (assistant turns keep their execution tokens).
    """
    validate_dialogue(messages)
    if style not in RENDER_STYLES:
        raise ValueError(f"unknown render style {style!r}; use one of {', '.join(RENDER_STYLES)}")
    out: list[dict] = []
    if system_prompt and not any(m["role"] == "system" for m in messages):
        out.append({"role": "system", "content": system_prompt})
    for i, message in enumerate(messages):
        role, content = message["role"], message["content"]
        if role == "execution":
            runs = message.get("runs")
            if runs:
                try:
                    records = [RunRecord.from_json(run) for run in runs]
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(
                        f"message {i}: a run is malformed ({type(exc).__name__}: {exc})"
                    ) from None
                content = render_result(records, style, head_chars, tail_chars)
                if style == "tokens":
                    content = wrap_output(content)
            else:
                wrapped = content.startswith(OUTPUT_START) and content.rstrip().endswith(OUTPUT_STOP)
                if style == "tokens" and not wrapped:
                    content = wrap_output(content)
                elif style == "demo" and wrapped:
                    content = content.strip()[len(OUTPUT_START) : -len(OUTPUT_STOP)].strip("\n")
            role = execution_role
        out.append({"role": role, "content": content})
    return out
