"""MBPP+: the loader's special input conversions and the MBPP oracles agree with EvalPlus 0.3.1, and the
loader's error paths and $AUTOCODER_MBPP_PLUS.

MBPP+ itself is not shipped, so the records are built here (tests/evaluation/mbpp_plus_cases.py) to reach
every branch of EvalPlus's `mbpp_deserialize_inputs` and every special oracle of its `unsafe_execute`.
"""

from __future__ import annotations

import gzip
import json

import pytest

from evaluation.datasets import MBPP_PLUS_ENV, DatasetError, load_benchmark, load_mbpp_plus, mbpp_plus_path
from evaluation.datasets import mbpp_plus_deserialize_inputs as ours_deserialize
from tests.conftest import require
from tests.evaluation import mbpp_plus_cases as C
from tests.evaluation.test_agreement import LIMITS, _evalplus_available, run_evalplus_all


def _evalplus_deserialize():
    require(_evalplus_available(), "evalplus is not installed (pip install -r requirements-dev.txt)")
    from evalplus.data.mbpp import mbpp_deserialize_inputs

    return mbpp_deserialize_inputs


def _typed(value) -> str:
    """repr tells tuple, list, set, dict, complex, float and int apart (the inputs hold small ints only)."""
    return repr(value)


def _outcome(fn, task_id, inputs):
    try:
        return _typed(fn(task_id, json.loads(json.dumps(inputs))))
    except Exception as exc:  # a shape the branch cannot take: both must refuse it
        return f"raises {type(exc).__name__}"


def test_input_conversions_match_evalplus_for_every_task_id():
    theirs = _evalplus_deserialize()
    shapes = [inputs for base, plus in C.CONVERSIONS.values() for inputs in (base, plus)]
    differ = {}
    for number in range(1, 1000):
        task_id = f"Mbpp/{number}"
        for inputs in shapes:
            mine, reference = _outcome(ours_deserialize, task_id, inputs), _outcome(theirs, task_id, inputs)
            if mine != reference:
                differ.setdefault(task_id, (inputs, mine, reference))
    assert differ == {}
    # Premise: the shapes do tell the branches apart (each branch's own shape converts to something new).
    for task_id, (base, _) in C.CONVERSIONS.items():
        assert _outcome(theirs, task_id, base) != _typed(base), task_id


@pytest.mark.local_sandbox
@pytest.mark.slow
def test_special_conversions_and_oracles_verdicts_identical_to_evalplus(
    eval_sandbox, reference_cache, tmp_path
):
    from evaluation.scoring import score_problems

    cases = C.all_cases(_evalplus_deserialize())
    data = tmp_path / "MbppPlus-v0.2.0.jsonl"
    C.write_jsonl(data, [c.record() for c in cases])
    benchmark = load_mbpp_plus(data)
    assert [p.task_id for p in benchmark.problems] == [c.task_id for c in cases]
    sample_list = [{"task_id": c.task_id, "solution": code} for c in cases for _, code, _ in c.samples]
    expected = {c.task_id: [verdict for _, _, verdict in c.samples] for c in cases}
    labels = {c.task_id: [label for label, _, _ in c.samples] for c in cases}

    report = score_problems(
        benchmark.problems,
        sample_list,
        sandbox=eval_sandbox,
        cache_dir=reference_cache,
        time_limits=LIMITS,
        progress=False,
    )
    mine = {t: [(v.passed_parts(("base",)), v.passed) for v in vs] for t, vs in report.tasks.items()}
    assert report.reference_errors == {}
    theirs = run_evalplus_all("mbpp", sample_list, tmp_path, "MBPP_OVERRIDE_PATH", data)

    def named(verdicts: dict) -> dict:
        return {(t, labels[t][i]): v for t, vs in verdicts.items() for i, v in enumerate(vs)}

    wrong = {k: (v, named(theirs).get(k), named(expected)[k]) for k, v in named(mine).items()}
    assert {k: v for k, v in wrong.items() if not v[0] == v[1] == v[2]} == {}
    assert len(named(mine)) == len(sample_list) == len(named(theirs))
    # The set is not trivial: passes, failures and base-only passes all occur.
    assert {v for vs in expected.values() for v in vs} == {C.PASS, C.FAIL, C.BASE_ONLY}


