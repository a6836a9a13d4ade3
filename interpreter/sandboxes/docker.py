"""The docker sandbox: one container per kernel, from the project's sandbox image.

Each kernel container runs with no network, a read-only root filesystem, a tmpfs /tmp, all capabilities
dropped, no-new-privileges, a seccomp profile of our own (`seccomp.docker_profile`: no io_uring, ptrace,
keyrings, namespaces, bpf...; Docker's default would allow io_uring and ptrace), an unprivileged user (65534, or the caller's own uid when the host process is
not root, so it can reach the kernel's sockets), memory (swap included) / CPU / process-count / file-size /
CPU-time limits, and exactly three host folders: the session's /work (writable), /ipc (the kernel's
connection file and IPC sockets: the host talks to the kernel through those socket files, which works across
the container boundary because both sides share the host kernel) and /pkgs (read-only, on PYTHONPATH). The
Docker socket is never mounted. docker-init (tini) runs as PID 1 so zombies are reaped.

Kernel containers are created and watched through the Engine API on the unix socket (fast, and a blocking
`wait` per container reports a death within milliseconds; `State.OOMKilled` tells a memory kill apart).
One-shot commands (`run_command`: the package installer, sh lines) run as a fresh `docker run -i` container
with the same limits and profile, so nothing they do survives or touches the kernel's container. None gets a
network: the installer gets the host-downloaded wheels at /wheels (read-only) and a writable /pkgs, and no
/work or /ipc.

Every container carries the label `autocoder.sandbox=1` plus its owner's host name, pid and process start
time. Containers are removed when their kernel is killed, when this process exits (atexit), and, for a run
that crashed or was SIGKILLed, by `cleanup_orphans` at the next start, which removes labelled containers
whose owner process is gone.

What this module deliberately does not do: speak the Jupyter protocol (interpreter.kernel), build the image
(`docker_image.py` beside it: `python -m interpreter image build`), or work against a remote daemon (bind
mounts need the session folders on the daemon's host).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from interpreter.sandboxes import seccomp
from interpreter.sandboxes.base import (
    INNER_IPC_DIR,
    INNER_PKGS_DIR,
    INNER_TMP_DIR,
    INNER_WHEELS_DIR,
    INNER_WORKDIR,
    SANDBOX_GID,
    SANDBOX_LABEL,
    SANDBOX_UID,
    CommandResult,
    KernelProcess,
    Sandbox,
    SandboxUnavailable,
    SessionDirs,
    WheelTarget,
    manylinux_platforms,
)
from interpreter.sandboxes.docker_api import DockerAPI, DockerAPIError
from interpreter.sandboxes.docker_image import IMAGE_GLIBC, IMAGE_PYTHON_VERSION, image_tag
from interpreter.sandboxes.processes import MAX_OPEN_FILES, kernel_argv

OWNER_PID_LABEL = "autocoder.owner_pid"
OWNER_START_LABEL = "autocoder.owner_start"
OWNER_HOST_LABEL = "autocoder.owner_host"
SESSION_LABEL = "autocoder.session"

# Output kept from a one-shot command, per stream: head and tail, the middle dropped with a note.
COMMAND_OUTPUT_CAP = 256 * 1024

# The image defines these; values from the host would point at host paths.
_IMAGE_OWNED_ENV = {"PATH", "HOME", "PYTHONHOME", "LD_LIBRARY_PATH", "LD_PRELOAD"}


def _process_start_time(pid: int) -> str:
    """Start time of a process in clock ticks since boot ("" when unknown): tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _owner_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    return not start or _process_start_time(pid) == start


class _SeccompProfile:
    """The seccomp profile as JSON (for the Engine API) and as a file (for `docker run`), made once."""

    lock = threading.Lock()
    text: str | None = None
    path: str | None = None

    @classmethod
    def security_opts(cls, *, as_file: bool) -> list[str]:
        """`seccomp=...` options (empty where seccomp.py does not cover this architecture)."""
        with cls.lock:
            if cls.text is None:
                profile = seccomp.docker_profile()
                cls.text = json.dumps(profile) if profile is not None else ""
            if not cls.text:
                return []
            if not as_file:
                return [f"seccomp={cls.text}"]
            if cls.path is None or not os.path.exists(cls.path):
                folder = tempfile.mkdtemp(prefix="autocoder-seccomp-")  # 0700, ours
                path = os.path.join(folder, "profile.json")
                with open(path, "w") as handle:
                    handle.write(cls.text)
                atexit.register(shutil.rmtree, folder, True)
                cls.path = path
            return [f"seccomp={cls.path}"]


