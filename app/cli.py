"""Command-line flags of `python -m app`: parsing, validation and help text, nothing else.

Flags are grouped (model, interpreter, server). Every bad value ends in one line on stderr that says what
to do, and exit status 2; no traceback and no usage dump. What this module deliberately does not do: load
a model, start a sandbox or open a port (see `app.__main__`).
"""

from __future__ import annotations

import argparse
import os
import sys

from app.auth import AUTH_ENV, Auth, parse_auth, read_auth_file
from interpreter.loop import LoopConfig
from interpreter.protocol import EXECUTION_MODES, RENDER_STYLES
from interpreter.sandboxes.select import SANDBOX_NAMES
from llm.options import add_backend_arguments, check_backend_args, non_negative_int

DEFAULT_HOST = "127.0.0.1"  # local only: nothing leaves the machine unless the user asks
DEFAULT_PORT = 7860
DEFAULT_MAX_ROUNDS = LoopConfig.max_rounds  # the loop's default, defined there once
DEFAULT_IDLE_TIMEOUT_S = 1800
DEFAULT_CONCURRENCY = 2
DEFAULT_MAX_SESSIONS = 16
DEFAULT_MAX_SESSIONS_PER_CLIENT = 4
DEFAULT_RETRY_TEMPERATURE = 0.7
DEFAULT_HISTORY_MAX = 50  # past chats kept per browser


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in one line (with the fix) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        sys.exit(2)


def _positive_int(name: str):
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} wants a whole number, got {value!r}") from None
        if number < 1:
            raise argparse.ArgumentTypeError(f"{name} must be at least 1, got {number}")
        return number

    return parse


