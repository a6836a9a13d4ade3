"""Seed code for AIEV-Instruct's proposal step: load it from files or a hub dataset, or cut it from a source tree.

A `Seed` is a piece of code the questioner turns into a problem (OSS-Instruct style). Its `id` is a stable hash
of its text, `source` says where it came from (file and line, or dataset and row) and `licence` the licence it
was found under, so every generated item can say what it was derived from.

API (called by `python -m data_pipeline generate`):

    load_seeds(path_or_hub_id, field="seed", *, limit=None) -> list[Seed]
        A JSONL file (.jsonl, .jsonl.gz), a Parquet file, a folder of them (read in sorted path order), a folder
        written by `datasets`' save_to_disk, or a `datasets` hub id such as ise-uiuc/Magicoder-OSS-Instruct-75K
        (needs the hub or its local cache). `field` names the column holding the seed text.
    seeds_from_source(dir=None, *, limit=None, seed=0, ...) -> list[Seed]
        Snippets cut from a local tree of Python files: whole functions or classes found with `ast`, and windows
        of 1-15 consecutive lines (Magicoder's OSS-Instruct cut 1-15 lines). Default tree: the installed Python
        standard library (PSF-2.0), so the pipeline has seeds with no network. Deterministic for a given `seed`.

Both return seeds de-duplicated by id (the first occurrence is kept) and skip empty texts. Bad input (missing
path, malformed JSONL line, a row without the field, an unreachable hub) raises `SeedError` with one line naming
the file and line (or row) and, for an unknown field, the columns that exist.

What this module deliberately does not do: decide which seeds are used (sharding, limits per run: the
generator), rewrite seeds into problems (the questioner), or download anything unless given a hub id.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import io
import json
import math
import os
import random
import re
import sysconfig
import textwrap
import tokenize
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

# Magicoder's OSS-Instruct took 1-15 consecutive lines of a file as a seed.
MAX_WINDOW_LINES = 15
# One random window per this many lines of a file (rounded up), as well as its functions and classes.
LINES_PER_WINDOW = 40
# A function or class longer than this is too long to be a seed on its own; a line window covers it instead.
MAX_DEFINITION_LINES = 80
# Shorter snippets (after stripping) carry too little to propose a problem from.
MIN_SNIPPET_CHARS = 20
STDLIB_LICENCE = "PSF-2.0"
UNKNOWN_LICENCE = "unknown"

_JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")
_PARQUET_SUFFIXES = (".parquet",)
# Folders that are never part of the tree's own code.
_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__", "node_modules"})
# The standard library's own test suites: deliberately odd code (bad syntax, odd encodings), not seed material.
_STDLIB_SKIPPED_DIRS = _SKIPPED_DIRS | {"test", "tests", "idle_test"}
# Files whose snippets are interleaved (the first of each file, then the second...), so that a small limit
# takes one or two snippets from each of many modules rather than all of one module.
_INTERLEAVED_FILES = 64
_LICENCE_FILES = (
    "LICENSE",
    "LICENSE.txt",
    "LICENSE.md",
    "LICENSE.rst",
    "LICENCE",
    "LICENCE.txt",
    "LICENCE.md",
    "COPYING",
    "COPYING.txt",
    "COPYING.md",
)
# (SPDX id, patterns that must all occur in the licence text); first match wins, so the more specific first.
_LICENCE_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Python's own LICENSE quotes the GPL in its history, so the PSF licence is checked before the GPLs.
    ("PSF-2.0", ("python software foundation license",)),
    ("AGPL-3.0", ("gnu affero general public license",)),
    ("LGPL-3.0", ("gnu lesser general public license", "version 3")),
    ("LGPL-2.1", ("gnu lesser general public license", "version 2.1")),
    ("GPL-3.0", ("gnu general public license", "version 3")),
    ("GPL-2.0", ("gnu general public license", "version 2")),
    ("Apache-2.0", ("apache license", "version 2.0")),
    ("MPL-2.0", ("mozilla public license", "2.0")),
    ("MIT", ("permission is hereby granted, free of charge",)),
    ("BSD-3-Clause", ("redistribution and use in source and binary forms", "neither the name")),
    ("BSD-2-Clause", ("redistribution and use in source and binary forms",)),
    ("ISC", ("permission to use, copy, modify, and",)),
    ("Unlicense", ("this is free and unencumbered software",)),
    ("CC0-1.0", ("cc0 1.0",)),
    ("CC-BY-4.0", ("creative commons attribution 4.0",)),
)


class SeedError(ValueError):
    """Seeds cannot be loaded; the message says in one line where and why."""


@dataclass(frozen=True)
class Seed:
    id: str  # seed_id(text): stable across machines and runs
    text: str
    source: str  # "path:line", "path#row N", "hub-id[split]#row N", "tree/rel/path.py:first-last"
    licence: str

    def to_json(self) -> dict:
        return asdict(self)


def seed_id(text: str) -> str:
    """The stable id of a seed: the first 16 hex digits of the SHA-256 of its text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _unique(seeds: Iterator[Seed], limit: int | None) -> list[Seed]:
    """Seeds with empty texts dropped and repeats (same id) removed, first kept, at most `limit`."""
    seen: set[str] = set()
    out: list[Seed] = []
    for seed in seeds:
        if limit is not None and len(out) >= limit:
            break
        if not seed.text.strip() or seed.id in seen:
            continue
        seen.add(seed.id)
        out.append(seed)
    return out


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- files, folders and datasets -----------------------------------------------------------------------------


