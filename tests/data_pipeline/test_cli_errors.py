"""Bad input gets one line on stderr and exit status 2 before any paid work: no generation request reaches
the teacher and no item file is written."""

from __future__ import annotations

import pytest

from data_pipeline.cli import main
from tests.data_pipeline.conftest import generate_args, write_seeds


def _fails_cleanly(capsys, teacher, out, args, *expect: str) -> str:
    teacher.requests.clear()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    for text in expect:
        assert text in err, err
    assert not [r for r in teacher.requests if r["path"].endswith("completions")]
    assert not any((out / name).exists() for name in ("dialogues.jsonl", "rejected.jsonl", "removed.jsonl"))
    return err


@pytest.fixture
def seeds(tmp_path):
    return write_seeds(tmp_path / "seeds.jsonl", ("ok", "bug"))


def test_missing_seed_file(tmp_path, teacher, capsys):
    out = tmp_path / "out"
    args = generate_args(tmp_path / "nope.jsonl", out, teacher)
    _fails_cleanly(capsys, teacher, out, args, "nope.jsonl")


def test_malformed_seed_file_names_the_line(tmp_path, teacher, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"seed": "def f(): pass  # fine"}\n{"seed": oops}\n{"seed": "x = 1 + 2 + 3 + 4 + 5"}\n')
    out = tmp_path / "out"
    _fails_cleanly(capsys, teacher, out, generate_args(bad, out, teacher), "bad.jsonl:2")


def test_unknown_seed_field(tmp_path, teacher, seeds, capsys):
    out = tmp_path / "out"
    _fails_cleanly(capsys, teacher, out, generate_args(seeds, out, teacher, "--seed-field", "code"), "code")


def test_unreachable_teacher(tmp_path, teacher, seeds, capsys):
    out = tmp_path / "out"
    args = generate_args(seeds, out, teacher)
    args[args.index("--teacher-base-url") + 1] = "http://127.0.0.1:9/v1"
    _fails_cleanly(capsys, teacher, out, args, "cannot connect", "127.0.0.1:9")


def test_wrong_api_key(tmp_path, teacher, seeds, capsys):
    out = tmp_path / "out"
    args = generate_args(seeds, out, teacher)
    args[args.index("--api-key") + 1] = "wrong"
    _fails_cleanly(capsys, teacher, out, args, "API key")


def test_unknown_teacher_model(tmp_path, teacher, seeds, capsys):
    out = tmp_path / "out"
    args = generate_args(seeds, out, teacher)
    args[args.index("--teacher-model") + 1] = "gpt-17"
    _fails_cleanly(capsys, teacher, out, args, "gpt-17")


@pytest.mark.parametrize("shard", ["2/2", "x/3", "1"])
def test_bad_shard(tmp_path, teacher, seeds, capsys, shard):
    out = tmp_path / "out"
    _fails_cleanly(capsys, teacher, out, generate_args(seeds, out, teacher, "--shard", shard), "--shard")


def test_max_cost_needs_a_price(tmp_path, teacher, seeds, capsys):
    out = tmp_path / "out"
    _fails_cleanly(
        capsys, teacher, out, generate_args(seeds, out, teacher, "--max-cost", "1"), "teacher-model"
    )


def test_stats_of_a_folder_without_items(tmp_path, capsys):
    assert main(["stats", str(tmp_path)]) == 2
    assert "holds no" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "many"])
def test_bad_kernel_reuse_is_refused_by_the_parser(tmp_path, teacher, seeds, capsys, value):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(generate_args(seeds, out, teacher, "--kernel-reuse", value))
    assert exit_info.value.code == 2
    assert "--kernel-reuse" in capsys.readouterr().err
    assert not out.exists()
