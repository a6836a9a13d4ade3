"""Crash safety: SIGKILL the generator at random points, rerun, and get what an uninterrupted run gets.

The generator runs as a real subprocess (`python -m data_pipeline generate`) against the scripted teacher
over HTTP and the local sandbox. "The same" means the same ids in the same files, no duplicates, nothing
lost, and equal records apart from timings and the cache-hit counters; and no model call the cache already
held is sent again (a call can only repeat when it was in flight at the moment of a kill).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from data_pipeline.cli import main
from tests.data_pipeline.conftest import generate_args, read_records, write_seeds

pytestmark = [pytest.mark.local_sandbox, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("ok", "bug", "alwaysbug", "nocode", "weaken", "selffix", "hostile", "bug", "ok")
MODEL_CALLS = 2
KILLS = 3


def normalised(folder: Path) -> dict[str, dict]:
    """Every item file's records by id, without what legitimately differs between runs."""
    out = {}
    for name in ("dialogues.jsonl", "rejected.jsonl", "removed.jsonl"):
        records = read_records(folder / name)
        ids = [r["id"] for r in records]
        assert len(ids) == len(set(ids)), f"duplicate ids in {name}"
        for record in records:
            meta = record["meta"]
            meta.pop("timings")
            for usage in meta["usage"].values():
                usage.pop("cached_calls")
            for message in record["messages"]:
                for run in message.get("runs") or []:
                    run.pop("duration_s")
            assert record["id"] not in out, "an item in two files"
            out[record["id"]] = {"file": name, **record}
    return out


def items_written(folder: Path) -> int:
    total = 0
    for name in ("dialogues.jsonl", "rejected.jsonl", "removed.jsonl"):
        path = folder / name
        if path.exists():
            total += path.read_bytes().count(b"\n")
    return total


def bodies(requests: list[dict]) -> list[str]:
    return [
        json.dumps(r.get("messages"), sort_keys=True) for r in requests if r["path"].endswith("completions")
    ]


def spawn(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as sink:  # a file, not a pipe: nobody reads a killed run's pipe
        return subprocess.Popen(
            [sys.executable, "-m", "data_pipeline", *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )


def test_sigkill_at_random_points_then_rerun_equals_uninterrupted(tmp_path, teacher, local_sandbox_ok):
    seeds = write_seeds(tmp_path / "seeds.jsonl", SCENARIOS)
    extra = ("--max-attempts", "3", "--concurrency", "3", "--max-model-calls", str(MODEL_CALLS))

    teacher.requests.clear()
    log = tmp_path / "generate.log"
    reference = spawn(generate_args(seeds, tmp_path / "reference", teacher, *extra), log)
    assert reference.wait(timeout=300) == 0, log.read_text()[-2000:]
    reference_bodies = bodies(teacher.requests)
    assert len(reference_bodies) == len(set(reference_bodies)), "the cache let a call repeat in one run"

    teacher.requests.clear()
    seed = int(os.environ.get("KILL_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    out = tmp_path / "killed"
    # Kill points by progress, so they land at different phases whatever the machine's speed: once the
    # output holds `target` items (0: still starting), after a further random delay.
    targets = sorted(rng.sample(range(len(SCENARIOS) - 2), KILLS))
    delays = [rng.uniform(0.0, 0.6) for _ in targets]
    print(f"KILL_SEED={seed}: kill after {targets} items written, + {[round(d, 2) for d in delays]} s")
    killed = 0
    for target, delay in zip(targets, delays, strict=True):
        proc = spawn(generate_args(seeds, out, teacher, *extra), log)
        deadline = time.monotonic() + 300
        while proc.poll() is None and items_written(out) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the generator and anything it started
            killed += 1
        proc.wait()
    final = spawn(generate_args(seeds, out, teacher, *extra), log)
    assert final.wait(timeout=300) == 0, log.read_text()[-2000:]
    assert killed >= 1, "every run finished before its kill time; the test proved nothing"

    assert normalised(out) == normalised(tmp_path / "reference")
    sent = bodies(teacher.requests)
    repeats = sum(count - 1 for count in Counter(sent).values())
    assert set(sent) == set(reference_bodies)
    assert repeats <= killed * MODEL_CALLS, f"{repeats} calls were sent again after {killed} kills"


def test_a_folder_made_with_another_configuration_is_refused(tmp_path, teacher, local_sandbox_ok, capsys):
    seeds = write_seeds(tmp_path / "seeds.jsonl", ("ok",))
    out = tmp_path / "out"
    assert main(generate_args(seeds, out, teacher, "--max-attempts", "3")) == 0
    before = (out / "dialogues.jsonl").read_bytes()
    capsys.readouterr()
    assert main(generate_args(seeds, out, teacher, "--max-attempts", "5")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "different configuration" in err and "max_attempts" in err
    assert (out / "dialogues.jsonl").read_bytes() == before
    # The same command again is a no-op resume: nothing new is asked of the teacher.
    teacher.requests.clear()
    assert main(generate_args(seeds, out, teacher, "--max-attempts", "3")) == 0
    assert not [r for r in teacher.requests if r["path"].endswith("completions")]
    assert (out / "dialogues.jsonl").read_bytes() == before


def test_sigterm_stops_cleanly_and_the_rerun_finishes(tmp_path, teacher, local_sandbox_ok):
    seeds = write_seeds(tmp_path / "seeds.jsonl", ("ok", "bug", "ok", "bug", "ok", "ok"))
    out, log = tmp_path / "out", tmp_path / "generate.log"
    args = generate_args(seeds, out, teacher, "--concurrency", "1")
    proc = spawn(args, log)
    deadline = time.monotonic() + 120
    while proc.poll() is None and items_written(out) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 1, log.read_text()[-2000:]
    text = log.read_text()
    assert "stopping" in text and "rerun the same command to continue" in text
    assert 1 <= items_written(out) < 6
    assert spawn(args, log).wait(timeout=300) == 0, log.read_text()[-2000:]
    assert len(normalised(out)) == 6
