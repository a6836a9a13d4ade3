"""Files in and out of a session's workdir, without letting sandboxed code reach host files.

The workdir is writable by the sandboxed code, so anything in it may be hostile: a symlink to a host file
planted where an upload will land, or a symlink the server is tricked into reading. So uploads are
written to a fresh temporary name and renamed into place (a rename replaces a planted link instead of
writing through it), and downloads open files with O_NOFOLLOW and copy only regular files into a
snapshot folder that Gradio then serves. (A folder swapped for a link between listing and opening is
not covered: O_NOFOLLOW guards the last path component only.) Files are handed to the sandbox user so the kernel can read and
replace them.

What this module deliberately does not do: pick the workdir (the session does) or serve files (Gradio
does, from the snapshot folder).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

from interpreter.sandboxes.base import SANDBOX_GID, SANDBOX_UID

# Files bigger than this are listed as skipped instead of copied for download.
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024  # all of one chat's download copies together
MAX_LISTED_FILES = 200
_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".cache", ".local", ".config", "matplotlib"}


def safe_name(name: str) -> str:
    """The file name part only: no folders, no '..', nothing hidden by accident."""
    base = Path(name.replace("\\", "/")).name.strip()
    if base in ("", ".", ".."):
        raise ValueError(f"not a usable file name: {name!r}")
    return base


def upload_into(workdir: Path, source: str | os.PathLike, name: str | None = None) -> Path:
    """Copy `source` into `workdir` under its own (or the given) file name; returns the new path."""
    workdir = Path(workdir)
    target = workdir / safe_name(name or Path(source).name)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=workdir)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(tmp, 0o664)
        if os.geteuid() == 0:
            os.chown(tmp, SANDBOX_UID, SANDBOX_GID)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def workdir_files(workdir: Path) -> list[Path]:
    """Regular files under `workdir` (relative paths), skipping caches and anything hidden, links never followed."""
    workdir = Path(workdir)
    found: list[Path] = []
    for root, dirs, files in os.walk(workdir, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            try:
                if stat.S_ISREG(os.lstat(path).st_mode):
                    found.append(path.relative_to(workdir))
            except OSError:
                continue
            if len(found) >= MAX_LISTED_FILES:
                return found
    return found


def snapshot_for_download(workdir: Path, snapshot_dir: Path) -> list[str]:
    """Mirror the workdir's files into `snapshot_dir`; returns the copies' paths.

    Files already copied and unchanged (same size and modification time) are not copied again, files gone
    from the workdir go from the snapshot, and copying stops at MAX_SNAPSHOT_BYTES in all.
    """
    snapshot_dir = Path(snapshot_dir)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    wanted = workdir_files(workdir)
    keep = {snapshot_dir / relative for relative in wanted}
    for old in [p for p in snapshot_dir.rglob("*") if p.is_file() and p not in keep]:
        old.unlink(missing_ok=True)
    copies, total = [], 0
    for relative in wanted:
        copy = _copy_regular_file(
            Path(workdir) / relative, snapshot_dir / relative, MAX_SNAPSHOT_BYTES - total
        )
        if copy is not None:
            copies.append(str(copy))
            total += copy.stat().st_size
    return copies


def _copy_regular_file(source: Path, target: Path, budget: int) -> Path | None:
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # a link, vanished, or unreadable
    with os.fdopen(fd, "rb") as src:
        info = os.fstat(src.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > min(MAX_DOWNLOAD_BYTES, budget):
            return None
        try:
            done = target.stat()
            if done.st_size == info.st_size and done.st_mtime_ns == info.st_mtime_ns:
                return target  # copied before and unchanged since
        except OSError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            shutil.copyfileobj(src, out)
        os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
    return target
