"""Export a chat: as a Jupyter notebook (nbformat v4) and as the dialogue record of DESIGN.md.

Notebook: user and assistant text become markdown cells; every execution becomes a code cell with its
outputs (streams, rich display data such as matplotlib PNGs, the error with its traceback). `sh` blocks
become `%%sh` cells, which is how they would run in Jupyter. Blocks the user skipped stay as code cells
without outputs. A block that ran is its code cell only (never also a markdown copy of the code the model
wrote), so each piece of code appears once. A user cell names the files uploaded before it. Answers that a
Retry replaced are left out: the notebook is the conversation the model had.

Dialogue: one `interpreter.dialogue` record (schema, id, messages, meta) written as one JSON line,
exactly what the loop kept as the model's dialogue; its execution turns carry their structured runs, so
a chat can become training data in any render style or be replayed. `meta` holds "source": "app",
"exported_at" (UTC, ISO 8601), and what the app adds (e.g. "model"), plus "executions": every execution
the screen showed with its id and state ("finished", "skipped", ...), which also covers blocks that ran
outside the dialogue's rounds.

What this module deliberately does not do: read notebooks back or re-run anything.
"""

from __future__ import annotations

import time

import nbformat
from nbformat import v4

from app.view import BlockPart, ExecPart, NotePart, TextPart, Turn, fenced, uploads_text
from interpreter.dialogue import Dialogue, validate_record


def to_notebook(
    turns: list[Turn], system_prompt: str | None = None, meta: dict | None = None
) -> nbformat.NotebookNode:
    cells = []
    if system_prompt:
        cells.append(v4.new_markdown_cell(f"**System:**\n\n{system_prompt}"))
    count = 0
    for turn in turns:
        uploaded = f"{uploads_text(turn.uploads)}\n\n" if turn.uploads else ""
        cells.append(v4.new_markdown_cell(f"**User:**\n\n{uploaded}{turn.user}"))
        for part in turn.parts:
            if isinstance(part, BlockPart):
                if not part.ran:  # a block that did not run: the code as the model wrote it
                    code = fenced(part.code, part.language or "python")
                    cells.append(v4.new_markdown_cell(f"**Assistant:**\n\n{code}"))
            elif isinstance(part, TextPart):
                text = part.prose().strip()
                if text:
                    cells.append(v4.new_markdown_cell(f"**Assistant:**\n\n{text}"))
            elif isinstance(part, ExecPart):
                source = part.code if part.language == "python" else f"%%sh\n{part.code}"
                cell = v4.new_code_cell(source)
                cell.metadata["autocoder"] = {"language": part.language, "state": part.state}
                if part.result is not None:
                    count += 1
                    cell.execution_count = count
                    cell.outputs = _outputs(part, count)
                    cell.metadata["autocoder"].update(
                        status=part.result.status, duration_s=round(part.result.duration_s, 3)
                    )
                cells.append(cell)
            elif isinstance(part, NotePart):
                cells.append(v4.new_markdown_cell(f"_{part.kind}: {part.text}_"))
    notebook = v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.metadata["autocoder"] = dict(meta or {})
    return notebook


def _outputs(part: ExecPart, count: int) -> list:
    result = part.result
    assert result is not None
    outputs = []
    # The finished result holds all of each stream; the live chunks are only their interleaving.
    if part.chunks and "".join(t for s, t in part.chunks if s == "stdout") == result.stdout:
        streams = [(s, t) for s, t in part.chunks if t]
    else:
        streams = [(s, t) for s, t in (("stdout", result.stdout), ("stderr", result.stderr)) if t]
    for stream, text in streams:
        outputs.append(v4.new_output("stream", name=stream, text=text))
    for output in result.outputs or []:
        kind = output.get("output_type", "display_data")
        data = output.get("data") or {}
        metadata = output.get("metadata") or {}
        if kind == "execute_result":
            outputs.append(
                v4.new_output("execute_result", data=data, metadata=metadata, execution_count=count)
            )
        else:
            outputs.append(v4.new_output("display_data", data=data, metadata=metadata))
    if result.error is not None:
        outputs.append(
            v4.new_output(
                "error",
                ename=result.error.name,
                evalue=result.error.value,
                traceback=(result.error.traceback or "").splitlines(),
            )
        )
    return outputs


def notebook_json(turns: list[Turn], system_prompt: str | None = None, meta: dict | None = None) -> str:
    notebook = to_notebook(turns, system_prompt, meta)
    nbformat.validate(notebook)
    return nbformat.writes(notebook)


def dialogue_record(chat_id: str, dialogue: list[dict], turns: list[Turn], meta: dict | None = None) -> dict:
    """The chat as a dialogue record (`interpreter.dialogue`), validated: DialogueError (one line) if the
    chat's dialogue is not a valid one."""
    executions = [
        {
            "exec_id": part.exec_id,
            "language": part.language,
            "code": part.code,
            "state": part.state,
            "result": part.result.to_json() if part.result is not None else None,
        }
        for turn in turns
        for part in turn.executions()
    ]
    record_meta = {"source": "app", "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    record_meta.update(meta or {})
    record_meta["executions"] = executions
    record = Dialogue(id=chat_id, messages=[dict(m) for m in dialogue], meta=record_meta).to_json()
    validate_record(record, f"chat {chat_id}")
    return record


def dialogue_jsonl(chat_id: str, dialogue: list[dict], turns: list[Turn], meta: dict | None = None) -> str:
    """The record as one JSON line, as `interpreter.dialogue.read_dialogues` reads it."""
    return Dialogue.from_json(dialogue_record(chat_id, dialogue, turns, meta)).to_jsonl()