# --- the loader's error paths and $AUTOCODER_MBPP_PLUS ---------------------------------------------------


def _row(**changes) -> dict:
    row = C.Case("Mbpp/9101", "third", "def third(x):\n    return x / 3\n", [[1]], [[2]]).record()
    row.update(changes)
    return row


def _write(path, rows) -> str:
    C.write_jsonl(path, rows)
    return str(path)


def test_no_file_and_no_variable_is_a_one_line_error_naming_both(monkeypatch):
    monkeypatch.delenv(MBPP_PLUS_ENV, raising=False)
    with pytest.raises(DatasetError) as info:
        load_benchmark("mbpp+")
    message = str(info.value)
    assert "\n" not in message and "--mbpp-plus-file" in message and MBPP_PLUS_ENV in message
    assert "MbppPlus-v0.2.0.jsonl.gz" in message


def test_the_variable_names_the_file_and_the_flag_wins_over_it(monkeypatch, tmp_path):
    from_env = _write(tmp_path / "MbppPlus-v0.2.0.jsonl", [_row()])
    from_flag = _write(tmp_path / "MbppPlus-v0.1.0.jsonl", [_row(), _row(task_id="Mbpp/9102")])
    monkeypatch.setenv(MBPP_PLUS_ENV, from_env)
    benchmark = load_benchmark("mbpp+")
    assert benchmark.info.version == "v0.2.0" and [p.task_id for p in benchmark.problems] == ["Mbpp/9101"]
    flagged = load_benchmark("mbpp+", mbpp_plus_file=from_flag)
    assert flagged.info.version == "v0.1.0" and len(flagged.problems) == 2
    assert mbpp_plus_path(None) == tmp_path / "MbppPlus-v0.2.0.jsonl"


def test_gzip_file_loads_and_an_unversioned_name_is_recorded_as_such(tmp_path):
    path = tmp_path / "mbpp-plus-latest.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps(_row()) + "\n")
    benchmark = load_mbpp_plus(path)
    assert benchmark.info.version == "unknown version (mbpp-plus-latest.jsonl.gz)"
    assert benchmark.problems[0].tests[0].inputs == [[1]] and benchmark.problems[0].tests[1].name == "plus"


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json\n", "is not JSON lines"),
        (b"\x1f\x8b\x08broken gzip", "is not JSON lines"),
        ("", "has no tasks"),
        (json.dumps(["a", "list"]) + "\n", "line 1 is not a task"),
        (json.dumps("text") + "\n", "line 1 is not a task"),
        (json.dumps({k: v for k, v in _row().items() if k != "plus_input"}) + "\n", r"lacks \['plus_input'\]"),
        (json.dumps(_row(task_id="Mbpp/2", base_input=[[1, 2]])) + "\n", "Mbpp/2: malformed base_input"),
        (json.dumps(_row(base_input="1, 2")) + "\n", "Mbpp/9101: malformed base_input"),
        (json.dumps(_row(task_id="Mbpp/124", base_input=[["1.5", "1j"]], plus_input=[["x", "y"]])) + "\n", "Mbpp/124: malformed plus_input"),
    ],
    ids=["not-json", "broken-gzip", "empty", "a-list", "a-string", "missing-field", "bad-tuples", "not-a-list",
         "bad-complex"],
)  # fmt: skip
def test_broken_files_are_one_line_errors(tmp_path, content, match):
    path = tmp_path / ("MbppPlus-v0.2.0.jsonl.gz" if isinstance(content, bytes) else "MbppPlus-v0.2.0.jsonl")
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(DatasetError, match=match) as info:
        load_mbpp_plus(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_file_named_by_the_variable_is_a_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv(MBPP_PLUS_ENV, str(tmp_path / "nowhere.jsonl"))
    with pytest.raises(DatasetError, match="nowhere.jsonl does not exist") as info:
        load_benchmark("mbpp+")
    assert "\n" not in str(info.value)
    (tmp_path / "a-folder.jsonl").mkdir()
    with pytest.raises(DatasetError, match="does not exist"):
        load_mbpp_plus(tmp_path / "a-folder.jsonl")
