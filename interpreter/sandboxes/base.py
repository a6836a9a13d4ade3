"""The contract every sandbox implements: where a kernel (or a one-shot command) runs, and with what limits.

A sandbox knows how to start a process isolated from the host. It does not speak the Jupyter protocol:
`interpreter.kernel` writes the connection file, asks the sandbox to launch the kernel, and connects to it
through IPC socket files in the session's shared folder (TCP cannot cross a network-less sandbox).

Layout of one session on the host (made by `SessionDirs.create`), and where each part appears inside:

    <root>/<session-id>/work   -> /work     the code's working directory, the only writable place
    <root>/<session-id>/ipc    -> /ipc      connection file + IPC sockets of the kernel
    <root>/<session-id>/pkgs   -> /pkgs     packages installed for this session (read-only to the kernel,
                                            writable to the installer), on the kernel's PYTHONPATH

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

# The unprivileged identity code runs as inside every sandbox. Never root: a root kernel could reach the
# Docker socket or anything else root owns on the host.
SANDBOX_UID = 65534
SANDBOX_GID = 65534

# Paths inside the sandbox.
INNER_WORKDIR = "/work"
INNER_IPC_DIR = "/ipc"
INNER_PKGS_DIR = "/pkgs"

# Label (docker) / process-name tag (local) that marks what we started, so orphans of a crashed run can be found.
SANDBOX_LABEL = "autocoder.sandbox"


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


@dataclass
class SessionDirs:
    """The host folders of one session (see the module docstring for the layout)."""

    root: Path
    work: Path
    ipc: Path
    pkgs: Path

    @classmethod
    def create(cls, base: Path, session_id: str | None = None) -> SessionDirs:
        root = Path(base) / (session_id or uuid.uuid4().hex[:12])
        dirs = cls(root=root, work=root / "work", ipc=root / "ipc", pkgs=root / "pkgs")
        for path in (dirs.root, dirs.work, dirs.ipc, dirs.pkgs):
            path.mkdir(parents=True, exist_ok=True)
        # The sandbox user must be able to write its workdir and create IPC sockets; the host user keeps
        # access through ownership (root) or group/other bits where the host is not root.
        if os.geteuid() == 0:
            for path in (dirs.work, dirs.ipc, dirs.pkgs):
                os.chown(path, SANDBOX_UID, SANDBOX_GID)
        for path in (dirs.work, dirs.ipc, dirs.pkgs):
            path.chmod(0o770 if os.geteuid() == 0 else 0o777)
        dirs.root.chmod(0o711)
        return dirs

    def remove(self) -> None:
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

    @classmethod
    @abstractmethod
    def check_available(cls) -> None:
        """Raise SandboxUnavailable (with a one-line how-to) when this sandbox cannot run here."""

    @abstractmethod
    def launch_kernel(
        self, dirs: SessionDirs, connection_file_name: str, env: dict[str, str]
    ) -> KernelProcess:
        """Start `python -m ipykernel_launcher -f /ipc/<connection_file_name>` inside the sandbox.

        The connection file uses transport "ipc" with ip "/ipc/kernel" so its sockets appear in `dirs.ipc`.
        """

    @abstractmethod
    def run_command(
        self,
        argv: list[str],
        dirs: SessionDirs,
        timeout_s: float,
        *,
        network: bool = False,
        pkgs_writable: bool = False,
        stdin: bytes | None = None,
        env: dict[str, str] | None = None,
    ) -> CommandResult:
        """Run one command inside the sandbox with the session's folders and limits, and wait for it.

        `network=True` is only for the package installer; `pkgs_writable=True` lets it write /pkgs.
        """

    def cleanup_orphans(self) -> int:
        """Remove what an earlier, crashed run of this sandbox left behind; return how many."""
        return 0