def load_seeds(
    path_or_hub_id: str | os.PathLike, field: str = "seed", *, limit: int | None = None
) -> list[Seed]:
    """Seeds from a JSONL/Parquet file, a folder of them, a `datasets` save_to_disk folder, or a hub id."""
    if limit is not None and limit < 0:
        raise SeedError(f"limit must be >= 0, got {limit}")
    path = Path(path_or_hub_id)
    if path.is_file():
        return _unique(_file_seeds(path, field), limit)
    if path.is_dir():
        if _is_saved_dataset(path):
            return _unique(_saved_dataset_seeds(path, field), limit)
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.name.endswith(_JSONL_SUFFIXES + _PARQUET_SUFFIXES)
        )
        if not files:
            raise SeedError(f"{path}: no .jsonl, .jsonl.gz or .parquet files in this folder")
        return _unique((seed for file in files for seed in _file_seeds(file, field)), limit)
    name = str(path_or_hub_id)
    if _looks_like_hub_id(name):
        return _unique(_hub_seeds(name, field), limit)
    raise SeedError(f"{name}: no such file or folder (and not a hub id of the form owner/name)")


def _looks_like_hub_id(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", name) is not None and not name.endswith(
        _JSONL_SUFFIXES + _PARQUET_SUFFIXES
    )


def _file_seeds(path: Path, field: str) -> Iterator[Seed]:
    if path.name.endswith(_JSONL_SUFFIXES):
        return _jsonl_seeds(path, field)
    if path.name.endswith(_PARQUET_SUFFIXES):
        return _parquet_seeds(path, field)
    raise SeedError(f"{path}: not a seed file (expected .jsonl, .jsonl.gz or .parquet)")


def _text_of(value, where: str, field: str) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""  # an empty seed: skipped
    raise SeedError(f"{where}: field {field!r} is a {type(value).__name__}, not text")


