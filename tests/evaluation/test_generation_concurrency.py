"""evaluation.generation through the concurrent runner: a run stopped part-way and resumed writes exactly
the files of an uninterrupted serial run (same samples, same order), against the OpenAI-compatible server."""

from __future__ import annotations

import threading

from evaluation.generation import GenerationConfig, generate
from llm.openai_backend import OpenAIBackend
from tests.evaluation.scripted_solver import canonical_solver


def test_a_stopped_concurrent_run_resumes_into_the_serial_files(openai_server, humaneval, tmp_path):
    problems = humaneval.problems[:12]
    openai_server.reply_for = canonical_solver(problems)
    openai_server.latency_s = 0.05
    backend = OpenAIBackend(base_url=openai_server.base_url, model="tiny-autocoder", api_key="test-key")
    config = GenerationConfig()
    try:
        serial = generate(backend, problems, tmp_path / "serial", config, progress=False)

        cancel = threading.Event()
        written = []

        def stop_after_three(row):
            written.append(row["task_id"])
            if len(written) == 3:
                cancel.set()

        out = tmp_path / "concurrent"
        generate(
            backend,
            problems,
            out,
            config,
            progress=False,
            concurrency=4,
            cancel=cancel,
            on_sample=stop_after_three,
        )
        first_part = (out / "samples.jsonl").read_text().splitlines()
        assert 3 <= len(first_part) < len(problems)  # stopped part-way, a prefix kept
        resumed = generate(backend, problems, out, config, progress=False, concurrency=4)
    finally:
        backend.close()
    assert resumed.read_text() == serial.read_text()
    assert (out / "transcripts.jsonl").read_text() == (tmp_path / "serial" / "transcripts.jsonl").read_text()
