"""Shared checks for every command that takes the backend flags (llm.options): the app and the evaluation.

`check_openai_flags(parse, openai_server, tiny_autocoder_path, tmp_path)` gives every shared openai flag to a
command's own parser (`parse(backend_argv) -> Namespace`), builds the backend through the command's own
adapter and checks each flag arrived, then streams once so the flags are seen on the wire too.
"""

from __future__ import annotations

from llm.base import GenerationParams
from llm.openai_backend import OpenAIBackend


def openai_argv(openai_server, tiny_autocoder_path, key_file) -> list[str]:
    return [
        "--backend", "openai",
        "--base-url", openai_server.base_url,
        "--model", "tiny-autocoder",
        "--api-key-file", str(key_file),
        "--completions",
        "--tokenizer", str(tiny_autocoder_path),
        "--max-retries", "2",
        "--request-timeout", "45",
    ]  # fmt: skip


def check_openai_flags(parse, build, openai_server, tiny_autocoder_path, tmp_path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(openai_server.api_key + "\n")
    args = parse(openai_argv(openai_server, tiny_autocoder_path, key_file))
    backend = build(args)
    try:
        assert isinstance(backend, OpenAIBackend)
        assert backend.base_url == openai_server.base_url
        assert backend.model == "tiny-autocoder"
        assert backend.api_key == openai_server.api_key  # read from the file, never in argv
        assert backend.completions and backend.tokenizer is not None
        assert backend.retry.max_retries == 2
        assert backend.timeout_s == 45.0
        openai_server.reply = ["ok"]
        assert "".join(backend.stream([{"role": "user", "content": "hi"}], GenerationParams())) == "ok"
        assert openai_server.requests[-1]["path"] == "/v1/completions"  # --completions reached the wire
    finally:
        backend.close()


def check_hf_flags(parse, build, tiny_autocoder_path) -> None:
    import torch

    from llm.hf import HFBackend

    args = parse(
        ["--backend", "hf", "--model", str(tiny_autocoder_path), "--dtype", "bf16", "--quantize", "none"]
    )
    backend = build(args)
    try:
        assert isinstance(backend, HFBackend)
        assert backend.model.dtype == torch.bfloat16
    finally:
        backend.close()
