"""A disk quota per session: the session folder is a small filesystem of its own, so /work and /pkgs are bounded.

Mechanism (as root, the project's usual case): `SessionDirs.create` makes a sparse image file
`<base>/<session-id>.disk` of `Limits.disk_mb`, formats it ext4 (no journal; 1% of it reserved for root,
so the host can still write a kernel's connection file when the code has filled the disk) and mounts it
(loop, nosuid, nodev) on the session folder. /work and /pkgs are folders on it. The kernel's /ipc is a
separate tiny tmpfs (`IPC_TMPFS_OPTIONS`) mounted inside it, so a full disk (or all inodes used up) never
keeps the next kernel from creating its sockets.

What happens at the limit: a write that does not fit fails with ENOSPC ("No space left on device") in the
code, in the package installer or in an upload; the kernel and the session carry on, and deleting files
frees the space again. The host disk holds at most `disk_mb` per session (the image is sparse: it grows only
with what is written), so `disk_mb` times the number of sessions (see `interpreter.session`'s maximum)
bounds it. Removing the session unmounts (lazily, when a container still holds a bind of it) and deletes
the image; a crashed run's leftovers go with its stale session folders.

Fallback: without root, without `mkfs.ext4`/`mount`, or where mounting fails (a container without
CAP_SYS_ADMIN), sessions get plain folders and a one-time warning on stderr: then only the per-file size
limit (RLIMIT_FSIZE, `Limits.max_file_size_mb`) holds. `Limits(disk_mb=0)` turns the quota off.

What it deliberately does not do: bound /tmp inside the sandbox (a tmpfs, charged to the sandbox's memory)
or choose the session's layout (`interpreter.sandboxes.base.SessionDirs`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

IMAGE_SUFFIX = ".disk"
# Root-only headroom on the session filesystem (percent), see the module docstring.
RESERVED_PERCENT = "1"
# The ipc folder holds a connection file and five sockets; a sandbox can fill it, never beyond this.
IPC_TMPFS_OPTIONS = "size=1m,nr_inodes=256,mode=0770,nosuid,nodev,noexec"
COMMAND_TIMEOUT_S = 30
# Where mkfs.ext4, mount and umount live, also when PATH leaves the sbin folders out (a service, make).
TOOL_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")

_warned = False
_warn_lock = threading.Lock()
# Set when making a quota failed once (say, no loop devices in a container): later sessions skip the attempt.
_failed: str | None = None


class QuotaUnavailable(RuntimeError):
    """No quota can be set up here; the message says why in one line."""


def _warn_once(reason: str) -> None:
    global _warned
    with _warn_lock:
        if _warned:
            return
        _warned = True
    print(
        f"warning: no disk quota for sessions ({reason}); only the per-file size limit applies",
        file=sys.stderr,
        flush=True,
    )


def image_path(root: Path) -> Path:
    return root.with_name(root.name + IMAGE_SUFFIX)


def _tool(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *TOOL_DIRS]))


def _run(argv: list[str]) -> None:
    argv = [_tool(argv[0]) or argv[0], *argv[1:]]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise QuotaUnavailable(f"{argv[0]} failed: {last[-1] if last else f'exit {done.returncode}'}")


def available() -> str | None:
    """None when quotas can be made here, else why not (one line)."""
    if _failed is not None:
        return _failed
    if os.geteuid() != 0:
        return "not running as root"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if _tool(tool) is None:
            return f"{tool} is missing (apt-get install e2fsprogs mount)"
    return None


def mount_quota(root: Path, disk_mb: int) -> bool:
    """Put a `disk_mb` filesystem on the (new, empty) folder `root`; False (and a warning) where impossible."""
    global _failed
    reason = available()
    if reason is not None:
        _warn_once(reason)
        return False
    image = image_path(root)
    try:
        # O_EXCL|O_NOFOLLOW: the base folder is ours (checked by the session), but never write through a link.
        fd = os.open(image, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, disk_mb * 1024 * 1024)
        finally:
            os.close(fd)
        _run(
            [
                "mkfs.ext4",
                "-q",
                "-F",
                "-O",
                "^has_journal",
                "-m",
                RESERVED_PERCENT,
                "-E",
                "lazy_itable_init=1,root_owner=0:0",
                str(image),
            ]
        )
        _run(["mount", "-o", "loop,nosuid,nodev,noatime", str(image), str(root)])
    except (OSError, subprocess.SubprocessError, QuotaUnavailable) as exc:
        with contextlib.suppress(OSError):
            image.unlink()
        _failed = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _warn_once(_failed)
        return False
    with contextlib.suppress(OSError):
        (root / "lost+found").rmdir()
    return True


def mount_ipc(ipc: Path) -> bool:
    """A tiny tmpfs for the kernel's sockets (only where the session has a quota filesystem)."""
    try:
        _run(["mount", "-t", "tmpfs", "-o", IPC_TMPFS_OPTIONS, "autocoder-ipc", str(ipc)])
        return True
    except (OSError, subprocess.SubprocessError, QuotaUnavailable):
        return False


def unmount(root: Path) -> None:
    """Detach the session's filesystems (lazily: a container may still hold a bind) and delete the image."""
    for path in (root / "ipc", root):
        if os.path.ismount(path):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                umount = _tool("umount") or "umount"
                subprocess.run([umount, "-l", str(path)], capture_output=True, timeout=COMMAND_TIMEOUT_S)
    with contextlib.suppress(OSError):
        image_path(root).unlink()
