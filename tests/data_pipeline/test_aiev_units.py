"""The aiev pieces without a model: config errors (one line each), the state machine's records and refusals,
the split, Wilson intervals, and an item scored through evaluation.score_problems in the real local sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from data_pipeline.aiev.config import ConfigError, load_config
from data_pipeline.aiev.scoring import ItemProblemError, item_problem, wilson_interval
from data_pipeline.aiev.state import RunState, StateError
from data_pipeline.cli import main

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "seeds": "seeds.jsonl",
    "teacher": {"base_url": "http://127.0.0.1:9/v1", "model": "t"},
    "student": {"base": "some/model"},
}


def write_config(folder: Path, data: dict | str) -> Path:
    path = folder / "aiev.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_good_config_and_defaults(tmp_path):
    (tmp_path / "seeds.jsonl").write_text('{"seed": "x"}\n')
    config = load_config(write_config(tmp_path, GOOD))
    assert config.seeds == str(tmp_path / "seeds.jsonl")  # relative to the config's folder
    assert (config.round_size, config.split.test_share, config.comparison) == (2000, 0.1, "strictly_better")
    assert config.training.start_from == "base" and config.training.launcher is None
    assert config.evaluation.with_interpreter is False


def test_example_config_loads():
    config = load_config(ROOT / "data_pipeline/aiev.example.yaml")
    assert config.round_size == 2000 and config.split.test_share == 0.1
    assert Path(config.training.config).is_file()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "colour: unknown key"),
        ({"seeds": ""}, "seeds: missing"),
        ({"round_size": "many"}, "round_size: 'many' is not a int"),
        ({"round_size": 0}, "round_size: must be at least 1, got 0"),
        ({"split": {"test_share": 1.5}}, "split.test_share: must be between 0 and 1, got 1.5"),
        ({"split": {"ratio": 1}}, "split.ratio: unknown key"),
        ({"comparison": "better"}, "comparison: must be one of strictly_better, not_worse, got 'better'"),
        ({"teacher": {"model": "t"}}, "teacher.base_url: missing"),
        ({"training": {"settings": {"out": "x"}}}, "training.settings.out: set by aiev for each round"),
        ({"training": {"settings": {"learning": 1}}}, "training.settings.learning: not a training key"),
        ({"training": {"start_from": "scratch"}}, "training.start_from: must be one of base, last"),
        ({"training": {"launcher": "'unclosed"}}, "training.launcher: not a command"),
        ({"generation": ["--out", "x"]}, "generation: --out is set by aiev for each round"),
        (
            {"generation": ["--concurrency", "many"]},
            "generation: argument --concurrency: invalid int value: 'many'",
        ),
        ({"generation": ["--colour"]}, "generation: unrecognized arguments: --colour"),
        ({"student": {"base": "m", "server": {"model": "s"}}}, "student.server.base_url: missing"),
    ],
)
def test_bad_config_is_one_line(tmp_path, change, message):
    path = write_config(tmp_path, {**GOOD, **change})
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and message in text, text


def test_bad_yaml_and_missing_file_through_the_cli(tmp_path, capsys):
    path = write_config(tmp_path, "seeds: [unclosed\n")
    assert main(["aiev", "--config", str(path), "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: not valid YAML")
    assert main(["aiev", "--config", str(tmp_path / "nope.yaml"), "--run", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope.yaml'}: no such config file"
    assert not (tmp_path / "run").exists()


def test_state_records_steps_and_refuses_other_inputs(tmp_path):
    state = RunState(tmp_path / "run")
    state.start("r00.train", {"lr": 0.1})
    state.progress("r00.train", ends=[20])
    again = RunState(tmp_path / "run")  # as after a kill: the step is running, its progress kept
    assert again.step("r00.train")["status"] == "running" and again.step("r00.train")["progress"] == {
        "ends": [20]
    }
    again.start("r00.train", {"lr": 0.2})  # not finished: may be restarted with other inputs
    again.finish("r00.train", {"checkpoint": "x"}, 1.5)
    third = RunState(tmp_path / "run")
    assert third.done("r00.train") and third.result("r00.train") == {"checkpoint": "x"}
    assert third.step("r00.train")["starts"] == 2
    third.check("r00.train", {"lr": 0.2})
    with pytest.raises(
        StateError, match=r"^step r00.train finished with another config \(lr: 0.2 then, 0.3 now\)"
    ):
        third.check("r00.train", {"lr": 0.3})
    assert not list((tmp_path / "run").glob(".*tmp"))  # written by rename, no temporary left


def test_unreadable_state_is_one_line(tmp_path):
    (tmp_path / "state.json").write_text("{torn")
    with pytest.raises(
        StateError, match="state.json is unreadable or of another version; use a new --run DIR$"
    ):
        RunState(tmp_path)


def test_wilson_interval():
    assert wilson_interval(0, 2) == pytest.approx((0.0, 0.6576), abs=1e-4)
    assert wilson_interval(2, 2) == pytest.approx((0.3424, 1.0), abs=1e-4)
    low, high = wilson_interval(180, 200)
    assert low < 0.9 < high and high - low < 0.1
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _item(tests: str) -> dict:
    program = f"import math\n\ndef area(r):\n    return math.pi * r * r\n\n{tests}"
    return {
        "id": "item1",
        "messages": [
            {"role": "user", "content": "Write `area(r)`, the area of a circle of radius r."},
            {"role": "assistant", "content": "Here."},
            {"role": "execution", "content": "", "runs": [{"language": "python", "code": program}]},
        ],
        "meta": {"tests": [{"attempt": 1, "tests": tests}]},
    }


@pytest.mark.local_sandbox
def test_item_problem_scored_in_the_sandbox(local_sandbox_ok):
    from evaluation.scoring import make_eval_sandbox, score_problems

    problem = item_problem(_item("assert abs(area(1) - math.pi) < 1e-9\nassert area(0) == 0"))
    assert problem.prompt.startswith("Write `area(r)`") and problem.entry_point is None
    assert problem.tests[0].code.startswith("import math\n\nassert abs(area(1)")
    samples = [
        {"task_id": "item1", "solution": "import math\ndef area(r):\n    return math.pi * r ** 2"},
        {"task_id": "item1", "solution": "def area(r):\n    return 3.14 * r * r"},
    ]
    report = score_problems(
        [problem], samples, sandbox=make_eval_sandbox("local"), progress=False, use_cache=False
    )
    assert [(v.passed, v.why) for v in report.tasks["item1"]] == [(True, "passed"), (False, "wrong answer")]


def test_item_without_tests_is_refused():
    with pytest.raises(ItemProblemError, match="^item item1: no problem or no tests to score with$"):
        item_problem(_item("   "))


def test_split_is_seeded_and_one_to_nine(tmp_path):
    from data_pipeline.aiev.config import AievConfig
    from data_pipeline.aiev.rounds import Rounds

    gen = tmp_path / "run/rounds/r00/gen"
    gen.mkdir(parents=True)
    lines = [
        json.dumps(
            {"id": f"{i:016x}", "messages": [{"role": "user", "content": str(i)}], "meta": {}, "schema": 1}
        )
        for i in range(50)
    ]
    (gen / "dialogues.jsonl").write_text("\n".join(lines) + "\n")
    splits = []
    for seed in (0, 0, 1):
        config = AievConfig(seeds="x")
        config.split.seed = seed
        splits.append(Rounds(config, tmp_path / "run")._split(0, "r00.split"))
    assert splits[0] == splits[1] != splits[2]
    assert (splits[0]["test"], splits[0]["train"]) == (5, 45)
    test = [json.loads(x)["id"] for x in (tmp_path / "run/rounds/r00/test.jsonl").read_text().splitlines()]
    train = [json.loads(x)["id"] for x in (tmp_path / "run/rounds/r00/train.jsonl").read_text().splitlines()]
    assert sorted(test) == splits[2]["test_ids"] and not set(test) & set(train) and len(train) == 45


def test_generator_flags_for_each_stage(tmp_path):
    """The generator gets the teacher, then the latest student in-process (hf) or the named server; the
    flags go through the generator's own parser and its backend selection."""
    from data_pipeline.aiev.config import AievConfig, Endpoint
    from data_pipeline.aiev.rounds import Rounds
    from data_pipeline.cli import build_parser
    from data_pipeline.generate import backend_flags

    config = AievConfig(seeds="x", generation=["--concurrency", "3"])
    config.teacher = Endpoint(base_url="http://teacher/v1", model="gpt-4-turbo", api_key_file="/k")
    config.student.dtype = "fp32"
    rounds = Rounds(config, tmp_path / "run")
    rounds.state.start("r00.train", {})
    rounds.state.finish("r00.train", {"checkpoint": "/ckpt/r00"}, 1.0)
    rounds.state.start("r00.decide", {})
    rounds.state.finish("r00.decide", {"stage_after": "self-learning"}, 0.0)

    def parsed(round_no):
        return build_parser().parse_args(
            rounds.generator_argv(round_no, tmp_path / "s.jsonl", tmp_path / "g")
        )

    teaching = parsed(0)
    assert (teaching.stage, teaching.teacher_backend, teaching.concurrency) == ("teaching", "openai", 3)
    assert backend_flags(teaching, "teacher").base_url == "http://teacher/v1"
    student = parsed(1)
    assert (student.stage, student.teacher_backend, student.teacher_model) == (
        "self-learning",
        "hf",
        "/ckpt/r00",
    )
    flags = backend_flags(student, "teacher")
    assert (flags.backend, flags.model, flags.dtype) == ("hf", "/ckpt/r00", "fp32")
    config.student.server = Endpoint(base_url="http://vllm:8000/v1", model="autocoder")
    served = parsed(1)
    assert (served.stage, served.teacher_backend, served.teacher_base_url) == (
        "self-learning",
        "openai",
        "http://vllm:8000/v1",
    )
    assert backend_flags(served, "teacher").model == "autocoder"
