"""The interpreter's command line: `python -m interpreter exec` (and `image build`, from
interpreter.sandboxes.docker_image).

    echo 'print(1 + 1)' | python -m interpreter exec --sandbox local --json

`exec` reads code from stdin, runs it in a fresh session and prints the result: human-readable (output
streamed as it comes, then any rich outputs, the error and a status line on stderr) or, with --json, one
JSON object with status, stdout, stderr, outputs, error, duration_s (and the rest of the result). Exit 0
when the code ran, whatever its outcome; 2 with a one-line reason when no sandbox or kernel could start.

What it deliberately does not do: chat, or keep a session between invocations.
"""

from __future__ import annotations

import argparse
import json
import sys

from interpreter.kernel import DEFAULT_EXECUTION_TIMEOUT_S
from interpreter.sandboxes.base import Limits, SandboxUnavailable
from interpreter.sandboxes.select import SANDBOX_NAMES

EXIT_NO_SANDBOX = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m interpreter", description="AutoCoder's sandboxed code interpreter"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_exec_parser(commands)
    try:
        from interpreter.sandboxes import docker_image as image
    except ImportError:  # the docker part is optional; `exec` works without it
        image = None
    if image is not None and hasattr(image, "add_parser"):
        image.add_parser(commands)
    return parser


def add_exec_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    defaults = Limits()
    run = commands.add_parser("exec", help="run Python code from stdin in a fresh sandboxed session")
    where = run.add_argument_group("sandbox")
    where.add_argument(
        "--sandbox",
        choices=SANDBOX_NAMES,
        default="auto",
        help="where the code runs: auto = docker if usable, else local; none = unsandboxed (dev only)",
    )
    where.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_EXECUTION_TIMEOUT_S,
        metavar="S",
        help=f"wall-clock limit in seconds (default {DEFAULT_EXECUTION_TIMEOUT_S:g})",
    )
    where.add_argument("--memory-mb", type=int, default=defaults.memory_mb, metavar="N", help="memory limit")
    out = run.add_argument_group("output")
    out.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    run.set_defaults(func=cmd_exec)
    return run


def cmd_exec(args: argparse.Namespace) -> int:
    from interpreter.kernel import KernelStartError
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session

    if args.timeout <= 0:
        print("error: --timeout must be positive", file=sys.stderr)
        return EXIT_NO_SANDBOX
    if args.memory_mb < 64:
        print("error: --memory-mb must be at least 64", file=sys.stderr)
        return EXIT_NO_SANDBOX
    code = sys.stdin.buffer.read().decode("utf-8", errors="replace")
    try:
        sandbox = make_sandbox(args.sandbox, Limits(memory_mb=args.memory_mb))
        session = Session(sandbox, timeout_s=args.timeout)
        session.start()
    except (SandboxUnavailable, KernelStartError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_SANDBOX
    with session:
        if args.json:
            result = session.run(code)
            print(json.dumps(result.to_json(), ensure_ascii=False))
            return 0

        def stream(name: str, text: str) -> None:
            target = sys.stdout if name == "stdout" else sys.stderr
            target.write(text)
            target.flush()

        result = session.run(code, on_output=stream)
    for output in result.outputs:
        data = output.get("data", {})
        if "text/plain" in data:
            print(data["text/plain"])
        else:
            print(f"[{output['output_type']}: {', '.join(sorted(data))}]")
    if result.error is not None:
        print(result.error.traceback or f"{result.error.name}: {result.error.value}", file=sys.stderr)
    line = f"[{result.status}, {result.duration_s:.3f} s]"
    if result.message:
        line += f" {result.message}"
    print(line, file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)
