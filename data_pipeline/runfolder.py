"""A run folder: what a generation run writes, how it resumes, and why a different configuration is refused.

    DIR/run.json          the configuration that defines the items (models, prompt versions, attempts, decoding,
                          seed, shard) and its fingerprint; written once, compared on every later run
    DIR/dialogues.jsonl   verified items, in the project's dialogue format (interpreter.dialogue)
    DIR/rejected.jsonl    items not verified after --max-attempts, same format, meta.reason says why
    DIR/removed.jsonl     verified items removed by decontamination or de-duplication, same format,
                          meta.removed says by what (nearest benchmark task, or the item it duplicates)
    DIR/usage.jsonl       one line per paid model call (data_pipeline.limits.Budget)
    DIR/calls.sqlite      the model-call cache (data_pipeline.cache)
    DIR/summary.json      counts and failure reasons of the last run

Every item is written exactly once, as one fsynced JSON line, to exactly one of the three item files, so a
kill -9 at any moment leaves each item either complete in one file or absent (a torn last line is repaired
on the next open), and a rerun skips every id found in them. De-duplication at the end of a run writes the
removed records to removed.jsonl first and then replaces dialogues.jsonl atomically (write, fsync, rename);
a kill between the two is finished by the next run.

What it deliberately does not do: generate (data_pipeline.generate) or compute statistics (data_pipeline.stats).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from interpreter.dialogue import Dialogue, DialogueWriter, read_dialogues

RUN_FILE = "run.json"
DIALOGUES_FILE = "dialogues.jsonl"
REJECTED_FILE = "rejected.jsonl"
REMOVED_FILE = "removed.jsonl"
SUMMARY_FILE = "summary.json"
ITEM_FILES = (DIALOGUES_FILE, REJECTED_FILE, REMOVED_FILE)


class RunFolderError(ValueError):
    """The folder cannot be used for this run; one line."""


def fingerprint(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _first_difference(old: dict, new: dict, prefix: str = "") -> str:
    for key in sorted((set(old) | set(new)) - {"fingerprint"}):  # the fingerprint only follows the rest
        a, b = old.get(key), new.get(key)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                return _first_difference(a, b, f"{prefix}{key}.")
            return f"{prefix}{key}: {json.dumps(a)} there, {json.dumps(b)} now"
    return "?"


def write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    def claim(self, identity: dict) -> None:
        """Make the folder ours, or check it was made with the same configuration (RunFolderError if not)."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"--out {self.path} is a file, not a folder")
        run_file = self.file(RUN_FILE)
        if run_file.exists():
            try:
                old = json.loads(run_file.read_text(encoding="utf-8"))["identity"]
            except (OSError, ValueError, KeyError, TypeError):
                raise RunFolderError(f"{run_file} is unreadable; use a new --out folder") from None
            if old != identity:
                raise RunFolderError(
                    f"{self.path} was made with a different configuration "
                    f"({_first_difference(old, identity)}); use a new --out folder or the same settings"
                )
            return
        if self.path.exists() and any(self.file(n).exists() for n in ITEM_FILES):
            raise RunFolderError(f"{self.path} holds items but no {RUN_FILE}; use a new --out folder")
        self.path.mkdir(parents=True, exist_ok=True)
        body = {"identity": identity, "fingerprint": fingerprint(identity)}
        write_atomically(run_file, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())

    def identity(self) -> dict | None:
        run_file = self.file(RUN_FILE)
        if not run_file.exists():
            return None
        return json.loads(run_file.read_text(encoding="utf-8"))["identity"]

    def read(self, name: str) -> list[Dialogue]:
        return list(read_dialogues(self.file(name)))

    def completed_ids(self) -> set[str]:
        ids: set[str] = set()
        for name in ITEM_FILES:
            ids |= {d.id for d in read_dialogues(self.file(name))}
        return ids

    def writer(self, name: str) -> DialogueWriter:
        self.path.mkdir(parents=True, exist_ok=True)
        return DialogueWriter(self.file(name))

    def replace_dialogues(self, keep: list[Dialogue]) -> None:
        data = "".join(json.dumps(d.to_json(), ensure_ascii=False) + "\n" for d in keep)
        write_atomically(self.file(DIALOGUES_FILE), data.encode("utf-8"))

    def write_summary(self, summary: dict) -> None:
        write_atomically(
            self.file(SUMMARY_FILE), (json.dumps(summary, indent=2, sort_keys=True) + "\n").encode()
        )
