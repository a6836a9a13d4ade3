"""The whole AIEV-Instruct flow: the scripted teacher over real HTTP, the real local sandbox, the real loop.

One generation run over every scenario (module scope), then one test per property of its output.
"""

from __future__ import annotations

import json

import pytest

from data_pipeline.cli import main
from interpreter.dialogue import read_dialogues
from interpreter.protocol import RUN_START, RUN_STOP
from tests.conftest import require
from tests.data_pipeline.conftest import ALL_SCENARIOS, generate_args, read_records, write_seeds
from tests.fixtures.openai_server import Failure
from tests.fixtures.scripted_teacher import MODEL

pytestmark = [pytest.mark.local_sandbox, pytest.mark.slow]

MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def run(tmp_path_factory, teacher, local_sandbox_ok):
    base = tmp_path_factory.mktemp("flow")
    seeds = write_seeds(base / "seeds.jsonl", ALL_SCENARIOS)
    out = base / "out"
    # Transient server failures first: the backend retries them (Retry-After honoured).
    teacher.failures = [Failure(status=429, retry_after="0"), Failure(status=500), Failure(status=503)]
    teacher.requests.clear()
    code = main(generate_args(seeds, out, teacher, "--max-attempts", str(MAX_ATTEMPTS), "--concurrency", "4"))
    assert code == 0
    by_scenario = {}
    for name in ("dialogues.jsonl", "rejected.jsonl", "removed.jsonl"):
        for record in read_records(out / name):
            seed_text = record["meta"]["seed"]["text"]
            scenario = seed_text.split("scenario=", 1)[1].split("\n", 1)[0]
            by_scenario[scenario] = (name, record)
    return {"out": out, "by": by_scenario, "requests": list(teacher.requests)}


def roles(record) -> list[str]:
    return [m["role"] for m in record["messages"]]


def test_every_seed_ends_in_exactly_one_file(run):
    assert sorted(run["by"]) == sorted(ALL_SCENARIOS)
    ids = [r["id"] for _, r in run["by"].values()]
    assert len(ids) == len(set(ids))
    summary = json.loads((run["out"] / "summary.json").read_text())
    assert summary["complete"] and summary["this_run"]["failed"] == 0


def test_transient_server_errors_were_retried(run):
    # The three scripted failures were answered and retried: more POSTs than successful calls.
    posts = [r for r in run["requests"] if r["path"].endswith("/chat/completions")]
    calls = sum(
        sum(u["calls"] for u in r["meta"]["usage"].values())
        - sum(u["cached_calls"] for u in r["meta"]["usage"].values())
        for _, r in run["by"].values()
    )
    assert len(posts) == calls + 3


def test_verified_first_try(run):
    name, record = run["by"]["ok"]
    assert name == "dialogues.jsonl"
    assert roles(record) == ["user", "assistant", "execution", "assistant"]
    assert record["meta"]["verified"] is True and record["meta"]["attempts"] == 1
    run_ = record["messages"][2]["runs"][0]
    assert run_["language"] == "python" and run_["status"] == "ok" and "All tests passed." in run_["stdout"]


def test_planted_bug_error_analysis_fix_in_order(run):
    name, record = run["by"]["bug"]
    assert name == "dialogues.jsonl"
    m = record["messages"]
    # II: problem, solution; III: error (3), analysis (4), fix (5); IV: clean run (6), closing sentence.
    assert roles(record) == [
        "user",
        "assistant",
        "execution",
        "assistant",
        "user",
        "assistant",
        "execution",
        "assistant",
    ]
    assert "[scenario: bug]" in m[0]["content"]
    assert "+ 1" in m[1]["content"] and m[2]["runs"][0]["status"] == "error"
    assert m[2]["runs"][0]["error"]["name"] == "AssertionError"
    assert "AssertionError" in m[4]["content"]  # the questioner's analysis names the error it was shown
    assert "Please fix the code" in m[4]["content"]
    assert "+ 1" not in m[5]["content"] and m[6]["runs"][0]["status"] == "ok"
    meta = record["meta"]
    assert meta["attempts"] == 2 and meta["error_types"] == ["AssertionError"]
    assert [t["verified"] for t in meta["tests"]] == [False, True]
    assert all("assert scale_" in t["tests"] for t in meta["tests"])  # every attempt's test code is kept


