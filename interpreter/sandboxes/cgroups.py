"""Per-process-tree cgroups for the local sandbox: memory, process-count and CPU limits, OOM detection.

Works with cgroup v1 (one hierarchy per controller, e.g. /sys/fs/cgroup/memory) and cgroup v2 (one unified
hierarchy with a memory controller), and with hybrids where v2 lacks the controllers v1 has. Each limited
process tree gets its own group, created below the cgroup this process lives in (so host limits still
nest), named with the sandbox tag so a later run can find and remove what a crashed run left behind.

Where no controller is writable (no root, no delegation) `CgroupSet.create` returns a set without
controllers: limits then come only from rlimits, which the caller applies regardless.

What this module deliberately does not do: start processes (the caller writes the new group into the
child before it execs, see `CgroupSet.procs_files`) or set rlimits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Every group we create is named "<GROUP_PREFIX>-<pid of the creating process>-<suffix>"; orphans are the
# groups whose creating process is gone.
GROUP_PREFIX = "autocoder"


def _own_path(controller: str) -> str:
    """This process's cgroup path for a v1 controller, or for v2 when controller is ""."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller == "" and controllers == "" or controller in controllers.split(","):
            return path
    return "/"


def _writable_base(mount: Path, own: str) -> Path | None:
    """Our own group under `mount` when it is visible there, else the mount itself; None if not writable."""
    for base in (mount / own.lstrip("/"), mount):
        if base.is_dir() and os.access(base, os.W_OK):
            return base
    return None


@dataclass
class _Controllers:
    """Where new groups go, per controller (None where unavailable). Found once per process."""

    memory: Path | None = None
    pids: Path | None = None
    cpu: Path | None = None
    v2: bool = False


_found: _Controllers | None = None


def controllers() -> _Controllers:
    global _found
    if _found is None:
        _found = _discover()
    return _found


def _discover() -> _Controllers:
    found = _Controllers()
    if (CGROUP_ROOT / "memory" / "memory.limit_in_bytes").exists() or (CGROUP_ROOT / "memory").is_dir():
        # cgroup v1 (or hybrid): one hierarchy per controller.
        for name, mount in (("memory", "memory"), ("pids", "pids"), ("cpu", "cpu")):
            mount_path = CGROUP_ROOT / mount
            if mount_path.is_dir():
                setattr(found, name, _writable_base(mount_path, _own_path(name)))
        return found
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        base = _writable_base(CGROUP_ROOT, _own_path(""))
        if base is None:
            return found
        wanted = {"memory", "pids", "cpu"}
        enabled = set((base / "cgroup.subtree_control").read_text().split())
        missing = wanted & set((base / "cgroup.controllers").read_text().split()) - enabled
        if missing:
            # Fails (EBUSY) when processes live directly in `base` ("no internal processes"): then we
            # cannot use v2 here without delegation and fall back to rlimits.
            with contextlib.suppress(OSError):
                (base / "cgroup.subtree_control").write_text(" ".join("+" + c for c in sorted(missing)))
            enabled = set((base / "cgroup.subtree_control").read_text().split())
        found.v2 = True
        for name in wanted & enabled:
            setattr(found, name, base)
    return found


