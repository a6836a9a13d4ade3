"""`sh` blocks from the model: pip installs parsed safely and run in isolation, other commands in the sandbox.

Every line of an `sh` block is split with `shlex` (never handed to a shell for parsing) and checked before
anything runs; one refused line refuses the whole block, so nothing half-runs. Refused on every line: shell
operators outside quotes (`;`, `&&`, `||`, `|`, `&`, `>`, `<`, parentheses) and substitutions (`$(...)`,
backticks, `$VAR`): each line is one command, with no shell in between.

pip installs (`pip`, `pip3`, `python -m pip`, `python3 -m pip`, with an optional Jupyter `!` or `%` in front):
- accepted: package specs (names, extras, version pins such as `'numpy>=1.26'` or `pandas==2.2.2`) and the
  flags -U/--upgrade, -q/--quiet, -v, --pre, --no-deps, --no-cache-dir, --force-reinstall, --prefer-binary,
  --upgrade-strategy, --progress-bar, plus --index-url/--extra-index-url to an https host the operator
  allowed (`allowed_index_hosts`; pypi.org always); flags that make no sense here (--user,
  --break-system-packages, --no-warn-script-location) are dropped;
- refused with a message for the model: -r/-c files, -e, URLs, local paths and archives, `name @ url`,
  environment markers, --target/--prefix/--root, --find-links, --trusted-host, --no-binary, build and
  config options, and index hosts nobody allowed.
An install runs in two steps, and no sandbox ever has a network:
1. download (trusted, on the host): `python -I -m pip download --only-binary=:all: --dest <fresh temp folder>`
   for the sandbox's Python version and platform (`Sandbox.wheel_target`), with the validated arguments
   only. It runs in its own new temp folder (its working folder too), isolated from every session folder:
   `-I` keeps the working folder, PYTHONPATH and the user's site folder off its sys.path, and it never
   reads /work or /pkgs, so nothing a kernel wrote can run here. Wheels only: no package code runs. The
   folder is bounded (`max_download_mb`: the download is killed beyond it, and one that ended beyond it
   installs nothing) and removed afterwards;
2. install (untrusted input, in the sandbox): `python -I -m pip install --no-index --find-links /wheels
   --target /pkgs --only-binary=:all: ...` in a network-less one-shot sandbox that sees the downloaded
   wheels read-only at /wheels and a writable /pkgs, and neither /work nor /ipc (it starts in /tmp).
So a `/work/pip/__main__.py` (or anything else the kernel writes) is never run by the installer, and a
`sitecustomize.py` or `.pth` file that a package puts into /pkgs is never run by the installer or at a
kernel start (kernels start with `python -I` too; see interpreter.sandboxes.processes.kernel_argv). A package
without a wheel fails with a message saying so. The kernel's code imports from /pkgs (added to sys.path
after the kernel started); Python's import system notices the new files by the folder's mtime (tested). A
package that the kernel already imported keeps its old version until the kernel restarts (said in the
output).

Other commands (`ls`, `cat data.csv`, `python script.py`, ...) run as a plain argv, without a shell, in a
fresh one-shot sandbox with the session's folders and limits and no network: they can do nothing the
kernel could not do already. Package managers that cannot work there (apt, conda, sudo, ...) and shell
builtins are refused with a message.

What this module deliberately does not do: detect blocks in model text (interpreter.protocol) or choose the
sandbox (interpreter.sandboxes.select).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from interpreter.kernel import STATUS_ERROR, STATUS_OK, STATUS_TIMEOUT, ExecutionResult, OutputCallback
from interpreter.sandboxes.base import INNER_PKGS_DIR, INNER_WHEELS_DIR, CommandResult, Sandbox, SessionDirs

KIND_PIP = "pip_install"
KIND_COMMAND = "command"
KIND_REFUSED = "refused"

HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

# Index hosts that are always allowed: pip's default index.
DEFAULT_INDEX_HOSTS = ("pypi.org",)

# Result text kept per sh block: the head (what was asked) and the tail (how it ended) of the output.
OUTPUT_HEAD_CHARS = 2_000
OUTPUT_TAIL_CHARS = 8_000

# Downloads beyond this many MB are stopped (the host's temp folder stays bounded).
DEFAULT_MAX_DOWNLOAD_MB = 2048

# Flags taken as they are (no value), and which step gets them: "download" (host, network), "install"
# (sandbox, from the downloaded wheels) or "both".
_PIP_FLAGS = {
    "-U": ("--upgrade", "install"),
    "--upgrade": ("--upgrade", "install"),
    "-q": ("--quiet", "both"),
    "--quiet": ("--quiet", "both"),
    "-qq": ("-qq", "both"),
    "-v": ("--verbose", "both"),
    "--verbose": ("--verbose", "both"),
    "--pre": ("--pre", "both"),
    "--no-deps": ("--no-deps", "both"),
    "--no-cache-dir": ("--no-cache-dir", "download"),
    "--force-reinstall": ("--force-reinstall", "install"),
    "--ignore-installed": ("--ignore-installed", "install"),
}
_PIP_VALUE_FLAGS = {"--upgrade-strategy": {"only-if-needed", "eager"}}
# Meaningless here (the interpreter sets them, or they cannot apply): dropped with a note.
_PIP_DROPPED_FLAGS = {
    "--user",
    "--break-system-packages",
    "--no-warn-script-location",
    "--no-color",
    "--prefer-binary",
    "--no-input",
    "--disable-pip-version-check",
    "--progress-bar",
}
_INDEX_FLAGS = {"-i": "--index-url", "--index-url": "--index-url", "--extra-index-url": "--extra-index-url"}
_REFUSED_FLAGS = {
    "-r": "requirement files (-r) are not supported: list the packages on the pip install line",
    "--requirement": "requirement files (-r) are not supported: list the packages on the pip install line",
    "-c": "constraint files (-c) are not supported",
    "--constraint": "constraint files (-c) are not supported",
    "-e": "editable installs (-e) are not supported: install released packages by name",
    "--editable": "editable installs (-e) are not supported: install released packages by name",
    "-t": "--target is chosen by the interpreter",
    "--target": "--target is chosen by the interpreter",
    "--prefix": "--prefix is not supported",
    "--root": "--root is not supported",
    "-f": "--find-links is not supported: install from the package index",
    "--find-links": "--find-links is not supported: install from the package index",
    "--trusted-host": "--trusted-host is not supported",
    "--no-binary": "--no-binary is not supported: only binary wheels are installed",
    "--only-binary": "--only-binary is chosen by the interpreter",
    "--no-index": "--no-index is not supported",
}

# Commands that cannot work in the sandbox (no root, no network outside the installer) or need a shell.
_UNSUPPORTED_COMMANDS = {
    "apt": "apt cannot run in the sandbox: only pip packages can be installed",
    "apt-get": "apt-get cannot run in the sandbox: only pip packages can be installed",
    "conda": "conda is not available: install packages with pip",
    "mamba": "mamba is not available: install packages with pip",
    "sudo": "sudo is not available: commands run as an unprivileged user",
    "su": "su is not available: commands run as an unprivileged user",
    "curl": "the sandbox has no network: only pip installs can download",
    "wget": "the sandbox has no network: only pip installs can download",
    "cd": "each line runs on its own in /work, so cd has no effect: use paths instead",
    "export": "each line runs on its own, so export has no effect",
    "source": "shell builtins are not supported: one command per line",
    ".": "shell builtins are not supported: one command per line",
    "eval": "shell builtins are not supported: one command per line",
    "exec": "shell builtins are not supported: one command per line",
}

_SHELL_OPERATOR_CHARS = ";&|<>()"
_ASSIGNMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_SPEC_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9._-]*[A-Za-z0-9])"
    r"(?P<extras>\[[A-Za-z0-9._,\s-]*\])?"
    r"(?P<version>\s*(===|==|~=|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
    r"(\s*,\s*(===|==|~=|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+)*)?$"
)


@dataclass
class ShCommand:
    """One line of an sh block, parsed: a pip install, another command, or refused (with why)."""

    kind: str
    line: str
    argv: list[str] = field(default_factory=list)  # what runs inside the sandbox (pip: the install step)
    packages: list[str] = field(default_factory=list)  # pip installs only
    message: str = ""  # why it was refused, or a note (dropped flags)
    download_args: list[str] = field(default_factory=list)  # pip installs: validated `pip download` args


def _logical_lines(code: str) -> list[str]:
    """Lines of the block, with backslash continuations joined and comments / blank lines skipped."""
    lines, pending = [], ""
    for raw in code.splitlines():
        line = pending + raw
        if line.rstrip().endswith("\\"):
            pending = line.rstrip()[:-1] + " "
            continue
        pending = ""
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            lines.append(stripped)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def _split(line: str) -> list[str] | str:
    """shlex tokens of one line, or a refusal message when it holds shell syntax."""
    if "`" in line or "$(" in line:
        return "command substitution ($(...) or backticks) is not supported: one plain command per line"
    lexer = shlex.shlex(line, posix=True, punctuation_chars=_SHELL_OPERATOR_CHARS)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        tokens = list(lexer)
    except ValueError as exc:
        return f"cannot parse the line ({exc}): check its quotes"
    for token in tokens:
        if token and all(ch in _SHELL_OPERATOR_CHARS for ch in token):
            pin = token in {">", "<"} and "pip" in line  # `pip install numpy>=1` redirects in a shell
            hint = " (quote version pins: pip install 'numpy>=1.26')" if pin else ""
            return (
                f"shell operator {token!r} is not supported: one command per line, no pipes, chaining "
                f"or redirection{hint}"
            )
        if "$" in token:
            return "shell variables ($...) are not supported: write the value itself"
    return tokens


def _pip_rest(tokens: list[str]) -> list[str] | None:
    """The words after `pip` (subcommand and its arguments) when the line runs pip, else None."""
    if tokens and tokens[0] in {"pip", "pip3", "pip3.11"}:
        return tokens[1:]
    if len(tokens) >= 3 and tokens[0] in {"python", "python3", "python3.11"} and tokens[1:3] == ["-m", "pip"]:
        return tokens[3:]
    return None


def _check_index(url: str, allowed_hosts: tuple[str, ...]) -> str | None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return f"index URL {url!r} is not allowed: only https indexes the operator configured"
    if parts.username or parts.password:
        return "index URLs with credentials are not allowed"
    if parts.hostname.lower() not in {h.lower() for h in allowed_hosts}:
        return (
            f"index host {parts.hostname!r} is not allowed (allowed: {', '.join(allowed_hosts)}); "
            "the operator can allow more hosts"
        )
    return None


def _check_spec(token: str) -> str | None:
    if "://" in token or token.startswith(("git+", "hg+", "svn+", "bzr+")):
        return f"{token!r}: installing from URLs is not supported: install released packages by name"
    if "@" in token:
        return f"{token!r}: direct references (name @ url) are not supported: install by name"
    if ";" in token:
        return f"{token!r}: environment markers are not supported"
    if "/" in token or token.startswith((".", "~")) or token.endswith((".whl", ".tar.gz", ".zip", ".tgz")):
        return (
            f"{token!r}: installing local files or paths is not supported: install released packages by name"
        )
    if not _SPEC_RE.match(token.strip()):
        return f"{token!r} is not a package name or version pin"
    return None


def _parse_pip_install(line: str, args: list[str], allowed_hosts: tuple[str, ...]) -> ShCommand:
    def refuse(message: str) -> ShCommand:
        return ShCommand(KIND_REFUSED, line, message=message)

    flags: list[str] = []  # install step
    download_flags: list[str] = []
    packages: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, inline_value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in _PIP_FLAGS and not eq:
            flag, step = _PIP_FLAGS[name]
            for wanted, where in ((flags, "install"), (download_flags, "download")):
                if step in (where, "both") and flag not in wanted:
                    wanted.append(flag)
        elif name == "--progress-bar":
            dropped.append(name)
            i += 0 if eq else 1  # its value goes too
        elif name in _PIP_DROPPED_FLAGS and not eq:
            dropped.append(name)
        elif name in _PIP_VALUE_FLAGS or name in _INDEX_FLAGS:
            if eq:
                value = inline_value
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                return refuse(f"{name} needs a value")
            if name in _INDEX_FLAGS:
                problem = _check_index(value, allowed_hosts)
                if problem:
                    return refuse(problem)
                download_flags += [_INDEX_FLAGS[name], value]
            else:
                if value not in _PIP_VALUE_FLAGS[name]:
                    return refuse(f"{name} {value!r} is not supported")
                flags += [name, value]
        elif name in _REFUSED_FLAGS or arg.startswith("-r") or arg.startswith("-e"):
            return refuse(_REFUSED_FLAGS.get(name) or _REFUSED_FLAGS[arg[:2]])
        elif arg.startswith("-"):
            return refuse(f"pip option {name!r} is not supported here")
        else:
            problem = _check_spec(arg)
            if problem:
                return refuse(problem)
            packages.append(arg.strip())
        i += 1
    if not packages:
        return refuse("pip install needs at least one package name")
    # -I: the installer's own sys.path holds nothing a sandbox can write (see the module docstring).
    argv = ["python", "-I", "-m", "pip", "install", "--target", INNER_PKGS_DIR, "--only-binary=:all:"]
    argv += ["--no-index", "--find-links", INNER_WHEELS_DIR, "--no-cache-dir"]
    argv += _PIP_QUIET_ARGS + flags + packages
    note = f"ignored {', '.join(dropped)} (the interpreter sets these)" if dropped else ""
    return ShCommand(
        KIND_PIP, line, argv=argv, packages=packages, message=note, download_args=download_flags + packages
    )


# No prompts, no version check, no progress bars: in both steps.
_PIP_QUIET_ARGS = ["--no-input", "--disable-pip-version-check", "--progress-bar", "off"]


def parse_sh_block(code: str, *, allowed_index_hosts: tuple[str, ...] = ()) -> list[ShCommand]:
    """Parse every line of an sh block; nothing runs here."""
    allowed = tuple(dict.fromkeys((*DEFAULT_INDEX_HOSTS, *allowed_index_hosts)))
    commands: list[ShCommand] = []
    for line in _logical_lines(code):
        tokens = _split(line)
        if isinstance(tokens, str):
            commands.append(ShCommand(KIND_REFUSED, line, message=tokens))
            continue
        if tokens and tokens[0][:1] in {"!", "%"}:  # Jupyter-style `!pip install x` / `%pip install x`
            tokens = [tokens[0][1:], *tokens[1:]] if len(tokens[0]) > 1 else tokens[1:]
        if not tokens:
            continue
        pip_rest = _pip_rest(tokens)
        if pip_rest is not None and pip_rest[:1] == ["install"]:
            commands.append(_parse_pip_install(line, pip_rest[1:], allowed))
        elif pip_rest is not None and pip_rest[:1] not in (["list"], ["show"], ["freeze"], ["--version"]):
            sub = pip_rest[0] if pip_rest else ""
            message = f"pip {sub} is not supported here: pip install, list, show and freeze are".replace(
                "  ", " "
            )
            commands.append(ShCommand(KIND_REFUSED, line, message=message))
        elif tokens[0] in _UNSUPPORTED_COMMANDS:
            commands.append(ShCommand(KIND_REFUSED, line, message=_UNSUPPORTED_COMMANDS[tokens[0]]))
        elif _ASSIGNMENT_RE.match(tokens[0]):
            message = "variable assignments are not supported: one command per line"
            commands.append(ShCommand(KIND_REFUSED, line, message=message))
        else:
            commands.append(ShCommand(KIND_COMMAND, line, argv=tokens))
    return commands


def _installer_env() -> dict[str, str]:
    return {"PIP_NO_CACHE_DIR": "1", "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _download_env(scratch: Path) -> dict[str, str]:
    """The host's environment (proxies, an operator's pip configuration or PIP_INDEX_URL): trusted. pip's
    own temp files go to `scratch`, inside the bounded folder (a wheel is fetched there before it lands)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", TMPDIR=str(scratch))
    if "PIP_CERT" not in env and os.path.isfile(HOST_CA_BUNDLE):
        env["PIP_CERT"] = HOST_CA_BUNDLE  # trust what the host trusts (TLS-intercepting proxies)
    return env


