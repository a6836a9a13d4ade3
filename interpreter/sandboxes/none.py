"""The "none" sandbox: a plain local kernel with no isolation. For development only, never chosen by `auto`.

The kernel runs on the host with the host's filesystem and network. The one protection kept: when this
process is root, the kernel still drops to uid/gid 65534 (setpriv, all capabilities cleared), so code
cannot act as root; but it can read anything world-readable and reach the network. A loud warning goes to
stderr every time one is created.

Paths: the kernel sees the host folders themselves, so the connection file's IPC address and the
/work, /ipc, /pkgs prefixes of a one-shot command are rewritten to the session's host folders.

Limits: the same cgroups (where the host allows them) and rlimits as the local sandbox.

What it deliberately does not do: hide files, block the network, or separate sessions from each other.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from interpreter.sandboxes.base import (
    INNER_IPC_DIR,
    INNER_PKGS_DIR,
    INNER_WHEELS_DIR,
    INNER_WORKDIR,
    SANDBOX_GID,
    SANDBOX_UID,
    CommandResult,
    KernelProcess,
    Sandbox,
    SandboxUnavailable,
    SessionDirs,
)
from interpreter.sandboxes.cgroups import CgroupSet
from interpreter.sandboxes.processes import (
    Jail,
    LogTail,
    ancestors,
    collect,
    kernel_argv,
    limits_prefix,
    python_layout,
    spawn,
)

WARNING = (
    "WARNING: sandbox 'none' runs model-written code UNSANDBOXED on this machine, with its files and network "
    "({who}). Use it only for development."
)


def _python_reachable_as_sandbox_user() -> bool:
    probe = subprocess.run(
        [
            "setpriv",
            f"--reuid={SANDBOX_UID}",
            f"--regid={SANDBOX_GID}",
            "--clear-groups",
            sys.executable,
            "-c",
            "",
        ],
        capture_output=True,
    )
    return probe.returncode == 0


_reach_prefix: list[str] | None = None


def _reach_python_prefix() -> list[str]:
    """As root, when this Python lives where uid 65534 cannot reach it (e.g. under /root, mode 0700), a private
    mount namespace shows the host as it is but /root replaced by just that Python installation. Nothing else
    is hidden or isolated."""
    global _reach_prefix
    if _reach_prefix is None:
        _reach_prefix = []
        if os.geteuid() == 0 and shutil.which("bwrap") and not _python_reachable_as_sandbox_user():
            base, _ = python_layout()
            argv = [
                "bwrap",
                "--dev-bind",
                "/",
                "/",
                "--die-with-parent",
                "--perms",
                "0755",
                "--tmpfs",
                "/root",
            ]
            argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            argv += ["--cap-add", "CAP_SETPCAP"]
            if base.startswith("/root/"):
                for parent in ancestors(base)[1:]:
                    argv += ["--perms", "0755", "--dir", parent]
                argv += ["--ro-bind", base, base]
            _reach_prefix = [*argv, "--"]
    return _reach_prefix


class NoneKernelProcess(KernelProcess):
    def __init__(self, jail: Jail) -> None:
        self._jail = jail

    def is_alive(self) -> bool:
        return self._jail.popen.poll() is None

    def exit_reason(self) -> str | None:
        if self.is_alive():
            return None
        return "memory" if self._jail.groups.oom_kills() > 0 else "crashed"

    def kill(self) -> None:
        self._jail.kill()

    def log_tail(self) -> str:
        return self._jail.log.text() if self._jail.log is not None else ""


@dataclass
class NoneSandbox(Sandbox):
    name: str = "none"
    kernel_walks_host_paths: ClassVar[bool] = True  # as root its kernel drops to 65534 (see above)

    def __post_init__(self) -> None:
        who = (
            "as uid 65534 (dropped from root)" if os.geteuid() == 0 else f"as your user (uid {os.geteuid()})"
        )
        print(WARNING.format(who=who), file=sys.stderr, flush=True)

    @classmethod
    def check_available(cls) -> None:
        if os.geteuid() == 0 and shutil.which("setpriv") is None:
            raise SandboxUnavailable(
                "sandbox 'none' as root needs setpriv to drop root: apt-get install util-linux"
            )

    def _map(self, text: str, dirs: SessionDirs) -> str:
        for inner, host in (
            (INNER_WORKDIR, dirs.work),
            (INNER_IPC_DIR, dirs.ipc),
            (INNER_PKGS_DIR, dirs.pkgs),
        ):
            if text == inner or text.startswith(inner + "/"):
                return str(host) + text[len(inner) :]
        return text

    def _groups(self, suffix: str) -> CgroupSet:
        limits = self.limits
        return CgroupSet.create(
            f"none-{suffix}", memory_mb=limits.memory_mb, max_processes=limits.max_processes, cpus=limits.cpus
        )

    def _prefix(self, groups: CgroupSet) -> list[str]:
        prefix = limits_prefix(self.limits, groups) + _reach_python_prefix()
        if os.geteuid() == 0:
            prefix += [
                "setpriv",
                f"--reuid={SANDBOX_UID}",
                f"--regid={SANDBOX_GID}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
            ]
        return prefix

    def _env(self, dirs: SessionDirs, extra: dict[str, str] | None) -> dict[str, str]:
        env = {
            "PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin",
            "HOME": str(dirs.work),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(dirs.pkgs),
            "MPLCONFIGDIR": str(dirs.work / ".matplotlib"),
        }
        env.update({k: self._map(v, dirs) for k, v in (extra or {}).items()})
        env.pop("JPY_PARENT_PID", None)
        return env

    def launch_kernel(
        self, dirs: SessionDirs, connection_file_name: str, env: dict[str, str]
    ) -> KernelProcess:
        # The connection file names the in-sandbox address; here the kernel lives on the host.
        path = dirs.ipc / connection_file_name
        # O_NOFOLLOW: the folder is writable by the kernel's user, never write through a link planted there.
        with open(os.open(path, os.O_RDWR | os.O_NOFOLLOW), "r+") as handle:
            info = json.load(handle)
            info["ip"] = str(dirs.ipc / "kernel")
            handle.seek(0)
            handle.truncate()
            json.dump(info, handle)
        groups = self._groups(dirs.root.name)
        argv = self._prefix(groups) + kernel_argv(sys.executable, str(path))
        log = LogTail()
        try:
            popen = spawn(
                lambda: subprocess.Popen(
                    argv,
                    cwd=dirs.work,
                    env=self._env(dirs, env),
                    stdin=subprocess.DEVNULL,
                    stdout=log.write_fd,
                    stderr=log.write_fd,
                    start_new_session=True,
                )
            )
        finally:
            log.start()
        return NoneKernelProcess(Jail(popen=popen, groups=groups, log=log))

    def run_command(
        self,
        argv: list[str],
        dirs: SessionDirs,
        timeout_s: float,
        *,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        wheels: Path | None = None,
        output_cap_bytes: int = 10_000_000,
    ) -> CommandResult:
        started = time.monotonic()
        groups = self._groups(dirs.root.name + "-c")

        def host_path(arg: str) -> str:
            if wheels is not None and (arg == INNER_WHEELS_DIR or arg.startswith(INNER_WHEELS_DIR + "/")):
                return str(wheels) + arg[len(INNER_WHEELS_DIR) :]
            return self._map(arg, dirs)

        popen = subprocess.Popen(
            self._prefix(groups) + [host_path(a) for a in argv],
            # The installer starts in its own trusted folder, never in the workdir.
            cwd=dirs.work if wheels is None else wheels,
            env=self._env(dirs, env),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        return collect(
            Jail(popen=popen, groups=CgroupSet(name="none")), stdin, timeout_s, output_cap_bytes, started
        )
