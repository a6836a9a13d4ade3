"""The dialogue record: one schema, one reader, one writer and one validator for every stored conversation.

A record is one JSON line:

    {"id": "...", "schema": 1, "meta": {...},
     "messages": [{"role": "system" | "user" | "assistant", "content": "..."},
                  {"role": "execution", "content": "<text as the model saw it>", "runs": [RUN, ...]}]}

An execution turn keeps, besides the text the model saw when it was recorded ("content", in the loop's
render style at the time), the structured `runs` of that round, so the model-visible text can be made
again at render time in any style (`interpreter.protocol.render_dialogue`): a dialogue recorded for the
released checkpoints (style "demo") renders for training in style "tokens" without `result.stdout:` text
inside the output tokens. A RUN is

    {"language": "python" | "sh", "code": str,
     "status": "ok" | "error" | "timeout" | "crashed" | "memory_limit" | "not_run",
     "stdout": str, "stderr": str, "outputs": [mime bundles], "error": {"name", "value", "traceback"} | null,
     "duration_s": float, "note": str,
     "message": str, "state_lost": bool, "dropped_chars": int}      (the last three optional)

`note` says why a block was not run ("not_run"); `message` is the session's one line about a failed run.
`runs` is optional (files written before it existed still load) and so is `schema` (read as version 1).
`meta` is free-form per writer; the writers in this repository set "source" ("app", "evaluation", ...).

The app's chat export, the evaluation's transcripts, the data pipeline's output and the training input
all use this module.

What it deliberately does not do: render for a model (`interpreter.protocol`), apply chat templates
(the backend or the training's tokenizer), or know what a writer puts in `meta`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from interpreter import protocol
from interpreter.jsonl import JsonlAppender, iter_jsonl
from interpreter.results import EXECUTION_STATUSES, STATUS_NOT_RUN, RunRecord

SCHEMA_VERSION = 1
RUN_STATUSES = (*EXECUTION_STATUSES, STATUS_NOT_RUN)
RECORD_FIELDS = ("id", "messages", "meta", "schema")
MESSAGE_FIELDS = ("role", "content", "runs")

# RUN fields and the JSON types they must have (optional ones may be missing).
_RUN_REQUIRED = {
    "language": str,
    "code": str,
    "status": str,
    "stdout": str,
    "stderr": str,
    "outputs": list,
    "duration_s": (int, float),
    "note": str,
}
_RUN_OPTIONAL = {"message": str, "state_lost": bool, "dropped_chars": int}


class DialogueError(ValueError):
    """A record that is not a valid dialogue; the message is one line, "path:line: what is wrong"."""


@dataclass
class Dialogue:
    id: str
    messages: list[dict]
    meta: dict = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        return {"id": self.id, "messages": self.messages, "meta": self.meta, "schema": self.schema}

    def to_jsonl(self) -> str:
        """The record as one validated JSON line (what `DialogueWriter` appends), e.g. for a download."""
        obj = self.to_json()
        validate_record(obj, f"record {self.id!r}")
        return json.dumps(obj, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, obj: object, where: str = "") -> Dialogue:
        """Validate `obj` (DialogueError naming `where` when it is wrong) and wrap it."""
        validate_record(obj, where)
        assert isinstance(obj, dict)
        return cls(obj["id"], obj["messages"], obj.get("meta") or {}, obj.get("schema", SCHEMA_VERSION))


def run_to_json(record: RunRecord) -> dict:
    """One block of a round -> its RUN object."""
    return record.to_json()


def run_from_json(run: dict) -> RunRecord:
    """A (validated) RUN object -> the RunRecord `protocol.render_result` renders."""
    return RunRecord.from_json(run)


def execution_message(
    records: list[RunRecord],
    style: str = "demo",
    head_chars: int = protocol.DEFAULT_HEAD_CHARS,
    tail_chars: int = protocol.DEFAULT_TAIL_CHARS,
) -> dict:
    """The execution turn the loop appends after a round: the text the model sees now, and the runs."""
    return {
        "role": "execution",
        "content": protocol.render_result(records, style, head_chars, tail_chars),
        "runs": [run_to_json(r) for r in records],
    }


def _fail(where: str, what: str) -> DialogueError:
    return DialogueError(f"{where}: {what}" if where else what)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _validate_run(run: object, at: str) -> str | None:
    """What is wrong with one RUN object (`at` names it), or None."""
    if not isinstance(run, dict):
        return f"{at} is a {_type_name(run)}, not an object"
    for name, kind in _RUN_REQUIRED.items():
        if name not in run:
            return f"{at} has no {name!r}"
        if not isinstance(run[name], kind) or isinstance(run[name], bool) and kind is not bool:
            return f"{at}.{name} is a {_type_name(run[name])}"
    for name, kind in _RUN_OPTIONAL.items():
        if name in run and not isinstance(run[name], kind):
            return f"{at}.{name} is a {_type_name(run[name])}"
    if run["status"] not in RUN_STATUSES:
        return f"{at}.status {run['status']!r} is not one of {', '.join(RUN_STATUSES)}"
    if not all(isinstance(o, dict) for o in run["outputs"]):
        return f"{at}.outputs must hold objects (mime bundles)"
    error = run.get("error")
    if error is not None:
        if not isinstance(error, dict) or not all(isinstance(error.get(k), str) for k in ("name", "value")):
            return f"{at}.error must be null or an object with string name and value"
        if not isinstance(error.get("traceback", ""), str):
            return f"{at}.error.traceback is a {_type_name(error.get('traceback'))}"
    return None


def validate_record(obj: object, where: str = "") -> None:
    """Raise DialogueError (one line, prefixed with `where`) unless `obj` is a valid dialogue record."""
    if not isinstance(obj, dict):
        raise _fail(where, f"a dialogue record is a JSON object, not a {_type_name(obj)}")
    unknown = sorted(set(obj) - set(RECORD_FIELDS))
    if unknown:
        raise _fail(where, f"unknown field {unknown[0]!r} (a record has {', '.join(RECORD_FIELDS)})")
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise _fail(where, "the record needs a non-empty string id")
    schema = obj.get("schema", SCHEMA_VERSION)
    if not isinstance(schema, int) or isinstance(schema, bool) or schema < 1:
        raise _fail(where, f"schema must be a positive integer, got {schema!r}")
    if schema > SCHEMA_VERSION:
        raise _fail(where, f"schema {schema} is newer than this code reads ({SCHEMA_VERSION}); update it")
    if "meta" in obj and not isinstance(obj["meta"], dict):
        raise _fail(where, f"meta must be an object, not a {_type_name(obj['meta'])}")
    messages = obj.get("messages")
    if not isinstance(messages, list):
        raise _fail(where, f"messages must be a list, not a {_type_name(messages)}")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _fail(where, f"message {i} is a {_type_name(message)}, not an object")
        unknown = sorted(set(message) - set(MESSAGE_FIELDS))
        if unknown:
            raise _fail(where, f"message {i} has an unknown field {unknown[0]!r}")
        if message.get("role") not in protocol.ROLES:
            raise _fail(where, f"message {i}: role must be one of {', '.join(protocol.ROLES)}")
        if not isinstance(message.get("content"), str):
            raise _fail(where, f"message {i}: content must be a string")
        if "runs" in message:
            if message["role"] != "execution":
                raise _fail(where, f"message {i}: only execution turns carry runs")
            if not isinstance(message["runs"], list):
                raise _fail(where, f"message {i}: runs must be a list")
            for j, run in enumerate(message["runs"]):
                problem = _validate_run(run, f"message {i} run {j}")
                if problem:
                    raise _fail(where, problem)


def read_dialogues(path: str | Path) -> Iterator[Dialogue]:
    """Every record of a dialogue JSONL file, validated. A torn last line (a crash mid-write) is ignored;
    any other bad line raises DialogueError "path:line: what is wrong"."""
    try:
        for number, obj in iter_jsonl(path):
            yield Dialogue.from_json(obj, f"{path}:{number}")
    except DialogueError:
        raise
    except ValueError as exc:  # a line that is not JSON: iter_jsonl already names file and line
        raise DialogueError(str(exc)) from None


def completed_ids(path: str | Path) -> set[str]:
    """The ids already in a dialogue file (what a resumed run skips)."""
    return {d.id for d in read_dialogues(path)}


class DialogueWriter:
    """Appends validated dialogue records to a JSONL file, each durable before `append` returns.

    An invalid record raises DialogueError and nothing is written. Use as a context manager or `close()`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._appender = JsonlAppender(self.path)

    def append(self, dialogue: Dialogue) -> None:
        obj = dialogue.to_json()
        validate_record(obj, f"{self.path}: record {dialogue.id!r}")
        self._appender.append(obj)

    def close(self) -> None:
        self._appender.close()

    def __enter__(self) -> DialogueWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
