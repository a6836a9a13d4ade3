"""Seeds: JSONL, Parquet, folders, `datasets` folders, hub ids, source trees (a temp tree and the stdlib)."""

import ast
import gzip
import json
import textwrap

import pytest

from data_pipeline.seeds import (
    STDLIB_LICENCE,
    SeedError,
    detect_licence,
    licence_name,
    load_seeds,
    seed_id,
    seeds_from_source,
    stdlib_dir,
)

MIT = "MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy..."
GPL3 = "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n..."


def write_jsonl(path, rows):
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def write_parquet(path, columns):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


# --- files and folders ---------------------------------------------------------------------------------------


def test_jsonl_seeds_with_ids_sources_licences_and_repeats_dropped(tmp_path):
    (tmp_path / "LICENSE").write_text(MIT)
    file = write_jsonl(
        tmp_path / "seeds.jsonl",
        [
            {"seed": "def a():\n    return 1", "lang": "python"},
            "",
            {"seed": "x = [i * i for i in range(10)]", "license": "Apache-2.0"},
            {"seed": "def a():\n    return 1"},  # a repeat: dropped
            {"seed": "   "},  # empty: skipped
            {"seed": None},
        ],
    )
    seeds = load_seeds(file)
    assert [s.text for s in seeds] == ["def a():\n    return 1", "x = [i * i for i in range(10)]"]
    assert [s.source for s in seeds] == [f"{file}:1", f"{file}:3"]
    assert [s.licence for s in seeds] == ["MIT", "Apache-2.0"]  # a row's own licence wins over the file's
    assert seeds[0].id == seed_id("def a():\n    return 1") and len(seeds[0].id) == 16
    assert seeds[0].to_json()["id"] == seeds[0].id
    assert load_seeds(file, limit=1) == seeds[:1]


def test_other_field_and_gzip(tmp_path):
    # A LICENSE of the project the data sits in does not license the data: only the data's own folder counts.
    (tmp_path / "LICENSE").write_text(MIT)
    (tmp_path / "data").mkdir()
    file = write_jsonl(
        tmp_path / "data" / "evol.jsonl.gz", [{"instruction": "Sort a list.", "response": "sorted(x)"}]
    )
    (seed,) = load_seeds(file, field="instruction")
    assert seed.text == "Sort a list." and seed.licence == "unknown"


def test_parquet_seeds(tmp_path):
    file = write_parquet(tmp_path / "part.parquet", {"seed": ["print(1)", "print(2)"], "n": [1, 2]})
    seeds = load_seeds(file)
    assert [s.text for s in seeds] == ["print(1)", "print(2)"]
    assert seeds[1].source == f"{file}#row 1"


def test_folder_of_files_in_sorted_order(tmp_path):
    write_jsonl(tmp_path / "b.jsonl", [{"seed": "b1"}])
    write_parquet(tmp_path / "a.parquet", {"seed": ["a1", "a2"]})
    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "c.jsonl", [{"seed": "c1"}, {"seed": "a1"}])
    (tmp_path / "notes.txt").write_text("ignored")
    assert [s.text for s in load_seeds(tmp_path)] == ["a1", "a2", "b1", "c1"]


def test_datasets_save_to_disk_folders(tmp_path):
    from datasets import Dataset, DatasetDict

    data = Dataset.from_dict({"seed": ["def f(): pass", "def g(): pass"], "lang": ["py", "py"]})
    data.save_to_disk(str(tmp_path / "plain"))
    DatasetDict({"train": data, "test": data.select([0])}).save_to_disk(str(tmp_path / "dict"))
    plain = load_seeds(tmp_path / "plain")
    assert [s.text for s in plain] == ["def f(): pass", "def g(): pass"]
    assert plain[1].source == f"{tmp_path / 'plain'}#row 1"
    split = load_seeds(tmp_path / "dict")
    assert [s.text for s in split] == ["def f(): pass", "def g(): pass"]
    assert split[0].source == f"{tmp_path / 'dict'}[train]#row 0"
    with pytest.raises(SeedError, match=r"no field 'code'; available columns: seed, lang"):
        load_seeds(tmp_path / "plain", field="code")


# --- errors --------------------------------------------------------------------------------------------------


def one_line_error(call, pattern):
    with pytest.raises(SeedError, match=pattern) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_path(tmp_path):
    one_line_error(lambda: load_seeds(tmp_path / "nope.jsonl"), r"nope.jsonl: no such file or folder")
    one_line_error(lambda: load_seeds(tmp_path), r"no .jsonl, .jsonl.gz or .parquet files")


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    file = write_jsonl(tmp_path / "s.jsonl", [{"seed": "ok"}, {"seed": "fine"}, '{"seed": "broken'])
    one_line_error(lambda: load_seeds(file), rf"{file}:3: not valid JSON")
    array = write_jsonl(tmp_path / "a.jsonl", ["[1, 2]"])
    one_line_error(lambda: load_seeds(array), r"a.jsonl:1: expected a JSON object, got list")


def test_unknown_field_lists_the_columns(tmp_path):
    file = write_jsonl(tmp_path / "s.jsonl", [{"instruction": "i", "response": "r"}])
    one_line_error(
        lambda: load_seeds(file), rf"{file}:1: no field 'seed'; available columns: instruction, response"
    )
    parquet = write_parquet(tmp_path / "p.parquet", {"problem": ["x"], "solution": ["y"]})
    one_line_error(lambda: load_seeds(parquet), r"no field 'seed'; available columns: problem, solution")
    typed = write_jsonl(tmp_path / "t.jsonl", [{"seed": 3}])
    one_line_error(lambda: load_seeds(typed), r"t.jsonl:1: field 'seed' is a int, not text")


