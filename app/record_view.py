"""A dialogue record as chat turns, and a replay of its code into a fresh kernel.

`record_turns(record)` turns an `interpreter.dialogue` record (an exported chat, a data-pipeline item, an
evaluation transcript, a chat from the history) into the `app.view.Turn`s the chat renders: one per user
message, holding the assistant's prose, the blocks it wrote, and an `ExecPart` per run with its full
result (stdout, stderr, rich outputs such as images, error), so a stored conversation reads exactly as the
live one did. The blocks inside the assistant's text are found by `interpreter.protocol.BlockDetector`, the
parser the loop itself uses. Records written before execution turns carried their `runs` still load: the
app's old exports keep their results in `meta.executions`, and anything else shows the execution turn's
text as its output.

`replay_runner(record)` is an `app.chat.LoopRunner` that runs the record's executed blocks, in order, in
the chat's fresh kernel (the "Re-run the code" button), streaming each block's output and result as the
loop does and stopping at Stop; it leaves the dialogue the model sees unchanged.

What this module deliberately does not do: read or validate files (`interpreter.dialogue`), keep records
(`app.chat_history`), or talk to Gradio.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Iterator

from app.view import BlockPart, ExecPart, NotePart, TextPart, Turn
from interpreter.dialogue import Dialogue
from interpreter.loop import Done, ExecutionFinished, ExecutionStarted, OutputChunk
from interpreter.protocol import Block, BlockDetector, Opened, Text
from interpreter.results import STATUS_NOT_RUN, ExecutionResult

# Shown in place of the user's message of a turn whose record starts without one.
NO_USER_MESSAGE = "(the record starts without a user message)"


def executed_blocks(record: Dialogue) -> list[tuple[str, str]]:
    """(language, code) of every block the record ran, in order (blocks that were not run are left out)."""
    blocks = []
    for message in record.messages:
        for run in message.get("runs") or []:
            if run.get("status") != STATUS_NOT_RUN:
                blocks.append((run["language"], run["code"]))
    if not blocks:  # an old app export: its executions are in meta
        for execution in _old_executions(record):
            if execution.get("result") is not None:
                blocks.append((execution.get("language") or "python", execution.get("code") or ""))
    return [(language, code) for language, code in blocks if code.strip()]


def _old_executions(record: Dialogue) -> list[dict]:
    executions = record.meta.get("executions") if isinstance(record.meta, dict) else None
    if not isinstance(executions, list):
        return []
    return [e for e in executions if isinstance(e, dict) and isinstance(e.get("code", ""), str)]


def _assistant_parts(text: str, bare_python: bool) -> list[TextPart]:
    """Prose and blocks of one finished assistant message (tokens kept in `raw`, as the live chat has them)."""
    detector = BlockDetector(bare_python=bare_python)
    parts: list[TextPart] = []
    inside = False  # between an Opened and its Block the Text is the block's own (Block.raw has it all)
    for event in detector.feed(text) + detector.finish():
        if isinstance(event, Opened):
            inside = True
        elif isinstance(event, Text) and not inside:
            last = parts[-1] if parts else None
            if type(last) is TextPart:
                last.raw += event.text
            else:
                parts.append(TextPart(event.text, finished=True))
        elif isinstance(event, Block):
            inside = False
            parts.append(
                BlockPart(
                    raw=event.raw,
                    finished=True,
                    language=event.language,
                    code=event.code,
                    closed=True,
                    problem=event.problem,
                )
            )
        # A Note is said again by the execution turn that follows.
    return parts


def _result_of(run: dict) -> ExecutionResult | None:
    if run.get("status") == STATUS_NOT_RUN:
        return None
    return ExecutionResult.from_json(run)


def _mark_ran(parts: list, code: str) -> None:
    """The block that this execution shows is hidden behind it, as in the live chat."""
    for part in reversed(parts):
        if isinstance(part, BlockPart) and not part.ran and part.code.strip() == code.strip():
            part.ran = True
            return


def record_turns(record: Dialogue) -> list[Turn]:
    """The record's conversation as chat turns (the system message, if any, stays in the dialogue only)."""
    turns: list[Turn] = []
    old = iter(_old_executions(record))
    has_runs = any("runs" in m for m in record.messages)

    def current(index: int) -> Turn:
        if not turns:
            turns.append(Turn(user=NO_USER_MESSAGE, dialogue_start=index))
        return turns[-1]

    for index, message in enumerate(record.messages):
        role, content = message["role"], message["content"]
        if role == "system":
            continue
        if role == "user":
            turns.append(Turn(user=content, dialogue_start=index))
        elif role == "assistant":
            turn = current(index)
            parts = _assistant_parts(content, bare_python=False)
            if not any(isinstance(p, BlockPart) for p in parts) and "```" in content:
                parts = _assistant_parts(content, bare_python=True)  # execution mode "always": bare fences
            turn.parts.extend(parts)
        elif role == "execution":
            turn = current(index)
            runs = message.get("runs")
            if runs is not None:
                for run in runs:
                    result = _result_of(run)
                    part = ExecPart(
                        exec_id=uuid.uuid4().hex[:12],
                        language=run["language"],
                        code=run["code"],
                        result=result,
                        state="finished" if result is not None else "skipped",
                    )
                    turn.parts.append(part)
                    _mark_ran(turn.parts, run["code"])
                    if result is None and run.get("note"):
                        turn.parts.append(NotePart(run["note"]))
            else:
                turn.parts.extend(_parts_without_runs(turn, content, old, has_runs))
    for turn in turns:
        turn.done_reason = "end_of_turn"
    return turns