def _folder_bytes(folder: Path) -> int:
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_blocks * 512
    return total


@dataclass
class _Download:
    returncode: int | None
    output: str
    problem: str = ""  # why it was stopped (too big, timed out), one line


def download_wheels(
    command: ShCommand,
    sandbox: Sandbox,
    folder: Path,
    timeout_s: float,
    max_bytes: int,
    cancel: threading.Event | None = None,
) -> _Download:
    """The trusted network step: `pip download` of wheels only into `folder`/wheels, run on the host (see
    the module docstring). Never reads a session folder: `folder` is a fresh folder of its own, its working
    folder and (with pip's temp files and no cache) all it writes, stopped past `max_bytes`."""
    dest, scratch = folder / "wheels", folder / "tmp"
    dest.mkdir()
    scratch.mkdir()
    target = sandbox.wheel_target()
    argv = [sys.executable, "-I", "-m", "pip", "download", "--dest", str(dest), "--only-binary=:all:"]
    argv += ["--no-cache-dir", *_PIP_QUIET_ARGS]
    argv += (target.pip_args() if target is not None else []) + command.download_args
    proc = subprocess.Popen(
        argv,
        cwd=folder,
        env=_download_env(scratch),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tail = bytearray()

    def drain() -> None:
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):
            tail.extend(chunk)
            del tail[: max(0, len(tail) - OUTPUT_TAIL_CHARS)]

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    problem = ""
    too_big = f"the download grew over {max_bytes // (1024 * 1024)} MB and was stopped"
    while proc.poll() is None:
        if _folder_bytes(folder) > max_bytes:
            problem = too_big
        elif time.monotonic() > deadline:
            problem = f"the download timed out after {timeout_s:.0f} s"
        elif cancel is not None and cancel.is_set():  # Stop (Session.interrupt): kill it, as on a timeout
            problem = "the download was stopped"
        if problem:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 9)
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.05)  # how far a fast link overshoots the bound before the kill
    proc.wait()
    # A fast link can fetch the whole wheel between two looks: what ended over the bound is refused too.
    if not problem and _folder_bytes(folder) > max_bytes:
        problem = too_big
    reader.join(timeout=5)
    output = tail.decode("utf-8", errors="replace")
    return _Download(returncode=None if problem else proc.returncode, output=output, problem=problem)


