"""Training dialogues from disk or the hub, validated as `interpreter.dialogue` records.

Accepted `--data` sources (several may be given; records are read in order):
- a dialogue JSONL file (the data pipeline's output, the app's chat export "Dialogue (.jsonl)", the
  evaluation's transcripts), read with `interpreter.dialogue.read_dialogues`: a malformed line is a
  one-line `DataError` "file:line: what is wrong"; a torn last line (a crash mid-write) is ignored;
- a folder of such .jsonl files (sorted by name);
- a `datasets` folder (`Dataset.save_to_disk`) or a hub dataset id, with a `messages` column in the
  same format (an `id` column is used when present). Rows are checked by the same validator and named
  "source: row N" in errors.

What it deliberately does not do: render or tokenize (`training.encode`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from interpreter.dialogue import Dialogue, DialogueError, read_dialogues

# Files `Dataset.save_to_disk` / `DatasetDict.save_to_disk` leave in their folder.
_DATASETS_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


class DataError(ValueError):
    """Training data that cannot be read; the message is one line naming the file and line (or row)."""


def _is_datasets_folder(path: Path) -> bool:
    return any((path / name).exists() for name in _DATASETS_MARKERS)


def _looks_like_hub_id(source: str) -> bool:
    return (
        source.count("/") <= 1
        and not source.startswith((".", "/", "~"))
        and not source.endswith((".jsonl", ".json"))
    )


def _read_jsonl(path: Path) -> Iterator[Dialogue]:
    try:
        yield from read_dialogues(path)
    except DialogueError as exc:
        raise DataError(str(exc)) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _clean_message(message):
    # Arrow tables give every message every column of the dataset, missing ones as None.
    if isinstance(message, dict):
        return {k: v for k, v in message.items() if v is not None}
    return message


def _rows(dataset, source: str) -> Iterator[Dialogue]:
    if "messages" not in dataset.column_names:
        raise DataError(f"{source}: no 'messages' column (columns: {', '.join(dataset.column_names)})")
    for i, row in enumerate(dataset):
        messages = row["messages"]
        messages = [_clean_message(m) for m in messages] if isinstance(messages, list) else messages
        record = {"id": str(row.get("id") or f"{source}#{i}"), "messages": messages, "meta": {}}
        try:
            yield Dialogue.from_json(record, f"{source}: row {i}")
        except DialogueError as exc:
            raise DataError(str(exc)) from None


def _pick_split(data, source: str, split: str):
    from datasets import DatasetDict

    if isinstance(data, DatasetDict):
        if split not in data:
            raise DataError(f"{source}: no split {split!r} (splits: {', '.join(data)}); pass --data-split")
        return data[split]
    return data


def _read_datasets_folder(path: Path, split: str) -> Iterator[Dialogue]:
    from datasets import load_from_disk

    try:
        data = load_from_disk(str(path))
    except Exception as exc:  # datasets raises several types for a broken folder
        raise DataError(f"{path}: not a readable datasets folder: {_first_line(exc)}") from None
    yield from _rows(_pick_split(data, str(path), split), str(path))


def _read_hub(name: str, split: str) -> Iterator[Dialogue]:
    from datasets import load_dataset

    try:
        data = load_dataset(name, split=split)
    except Exception as exc:  # offline, not found, gated: all end the same way for the user
        raise DataError(
            f"{name}: not a local file or folder, and loading it as a hub dataset failed: {_first_line(exc)}"
        ) from None
    yield from _rows(data, name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def iter_dialogues(sources: list[str], split: str = "train") -> Iterator[Dialogue]:
    """Every dialogue of every source, in order; DataError (one line) on the first bad record."""
    for source in sources:
        path = Path(source).expanduser()
        if path.is_file():
            yield from _read_jsonl(path)
        elif path.is_dir():
            if _is_datasets_folder(path):
                yield from _read_datasets_folder(path, split)
                continue
            files = sorted(path.glob("*.jsonl"))
            if not files:
                raise DataError(f"{source}: a folder with neither .jsonl files nor a saved datasets dataset")
            for file in files:
                yield from _read_jsonl(file)
        elif _looks_like_hub_id(source):
            yield from _read_hub(source, split)
        else:
            raise DataError(f"{source}: no such file or folder")


def load_dialogues(sources: list[str], split: str = "train", limit: int | None = None) -> list[Dialogue]:
    out: list[Dialogue] = []
    for dialogue in iter_dialogues(sources, split):
        if limit is not None and len(out) >= limit:
            break
        out.append(dialogue)
    if not out:
        raise DataError(f"no dialogues in {', '.join(sources)}")
    return out
