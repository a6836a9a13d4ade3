"""Files in and out of a session's workdir, without letting sandboxed code reach host files.

The workdir is writable by the sandboxed code, which runs at the same time as these functions, so every
name in it may change between two system calls: a folder swapped for a symlink to /etc, an upload's temp
file swapped for a symlink to a root-owned host file. The rule here: below the workdir itself, the host
never opens, stats, chmods or chowns anything by path.

- The workdir is opened once, as a directory descriptor (O_DIRECTORY | O_NOFOLLOW). Its own path is safe to
  open: it sits in the session's root folder, which the host made and the sandbox cannot write.
- Every component below it is opened relative to its parent's descriptor (`dir_fd=`), one name at a time,
  with O_NOFOLLOW: a folder with O_DIRECTORY | O_NOFOLLOW, a file with O_NOFOLLOW | O_NONBLOCK (a FIFO
  must not hang the server); a symlink anywhere fails the open instead of being followed. Listing reads the
  open folder (`os.scandir(fd)`), and whether a file is regular is decided by `fstat` of the open file.
  A name swapped mid-walk therefore yields either the sandbox's own file or nothing, never a host file.
- Uploads are written to a fresh temp name created with O_CREAT | O_EXCL | O_NOFOLLOW; mode and owner are
  set on the open descriptor (`fchmod`, `fchown`), never by name, then the temp name is renamed into place
  relative to the workdir's descriptor (a rename replaces a planted link instead of writing through it).
  Swapping the temp name for a symlink changes nothing on the host: the descriptor still refers to our file.
- Hard links cannot smuggle host files in: the workdir is a separate bind mount inside the sandbox (links
  across mounts fail) and the kernel's protected_hardlinks stops links to files the sandbox user cannot
  already read and write.

Why descriptors, not a copy done by the sandbox user inside a one-shot sandbox (streaming a tar): the
snapshot is refreshed after every answer, and a one-shot docker container costs about a second per call
while these copies cost what a plain copy costs (benchmarks/file_transfer.py); the descriptor walk is also
the same code for every sandbox, "none" included.

What this module deliberately does not do: pick the workdir (the session does) or serve files (Gradio
does, from the snapshot folder, which is host-private).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from interpreter.sandboxes.base import SANDBOX_GID, SANDBOX_UID

# Files bigger than this are listed as skipped instead of copied for download.
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024
MAX_SNAPSHOT_BYTES = 1024 * 1024 * 1024  # all of one chat's download copies together
MAX_LISTED_FILES = 200
# The walk stops after this many folder entries or this depth: a workdir of a million empty files or a
# folder chain 10,000 deep must not stall the server (or use up its file descriptors).
MAX_SCANNED_ENTRIES = 20_000
MAX_DEPTH = 16
UPLOAD_TEMP_PREFIX = ".upload-"
_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".cache", ".local", ".config", "matplotlib"}

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class UploadError(OSError):
    """An upload could not be put in place; the message says so in one line."""


def safe_name(name: str) -> str:
    """The file name part only: no folders, no '..', nothing hidden by accident."""
    base = Path(name.replace("\\", "/")).name.strip()
    if base in ("", ".", "..") or "\x00" in base:
        raise ValueError(f"not a usable file name: {name!r}")
    return base


def open_workdir(workdir: str | os.PathLike) -> int:
    """A descriptor of the workdir itself (never a link). The caller closes it."""
    return os.open(workdir, _DIR_FLAGS)


def upload_into(workdir: Path, source: str | os.PathLike, name: str | None = None) -> Path:
    """Copy `source` (a host-private file) into `workdir` under its own (or the given) file name, owned by
    the sandbox user; returns the new path. Raises UploadError when the sandbox moved it while it was
    written (nothing on the host is touched either way)."""
    target = safe_name(name or Path(source).name)
    dir_fd = open_workdir(workdir)
    temp = f"{UPLOAD_TEMP_PREFIX}{secrets.token_hex(8)}"
    try:
        out = os.open(temp, _CREATE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            with open(source, "rb") as src:
                _copy(src.fileno(), out, os.fstat(src.fileno()).st_size)
            os.fchmod(out, 0o664)
            if os.geteuid() == 0:
                os.fchown(out, SANDBOX_UID, SANDBOX_GID)
            written = os.fstat(out)
        finally:
            os.close(out)
        os.rename(temp, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        placed = os.stat(target, dir_fd=dir_fd, follow_symlinks=False)
        if (placed.st_dev, placed.st_ino) != (written.st_dev, written.st_ino):
            raise UploadError(f"{target}: replaced in the workdir while it was uploaded; upload it again")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)  # unlink never follows a link: at worst it removes the sandbox's
        raise
    finally:
        os.close(dir_fd)
    return Path(workdir) / target


def _walk(dir_fd: int, prefix: Path, depth: int, budget: list[int]) -> Iterator[tuple[int, str, Path]]:
    """(parent descriptor, name, relative path) of every non-hidden, non-folder entry, files of a folder
    before its subfolders, by name. The parent descriptor is open only while the caller handles the item."""
    try:
        with os.scandir(dir_fd) as listing:
            entries = []
            for entry in listing:
                budget[0] -= 1
                if budget[0] < 0:
                    break
                if not entry.name.startswith("."):
                    entries.append(entry)
    except OSError:
        return
    entries.sort(key=lambda e: e.name)
    folders = []
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)  # the entry's d_type: a link is never a folder
        except OSError:
            continue
        if is_dir:
            if entry.name not in _SKIP_DIRS:
                folders.append(entry.name)
        else:
            yield dir_fd, entry.name, prefix / entry.name
    if depth >= MAX_DEPTH:
        return
    for name in folders:
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)  # swapped for a link since listing: ELOOP
        except OSError:
            continue
        try:
            yield from _walk(child, prefix / name, depth + 1, budget)
        finally:
            os.close(child)


def _regular_files(workdir: Path) -> Iterator[tuple[int, str, Path]]:
    dir_fd = open_workdir(workdir)
    try:
        yield from _walk(dir_fd, Path(), 0, [MAX_SCANNED_ENTRIES])
    finally:
        os.close(dir_fd)


def workdir_files(workdir: Path) -> list[Path]:
    """Regular files under `workdir` (relative paths), skipping caches and anything hidden, links never followed."""
    found: list[Path] = []
    for parent_fd, name, relative in _regular_files(workdir):
        try:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            found.append(relative)
            if len(found) >= MAX_LISTED_FILES:
                break
    return found


def snapshot_for_download(workdir: Path, snapshot_dir: Path) -> list[str]:
    """Mirror the workdir's files into `snapshot_dir` (host-private); returns the copies' paths.

    Files already copied and unchanged (same size and modification time) are not copied again, files gone
    from the workdir go from the snapshot, and copying stops at MAX_SNAPSHOT_BYTES in all.
    """
    snapshot_dir = Path(snapshot_dir)
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    copies: list[Path] = []
    total = 0
    for parent_fd, name, relative in _regular_files(workdir):
        if len(copies) >= MAX_LISTED_FILES:
            break
        copy = _copy_out(parent_fd, name, snapshot_dir / relative, MAX_SNAPSHOT_BYTES - total)
        if copy is not None:
            copies.append(copy)
            total += copy.stat().st_size
    keep = set(copies)
    for old in [p for p in snapshot_dir.rglob("*") if p.is_file() and p not in keep]:
        old.unlink(missing_ok=True)
    return [str(c) for c in copies]


def _copy_out(parent_fd: int, name: str, target: Path, budget: int) -> Path | None:
    """Copy one workdir file, opened relative to its folder's descriptor, to `target` (host-private)."""
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=parent_fd)
    except OSError:
        return None  # a link, vanished, or unreadable
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > min(MAX_DOWNLOAD_BYTES, budget):
            return None
        try:
            done = target.stat()
            if done.st_size == info.st_size and done.st_mtime_ns == info.st_mtime_ns:
                return target  # copied before and unchanged since
        except OSError:
            pass
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                _copy(fd, out.fileno(), info.st_size)  # never more than was checked against the budget
            os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
        except OSError:
            return None  # e.g. a folder of an earlier snapshot where this file now is
    finally:
        os.close(fd)
    return target


def _copy(src_fd: int, dst_fd: int, limit: int) -> None:
    """Copy up to `limit` bytes from the current position: in the kernel (sendfile) where it can."""
    left = limit
    try:
        while left > 0:
            sent = os.sendfile(dst_fd, src_fd, None, min(left, 1 << 30))
            if sent == 0:
                return
            left -= sent
        return
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    while left > 0:
        chunk = os.read(src_fd, min(left, 1 << 20))
        if not chunk:
            return
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst_fd, view) :]
        left -= len(chunk)
