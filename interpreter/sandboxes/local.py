"""The local sandbox: a kernel (or a one-shot command) in a bubblewrap jail, without Docker.

What the code inside sees and may do:
- runs as uid/gid 65534 (nobody), no capabilities, no_new_privs, in its own pid, ipc, uts, mount and network
  namespaces. The network namespace has only a loopback device, so DNS, the host's loopback services and
  IPv6 are all unreachable. No jail ever gets a network, the package installer's included: the host
  downloads the wheels (interpreter.packages) and the installer's jail only sees them at /wheels;
- a new root holding only read-only /usr (and the /bin, /lib... links), the Python installation and venv the
  host runs (the venv appears at /opt/venv), a few harmless files from /etc (dynamic-linker cache,
  certificates, timezone, fonts) and a two-line /etc/passwd; fresh /proc, minimal /dev, private /tmp
  (tmpfs, size-capped). The host's home folders, /root, /etc/shadow, /run and the Docker socket are not
  there at all;
- /work (the session workdir) is the only writable host folder, /ipc holds the kernel's sockets, /pkgs
  (read-only, on PYTHONPATH) holds what the installer put there for this session; the installer's jail
  has /wheels (read-only) and a writable /pkgs instead, and no /work or /ipc;
- limits: a cgroup per process tree where the host lets us (memory with OOM detection, process count, CPU
  share; v1 and v2, see `cgroups.py`) and rlimits always (file size, CPU time, open files, a per-uid
  process backstop, and address space when no memory cgroup exists). RLIMIT_NPROC counts every process of
  uid 65534 on the host, so it is a generous backstop; the per-sandbox count comes from the pids cgroup.

How it is started: as root (this project's usual case) bubblewrap runs as root, which lets it bind the
Python installation even when it lives under /root (mode 0700, unreadable to nobody), and the command then
drops to 65534 with setpriv inside the jail, clearing every capability set. As any other user, bubblewrap
runs unprivileged in a user namespace (code then runs as that user's own uid, which is not root), and
memory is limited by RLIMIT_AS because unprivileged users rarely own a cgroup. Where bubblewrap is missing, `unshare` + `setpriv` build the
same namespaces (a thinner jail: the host's filesystem stays visible read-only except the hidden paths).

System calls: a seccomp filter (see `seccomp.py`) refuses keyrings, new namespaces, mount, ptrace, bpf and
similar calls that sandboxed code has no use for; everything else is the host kernel's normal surface.

The session's folders carry a disk quota where the host allows it (a filesystem per session, see
`disk.py`); this module only binds them.

What it deliberately does not cover: an allow-list of system calls, a seccomp filter in the unshare
fallback, and GPU access.
The process helpers it shares with the none sandbox (kernel command, limits prefix, spawner thread, log
tail, one-shot output collection) live in `processes.py`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from interpreter.sandboxes import cgroups, seccomp
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
)
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

INNER_VENV = "/opt/venv"
TMP_SIZE_MB = 512
# The tag in every jail's command line, so orphans of a crashed host process can be found.
TAG_ENV = "AUTOCODER_SANDBOX"

_ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "alternatives",
    "localtime",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "fonts",
    "mime.types",
    "nsswitch.conf",
    "host.conf",
)
_PASSWD = f"root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:{SANDBOX_UID}:{SANDBOX_GID}:sandbox:/tmp:/usr/sbin/nologin\n"
_GROUP = f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\n"


def inner_python() -> str:
    """The path of the host's Python as seen inside the jail."""
    base, venv = python_layout()
    return f"{INNER_VENV}/bin/python" if venv else f"{base}/bin/python3"


class LocalKernelProcess(KernelProcess):
    def __init__(self, jail: Jail) -> None:
        self._jail = jail
        self._killed = False

    @property
    def pid(self) -> int:
        return self._jail.popen.pid

    def is_alive(self) -> bool:
        return self._jail.popen.poll() is None

    def exit_reason(self) -> str | None:
        if self.is_alive():
            return None
        if self._jail.groups.oom_kills() > 0:
            return "memory"
        return "crashed"

    def returncode(self) -> int | None:
        return self._jail.popen.poll()

    def log_tail(self) -> str:
        """The last lines the kernel process itself wrote (start-up errors)."""
        return self._jail.log.text() if self._jail.log is not None else ""

    def kill(self) -> None:
        if not self._killed:
            self._killed = True
            self._jail.kill()


