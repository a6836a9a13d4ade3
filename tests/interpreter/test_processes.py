"""The sandboxes' shared process helpers (interpreter/sandboxes/processes.py), the parts that need no jail:
the kernel command, the limits prefix, and one-shot output collection from a real child process. (The
jails themselves are exercised by test_local_sandbox.py and test_docker_sandbox.py.)"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from interpreter.sandboxes.base import Limits
from interpreter.sandboxes.cgroups import CgroupSet
from interpreter.sandboxes.processes import (
    MAX_OPEN_FILES,
    Jail,
    ancestors,
    collect,
    kernel_argv,
    limits_prefix,
)


def test_the_kernel_starts_isolated_so_nothing_in_the_workdir_runs_at_start():
    argv = kernel_argv("/opt/venv/bin/python", "/ipc/kernel-1.json")
    assert argv[:4] == ["/opt/venv/bin/python", "-I", "-B", "-c"]
    assert "launch_new_instance()" in argv[4] and "debugpy" in argv[4]
    assert argv[argv.index("-f") + 1] == "/ipc/kernel-1.json"


def test_ancestors_lists_every_parent_folder_from_the_root():
    assert ancestors("/root/.venv/bin/python") == ["/root", "/root/.venv", "/root/.venv/bin"]


def test_without_cgroups_the_prefix_bounds_memory_and_processes_by_rlimits():
    limits = Limits(memory_mb=300, max_processes=50)
    args = limits_prefix(limits, CgroupSet(name="test"))
    assert args[0] == "prlimit" and args[-1] == "--"
    assert "--nproc=50" in args and f"--nofile={MAX_OPEN_FILES}" in args
    assert f"--as={(300 + 1024) * 1024 * 1024}" in args


def test_with_cgroups_the_child_enters_them_before_anything_runs():
    groups = CgroupSet(
        name="test", paths={"memory": Path("/sys/fs/cgroup/x"), "pids": Path("/sys/fs/cgroup/y")}
    )
    args = limits_prefix(Limits(), groups)
    assert args[:2] == ["/bin/sh", "-c"] and "echo $$ > /sys/fs/cgroup/x/cgroup.procs" in args[2]
    assert not any(arg.startswith("--as=") for arg in args)


def test_collect_caps_each_stream_and_reports_the_exit():
    code = "import sys; sys.stdout.write('o' * 5000); sys.stderr.write(sys.stdin.read())"
    popen = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    result = collect(Jail(popen=popen, groups=CgroupSet(name="test")), b"echoed", 30, 1000, time.monotonic())
    assert result.returncode == 0 and not result.timed_out
    assert result.stdout.startswith("o" * 1000) and "4000 more bytes dropped" in result.stdout
    assert result.stderr == "echoed"


def test_collect_kills_a_command_past_its_timeout():
    popen = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    result = collect(Jail(popen=popen, groups=CgroupSet(name="test")), None, 0.5, 1000, time.monotonic())
    assert result.timed_out and result.returncode is None
    assert popen.poll() is not None
