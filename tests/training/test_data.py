"""Training data sources and settings: JSONL, folders, datasets folders, app exports; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.training.tiny_base import EOT, cached_tiny_base, training_records, write_jsonl
from training.config import ConfigError, SFTConfig, load_config_file
from training.data import DataError, load_dialogues

pytestmark = pytest.mark.model  # builds (or loads) the tiny base model


def test_jsonl_file_folder_and_datasets_folder(tmp_path):
    from datasets import Dataset

    records = training_records(copies=2)
    write_jsonl(tmp_path / "a.jsonl", records[:2])
    folder = tmp_path / "many"
    folder.mkdir()
    write_jsonl(folder / "1.jsonl", records[:1])
    write_jsonl(folder / "2.jsonl", records[1:3])
    Dataset.from_list([{"id": r["id"], "messages": r["messages"]} for r in records]).save_to_disk(
        tmp_path / "ds"
    )
    assert [d.id for d in load_dialogues([str(tmp_path / "a.jsonl")])] == ["print-0", "hello-0"]
    assert len(load_dialogues([str(folder)])) == 3
    from_ds = load_dialogues([str(tmp_path / "ds")])
    # Arrow gives every message every column (runs: None); the reader drops those again.
    assert [d.messages for d in from_ds] == [r["messages"] for r in records]
    assert len(load_dialogues([str(tmp_path / "a.jsonl"), str(folder)], limit=4)) == 4


def test_app_export_is_accepted_as_it_is(tmp_path):
    from app.export import dialogue_jsonl

    dialogue = training_records(copies=1)[0]["messages"]
    path = tmp_path / "chat.jsonl"
    path.write_text(dialogue_jsonl("chat-1", dialogue, [], {"model": "x"}), encoding="utf-8")
    (only,) = load_dialogues([str(path)])
    assert only.id == "chat-1" and only.messages == dialogue


def test_malformed_records_name_file_and_line(tmp_path):
    good = json.dumps(training_records(copies=1)[0])
    path = tmp_path / "bad.jsonl"
    path.write_text(
        good + "\n" + '{"id": "x", "messages": [{"role": "robot", "content": "hi"}]}\n' + good + "\n"
    )
    with pytest.raises(DataError) as err:
        load_dialogues([str(path)])
    message = str(err.value)
    assert message.startswith(f"{path}:2:") and "\n" not in message
    path.write_text(good + "\n{not json\n" + good + "\n")
    with pytest.raises(DataError, match=rf"^{path}:2: "):
        load_dialogues([str(path)])
    with pytest.raises(DataError, match="no such file"):
        load_dialogues([str(tmp_path / "missing.jsonl")])


def test_config_file_then_flags(tmp_path):
    from training.cli import build_parser
    from training.config import config_from_args

    args = build_parser().parse_args(
        [
            "sft",
            "--config",
            "autocoder_s_6.7b.yaml",
            "--data",
            "d.jsonl",
            "--out",
            "o",
            "--lr",
            "1e-4",
            "--lora",
        ]
    )
    config = config_from_args(args)
    assert config.base == "deepseek-ai/deepseek-coder-6.7b-base" and config.lr == 1e-4 and config.lora
    assert (
        config.micro_batch == 8
        and config.max_length == 5120
        and config.deepspeed.endswith("deepspeed_zero3.json")
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        load_config_file(str(bad))
    bad.write_text("micro_batch: many\n")
    with pytest.raises(ConfigError, match="micro_batch"):
        load_config_file(str(bad))
    with pytest.raises(ConfigError, match="--data"):
        SFTConfig(base="b", out="o").validate()


def test_cli_errors_are_one_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1}\n')
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "render",
            "--base",
            str(cached_tiny_base()),
            "--data",
            str(path),
            "--chat-template",
            "deepseek_coder",
            "--end-of-turn",
            EOT,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith(f"error: {path}:1:")
    assert "Traceback" not in run.stderr


def test_render_json(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", training_records(copies=1))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "training",
            "render",
            "--base",
            str(cached_tiny_base()),
            "--data",
            str(data),
            "--chat-template",
            "deepseek_coder",
            "--end-of-turn",
            EOT,
            "--limit",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 1
    rows = json.loads(lines[0])
    assert set(rows[0]) == {"token", "id", "label", "role"}
    assert {r["role"] for r in rows} == {"user", "assistant", "execution"}
    trained = "".join(r["token"] for r in rows if r["label"] != -100)
    assert "<API_RUN_START>" in trained and "Done." in trained and EOT in trained
    assert all(r["label"] in (-100, r["id"]) for r in rows)
    assert not any(r["label"] != -100 for r in rows if r["role"] != "assistant")


def test_encoding_in_several_processes_gives_the_same_dataset(tmp_path):
    from training.sft import encode_dataset, load_tokenizer
    from training.tokens import add_tokens

    data = write_jsonl(tmp_path / "d.jsonl", training_records(copies=3))
    config = SFTConfig(
        base=str(cached_tiny_base()), data=[str(data)], out="-", chat_template="deepseek_coder"
    )
    tokenizer = load_tokenizer(config)
    add_tokens(tokenizer, EOT)
    tokenizer.eos_token = EOT
    one, counts_one = encode_dataset(config, tokenizer, [tokenizer.eos_token_id])
    config.num_proc = 2
    two, counts_two = encode_dataset(config, tokenizer, [tokenizer.eos_token_id])
    assert one["input_ids"] == two["input_ids"] and one["labels"] == two["labels"]
    assert counts_one == counts_two and counts_one["ok"] == 6