@dataclass
class CgroupSet:
    """The groups (one per available controller) that confine one process tree."""

    name: str
    paths: dict[str, Path] = field(default_factory=dict)  # controller -> group dir
    v2: bool = False

    @classmethod
    def create(cls, suffix: str, *, memory_mb: int, max_processes: int, cpus: float) -> CgroupSet:
        found = controllers()
        name = f"{GROUP_PREFIX}-{os.getpid()}-{suffix}"
        group = cls(name=name, v2=found.v2)
        for controller in ("memory", "pids", "cpu"):
            base = getattr(found, controller)
            if base is None:
                continue
            path = base / name
            try:
                path.mkdir(exist_ok=True)
                group._configure(controller, path, memory_mb, max_processes, cpus)
            except OSError:
                with contextlib.suppress(OSError):
                    path.rmdir()
                continue
            group.paths[controller] = path
        return group

    def _configure(
        self, controller: str, path: Path, memory_mb: int, max_processes: int, cpus: float
    ) -> None:
        limit = str(memory_mb * 1024 * 1024)
        if controller == "memory":
            if self.v2:
                (path / "memory.max").write_text(limit)
                with contextlib.suppress(OSError):
                    (path / "memory.swap.max").write_text("0")
            else:
                (path / "memory.limit_in_bytes").write_text(limit)
                # Without this the limit could be dodged by swapping (where the host has swap).
                with contextlib.suppress(OSError):
                    (path / "memory.memsw.limit_in_bytes").write_text(limit)
        elif controller == "pids":
            (path / "pids.max").write_text(str(max_processes))
        elif controller == "cpu":
            period = 100_000
            quota = max(1000, int(cpus * period))
            if self.v2:
                (path / "cpu.max").write_text(f"{quota} {period}")
            else:
                (path / "cpu.cfs_period_us").write_text(str(period))
                (path / "cpu.cfs_quota_us").write_text(str(quota))

    @property
    def limits_memory(self) -> bool:
        return "memory" in self.paths

    @property
    def limits_processes(self) -> bool:
        return "pids" in self.paths

    def procs_files(self) -> list[str]:
        """The files a child writes its pid to (before exec) to enter every group."""
        return [str(path / "cgroup.procs") for path in self.paths.values()]

    def oom_kills(self) -> int:
        """How many processes the kernel killed in this group for exceeding the memory limit."""
        path = self.paths.get("memory")
        if path is None:
            return 0
        stats_file = path / ("memory.events" if self.v2 else "memory.oom_control")
        try:
            for line in stats_file.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            pass
        # Old v1 kernels have no oom_kill counter: a hit limit is the best evidence left.
        with contextlib.suppress(OSError, ValueError):
            if not self.v2 and int((path / "memory.failcnt").read_text()) > 0:
                return 1
        return 0

    def pids(self) -> list[int]:
        found: set[int] = set()
        for path in self.paths.values():
            with contextlib.suppress(OSError, ValueError):
                found.update(int(p) for p in (path / "cgroup.procs").read_text().split())
        return sorted(found)

    def kill_all(self) -> None:
        """SIGKILL every process in the groups (a fork bomb may keep forking, hence the rounds)."""
        for round_ in range(50):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.002 * (round_ + 1))  # killed processes take a moment to leave the group

    def remove(self) -> None:
        """Kill what is left and remove the groups (a group with live processes cannot be removed)."""
        self.kill_all()
        for path in self.paths.values():
            for _ in range(50):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # Killed processes take a moment to leave the group.
                    time.sleep(0.005)
        self.paths.clear()


def _our_groups(mount: Path, max_depth: int = 3) -> list[Path]:
    """Groups named by us anywhere in the top levels of a hierarchy (a crashed run may have lived in
    another cgroup than this process, e.g. a container runtime's per-command group)."""
    found: list[Path] = []
    level = [mount]
    for _ in range(max_depth):
        below: list[Path] = []
        for parent in level:
            with contextlib.suppress(OSError):
                for child in parent.iterdir():
                    if not child.is_dir():
                        continue
                    (found if child.name.startswith(GROUP_PREFIX + "-") else below).append(child)
        level = below
    return found


def cleanup_orphan_groups() -> int:
    """Kill and remove groups made by processes of ours that no longer run; return how many."""
    found = controllers()
    mounts = set()
    for base in (found.memory, found.pids, found.cpu):
        if base is not None:
            mounts.add(CGROUP_ROOT if found.v2 else CGROUP_ROOT / base.relative_to(CGROUP_ROOT).parts[0])
    removed = 0
    for mount in mounts:
        for path in _our_groups(mount):
            parts = path.name.split("-")
            if len(parts) < 3 or not parts[1].isdigit() or int(parts[1]) == os.getpid():
                continue
            if _pid_alive(int(parts[1])):
                continue
            group = CgroupSet(name=path.name, paths={"any": path}, v2=found.v2)
            group.remove()
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