def _parts_without_runs(turn: Turn, content: str, old: Iterator[dict], has_runs: bool) -> list:
    """An execution turn without structured runs: the app's old export has its result in meta; otherwise
    its text, as the model saw it, is shown as the output of the block it answers."""
    blocks = [p for p in turn.parts if isinstance(p, BlockPart) and not p.ran and p.closed]
    execution = None if has_runs else next(old, None)
    if execution is not None and isinstance(execution.get("result"), dict):
        try:
            result = ExecutionResult.from_json(execution["result"])
        except (KeyError, TypeError, ValueError):
            result = ExecutionResult(status="ok", stdout=content)
        code, language = execution.get("code") or "", execution.get("language") or "python"
    else:
        block = blocks[-1] if blocks else None
        code, language = (block.code, block.language or "python") if block else ("", "python")
        result = ExecutionResult(status="ok", stdout=content)
    part = ExecPart(uuid.uuid4().hex[:12], language, code, result=result, state="finished")
    _mark_ran(turn.parts, code)
    return [part]


def replay_runner(blocks: list[tuple[str, str]], timeout_s: float | None = None):
    """A LoopRunner that runs `blocks` in order in the chat's kernel and ends with the dialogue unchanged."""

    def run(dialogue, session, settings, cancel: threading.Event, approve) -> Iterator[object]:
        unsubscribe = cancel.subscribe(session.interrupt) if hasattr(cancel, "subscribe") else None
        try:
            for language, code in blocks:
                if cancel.is_set():
                    break
                yield from _run_one(session, language, code, timeout_s)
        finally:
            if unsubscribe is not None:
                unsubscribe()
        # The user message Chat.run added for this turn is display only: the model's dialogue is as it was.
        yield Done(messages=dialogue[:-1], reason="cancelled" if cancel.is_set() else "end_of_turn")

    return run


def _run_one(session, language: str, code: str, timeout_s: float | None) -> Iterator[object]:
    """One block in a worker thread, its output streamed as it arrives (as the loop does)."""
    exec_id = uuid.uuid4().hex[:12]
    inbox: queue.SimpleQueue = queue.SimpleQueue()

    def work() -> None:
        try:
            inbox.put(
                ("done", session.run_block(language, code, lambda s, t: inbox.put(("out", s, t)), timeout_s))
            )
        except BaseException as exc:  # reported on the generator's thread
            inbox.put(("failed", exc))

    threading.Thread(target=work, name=f"autocoder-replay-{exec_id}", daemon=True).start()
    yield ExecutionStarted(exec_id, language, code)
    while True:
        item = inbox.get()
        if item[0] == "out":
            yield OutputChunk(exec_id, item[1], item[2])
        elif item[0] == "done":
            yield ExecutionFinished(exec_id, item[1])
            return
        else:
            message = f"could not run the code: {type(item[1]).__name__}: {item[1]}".splitlines()[0]
            yield ExecutionFinished(exec_id, ExecutionResult(status="crashed", message=message))
            return
