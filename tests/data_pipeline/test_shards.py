"""Past one machine: --shard K/N splits the items, `merge` joins them and de-duplicates across shards, and the
SLURM array script runs the shards on a real single-node SLURM (slurm-wlm + munge, started by the test)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_pipeline.cli import main
from tests.conftest import require
from tests.data_pipeline.conftest import generate_args, read_records, seed_text
from tests.fixtures.scripted_teacher import API_KEY, MODEL

pytestmark = [pytest.mark.local_sandbox, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("ok", "bug", "ok", "alwaysbug", "ok", "nocode", "ok")


def seeds_with_a_duplicate(path: Path) -> Path:
    """Seeds for SCENARIOS plus a copy of the first with a trailing blank line: another seed (another id), but
    the teacher strips it, so its item is a duplicate of the first one's."""
    rows = [seed_text(i, s) for i, s in enumerate(SCENARIOS)]
    rows.append(rows[0] + "\n\n")
    path.write_text("".join(json.dumps({"seed": r}) + "\n" for r in rows))
    return path


def by_file(folder: Path) -> dict[str, list[str]]:
    return {
        name: sorted(r["id"] for r in read_records(folder / name))
        for name in ("dialogues.jsonl", "rejected.jsonl", "removed.jsonl")
    }


@pytest.fixture(scope="module")
def unsharded(tmp_path_factory, teacher, local_sandbox_ok):
    base = tmp_path_factory.mktemp("unsharded")
    seeds = seeds_with_a_duplicate(base / "seeds.jsonl")
    assert main(generate_args(seeds, base / "out", teacher, "--max-attempts", "2", "--concurrency", "4")) == 0
    result = by_file(base / "out")
    assert len(result["dialogues.jsonl"]) == 6 and len(result["removed.jsonl"]) == 1  # the duplicate
    return seeds, result


def test_shards_split_and_merge_equals_one_run(tmp_path, teacher, unsharded):
    seeds, expected = unsharded
    shard_dirs = []
    for k in range(3):
        out = tmp_path / f"shard-{k}"
        assert main(generate_args(seeds, out, teacher, "--max-attempts", "2", "--shard", f"{k}/3")) == 0
        shard_dirs.append(out)
    ids = [set(sum(by_file(d).values(), [])) for d in shard_dirs]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])  # disjoint
    assert main(["merge", *map(str, reversed(shard_dirs)), "--out", str(tmp_path / "merged")]) == 0
    assert by_file(tmp_path / "merged") == expected
    assert main(["stats", str(tmp_path / "merged")]) == 0


def test_merge_refuses_shards_of_different_runs(tmp_path, teacher, unsharded, capsys):
    seeds, _ = unsharded
    a, b = tmp_path / "a", tmp_path / "b"
    assert (
        main(generate_args(seeds, a, teacher, "--max-attempts", "2", "--shard", "0/4", "--limit", "1")) == 0
    )
    assert (
        main(generate_args(seeds, b, teacher, "--max-attempts", "3", "--shard", "1/4", "--limit", "1")) == 0
    )
    capsys.readouterr()
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "m")]) == 2
    assert "different configuration" in capsys.readouterr().err


def _start_slurm() -> None:
    try:
        result = subprocess.run(
            [str(ROOT / "scripts" / "slurm_single_node.sh"), "start"],
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        require(False, f"single-node SLURM could not start: {exc}")
        return
    require(result.returncode == 0, f"single-node SLURM could not start: {result.stderr.strip()[-500:]}")


FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED")


def wait_for_job(job_id: str, timeout_s: float) -> list[str]:
    """The final states of the job's array tasks (polled with scontrol: `sbatch --wait` sleeps up to 30 s)."""
    deadline = time.monotonic() + timeout_s
    states: list[str] = []
    while time.monotonic() < deadline:
        shown = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
        states = [field.split("=", 1)[1] for field in shown.stdout.split() if field.startswith("JobState=")]
        if len(states) == 2 and all(state in FINAL_STATES for state in states):
            return sorted(states)
        time.sleep(0.5)
    raise AssertionError(f"SLURM job {job_id} did not finish in {timeout_s} s (states: {states})")


def test_slurm_array_of_two_shards(tmp_path, unsharded):
    """A real 2-task SLURM array against the scripted teacher (served by a separate process)."""
    _start_slurm()
    seeds, expected = unsharded
    port_file = tmp_path / "teacher.url"
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fixtures.scripted_teacher", "--port-file", str(port_file)], cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert port_file.exists(), "the scripted teacher did not start"
        out = tmp_path / "slurm-out"
        generate = [
            "--seeds",
            str(seeds),
            "--teacher-base-url",
            port_file.read_text(),
            "--teacher-model",
            MODEL,
            "--api-key",
            API_KEY,
            "--sandbox",
            "local",
            "--max-attempts",
            "2",
        ]
        submitted = subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--array=0-1",
                f"--output={tmp_path}/task-%a.log",
                str(ROOT / "data_pipeline" / "slurm" / "generate_array.sbatch"),
                str(out),
                *generate,
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHON": sys.executable},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert submitted.returncode == 0, submitted.stderr
        states = wait_for_job(submitted.stdout.strip().split(";")[0], timeout_s=600)
        logs = "\n".join(p.read_text()[-1500:] for p in sorted(tmp_path.glob("task-*.log")))
        assert states == ["COMPLETED", "COMPLETED"], f"{states}\n{logs}"
    finally:
        server.kill()
        server.wait()
    shards = sorted(out.glob("shard-*-of-2"))
    assert [p.name for p in shards] == ["shard-0-of-2", "shard-1-of-2"]
    assert all(read_records(p / "dialogues.jsonl") or read_records(p / "rejected.jsonl") for p in shards)
    assert main(["merge", *map(str, shards), "--out", str(out / "merged")]) == 0
    assert by_file(out / "merged") == expected