def _install(
    command: ShCommand,
    sandbox: Sandbox,
    dirs: SessionDirs,
    budget: float,
    max_download_mb: int,
    cancel: threading.Event | None = None,
) -> tuple[CommandResult, str]:
    """Download on the host, then install in a network-less sandbox; (result, one-line problem or "")."""
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix="autocoder-wheels-"))
    try:
        got = download_wheels(command, sandbox, folder, budget, max_download_mb * 1024 * 1024, cancel)
        spent = time.monotonic() - started
        failed = CommandResult(got.returncode, "", got.output, timed_out="timed out" in got.problem)
        if got.problem:
            return failed, got.problem
        if cancel is not None and cancel.is_set():
            return failed, "the install was stopped"
        if got.returncode != 0:
            problem = f"`{command.line}` failed (exit {got.returncode})"
            if "No matching distribution found" in got.output:
                problem += "; only packages with binary wheels can be installed here"
            return failed, problem
        wheels = folder / "wheels"
        names = os.listdir(wheels)
        if any(not name.endswith(".whl") for name in names):
            return (
                failed,
                f"`{command.line}`: the download held files other than wheels; nothing was installed",
            )
        # The installer runs as the sandbox user: it must read the folder (which holds only public wheels;
        # the `none` sandbox's installer also walks the host path to it).
        folder.chmod(0o711)
        wheels.chmod(0o755)
        for name in names:
            (wheels / name).chmod(0o644)
        result = sandbox.run_command(
            command.argv, dirs, max(1.0, budget - spent), env=_installer_env(), wheels=wheels
        )
        quiet = "--quiet" in command.argv or "-qq" in command.argv
        if got.output and not quiet:
            result.stdout = got.output + ("" if got.output.endswith("\n") else "\n") + result.stdout
        return result, ""
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _truncate(text: str) -> tuple[str, int]:
    limit = OUTPUT_HEAD_CHARS + OUTPUT_TAIL_CHARS
    if len(text) <= limit:
        return text, 0
    dropped = len(text) - limit
    return (
        text[:OUTPUT_HEAD_CHARS]
        + f"\n[... {dropped} characters of output dropped ...]\n"
        + text[-OUTPUT_TAIL_CHARS:],
        dropped,
    )


