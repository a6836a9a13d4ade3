"""The contract every sandbox implements: where a kernel (or a one-shot command) runs, and with what limits.

A sandbox knows how to start a process isolated from the host. It does not speak the Jupyter protocol:
`interpreter.kernel` writes the connection file, asks the sandbox to launch the kernel, and connects to it
through IPC socket files in the session's shared folder (TCP cannot cross a network-less sandbox).

Layout of one session on the host (made by `SessionDirs.create`), and where each part appears inside:

    <root>/<session-id>/work   -> /work     the code's working directory, the only writable place
    <root>/<session-id>/ipc    -> /ipc      connection file + IPC sockets of the kernel
    <root>/<session-id>/pkgs   -> /pkgs     packages installed for this session (read-only to the kernel,
                                            writable to the installer), importable by the kernel's code
    (the package installer alone sees a host folder of downloaded wheels at /wheels, read-only, and
    neither /work nor /ipc)

With a disk quota (`Limits.disk_mb`, as root) <session-id> is a filesystem of that size of its own, and
ipc a tiny tmpfs on it; see `interpreter.sandboxes.disk`.

What this module deliberately does not do: pick a sandbox (see `interpreter.sandboxes.select`) or
install packages (see `interpreter.packages`).
"""

from __future__ import annotations

import os
import shutil
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from interpreter.sandboxes import disk

# The unprivileged identity code runs as inside every sandbox. Never root: a root kernel could reach the
# Docker socket or anything else root owns on the host.
SANDBOX_UID = 65534
SANDBOX_GID = 65534

# Paths inside the sandbox.
INNER_WORKDIR = "/work"
INNER_IPC_DIR = "/ipc"
INNER_PKGS_DIR = "/pkgs"
INNER_WHEELS_DIR = "/wheels"
# Where a command starts when /work is not there (the package installer).
INNER_TMP_DIR = "/tmp"

# Label (docker) / process-name tag (local) that marks what we started, so orphans of a crashed run can be found.
SANDBOX_LABEL = "autocoder.sandbox"


@dataclass(frozen=True)
class WheelTarget:
    """The Python a sandbox's code runs, as `pip download` needs it to pick wheels for it."""

    python_version: str  # "3.11"
    platforms: tuple[str, ...]  # wheel platform tags, most specific first

    def pip_args(self) -> list[str]:
        digits = self.python_version.replace(".", "")
        args = ["--python-version", self.python_version, "--implementation", "cp", "--abi", f"cp{digits}"]
        for platform_tag in self.platforms:
            args += ["--platform", platform_tag]
        return args


def manylinux_platforms(machine: str, glibc: tuple[int, int]) -> tuple[str, ...]:
    """Wheel platform tags a CPython on `machine` with this glibc accepts (pip does not expand them itself)."""
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_{machine}" for m in range(minor, 16, -1)]
    tags.append(f"manylinux2014_{machine}")
    if machine in ("x86_64", "i686"):
        tags += [f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    tags.append(f"linux_{machine}")
    return tuple(tags)


class SandboxUnavailable(RuntimeError):
    """This sandbox cannot run here; the message says in one line how to enable it."""


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to everything a session runs. One place for the defaults."""

    memory_mb: int = 1024
    cpus: float = 1.0
    max_processes: int = 128
    max_file_size_mb: int = 256
    cpu_time_s: int = 3600
    # /work and /pkgs together (a filesystem per session, see `interpreter.sandboxes.disk`); 0: no quota.
    disk_mb: int = 2048


@dataclass
class SessionDirs:
    """The host folders of one session (see the module docstring for the layout)."""

    root: Path
    work: Path
    ipc: Path
    pkgs: Path

    quota: bool = False  # the folders live on a size-limited filesystem of their own

    @classmethod
    def create(cls, base: Path, session_id: str | None = None, *, disk_mb: int = 0) -> SessionDirs:
        """Make the folders; with `disk_mb` > 0 on a filesystem of that size where the host allows it
        (see `interpreter.sandboxes.disk` for the mechanism, what happens at the limit and the fallback)."""
        root = Path(base) / (session_id or uuid.uuid4().hex[:12])
        dirs = cls(root=root, work=root / "work", ipc=root / "ipc", pkgs=root / "pkgs")
        root.mkdir(parents=True, exist_ok=True)
        try:
            if disk_mb > 0 and not any(root.iterdir()):
                dirs.quota = disk.mount_quota(root, disk_mb)
            for path in (dirs.work, dirs.ipc, dirs.pkgs):
                path.mkdir(exist_ok=True)
            if dirs.quota:
                disk.mount_ipc(dirs.ipc)
            # The sandbox user must be able to write its workdir and create IPC sockets; the host user keeps
            # access through ownership (root) or group/other bits where the host is not root.
            if os.geteuid() == 0:
                for path in (dirs.work, dirs.ipc, dirs.pkgs):
                    os.chown(path, SANDBOX_UID, SANDBOX_GID)
            for path in (dirs.work, dirs.ipc, dirs.pkgs):
                path.chmod(0o770 if os.geteuid() == 0 else 0o777)
            dirs.root.chmod(0o711)
        except BaseException:
            dirs.remove()  # no mount or image left behind
            raise
        return dirs

    def remove(self) -> None:
        disk.unmount(self.root)
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class CommandResult:
    """What a one-shot command in the sandbox produced."""

    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    memory_exceeded: bool = False
    duration_s: float = 0.0


class KernelProcess(ABC):
    """A kernel process started by a sandbox. Owns nothing of the Jupyter protocol."""

    @abstractmethod
    def is_alive(self) -> bool: ...

    @abstractmethod
    def exit_reason(self) -> str | None:
        """None while alive; else "memory" when it was killed for exceeding its memory limit, else "crashed"."""

    @abstractmethod
    def kill(self) -> None:
        """Kill the kernel and everything it started; idempotent."""


@dataclass
class Sandbox(ABC):
    """Where code runs. One instance may serve many sessions; it holds only configuration."""

    limits: Limits = field(default_factory=Limits)
    name: str = "abstract"
    # True where the kernel runs on the host's own paths (the `none` sandbox), so the session base folder
    # must let it pass through; every real sandbox mounts the session folders instead.
    kernel_walks_host_paths: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def check_available(cls) -> None:
        """Raise SandboxUnavailable (with a one-line how-to) when this sandbox cannot run here."""

    @abstractmethod
    def launch_kernel(
        self, dirs: SessionDirs, connection_file_name: str, env: dict[str, str]
    ) -> KernelProcess:
        """Start the kernel (`processes.kernel_argv`, with `-f /ipc/<connection_file_name>`) inside the sandbox.

        The connection file uses transport "ipc" with ip "/ipc/kernel" so its sockets appear in `dirs.ipc`.
        """

    @abstractmethod
    def run_command(
        self,
        argv: list[str],
        dirs: SessionDirs,
        timeout_s: float,
        *,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
        wheels: Path | None = None,
    ) -> CommandResult:
        """Run one command inside the sandbox with the session's folders and limits, and wait for it.

        No command ever gets a network. `wheels` is for the package installer only: that host folder
        (trusted: written by the host's downloader) appears read-only at /wheels, /pkgs is writable, the
        command starts in /tmp, and /work and /ipc are not there at all, so nothing the kernel wrote can
        reach the installer.
        """

    def wheel_target(self) -> WheelTarget | None:
        """The Python this sandbox runs code with, for wheel downloads; None: the host's own interpreter."""
        return None

    def cleanup_orphans(self) -> int:
        """Remove what an earlier, crashed run of this sandbox left behind; return how many."""
        return 0