def _non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number, got {value!r}") from None
    if not number >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"wants 0 or more, got {value!r}")
    return number


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--port wants a number from 1 to 65535, got {value!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"--port wants a number from 1 to 65535, got {port}")
    return port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"wants a number of seconds, got {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"wants a positive number of seconds, got {value!r}")
    return seconds


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="python -m app",
        description="AutoCoder chat: a browser chat whose model runs the code it writes in a sandboxed kernel.",
    )
    model = parser.add_argument_group("model")
    add_backend_arguments(model)  # --backend --model --base-url --api-key(-file) ... (llm.options)
    model.add_argument(
        "--system-prompt", default=None, help="system prompt put at the start of every chat (default: none)"
    )

    model.add_argument(
        "--retry-temperature",
        type=_non_negative_float,
        default=DEFAULT_RETRY_TEMPERATURE,
        help="temperature of Retry when the Settings panel's is 0, so a retry gives a different answer "
        f"(default {DEFAULT_RETRY_TEMPERATURE}; 0: retry repeats the greedy answer)",
    )

    interp = parser.add_argument_group("interpreter")
    interp.add_argument(
        "--sandbox",
        choices=SANDBOX_NAMES,
        default="auto",
        help="where code runs: docker container, local bubblewrap sandbox, or none (no isolation, dev only); "
        "auto picks docker if usable, else local",
    )
    interp.add_argument(
        "--max-rounds",
        type=_positive_int("--max-rounds"),
        default=DEFAULT_MAX_ROUNDS,
        help=f"executions fed back to the model per message (default {DEFAULT_MAX_ROUNDS}, as in the original demo)",
    )
    interp.add_argument(
        "--execution-mode",
        choices=EXECUTION_MODES,
        default=None,
        help="auto: run blocks the model wraps in its execution tokens; always: run every fenced python "
        "block; ask: show the code and run it only when you approve (default: auto, or always for the "
        "small stand-in model, which does not know the execution tokens)",
    )
    interp.add_argument(
        "--render-style",
        choices=RENDER_STYLES,
        default="demo",
        help="how results go back to the model: demo (the released checkpoints' result.stdout: user turn) or "
        "tokens (this project's output tokens)",
    )
    interp.add_argument(
        "--exec-timeout",
        type=_seconds,
        default=None,
        help="seconds one execution may run (default: the kernel's)",
    )

    interp.add_argument(
        "--warm-kernels",
        type=non_negative_int,
        default=1,
        help="kernels kept booted in the background so a new chat starts at once (default 1; 0: none)",
    )

    server = parser.add_argument_group("server")
    server.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)"
    )
    server.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port to bind (default {DEFAULT_PORT})"
    )
    server.add_argument(
        "--share",
        action="store_true",
        help="also open a public gradio.live link (off by default: chats stay local)",
    )
    server.add_argument(
        "--auth",
        type=parse_auth,
        default=None,
        metavar="USER:PASSWORD",
        help="require this user name and password to open the chat (and to use the API); visible to every "
        f"user of this machine in the process list: prefer --auth-file or ${AUTH_ENV}",
    )
    server.add_argument(
        "--auth-file",
        default=None,
        metavar="PATH",
        help=f"require a login: USER:PASSWORD lines, one per user (or ${AUTH_ENV}=USER:PASSWORD); each user "
        "sees only the chats they opened",
    )
    server.add_argument(
        "--max-sessions",
        type=_positive_int("--max-sessions"),
        default=DEFAULT_MAX_SESSIONS,
        help=f"chats with a kernel at once, in total (default {DEFAULT_MAX_SESSIONS}); past it a new chat "
        "is told the server is full",
    )
    server.add_argument(
        "--max-sessions-per-client",
        type=_positive_int("--max-sessions-per-client"),
        default=DEFAULT_MAX_SESSIONS_PER_CLIENT,
        help="chats with a kernel at once per client: per signed-in user with a login, else per address "
        f"(default {DEFAULT_MAX_SESSIONS_PER_CLIENT})",
    )
    server.add_argument(
        "--concurrency",
        type=_positive_int("--concurrency"),
        default=DEFAULT_CONCURRENCY,
        help=f"chats generating at once; more wait in a visible queue (default {DEFAULT_CONCURRENCY})",
    )
    server.add_argument(
        "--idle-timeout",
        type=_seconds,
        default=DEFAULT_IDLE_TIMEOUT_S,
        help=f"seconds before an idle browser session's kernel is shut down (default {DEFAULT_IDLE_TIMEOUT_S})",
    )
    history = parser.add_argument_group("chat history")
    history.add_argument(
        "--history-dir",
        default=None,
        metavar="PATH",
        help="where past chats are kept, a folder per user and browser (default "
        "$XDG_DATA_HOME/autocoder/chats, else ~/.local/share/autocoder/chats; made 0700, and refused "
        "unless it is a plain folder of this user)",
    )
    history.add_argument(
        "--history-max",
        type=_positive_int("--history-max"),
        default=DEFAULT_HISTORY_MAX,
        help=f"past chats kept per browser; the oldest go first (default {DEFAULT_HISTORY_MAX})",
    )
    history.add_argument(
        "--no-history",
        action="store_true",
        help="keep no chats on disk (a reload still finds the chat while the server runs)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_backend_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    args.auth_users = _auth_users(parser, args)
    return args


def _auth_users(parser: OneLineParser, args: argparse.Namespace) -> list[Auth]:
    """The logins from --auth-file, --auth or $AUTOCODER_AUTH (one of them); empty: no login."""
    given = [name for name, value in (("--auth", args.auth), ("--auth-file", args.auth_file)) if value]
    if len(given) > 1:
        parser.error("give either --auth or --auth-file, not both")
    if args.auth_file:
        try:
            return read_auth_file(args.auth_file)
        except ValueError as exc:
            parser.error(str(exc))
    if args.auth:
        sys.stderr.write(
            "warning: --auth puts the password in the process list, where every user of this machine can "
            f"read it; use --auth-file PATH or ${AUTH_ENV} instead\n"
        )
        return [args.auth]
    if os.environ.get(AUTH_ENV):
        try:
            return [parse_auth(os.environ[AUTH_ENV])]
        except argparse.ArgumentTypeError:
            parser.error(f"${AUTH_ENV} wants USER:PASSWORD (both non-empty, joined by ':')")
    return []