def test_rejected_items_say_why(run):
    name, record = run["by"]["alwaysbug"]
    assert name == "rejected.jsonl" and record["meta"]["verified"] is False
    assert record["meta"]["attempts"] == MAX_ATTEMPTS
    assert (
        record["meta"]["reason"]
        == f"not verified after {MAX_ATTEMPTS} attempts: the code failed: AssertionError"
    )
    name, record = run["by"]["notests"]
    assert name == "rejected.jsonl" and record["meta"]["reason"].endswith("no tests")
    name, record = run["by"]["noproblem"]
    assert name == "rejected.jsonl" and record["meta"]["reason"] == "the questioner proposed no problem"


def test_malformed_replies_get_feedback_and_recover(run):
    name, record = run["by"]["nocode"]  # a reply with no code at all
    assert name == "dialogues.jsonl"
    assert roles(record) == ["user", "assistant", "user", "assistant", "execution", "assistant"]
    assert record["meta"]["tests"][0]["reason"] == "no code ran"
    name, record = run["by"]["unclosed"]  # a block that is never closed is not run; the model is told
    assert name == "dialogues.jsonl"
    first = record["messages"][2]["runs"][0]
    assert first["status"] == "not_run" and first["note"]
    assert record["meta"]["attempts"] == 2


def test_unasked_code_waits_for_the_questioner(run):
    name, record = run["by"]["selffix"]
    assert name == "dialogues.jsonl"
    assert "unasked fix" not in json.dumps(record["messages"])
    assert roles(record) == ["user", "assistant", "execution", "user", "assistant", "execution", "assistant"]


def test_weakened_tests_are_flagged(run):
    name, record = run["by"]["weaken"]
    assert name == "dialogues.jsonl" and record["meta"]["flags"] == ["tests_weakened"]
    assert [t["test_count"] for t in record["meta"]["tests"]] == [3, 1]
    assert run["by"]["bug"][1]["meta"]["flags"] == []


def test_bare_fences_are_recorded_in_token_form(run):
    name, record = run["by"]["bare"]
    assert name == "dialogues.jsonl"
    assistant = record["messages"][1]["content"]
    assert f"{RUN_START}```python" in assistant and f"```{RUN_STOP}" in assistant


def test_bare_sh_fences_run_and_are_recorded_in_token_form(run):
    name, record = run["by"]["baresh"]
    assert name == "dialogues.jsonl"
    assistant = record["messages"][1]["content"]
    assert f"{RUN_START}```bash\nls -a /work\n```{RUN_STOP}" not in assistant  # the language as run: sh
    assert f"{RUN_START}```sh\nls -a /work\n```{RUN_STOP}" in assistant
    assert f"{RUN_START}```python" in assistant and "```bash" not in assistant
    runs = record["messages"][2]["runs"]
    assert [(r["language"], r["status"]) for r in runs] == [("sh", "ok"), ("python", "ok")]
    assert runs[0]["stdout"].split() == [".", ".."]  # it ran in the sandbox, in the item's empty /work
    # An sh block may install into /pkgs, which a reset cannot empty: that kernel served no later item.
    kernels = json.loads((run["out"] / "summary.json").read_text())["kernels"]
    assert any(reason.startswith("an sh block ran") for reason in kernels["retired"])


def test_hostile_code_is_contained(run, secret_file):
    name, record = run["by"]["hostile"]
    stdout = record["messages"][2]["runs"][0]["stdout"]
    assert "file: blocked" in stdout and "network: blocked" in stdout
    secret = secret_file.read_text().strip()
    for path in run["out"].iterdir():
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_benchmark_copy_is_decontaminated(run):
    name, record = run["by"]["humaneval"]
    assert name == "removed.jsonl"
    removed = record["meta"]["removed"]
    assert (
        removed["by"] == "decontamination" and removed["task_id"] == "HumanEval/0" and removed["score"] >= 0.9
    )


def test_meta_fields(run):
    _, record = run["by"]["ok"]
    meta = record["meta"]
    assert meta["stage"] == "teaching"
    assert meta["seed"]["source"].endswith("seeds.jsonl:1") and meta["seed"]["licence"]
    assert meta["questioner_model"] == meta["programmer_model"] == "teacher-model"
    assert set(meta["prompt_versions"]) == {
        "questioner_proposal",
        "questioner_analysis",
        "programmer_system",
        "programmer_revision",
    }
    usage = meta["usage"]["teacher-model"]
    assert usage["calls"] == 3 and usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert meta["timings"]["item_s"] > 0
    assert meta["packages_installed"] == []


def test_output_is_the_dialogue_format_and_loads_with_datasets(run):
    dialogues = list(read_dialogues(run["out"] / "dialogues.jsonl"))
    assert len(dialogues) == 9
    from datasets import load_dataset

    dataset = load_dataset("json", data_files=str(run["out"] / "dialogues.jsonl"), split="train")
    assert len(dataset) == 9 and set(dataset.column_names) >= {"id", "messages", "meta"}


