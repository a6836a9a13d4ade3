"""JSON lines that survive a crash: an appender that keeps the file valid, and a reader that resumes.

Long jobs (evaluation samples and transcripts, the data pipeline's dialogues) append one JSON object per
line as each result is made, so a killed run loses at most the line it was writing and a rerun resumes
after the lines already there:

- `JsonlAppender(path)` writes each object as one line and flushes and fsyncs it before returning. On
  open it repairs what a crash mid-write left: an unfinished last line is cut off (a last line that is
  complete JSON but lost its newline gets the newline). Safe to share between threads.
- `read_jsonl(path)` / `iter_jsonl(path)` read the objects back, ignoring an unfinished last line; a bad
  line anywhere else is corruption, not a crash, and raises ValueError with one line "path:line: why".

What it deliberately does not do: know what the objects mean (see `interpreter.dialogue` for the dialogue
record), deduplicate, or lock the file against other processes (one writer per file).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path


def _parse_line(raw: bytes) -> dict:
    """One line's object; ValueError with a short reason (no path) when it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 (byte {exc.start})") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object (a {type(obj).__name__})")
    return obj


def iter_jsonl(path: str | Path, *, strict: bool = False) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each line of `path` (1-based; blank lines skipped; a missing file is empty).

    A last line without its newline that does not parse is what a crash mid-write leaves: it is ignored
    unless `strict`. Any other bad line raises ValueError("path:line: why").
    """
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = _parse_line(raw)
            except ValueError as exc:
                if not raw.endswith(b"\n") and not strict:
                    return  # the torn tail of an interrupted write
                raise ValueError(f"{path}:{number}: {exc}") from None
            yield number, obj


def read_jsonl(path: str | Path, *, strict: bool = False) -> list[dict]:
    """Every object in `path` (see `iter_jsonl` for what is ignored and what raises)."""
    return [obj for _, obj in iter_jsonl(path, strict=strict)]


def repair_torn_tail(path: str | Path) -> int:
    """Make `path` end with a complete line: cut an unparsable unfinished last line, or finish a parsable
    one with its newline. Returns the number of bytes cut (0 when nothing was)."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "r+b") as f:
        # Find the start of the last line without reading the whole file.
        block = 1 << 16
        end = size
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        start = 0
        while end > 0:
            begin = max(0, end - block)
            f.seek(begin)
            chunk = f.read(end - begin)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                start = begin + newline + 1
                break
            end = begin
        f.seek(start)
        tail = f.read()
        try:
            _parse_line(tail)
        except ValueError:
            f.truncate(start)
            f.flush()
            os.fsync(f.fileno())
            return size - start
        f.seek(size)
        f.write(b"\n")
        f.flush()
        os.fsync(f.fileno())
        return 0


class JsonlAppender:
    """Appends one JSON object per line, each durable (flush + fsync) before `append` returns.

    Opening repairs a torn last line left by a crash (see `repair_torn_tail`), so appending after a crash
    never glues a new record onto half of an old one. Use as a context manager or call `close()`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_torn_tail(self.path)
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed by close()
        self._lock = threading.Lock()

    def append(self, obj: dict) -> None:
        if not isinstance(obj, dict):
            raise TypeError(f"a JSONL line holds a JSON object, not a {type(obj).__name__}")
        # Serialise before taking the lock and before touching the file: an unserialisable object
        # raises here and leaves the file as it was.
        line = (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            if self._file.closed:
                raise ValueError(f"{self.path}: the appender is closed")
            self._file.write(line)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