class _Registry:
    """Containers this process started, removed at exit. Created lazily: no side effects on import."""

    lock = threading.Lock()
    ids: set[str] = set()
    atexit_registered = False
    orphans_cleaned = False

    @classmethod
    def add(cls, api: DockerAPI, container_id: str) -> None:
        with cls.lock:
            cls.ids.add(container_id)
            if not cls.atexit_registered:
                atexit.register(cls.remove_all, api)
                cls.atexit_registered = True

    @classmethod
    def discard(cls, container_id: str) -> None:
        with cls.lock:
            cls.ids.discard(container_id)

    @classmethod
    def remove_all(cls, api: DockerAPI) -> None:
        with cls.lock:
            ids, cls.ids = list(cls.ids), set()
        for container_id in ids:
            try:
                api.remove(container_id)
            except (OSError, DockerAPIError):
                pass


class DockerKernelProcess(KernelProcess):
    """A kernel container. A thread blocks on the API's `wait`, so a death is known within milliseconds."""

    def __init__(self, api: DockerAPI, container_id: str, name: str, log_path: Path | None = None):
        self.api = api
        self.container_id = container_id
        self.name = name
        self.log_path = log_path
        self._stopped = threading.Event()
        self._reason: str | None = None
        self._killed = False
        threading.Thread(target=self._watch, name=f"docker-wait-{name}", daemon=True).start()

    def _watch(self) -> None:
        self.api.wait(self.container_id)
        reason = "crashed"
        if not self._killed:
            try:
                state = (self.api.inspect(self.container_id) or {}).get("State", {})
            except (OSError, DockerAPIError):
                state = {}
            if state.get("OOMKilled"):
                reason = "memory"
            self._save_log()
        self._reason = reason
        self._stopped.set()

    def _save_log(self) -> None:
        """Keep the dead kernel's own output (startup errors, crashes) where the kernel session looks."""
        if self.log_path is None:
            return
        try:
            self.log_path.write_text(self.api.logs(self.container_id))
        except (OSError, DockerAPIError):
            pass

    def is_alive(self) -> bool:
        return not self._stopped.is_set()

    def exit_reason(self) -> str | None:
        return self._reason if self._stopped.is_set() else None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the container stopped; True when it did within `timeout`."""
        return self._stopped.wait(timeout)

    def kill(self) -> None:
        self._killed = True
        try:
            self.api.remove(self.container_id)
        except (OSError, DockerAPIError):
            pass
        _Registry.discard(self.container_id)


@dataclass
class DockerSandbox(Sandbox):
    """Kernels in containers of the sandbox image (default: the image matching the current Dockerfile)."""

    name: str = "docker"
    image: str = ""

    def __post_init__(self) -> None:
        self.image = self.image or image_tag()
        self._api = DockerAPI()

    # --- availability -------------------------------------------------------------------------------

    @classmethod
    def check_available(cls, image: str | None = None) -> None:
        api = DockerAPI()
        if shutil.which("docker") is None:
            raise SandboxUnavailable(
                "docker: the docker CLI is missing; install it (apt-get install docker.io) or use --sandbox local"
            )
        if not os.path.exists(api.path):
            raise SandboxUnavailable(
                f"docker: no Docker daemon socket at {api.path}; install and start Docker "
                "(apt-get install docker.io && dockerd &) or use --sandbox local"
            )
        if not os.access(api.path, os.R_OK | os.W_OK):
            raise SandboxUnavailable(
                f"docker: no permission on {api.path}; add your user to the docker group or use --sandbox local"
            )
        if not api.ping():
            raise SandboxUnavailable(
                f"docker: the Docker daemon at {api.path} does not answer; start it (dockerd &) "
                "or use --sandbox local"
            )
        tag = image or image_tag()
        if not api.image_exists(tag):
            raise SandboxUnavailable(
                f"docker: sandbox image {tag} is missing; build it with `python -m interpreter image build`"
            )

    # --- container configuration --------------------------------------------------------------------

    def _user(self) -> str:
        # A root host process gets the dedicated nobody uid; anyone else runs the kernel as themselves (still
        # not root), because only the socket owner can connect to the kernel's IPC sockets without chmod.
        if os.geteuid() == 0:
            return f"{SANDBOX_UID}:{SANDBOX_GID}"
        return f"{os.geteuid()}:{os.getegid()}"

    def _labels(self, dirs: SessionDirs) -> dict[str, str]:
        pid = os.getpid()
        return {
            SANDBOX_LABEL: "1",
            OWNER_PID_LABEL: str(pid),
            OWNER_START_LABEL: _process_start_time(pid),
            OWNER_HOST_LABEL: socket.gethostname(),
            SESSION_LABEL: dirs.root.name,
        }

    def _ulimits(self) -> list[dict]:
        fsize = self.limits.max_file_size_mb * 1024 * 1024
        cpu = self.limits.cpu_time_s
        return [
            {"Name": "fsize", "Soft": fsize, "Hard": fsize},
            {"Name": "cpu", "Soft": cpu, "Hard": cpu},
            {"Name": "core", "Soft": 0, "Hard": 0},
            {"Name": "nofile", "Soft": MAX_OPEN_FILES, "Hard": MAX_OPEN_FILES},
        ]

    def _tmpfs_options(self) -> str:
        # tmpfs pages are charged to the container's memory cgroup, so the memory limit bounds /tmp as well.
        return f"rw,nosuid,nodev,size={self.limits.memory_mb}m,mode=1777"

    def _binds(self, dirs: SessionDirs, wheels: Path | None = None) -> list[str]:
        if wheels is not None:  # the installer: the wheels and /pkgs, nothing the kernel can write
            return [f"{wheels.resolve()}:{INNER_WHEELS_DIR}:ro", f"{dirs.pkgs.resolve()}:{INNER_PKGS_DIR}:rw"]
        return [
            f"{dirs.work.resolve()}:{INNER_WORKDIR}:rw",
            f"{dirs.ipc.resolve()}:{INNER_IPC_DIR}:rw",
            f"{dirs.pkgs.resolve()}:{INNER_PKGS_DIR}:ro",
        ]

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        merged = {k: v for k, v in (env or {}).items() if k not in _IMAGE_OWNED_ENV}
        merged.setdefault("PYTHONPATH", INNER_PKGS_DIR)
        return merged

    def _ensure_orphans_cleaned(self) -> None:
        with _Registry.lock:
            if _Registry.orphans_cleaned:
                return
            _Registry.orphans_cleaned = True
        self.cleanup_orphans()

    # --- the contract --------------------------------------------------------------------------------

    def launch_kernel(
        self, dirs: SessionDirs, connection_file_name: str, env: dict[str, str]
    ) -> KernelProcess:
        self._ensure_orphans_cleaned()
        memory = self.limits.memory_mb * 1024 * 1024
        name = f"autocoder-{dirs.root.name}-{uuid.uuid4().hex[:6]}"
        config = {
            "Image": self.image,
            # The same kernel command line as the local sandbox (history off, quiet).
            "Cmd": kernel_argv("python", f"{INNER_IPC_DIR}/{connection_file_name}"),
            "Env": [f"{k}={v}" for k, v in self._env(env).items()],
            "User": self._user(),
            "WorkingDir": INNER_WORKDIR,
            "Labels": self._labels(dirs),
            "NetworkDisabled": True,
            "HostConfig": {
                "NetworkMode": "none",
                "ReadonlyRootfs": True,
                "Tmpfs": {"/tmp": self._tmpfs_options()},
                "CapDrop": ["ALL"],
                "SecurityOpt": ["no-new-privileges", *_SeccompProfile.security_opts(as_file=False)],
                "Memory": memory,
                "MemorySwap": memory,
                "NanoCpus": int(self.limits.cpus * 1e9),
                "PidsLimit": self.limits.max_processes,
                "Ulimits": self._ulimits(),
                "Binds": self._binds(dirs),
                "Init": True,
                "IpcMode": "private",
                # The kernel's own stdout/stderr (not the code's: that goes over ZMQ) is kept small on disk.
                "LogConfig": {"Type": "json-file", "Config": {"max-size": "1m", "max-file": "1"}},
            },
        }
        container_id = ""
        try:
            container_id = self._api.create(name, config)
            _Registry.add(self._api, container_id)
            self._api.start(container_id)
        except DockerAPIError as exc:
            if container_id:
                self._api.remove(container_id)
                _Registry.discard(container_id)
            if exc.status == 404 and "image" in str(exc).lower():
                raise SandboxUnavailable(
                    f"docker: sandbox image {self.image} is missing; build it with "
                    "`python -m interpreter image build`"
                ) from exc
            raise
        return DockerKernelProcess(self._api, container_id, name, log_path=dirs.root / "kernel.log")

    def command_argv(
        self, argv: list[str], dirs: SessionDirs, name: str, *, env: dict, wheels: Path | None = None
    ) -> list[str]:
        """The `docker run` command line of a one-shot command (same limits as the kernel's container)."""
        memory = f"{self.limits.memory_mb}m"
        workdir = INNER_WORKDIR if wheels is None else INNER_TMP_DIR
        cmd = ["docker", "run", "-i", "--name", name, "--init", "--read-only"]
        cmd += ["--tmpfs", f"/tmp:{self._tmpfs_options()}", "--cap-drop", "ALL"]
        cmd += ["--security-opt", "no-new-privileges"]
        for option in _SeccompProfile.security_opts(as_file=True):
            cmd += ["--security-opt", option]
        cmd += ["--user", self._user(), "--workdir", workdir]
        cmd += ["--memory", memory, "--memory-swap", memory, "--cpus", str(self.limits.cpus)]
        cmd += ["--pids-limit", str(self.limits.max_processes), "--ipc", "private"]
        cmd += ["--log-driver", "none"]
        for limit in self._ulimits():
            cmd += ["--ulimit", f"{limit['Name']}={limit['Soft']}:{limit['Hard']}"]
        for key, value in self._labels(dirs).items():
            cmd += ["--label", f"{key}={value}"]
        for bind in self._binds(dirs, wheels):
            cmd += ["-v", bind]
        cmd += ["--network", "none"]
        for key, value in self._env(env).items():
            cmd += ["-e", f"{key}={value}"]
        return [*cmd, self.image, *argv]

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
        self._ensure_orphans_cleaned()
        name = f"autocoder-cmd-{dirs.root.name}-{uuid.uuid4().hex[:6]}"
        cmd = self.command_argv(argv, dirs, name, env=env or {}, wheels=wheels)
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        readers = [_CappedReader(proc.stdout), _CappedReader(proc.stderr)]
        # stdin is fed from a thread: a command that never reads must not block us past the timeout.
        threading.Thread(target=_feed, args=(proc.stdin, stdin or b""), daemon=True).start()
        timed_out = False
        returncode: int | None = None
        state: dict = {}
        try:
            try:
                returncode = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            if not timed_out:
                with contextlib.suppress(OSError, DockerAPIError):
                    state = (self._api.inspect(name) or {}).get("State", {})
        finally:
            # Always remove the container (also on timeout or an exception here, e.g. KeyboardInterrupt):
            # removing it stops it, and the CLI process then exits.
            with contextlib.suppress(OSError, DockerAPIError):
                self._api.remove(name)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out, err = (reader.text() for reader in readers)
        return CommandResult(
            returncode=returncode,
            stdout=out,
            stderr=err,
            timed_out=timed_out,
            memory_exceeded=bool(state.get("OOMKilled")),
            duration_s=time.monotonic() - started,
        )

    def wheel_target(self) -> WheelTarget:
        return WheelTarget(IMAGE_PYTHON_VERSION, manylinux_platforms(platform.machine(), IMAGE_GLIBC))

    def cleanup_orphans(self) -> int:
        """Remove labelled containers of this host whose owner process is gone (a crashed earlier run)."""
        try:
            containers = self._api.list_containers(f"{SANDBOX_LABEL}=1")
        except (OSError, DockerAPIError):
            return 0
        here = socket.gethostname()
        removed = 0
        for container in containers:
            labels = container.get("Labels") or {}
            if labels.get(OWNER_HOST_LABEL, here) != here:
                continue  # another host (or container) sharing this daemon owns it
            try:
                pid = int(labels.get(OWNER_PID_LABEL, ""))
            except ValueError:
                pid = 0
            if pid and _owner_alive(pid, labels.get(OWNER_START_LABEL, "")):
                continue
            try:
                removed += self._api.remove(container["Id"])
            except (OSError, DockerAPIError):
                pass
        return removed


def _feed(pipe, data: bytes) -> None:
    with contextlib.suppress(OSError):
        if data:
            pipe.write(data)
        pipe.close()


class _CappedReader:
    """Drain a pipe in a thread, keeping the head and tail of the output (bounded memory)."""

    def __init__(self, pipe):
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self._thread = threading.Thread(target=self._drain, args=(pipe,), daemon=True)
        self._thread.start()

    def _drain(self, pipe) -> None:
        half = COMMAND_OUTPUT_CAP // 2
        for chunk in iter(lambda: pipe.read1(65536), b""):
            self.total += len(chunk)
            room = half - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            if chunk:
                self.tail = (self.tail + chunk)[-half:]
        pipe.close()

    def text(self) -> str:
        self._thread.join(timeout=10)
        dropped = self.total - len(self.head) - len(self.tail)
        middle = f"\n[... {dropped} bytes of output dropped ...]\n".encode() if dropped > 0 else b""
        return bytes(self.head + middle + self.tail).decode(errors="replace")
