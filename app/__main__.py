"""`python -m app [flags]`: open the AutoCoder chat in the browser (see `python -m app --help`).

Known failures (model not found, no GPU memory, sandbox unavailable, port taken) end in one line on
stderr that says what to do, and exit status 1; bad flags exit with status 2 (see `app.cli`).
"""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    # transformers' "Loading weights" bar is carriage-return noise in a log; read when the hub library loads.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # Read when torch loads its OpenMP runtime: spinning worker threads make CPU generation several times
    # slower on a busy machine (the stand-in measured 2.2 s a token spinning, 0.16-0.5 s passive, 2 cores).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from app.cli import parse_args

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Gradio and httpx log every request at INFO (the openai client's httpx is published as httpx2); the
    # app's own log is what a user wants to read.
    for noisy in ("httpx", "httpx2", "httpcore", "gradio", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from app.server import serve

    try:
        serve(args)
    except Exception as exc:  # the classes below all carry a one-line, actionable message
        if _is_one_line_error(exc):
            print(f"python -m app: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
            return 1
        raise
    return 0


def _is_one_line_error(exc: Exception) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    # BackendError (llm), SandboxUnavailable (interpreter.sandboxes), OSError (port taken, missing files).
    return bool(names & {"BackendError", "SandboxUnavailable", "OSError", "ValueError", "FileNotFoundError"})


if __name__ == "__main__":
    sys.exit(main())
