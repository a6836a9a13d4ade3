"""Fixtures for the data pipeline suites: the scripted teacher over real HTTP, seed files, and a runner.

`teacher` is a running ScriptedOpenAIServer (tests/fixtures/scripted_teacher.py) per test module; tests that
script failures or count requests reset it. `write_seeds(path, scenarios)` writes a JSONL seed file with one
seed per scenario name (each seed differs, so their items are not near-duplicates). `generate(...)` runs
`python -m data_pipeline generate` in this process through the CLI's `main`, with the local sandbox.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import require
from tests.fixtures.scripted_teacher import API_KEY, MODEL, start_teacher

ALL_SCENARIOS = (
    "ok",
    "bug",
    "alwaysbug",
    "nocode",
    "unclosed",
    "notests",
    "weaken",
    "bare",
    "baresh",
    "selffix",
    "hostile",
    "noproblem",
    "humaneval",
)


def seed_text(index: int, scenario: str) -> str:
    words = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")
    name = "_".join(words[(index * 7 + k) % len(words)] for k in range(3))
    return (
        f"def {name}_{index}(records, limit={index + 3}):\n"
        f"    # scenario={scenario}\n"
        f"    kept = [r for r in records if r.get('{words[index % 10]}') != {index}]\n"
        f"    return sorted(kept, key=lambda r: r['{words[(index + 3) % 10]}'])[:limit]"
    )


def write_seeds(path: Path, scenarios, start: int = 0) -> Path:
    with open(path, "w") as f:
        for i, scenario in enumerate(scenarios, start=start):
            f.write(json.dumps({"seed": seed_text(i, scenario)}) + "\n")
    return path


@pytest.fixture(scope="module")
def local_sandbox_ok():
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox

    try:
        make_sandbox("local")
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    return True


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory) -> Path:
    """A host file the sandboxed code must not be able to read."""
    path = tmp_path_factory.mktemp("host") / "secret.txt"
    path.write_text("HOST-SECRET-7f3a9c\n")
    return path


@pytest.fixture(scope="module")
def teacher(secret_file):
    server = start_teacher(secret_path=str(secret_file))
    # The hostile scenario probes the teacher's own port from inside the sandbox.
    server.reply_for.__self__.probe_port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    try:
        yield server
    finally:
        server.stop()


def generate_args(seeds: Path, out: Path, teacher, *extra: str) -> list[str]:
    return [
        "generate",
        "--seeds",
        str(seeds),
        "--out",
        str(out),
        "--teacher-base-url",
        teacher.base_url,
        "--teacher-model",
        MODEL,
        "--api-key",
        API_KEY,
        "--sandbox",
        "local",
        "--no-progress",
        "--warm-kernels",
        "2",
        *extra,
    ]


def read_records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