@dataclass
class LocalSandbox(Sandbox):
    """bubblewrap (or unshare + setpriv) jail per kernel; see the module docstring for what it guarantees."""

    name: str = "local"
    # None: bubblewrap when installed, else unshare + setpriv; False forces the fallback (tests use it).
    use_bwrap: bool | None = None
    # The seccomp filter of `seccomp.py` (bubblewrap only).
    seccomp: bool = True

    def _bwrap(self) -> bool:
        return shutil.which("bwrap") is not None if self.use_bwrap is None else self.use_bwrap

    @classmethod
    def check_available(cls) -> None:
        if shutil.which("bwrap") is None and (os.geteuid() != 0 or shutil.which("unshare") is None):
            raise SandboxUnavailable(
                "local sandbox needs bubblewrap: install it (apt-get install bubblewrap) or use --sandbox docker"
            )
        if os.geteuid() == 0 and shutil.which("setpriv") is None:
            raise SandboxUnavailable("local sandbox needs setpriv to drop root: apt-get install util-linux")
        if shutil.which("bwrap") is not None:
            # Unprivileged bubblewrap needs user namespaces; prove it works once.
            probe = subprocess.run(
                ["bwrap", *cls._root_args(Path("/")), "--unshare-all", "--", "/bin/true"],
                capture_output=True,
                text=True,
            )
            if probe.returncode != 0:
                raise SandboxUnavailable(
                    f"bubblewrap cannot create a sandbox here ({probe.stderr.strip() or probe.returncode}); "
                    "enable user namespaces (sysctl kernel.unprivileged_userns_clone=1) or use --sandbox docker"
                )

    # ---- argv construction -------------------------------------------------------------------------

    @staticmethod
    def _root_args(root: Path) -> list[str]:
        """Read-only system folders: /usr and the merged-usr links (or real folders on older layouts)."""
        args = ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / name
            if host.is_symlink():
                args += ["--symlink", os.readlink(host), f"/{name}"]
            elif host.is_dir():
                args += ["--ro-bind", str(host), f"/{name}"]
        return args

    def _bwrap_argv(
        self,
        dirs: SessionDirs,
        *,
        wheels: Path | None,
        env: dict[str, str],
        data_fds: list[tuple[int, str]],
    ) -> list[str]:
        as_root = os.geteuid() == 0
        argv = ["bwrap", "--die-with-parent", "--new-session"]
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try", "--unshare-net"]
        if as_root:
            # Root bwrap keeps every capability unless told otherwise: keep only what setpriv needs to drop
            # to 65534 (setpriv then clears all sets, bounding included).
            argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            argv += ["--cap-add", "CAP_SETPCAP"]
        else:
            argv += ["--unshare-user", "--disable-userns"]
        argv += ["--hostname", "sandbox"]
        argv += self._root_args(Path("/"))
        base, venv = python_layout()
        if not base.startswith("/usr/"):
            for parent in ancestors(base):
                argv += ["--perms", "0755", "--dir", parent]
            argv += ["--ro-bind", base, base]
        if venv:
            argv += ["--perms", "0755", "--dir", "/opt", "--ro-bind", venv, INNER_VENV]
        argv += ["--perms", "0755", "--dir", "/etc"]
        for name in _ETC_FILES:
            if os.path.exists(f"/etc/{name}"):
                argv += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        # Let "localhost" resolve inside (to the jail's own loopback).
        data_fds.append((_data_fd("127.0.0.1 localhost\n::1 localhost\n"), "/etc/hosts"))
        data_fds.append((_data_fd(_PASSWD), "/etc/passwd"))
        data_fds.append((_data_fd(_GROUP), "/etc/group"))
        for fd, dest in data_fds:
            argv += ["--perms", "0644", "--ro-bind-data", str(fd), dest]
        program = seccomp.filter_bytes() if self.seccomp else None
        if program is not None:
            fd = _data_fd(program)
            data_fds.append((fd, ""))
            argv += ["--seccomp", str(fd)]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--perms", "01777", "--size", str(TMP_SIZE_MB * 1024 * 1024), "--tmpfs", "/tmp"]
        argv += ["--perms", "01777", "--size", str(64 * 1024 * 1024), "--tmpfs", "/dev/shm"]
        if wheels is None:
            argv += ["--bind", str(dirs.work), INNER_WORKDIR]
            argv += ["--bind", str(dirs.ipc), INNER_IPC_DIR]
            argv += ["--ro-bind", str(dirs.pkgs), INNER_PKGS_DIR]
        else:
            argv += ["--ro-bind", str(wheels), INNER_WHEELS_DIR, "--bind", str(dirs.pkgs), INNER_PKGS_DIR]
        argv += ["--clearenv"]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        argv.append("--")
        if as_root:
            argv += [
                "setpriv",
                f"--reuid={SANDBOX_UID}",
                f"--regid={SANDBOX_GID}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--",
            ]
        # cd only after dropping root: the workdir belongs to 65534 and root has no DAC override here.
        return argv + ["env", "-C", INNER_WORKDIR if wheels is None else INNER_TMP_DIR, "--"]

    def _unshare_argv(self, dirs: SessionDirs, *, wheels: Path | None, env: dict[str, str]) -> list[str]:
        """Fallback without bubblewrap (root only): the same jail built by unshare + a short sh script.

        The script runs as root in fresh namespaces, assembles a new root on a tmpfs inside the session
        folder (only the same read-only pieces bwrap would bind), mounts a /proc of the new pid namespace,
        then chroots and drops to 65534 with every capability cleared (so the chroot cannot be left).
        """
        q = shlex.quote
        root = str(dirs.root / "jail-root")
        base, venv = python_layout()
        lines = [
            "set -e",
            "mount --make-rprivate /",
            f"mkdir -p {q(root)}",
            f"mount -t tmpfs -o mode=755 jail {q(root)}",
        ]
        lines.append(f"cd {q(root)}")
        lines.append("mkdir -p usr etc tmp proc dev work ipc pkgs wheels")

        def ro_bind(src: str, dst: str, is_dir: bool = True) -> None:
            lines.append(
                f"mkdir -p {q('.' + dst)}"
                if is_dir
                else f"mkdir -p {q('.' + os.path.dirname(dst))} && touch {q('.' + dst)}"
            )
            lines.append(f"mount --bind {q(src)} {q('.' + dst)} && mount -o remount,bind,ro {q('.' + dst)}")

        ro_bind("/usr", "/usr")
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            host = Path("/") / name
            if host.is_symlink():
                lines.append(f"ln -s {q(os.readlink(host))} {name}")
            elif host.is_dir():
                ro_bind(str(host), f"/{name}")
        if not base.startswith("/usr/"):
            ro_bind(base, base)
        if venv:
            ro_bind(venv, INNER_VENV)
        for name in _ETC_FILES:
            path = f"/etc/{name}"
            if os.path.exists(path):
                ro_bind(path, path, is_dir=os.path.isdir(path))
        lines.append(f"printf %s {q(_PASSWD)} > etc/passwd && printf %s {q(_GROUP)} > etc/group")
        lines.append("printf '127.0.0.1 localhost\\n' > etc/hosts")
        lines.append("ip link set lo up 2>/dev/null || true")
        lines.append(f"mount -t tmpfs -o mode=1777,size={TMP_SIZE_MB}m tmp tmp")
        lines.append(
            "mount -t tmpfs -o mode=755 dev dev && mkdir dev/shm && mount -t tmpfs -o mode=1777,size=64m shm dev/shm"
        )
        for device in ("null", "zero", "full", "random", "urandom", "tty"):
            lines.append(f"touch dev/{device} && mount --bind /dev/{device} dev/{device}")
        lines.append("ln -s /proc/self/fd dev/fd && ln -s /proc/self/fd/0 dev/stdin")
        lines.append("ln -s /proc/self/fd/1 dev/stdout && ln -s /proc/self/fd/2 dev/stderr")
        lines.append("mount -t proc proc proc")
        if wheels is None:
            for name, host in (("work", dirs.work), ("ipc", dirs.ipc)):
                lines.append(f"mount --bind {q(str(host))} {name}")
            lines.append(f"mount --bind {q(str(dirs.pkgs))} pkgs && mount -o remount,bind,ro pkgs")
        else:
            ro_bind(str(wheels), INNER_WHEELS_DIR)
            lines.append(f"mount --bind {q(str(dirs.pkgs))} pkgs")
        start_dir = INNER_WORKDIR if wheels is None else INNER_TMP_DIR
        lines.append("mount -o remount,ro,bind . 2>/dev/null || true")
        exports = " ".join(f"{k}={q(v)}" for k, v in env.items())
        lines.append(
            f"exec chroot . env -i {exports} setpriv --reuid={SANDBOX_UID} --regid={SANDBOX_GID} --clear-groups "
            f'--inh-caps=-all --bounding-set=-all --no-new-privs -- env -C {start_dir} -- "$@"'
        )
        flags = ["--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--net"]
        # pdeathsig: the jail dies with the host thread that started it, like bwrap's --die-with-parent.
        return [
            "setpriv",
            "--pdeathsig",
            "KILL",
            "--",
            "unshare",
            *flags,
            "--",
            "/bin/sh",
            "-c",
            "\n".join(lines),
            "sh",
        ]

    def _env(self, extra: dict[str, str] | None) -> dict[str, str]:
        _, venv = python_layout()
        path = "/usr/local/bin:/usr/bin:/bin"
        if venv:
            path = f"{INNER_VENV}/bin:" + path
        threads = str(max(1, int(self.limits.cpus + 0.999)))
        env = {
            "PATH": path,
            "HOME": "/tmp",
            "USER": "sandbox",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TMPDIR": "/tmp",
            "PYTHONPATH": INNER_PKGS_DIR,
            "PYTHONDONTWRITEBYTECODE": "1",
            "MPLCONFIGDIR": "/tmp/matplotlib",
            "OMP_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            # Fewer malloc arenas: less reserved address space, which matters where RLIMIT_AS is the limit.
            "MALLOC_ARENA_MAX": "2",
            TAG_ENV: f"{SANDBOX_LABEL}:{os.getpid()}",
        }
        env.update(extra or {})
        env.pop("JPY_PARENT_PID", None)
        return env

    def _start(
        self,
        argv: list[str],
        dirs: SessionDirs,
        *,
        wheels: Path | None,
        env: dict[str, str] | None,
        stdin: int | None,
        stdout: int | None,
        stderr: int | None,
        suffix: str,
        long_lived: bool,
    ) -> Jail:
        limits = self.limits
        groups = cgroups.CgroupSet.create(
            suffix, memory_mb=limits.memory_mb, max_processes=limits.max_processes, cpus=limits.cpus
        )
        full_env = self._env(env)
        data_fds: list[tuple[int, str]] = []
        try:
            if self._bwrap():
                jail = self._bwrap_argv(dirs, wheels=wheels, env=full_env, data_fds=data_fds)
            else:
                jail = self._unshare_argv(dirs, wheels=wheels, env=full_env)
            command = limits_prefix(self.limits, groups) + jail + argv

            def popen() -> subprocess.Popen:
                return subprocess.Popen(
                    command,
                    stdin=stdin,
                    stdout=stdout,
                    stderr=stderr,
                    pass_fds=[fd for fd, _ in data_fds],
                    env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                    start_new_session=True,
                )

            process = spawn(popen) if long_lived else popen()
        except BaseException:
            groups.remove()
            raise
        finally:
            for fd, _ in data_fds:
                os.close(fd)
        return Jail(popen=process, groups=groups)

    # ---- the Sandbox contract -----------------------------------------------------------------------

    def launch_kernel(
        self, dirs: SessionDirs, connection_file_name: str, env: dict[str, str]
    ) -> KernelProcess:
        argv = kernel_argv(inner_python(), f"{INNER_IPC_DIR}/{connection_file_name}")
        log = LogTail()
        try:
            jail = self._start(
                argv,
                dirs,
                wheels=None,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log.write_fd,
                stderr=log.write_fd,
                suffix=f"{dirs.root.name}-k{uuid.uuid4().hex[:6]}",
                long_lived=True,
            )
        finally:
            log.start()
        jail.log = log
        return LocalKernelProcess(jail)

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
        jail = self._start(
            argv,
            dirs,
            wheels=wheels,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            suffix=f"{dirs.root.name}-c{uuid.uuid4().hex[:6]}",
            long_lived=False,
        )
        return collect(jail, stdin, timeout_s, output_cap_bytes, started)

    def cleanup_orphans(self) -> int:
        """Kill jails whose host process died without cleaning up (their tag names a dead pid)."""
        killed = 0
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if not cmdline or not cmdline[0].endswith((b"bwrap", b"unshare")):
                continue
            tag = f"{TAG_ENV}".encode()
            for i, arg in enumerate(cmdline[:-2]):
                if arg == tag and cmdline[i + 1].startswith(SANDBOX_LABEL.encode() + b":"):
                    owner = int(cmdline[i + 1].split(b":")[-1] or 0)
                    if owner != os.getpid() and not cgroups._pid_alive(owner):
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(int(proc.name), signal.SIGKILL)
                            killed += 1
                    break
        return killed + cgroups.cleanup_orphan_groups()


_orphans_cleaned = False


def _cleanup_orphans_once(sandbox: LocalSandbox) -> None:
    """The first kernel of this process also clears what crashed earlier runs left behind."""
    global _orphans_cleaned
    if not _orphans_cleaned:
        _orphans_cleaned = True
        with contextlib.suppress(OSError):
            sandbox.cleanup_orphans()


def _data_fd(data: str | bytes) -> int:
    """A pipe holding `data`, for bwrap's --ro-bind-data / --seccomp (small: fits in the pipe buffer)."""
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data.encode() if isinstance(data, str) else data)
    os.close(write_fd)
    return read_fd