def _row_licence(row: dict, default: str) -> str:
    for key in ("licence", "license"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return default


def _jsonl_seeds(path: Path, field: str) -> Iterator[Seed]:
    licence = detect_licence(path.parent, parents=False)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SeedError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
                if not isinstance(row, dict):
                    raise SeedError(f"{where}: expected a JSON object, got {type(row).__name__}")
                if field not in row:
                    raise SeedError(
                        f"{where}: no field {field!r}; available columns: {', '.join(sorted(row)) or '(none)'}"
                    )
                text = _text_of(row[field], where, field)
                yield Seed(seed_id(text), text, where, _row_licence(row, licence))
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise SeedError(f"{path}: cannot read ({_one_line(exc)})") from None


def _parquet_seeds(path: Path, field: str) -> Iterator[Seed]:
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a broken file
        raise SeedError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from None
    if field not in schema.names:
        raise SeedError(f"{path}: no field {field!r}; available columns: {', '.join(schema.names)}")
    licence_column = next((c for c in ("licence", "license") if c in schema.names), None)
    columns = [field] + ([licence_column] if licence_column else [])
    try:
        table = pq.read_table(path, columns=columns)
    except Exception as exc:
        raise SeedError(f"{path}: not a readable Parquet file ({_one_line(exc)})") from None
    default = detect_licence(path.parent, parents=False)
    texts = table.column(field).to_pylist()
    licences = table.column(licence_column).to_pylist() if licence_column else [None] * len(texts)
    for row, (value, licence) in enumerate(zip(texts, licences, strict=True)):
        where = f"{path}#row {row}"
        text = _text_of(value, where, field)
        yield Seed(
            seed_id(text), text, where, licence.strip() if isinstance(licence, str) and licence else default
        )


def _is_saved_dataset(path: Path) -> bool:
    """A folder written by Dataset.save_to_disk (state.json) or DatasetDict.save_to_disk (dataset_dict.json)."""
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _pick_split(dataset, where: str):
    """The `train` split of a DatasetDict, or its only split; a plain Dataset as is."""
    from datasets import DatasetDict

    if not isinstance(dataset, DatasetDict):
        return dataset, ""
    if "train" in dataset:
        return dataset["train"], "train"
    if len(dataset) == 1:
        split = next(iter(dataset))
        return dataset[split], split
    raise SeedError(f"{where}: several splits and none is 'train': {', '.join(dataset)}")


def _dataset_seeds(dataset, field: str, label: str) -> Iterator[Seed]:
    if field not in dataset.column_names:
        raise SeedError(f"{label}: no field {field!r}; available columns: {', '.join(dataset.column_names)}")
    licence_column = next((c for c in ("licence", "license") if c in dataset.column_names), None)
    default = (getattr(dataset.info, "license", None) or "").strip() or UNKNOWN_LICENCE
    texts = dataset[field]
    licences = dataset[licence_column] if licence_column else [None] * len(texts)
    for row, (value, licence) in enumerate(zip(texts, licences, strict=True)):
        where = f"{label}#row {row}"
        text = _text_of(value, where, field)
        yield Seed(
            seed_id(text), text, where, licence.strip() if isinstance(licence, str) and licence else default
        )


def _saved_dataset_seeds(path: Path, field: str) -> Iterator[Seed]:
    from datasets import load_from_disk

    try:
        dataset = load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError, pyarrow errors
        raise SeedError(f"{path}: not a readable saved dataset ({_one_line(exc)})") from None
    dataset, split = _pick_split(dataset, str(path))
    label = f"{path}[{split}]" if split else str(path)
    if (getattr(dataset.info, "license", None) or "").strip() == "":
        # save_to_disk keeps no licence unless the dataset had one: fall back to a LICENSE file near it.
        return _with_default_licence(
            _dataset_seeds(dataset, field, label), detect_licence(path, parents=False)
        )
    return _dataset_seeds(dataset, field, label)


def _with_default_licence(seeds: Iterator[Seed], licence: str) -> Iterator[Seed]:
    for seed in seeds:
        yield seed if seed.licence != UNKNOWN_LICENCE else Seed(seed.id, seed.text, seed.source, licence)


def _hub_seeds(hub_id: str, field: str) -> Iterator[Seed]:
    from datasets import load_dataset

    try:
        dataset = load_dataset(hub_id)
    except Exception as exc:  # offline, unknown repo, no access: all end here with datasets' reason
        offline = " (HF_HUB_OFFLINE=1 is set: only a locally cached copy can load)" if _hub_offline() else ""
        raise SeedError(
            f"{hub_id}: cannot load from the Hugging Face hub{offline}: {_one_line(exc)}; "
            "or pass a local JSONL/Parquet file or a save_to_disk folder"
        ) from None
    dataset, split = _pick_split(dataset, hub_id)
    return _dataset_seeds(dataset, field, f"{hub_id}[{split}]" if split else hub_id)


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


# --- licences ------------------------------------------------------------------------------------------------


def licence_name(text: str) -> str:
    """An SPDX-style name for a licence text, or "unknown" when none of the common licences matches."""
    lowered = " ".join(text.lower().split())
    for name, patterns in _LICENCE_PATTERNS:
        if all(p in lowered for p in patterns):
            return name
    return UNKNOWN_LICENCE


def detect_licence(
    start: str | os.PathLike, _cache: dict[Path, str] | None = None, *, parents: bool = True
) -> str:
    """The licence of the nearest LICENSE/LICENCE/COPYING file in `start` (or, with `parents`, a folder above
    it), or "unknown". Data files look only in their own folder: the project a data file happens to sit in
    does not license the data."""
    folder = Path(start).resolve()
    if folder.is_file():
        folder = folder.parent
    visited: list[Path] = []
    found = UNKNOWN_LICENCE
    for candidate in (folder, *folder.parents) if parents else (folder,):
        if _cache is not None and candidate in _cache:
            found = _cache[candidate]
            break
        visited.append(candidate)
        licence_file = next((candidate / n for n in _LICENCE_FILES if (candidate / n).is_file()), None)
        if licence_file is not None:
            try:
                found = licence_name(licence_file.read_text(encoding="utf-8", errors="replace")[:20000])
            except OSError:
                found = UNKNOWN_LICENCE
            break
    if _cache is not None:
        _cache.update(dict.fromkeys(visited, found))
    return found


# --- snippets from a source tree -----------------------------------------------------------------------------


def stdlib_dir() -> Path:
    """The installed Python standard library (without site-packages, which is skipped when walking)."""
    return Path(sysconfig.get_paths()["stdlib"])


def _python_files(root: Path, skipped: frozenset[str] = _SKIPPED_DIRS) -> list[Path]:
    files = []
    for folder, dirs, names in os.walk(root):
        # Sorted and pruned in place: the walk order is the same on every machine.
        dirs[:] = sorted(d for d in dirs if d not in skipped and not d.startswith("."))
        files.extend(Path(folder) / n for n in sorted(names) if n.endswith(".py"))
    return files


def _definitions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield node


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _file_snippets(
    source: str, rng: random.Random, lines_per_window: int, max_definition_lines: int
) -> list[tuple[int, int, str]]:
    """(first line, last line, text) of the file's functions/classes and its random line windows."""
    # Split where the parser counts lines (not str.splitlines, which also splits at form feeds).
    lines = _LINE_BREAK.split(source)
    if lines[-1] == "":  # the text after the final line break is no line
        lines.pop()
    snippets: list[tuple[int, int, str]] = []
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # not Python 3 (some stdlib test data), or NUL bytes: windows only
        tree = None
    if tree is not None:
        for node in _definitions(tree):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            last = node.end_lineno or node.lineno
            if last - first + 1 <= max_definition_lines:
                snippets.append((first, last, textwrap.dedent("\n".join(lines[first - 1 : last]))))
    windows = math.ceil(len(lines) / lines_per_window) if lines_per_window > 0 else 0
    for _ in range(windows):
        size = rng.randint(1, MAX_WINDOW_LINES)
        start = rng.randint(0, max(0, len(lines) - size))
        end = min(len(lines), start + size)
        # Blank lines at either end are trimmed, so the recorded range is exactly the snippet's lines.
        while start < end and not lines[start].strip():
            start += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        if start < end:
            snippets.append((start + 1, end, textwrap.dedent("\n".join(lines[start:end]))))
    rng.shuffle(snippets)
    return snippets


def _read_source(path: Path) -> str | None:
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        # Honour a PEP 263 coding line, as Python does; most files are UTF-8.
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        return None


def seeds_from_source(
    dir: str | os.PathLike | None = None,
    *,
    limit: int | None = None,
    seed: int = 0,
    lines_per_window: int = LINES_PER_WINDOW,
    max_definition_lines: int = MAX_DEFINITION_LINES,
    min_chars: int = MIN_SNIPPET_CHARS,
) -> list[Seed]:
    """OSS-Instruct-style snippets from the Python files under `dir` (default: the standard library).

    Files are visited in an order shuffled by `seed`, each giving its functions and classes (at most
    `max_definition_lines` lines, with their decorators) and a window of 1-15 consecutive lines per
    `lines_per_window` lines of the file (0: no windows), in an order also drawn from `seed` and the file's path; snippets of 64 files at a time are
    interleaved. So the result depends only on the tree and `seed`, and a `limit` takes a spread of modules
    rather than all of one. Snippets shorter than `min_chars` (stripped) are skipped; repeats are dropped.
    Folders named site-packages, dist-packages, __pycache__, node_modules or starting with a dot are skipped,
    and for the standard library also its test suites (test, tests, idle_test).
    """
    if limit is not None and limit < 0:
        raise SeedError(f"limit must be >= 0, got {limit}")
    stdlib = dir is None
    root = stdlib_dir() if stdlib else Path(dir)
    if not root.is_dir():
        raise SeedError(f"{root}: no such folder")
    files = _python_files(root, _STDLIB_SKIPPED_DIRS if stdlib else _SKIPPED_DIRS)
    if not files:
        raise SeedError(f"{root}: no .py files under this folder")
    random.Random(f"files:{seed}").shuffle(files)
    label = f"python{sysconfig.get_python_version()}-stdlib" if stdlib else str(dir)
    cache: dict[Path, str] = {}

    def of_file(path: Path) -> list[Seed]:
        relative = path.relative_to(root).as_posix()
        source = _read_source(path)
        if source is None:
            return []
        licence = STDLIB_LICENCE if stdlib else detect_licence(path.parent, cache)
        rng = random.Random(f"{seed}:{relative}")
        found = []
        for first, last, text in _file_snippets(source, rng, lines_per_window, max_definition_lines):
            text = text.strip("\n")
            if len(text.strip()) >= min_chars:
                found.append(Seed(seed_id(text), text, f"{label}/{relative}:{first}-{last}", licence))
        return found

    def generate() -> Iterator[Seed]:
        for start in range(0, len(files), _INTERLEAVED_FILES):
            group = [of_file(path) for path in files[start : start + _INTERLEAVED_FILES]]
            for rank in range(max(map(len, group), default=0)):
                yield from (snippets[rank] for snippets in group if rank < len(snippets))

    return _unique(generate(), limit)
