"""Bad flags of `python -m app` end in exactly one line on stderr, naming the problem, and exit status 2."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

from app.cli import DEFAULT_HOST, parse_args
from tests.llm.backend_flags import check_hf_flags, check_openai_flags


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--port", "http"], "--port wants a number"),
        (["--port", "70000"], "--port wants a number"),
        (["--auth", "nopassword"], "--auth wants USER:PASSWORD"),
        (["--execution-mode", "yolo"], "invalid choice: 'yolo'"),
        (["--max-rounds", "0"], "--max-rounds must be at least 1"),
        (["--backend", "openai"], "--backend openai needs --base-url"),
        (["--base-url", "http://x"], "only apply to --backend openai"),
        (
            ["--backend", "openai", "--base-url", "http://x", "--completions"],
            "--completions needs --tokenizer",
        ),
        (["--idle-timeout", "-1"], "positive number of seconds"),
        (["--max-retries", "2"], "--max-retries only apply to --backend openai"),
        (["--backend", "openai", "--base-url", "http://x", "--max-retries", "-1"], "wants 0 or more"),
        (["--backend", "openai", "--base-url", "http://x", "--request-timeout", "0"], "positive number"),
        (["--backend", "openai", "--base-url", "http://x", "--api-key-file", "/no/such/key"], "cannot read"),
        (["--api-key", "k", "--api-key-file", "/k"], "not allowed with argument"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_bad_flag_gives_one_line_error(argv, expected):
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "app", *argv], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("python -m app: error: ") and expected in lines[0]
    assert proc.stdout == ""


def test_defaults_are_local_and_private():
    args = parse_args([])
    assert args.host == DEFAULT_HOST == "127.0.0.1"
    assert args.share is False and args.auth is None
    assert args.execution_mode is None and args.max_rounds == 3  # None: chosen for the model, below
    auth = parse_args(["--auth", "ann:s3:cret"]).auth
    assert (auth.user, auth.password) == ("ann", "s3:cret")


def test_a_taken_port_fails_in_one_line_before_loading_anything():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
        proc = subprocess.run(
            [sys.executable, "-m", "app", "--port", str(port), "--model", "/nonexistent"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"python -m app: error: cannot listen on 127.0.0.1:{port} (Address already in use); pick another with --port"
    )


@pytest.mark.model
@pytest.mark.parametrize("speaks_tokens, expected", [(True, "auto"), (False, "always")])
def test_default_execution_mode_follows_the_model(tiny_autocoder_path, speaks_tokens, expected):
    """AutoCoder models run blocks wrapped in their tokens; the stand-in, which never writes them, gets
    its fenced python blocks run. An explicit --execution-mode always wins."""
    from app.server import build_context
    from llm.select import load_backend

    backend = load_backend("hf", str(tiny_autocoder_path))
    backend.speaks_execution_tokens = speaks_tokens
    for argv, mode in (([], expected), (["--execution-mode", "ask"], "ask")):
        args = parse_args(["--sandbox", "local", "--warm-kernels", "0", *argv])
        ctx, _ = build_context(args, backend=backend)
        try:
            assert ctx.defaults.execution_mode == mode
        finally:
            ctx.chats.close_all()
            ctx.pool.close()
            shutil.rmtree(ctx.scratch, ignore_errors=True)


def test_shared_openai_flags_reach_the_backend(openai_server, tiny_autocoder_path, tmp_path):
    """Every backend flag of llm.options is accepted and passed through the app's own loader."""
    from app.server import load_backend

    check_openai_flags(parse_args, load_backend, openai_server, tiny_autocoder_path, tmp_path)


@pytest.mark.model
def test_shared_hf_flags_reach_the_backend(tiny_autocoder_path):
    from app.server import load_backend

    check_hf_flags(parse_args, load_backend, tiny_autocoder_path)