def run_sh_block(
    code: str,
    *,
    sandbox: Sandbox,
    dirs: SessionDirs,
    timeout_s: float,
    on_output: OutputCallback | None = None,
    allowed_index_hosts: tuple[str, ...] = (),
    install_timeout_s: float | None = None,
    max_download_mb: int = DEFAULT_MAX_DOWNLOAD_MB,
    cancel: threading.Event | None = None,
) -> ExecutionResult:
    """Check every line, then run them in order in the sandbox; stop at the first failure.

    `cancel` (set by `Session.interrupt`, i.e. Stop) kills a running pip download at once and runs no
    further line; a plain command already running in its one-shot sandbox still ends only by itself or
    its timeout.

    `timeout_s` bounds the whole block; pip installs may take `install_timeout_s` (default: the larger of
    `timeout_s` and 300 s) since downloads are slow. The result's stdout/stderr hold the commands' output
    (head and tail kept); status is "ok", "error" (refused, or a command failed) or "timeout".
    """
    started = time.monotonic()
    commands = parse_sh_block(code, allowed_index_hosts=allowed_index_hosts)
    refused = [command for command in commands if command.kind == KIND_REFUSED]
    if refused:
        lines = [f"refused `{command.line}`: {command.message}" for command in refused]
        text = "\n".join(lines) + "\nNothing in this sh block was run.\n"
        if on_output:
            on_output("stderr", text)
        return ExecutionResult(
            status=STATUS_ERROR,
            stderr=text,
            message=lines[0] if len(lines) == 1 else f"{len(lines)} lines refused; nothing was run",
            duration_s=time.monotonic() - started,
        )
    if not commands:
        return ExecutionResult(status=STATUS_OK, message="nothing to run: the sh block is empty")

    stdout_parts: list[str] = []
    stderr_parts: list[str] = []
    status, message = STATUS_OK, ""
    installed: list[str] = []
    install_budget = max(timeout_s, 300.0) if install_timeout_s is None else install_timeout_s
    for command in commands:
        is_pip = command.kind == KIND_PIP
        budget = (install_budget if is_pip else timeout_s) - (time.monotonic() - started)
        if budget <= 0:
            status, message = STATUS_TIMEOUT, f"timed out before `{command.line}`"
            break
        if cancel is not None and cancel.is_set():
            status, message = STATUS_ERROR, f"stopped before `{command.line}`"
            break
        problem = ""
        if is_pip:
            result, problem = _install(command, sandbox, dirs, budget, max_download_mb, cancel)
        else:
            result = sandbox.run_command(command.argv, dirs, budget)
        if command.message:
            result.stderr = f"note: {command.message}\n" + result.stderr
        for name, text, parts in (
            ("stdout", result.stdout, stdout_parts),
            ("stderr", result.stderr, stderr_parts),
        ):
            if text:
                parts.append(text if text.endswith("\n") else text + "\n")
                if on_output:
                    on_output(name, parts[-1])
        if result.timed_out:
            status, message = STATUS_TIMEOUT, f"`{command.line}` timed out after {budget:.0f} s"
            break
        if problem:
            status, message = STATUS_ERROR, problem
            break
        if result.memory_exceeded:
            status, message = STATUS_ERROR, f"`{command.line}` was killed: memory limit exceeded"
            break
        if result.returncode != 0:
            status = STATUS_ERROR
            message = f"`{command.line}` failed (exit {result.returncode})"
            if is_pip and "No matching distribution found" in result.stderr + result.stdout:
                message += "; only packages with binary wheels can be installed here"
            break
        if is_pip:
            installed += command.packages
    if status == STATUS_OK and installed:
        note = (
            f"installed {' '.join(installed)} into {INNER_PKGS_DIR}; import it in the next python block "
            "(a package imported before keeps its old version until the kernel restarts)\n"
        )
        stdout_parts.append(note)
        if on_output:
            on_output("stdout", note)
        message = f"installed {' '.join(installed)}"
    stdout, dropped_out = _truncate("".join(stdout_parts))
    stderr, dropped_err = _truncate("".join(stderr_parts))
    return ExecutionResult(
        status=status,
        stdout=stdout,
        stderr=stderr,
        duration_s=time.monotonic() - started,
        dropped_chars=dropped_out + dropped_err,
        message=message,
    )
