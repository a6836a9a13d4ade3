"""The model backend's command-line flags, their defaults, and the flags-to-backend adapter: one place.

Every command that loads a model (`python -m app`, `python -m evaluation run`, the data pipeline, the
training's evaluation) declares its backend flags with `add_backend_arguments(parser_or_group)`, checks
them with `check_backend_args(args)` (a ValueError with one line that says what to fix) and builds the
backend with `backend_from_args(args)`:

    --backend hf|openai  --model  --quantize  --dtype                         (hf: transformers in-process)
    --base-url  --api-key | --api-key-file  --completions  --tokenizer
    --max-retries  --request-timeout                                          (openai: any compatible server)

The API key can stay out of argv (where `ps` shows it to every user): --api-key-file PATH reads it from a
file, and without either flag $OPENAI_API_KEY is used. Nothing goes to a public API unless asked:
--backend openai needs --base-url or $OPENAI_BASE_URL.

What this module deliberately does not do: load anything itself (llm.select does, on `backend_from_args`),
or declare a command's other flags (generation, sandbox, server).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from llm.base import Backend
from llm.hf_loading import DTYPE_CHOICES, QUANTIZE_CHOICES
from llm.models import DEFAULT_MODEL
from llm.openai_backend import (
    DEFAULT_BASE_DELAY_S,
    DEFAULT_MAX_DELAY_S,
    DEFAULT_MAX_RETRIES,
    DEFAULT_REQUEST_TIMEOUT_S,
    RetryPolicy,
)
from llm.select import BACKEND_NAMES

DEFAULT_BACKEND = "hf"
DEFAULT_QUANTIZE = "auto"
DEFAULT_DTYPE = "auto"
API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
# Flags that mean nothing to the in-process hf backend; given with it, they are a mistake worth a message.
OPENAI_ONLY = (
    "base_url",
    "api_key",
    "api_key_file",
    "completions",
    "tokenizer",
    "max_retries",
    "request_timeout",
)


def non_negative_int(value: str) -> int:
    """argparse type: a whole number >= 0 (also used by app/cli.py)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a whole number, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"wants 0 or more, got {number}")
    return number


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"wants a positive number of seconds, got {value!r}")
    return seconds


def add_backend_arguments(parser: argparse.ArgumentParser | Any, *, title: str = "model") -> None:
    """Declare the backend flags on `parser` (in a group named `title`) or directly on a given group."""
    group = parser.add_argument_group(title) if isinstance(parser, argparse.ArgumentParser) else parser
    group.add_argument(
        "--backend",
        choices=BACKEND_NAMES,
        default=DEFAULT_BACKEND,
        help="hf: transformers in this process; openai: any OpenAI-compatible server (see --base-url) "
        f"(default {DEFAULT_BACKEND})",
    )
    group.add_argument(
        "--model",
        default=None,
        help=f"hf: hub id or local folder (default: {DEFAULT_MODEL}; where no GPU or hub is available, a small "
        "stand-in model is used and the command says so); openai: the served model's name (default: the "
        "server's first)",
    )
    group.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        default=DEFAULT_QUANTIZE,
        help="hf backend: 4bit/8bit through bitsandbytes; auto picks 4bit when the GPU is too small for bf16 "
        f"(default {DEFAULT_QUANTIZE})",
    )
    group.add_argument(
        "--dtype",
        choices=DTYPE_CHOICES,
        default=DEFAULT_DTYPE,
        help="hf backend: weights' dtype (default auto)",
    )
    group.add_argument(
        "--base-url",
        default=None,
        help=f"openai backend: server URL, e.g. http://localhost:8000/v1 (default: ${BASE_URL_ENV})",
    )
    key = group.add_mutually_exclusive_group()
    key.add_argument(
        "--api-key",
        default=None,
        help=f"openai backend: API key (visible to other users in the process list: prefer --api-key-file or "
        f"${API_KEY_ENV}; default: ${API_KEY_ENV}, else none)",
    )
    key.add_argument(
        "--api-key-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="openai backend: read the API key from PATH",
    )
    group.add_argument(
        "--completions",
        action="store_true",
        help="openai backend: use the raw /v1/completions endpoint (prompt rendered with --tokenizer's chat "
        "template) for servers whose chat endpoint strips the execution tokens",
    )
    group.add_argument(
        "--tokenizer", default=None, help="openai backend with --completions: tokenizer folder or hub id"
    )
    group.add_argument(
        "--max-retries",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="openai backend: retries of a request after 429, 5xx, a timeout or a dropped connection, with "
        f"exponential backoff from {DEFAULT_BASE_DELAY_S:g} s up to {DEFAULT_MAX_DELAY_S:g} s, honouring "
        f"Retry-After (default {DEFAULT_MAX_RETRIES}; 0: none)",
    )
    group.add_argument(
        "--request-timeout",
        type=_positive_seconds,
        default=None,
        metavar="S",
        help="openai backend: seconds a request may wait for the server's next bytes "
        f"(default {DEFAULT_REQUEST_TIMEOUT_S:g})",
    )


def check_backend_args(args: argparse.Namespace) -> None:
    """Raise ValueError (one line, saying what to fix) for a combination of backend flags that cannot work."""
    if args.backend == "openai":
        # Nothing leaves the machine unless asked: never fall back to a public API's default URL.
        if not args.base_url and not os.environ.get(BASE_URL_ENV):
            raise ValueError(f"--backend openai needs --base-url URL (or {BASE_URL_ENV})")
        if args.completions and not args.tokenizer:
            raise ValueError(
                "--completions needs --tokenizer (a folder or hub id whose chat template renders the prompt)"
            )
        resolve_api_key(
            args
        )  # an unreadable or empty --api-key-file is a bad flag, said before anything loads
        return
    given = [name for name in OPENAI_ONLY if getattr(args, name, None) not in (None, False)]
    if given:
        flags = "/".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"{flags} only apply to --backend openai")


def resolve_api_key(args: argparse.Namespace) -> str | None:
    """--api-key, else the first line of --api-key-file, else $OPENAI_API_KEY, else None."""
    if args.api_key:
        return args.api_key
    if args.api_key_file is not None:
        try:
            text = Path(args.api_key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(
                f"--api-key-file {args.api_key_file}: cannot read it ({exc.__class__.__name__})"
            ) from None
        key = text.strip().splitlines()[0].strip() if text.strip() else ""
        if not key:
            raise ValueError(f"--api-key-file {args.api_key_file} is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None


def backend_kwargs(args: argparse.Namespace) -> dict:
    """The keyword arguments `llm.select.load_backend` gets for these flags (checked first)."""
    check_backend_args(args)
    kwargs: dict[str, Any] = {"backend": args.backend, "model": args.model}
    if args.backend == "openai":
        retries = DEFAULT_MAX_RETRIES if args.max_retries is None else args.max_retries
        kwargs.update(
            base_url=args.base_url,
            api_key=resolve_api_key(args),
            tokenizer=args.tokenizer,
            completions=args.completions,
            timeout_s=DEFAULT_REQUEST_TIMEOUT_S if args.request_timeout is None else args.request_timeout,
            retry=RetryPolicy(max_retries=retries),
        )
    else:
        kwargs.update(quantize=None if args.quantize == "none" else args.quantize, dtype=args.dtype)
    return kwargs


def backend_from_args(args: argparse.Namespace, **overrides: Any) -> Backend:
    """Build the backend the flags ask for; `overrides` (e.g. extra_body=...) go to llm.select.load_backend."""
    from llm.select import load_backend

    return load_backend(**{**backend_kwargs(args), **overrides})