def test_stats_table_and_plots(run, capsys):
    assert main(["stats", str(run["out"]), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["items"] == 9 and stats["rejected"] == 3 and stats["removed_by_decontamination"] == 1
    assert stats["flagged_tests_weakened"] == 1
    assert 0 < stats["multi_turn_share"] < 1 and stats["execution_feedback_share"] > 0
    for png in ("attempts.png", "error_types.png"):
        data = (run["out"] / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_package_installs_run_through_the_installer(tmp_path, teacher, local_sandbox_ok):
    import socket

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        reachable = True
    except OSError:
        reachable = False
    require(reachable, "PyPI (pypi.org:443) is not reachable from this machine")
    seeds = write_seeds(tmp_path / "seeds.jsonl", ("install",))
    assert main(generate_args(seeds, tmp_path / "out", teacher, "--no-decontamination")) == 0
    (record,) = read_records(tmp_path / "out" / "dialogues.jsonl")
    runs = record["messages"][2]["runs"]
    assert [r["language"] for r in runs] == ["sh", "python"] and all(r["status"] == "ok" for r in runs)
    assert record["meta"]["packages_installed"] == ["tomli==2.0.1"]
    assert main(["stats", str(tmp_path / "out"), "--json"]) == 0


def test_push_to_hub_without_the_hub_is_one_line_and_keeps_the_data(run):
    from data_pipeline.hub import push_to_hub

    before = (run["out"] / "dialogues.jsonl").read_bytes()
    with pytest.raises(ValueError) as info:
        push_to_hub(run["out"], "someone/aiev-test")  # the tests run with HF_HUB_OFFLINE=1
    assert "could not push" in str(info.value) and "\n" not in str(info.value)
    assert (run["out"] / "dialogues.jsonl").read_bytes() == before


def test_seeds_cut_from_a_source_tree_keep_path_and_licence(tmp_path, teacher, local_sandbox_ok):
    tree = tmp_path / "project"
    (tree / "pkg").mkdir(parents=True)
    (tree / "LICENSE").write_text(
        "MIT License\n\nPermission is hereby granted, free of charge, to any person ...\n"
    )
    (tree / "pkg" / "mathutil.py").write_text(
        "def clamp(value, low, high):\n    '''Keep value within [low, high].'''\n    return max(low, min(high, value))\n"
    )
    args = generate_args(
        tmp_path / "unused", tmp_path / "out", teacher, "--limit", "1", "--no-decontamination"
    )
    at = args.index("--seeds")
    args[at : at + 2] = ["--seeds-from-source", str(tree)]
    assert main(args) == 0
    records = read_records(tmp_path / "out" / "dialogues.jsonl") + read_records(
        tmp_path / "out" / "rejected.jsonl"
    )
    (record,) = records
    seed = record["meta"]["seed"]
    assert "pkg/mathutil.py" in seed["source"] and seed["licence"] == "MIT"
    assert "clamp" in record["messages"][0]["content"]


def test_a_failed_attempts_analysis_is_asked_for_while_the_programmer_answers(
    tmp_path, teacher, local_sandbox_ok
):
    # The analysis reads the problem, code and error, not the programmer's sentence about the result: it is
    # asked for at once, so a failed attempt costs the item one model call's wait less.
    latency = 0.5
    seeds = write_seeds(tmp_path / "seeds.jsonl", ["bug"], start=700)
    teacher.requests.clear()
    teacher.request_times.clear()
    teacher.latency_s = latency
    try:
        assert main(generate_args(seeds, tmp_path / "out", teacher)) == 0
    finally:
        teacher.latency_s = 0.0
    sent = list(zip(teacher.requests, teacher.request_times, strict=True))

    def first(test) -> float:
        return next(when for request, when in sent if test(request["messages"][-1]["content"]))

    # The programmer's call after the failed run: its last message is that run's output.
    after_the_error = first(lambda text: text.startswith(("result.stdout", "<API_OUTPUT_START>")))
    analysis = first(lambda text: "Explain in a few sentences what went wrong" in text)
    assert abs(analysis - after_the_error) < latency / 2
    [record] = read_records(tmp_path / "out" / "dialogues.jsonl")
    assert record["meta"]["attempts"] == 2 and "AssertionError" in record["messages"][4]["content"]
    assert record["meta"]["usage"][MODEL]["calls"] == 6  # the same calls as one after the other