def test_broken_parquet_and_wrong_suffix(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    one_line_error(lambda: load_seeds(broken), r"broken.parquet: not a readable Parquet file")
    other = tmp_path / "seeds.csv"
    other.write_text("seed\nx\n")
    one_line_error(lambda: load_seeds(other), r"seeds.csv: not a seed file")


def test_unreachable_hub_is_one_line(monkeypatch):
    # The hub cannot be reached from here (HF_HUB_OFFLINE=1, as in CI): one line, no traceback spill.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = one_line_error(
        lambda: load_seeds("autocoder-tests/no-such-dataset-anywhere"),
        r"autocoder-tests/no-such-dataset-anywhere: cannot load from the Hugging Face hub",
    )
    assert "local JSONL/Parquet file" in message


# --- licences ------------------------------------------------------------------------------------------------


def test_licence_names():
    assert licence_name(MIT) == "MIT"
    assert licence_name(GPL3) == "GPL-3.0"
    assert licence_name("Apache License\nVersion 2.0, January 2004") == "Apache-2.0"
    assert licence_name("All rights reserved.") == "unknown"
    assert detect_licence(stdlib_dir()) == STDLIB_LICENCE  # Python's LICENSE quotes the GPL; still PSF


# --- snippets from a source tree -----------------------------------------------------------------------------


def make_tree(root):
    (root / "LICENSE").write_text(MIT)
    (root / "pkg").mkdir()
    (root / "pkg" / "geometry.py").write_text(
        textwrap.dedent(
            '''\
            import math


            def area(radius):
                """Area of a circle."""
                return math.pi * radius**2


            class Point:
                def __init__(self, x, y):
                    self.x, self.y = x, y

                @property
                def norm(self):
                    return math.hypot(self.x, self.y)
            '''
        )
    )
    (root / "vendored").mkdir()
    (root / "vendored" / "COPYING").write_text(GPL3)
    (root / "vendored" / "util.py").write_text(
        "def clamp(value, low, high):\n    return max(low, min(high, value))\n"
    )
    (root / "broken.py").write_text("def broken(:\n    pass pass pass pass\n" * 3)
    (root / "site-packages").mkdir()
    (root / "site-packages" / "other.py").write_text("def not_ours_at_all():\n    return 'skipped'\n")


def test_snippets_from_a_tree(tmp_path):
    make_tree(tmp_path)
    seeds = seeds_from_source(tmp_path)
    texts = {s.text for s in seeds}
    # Whole functions and classes (with decorators), dedented.
    assert 'def area(radius):\n    """Area of a circle."""\n    return math.pi * radius**2' in texts
    assert "@property\ndef norm(self):\n    return math.hypot(self.x, self.y)" in texts
    assert any(t.startswith("class Point:") and "def norm" in t for t in texts)
    assert "def clamp(value, low, high):\n    return max(low, min(high, value))" in texts
    assert not any("not_ours_at_all" in t for t in texts)  # site-packages skipped
    assert any("broken" in t for t in texts)  # an unparsable file still gives line windows
    by_text = {s.text: s for s in seeds}
    clamp = by_text["def clamp(value, low, high):\n    return max(low, min(high, value))"]
    assert clamp.licence == "GPL-3.0" and clamp.source == f"{tmp_path}/vendored/util.py:1-2"
    area = by_text['def area(radius):\n    """Area of a circle."""\n    return math.pi * radius**2']
    assert area.licence == "MIT" and area.source == f"{tmp_path}/pkg/geometry.py:4-6"
    # Every seed is a whole definition or a window of at most 15 lines; no repeats.
    for seed in seeds:
        assert len(seed.text.splitlines()) <= 15 or isinstance(ast.parse(seed.text).body[0], ast.ClassDef)
    assert len({s.id for s in seeds}) == len(seeds)


def test_snippets_are_deterministic_per_seed_and_bounded(tmp_path):
    make_tree(tmp_path)
    first = seeds_from_source(tmp_path, seed=3)
    assert seeds_from_source(tmp_path, seed=3) == first
    other = seeds_from_source(tmp_path, seed=4)
    assert [s.text for s in other] != [s.text for s in first]
    assert seeds_from_source(tmp_path, seed=3, limit=2) == first[:2]
    assert seeds_from_source(tmp_path, limit=0) == []


def test_snippet_errors(tmp_path):
    one_line_error(lambda: seeds_from_source(tmp_path / "missing"), r"missing: no such folder")
    one_line_error(lambda: seeds_from_source(tmp_path), r"no .py files")


def test_stdlib_seeds_with_a_limit():
    seeds = seeds_from_source(limit=60, seed=1)
    assert len(seeds) == 60
    assert {s.licence for s in seeds} == {STDLIB_LICENCE}
    assert all(s.source.startswith("python3.") and "-stdlib/" in s.source for s in seeds)
    assert not any("site-packages" in s.source for s in seeds)
    # Spread over several modules, not the first file only.
    assert len({s.source.rsplit(":", 1)[0] for s in seeds}) >= 5
    # The source points at real lines of the real file.
    seed = seeds[0]
    relative, lines = seed.source.split("-stdlib/", 1)[1].rsplit(":", 1)
    first, last = map(int, lines.split("-"))
    file_lines = (stdlib_dir() / relative).read_text(encoding="utf-8").split("\n")[first - 1 : last]
    assert textwrap.dedent("\n".join(file_lines)) == seed.text
    assert seeds_from_source(limit=60, seed=1) == seeds
