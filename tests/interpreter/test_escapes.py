"""Regression tests for the sandbox escapes of issue 7 (interpreter side), each written as the attack, in both
sandboxes: code that plants modules for the package installer or for the next kernel start, startup hooks in
/pkgs, floods and oversized messages on the kernel's own sockets, a full disk, ptrace and io_uring.

Each attack's payload, if it ever ran, would leave a marker file and knock on a TCP server on the host; the
tests check the premise (the server answers on the host) and then that neither happened.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

import psutil
import pytest

from interpreter.kernel import MAX_MESSAGE_BYTES, STATUS_ERROR, STATUS_OK
from interpreter.sandboxes.base import Limits
from tests.conftest import require
from tests.interpreter.conftest import TEST_LIMITS, new_session

pytestmark = pytest.mark.slow


class _Knocks:
    """A TCP server on every host address that counts connections (what a payload that ran would make)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
                conn.close()
                self.count += 1
            except OSError:
                continue

    def addresses(self) -> list[str]:
        found = {"127.0.0.1"}
        out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True).stdout
        found.update(line.split()[3].split("/")[0] for line in out.splitlines() if len(line.split()) > 3)
        return sorted(found)

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


@pytest.fixture
def knocks():
    server = _Knocks()
    with socket.create_connection(("127.0.0.1", server.port), timeout=2):
        pass  # premise: the server answers on the host
    deadline = time.monotonic() + 2
    while server.count < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.count == 1
    server.count = 0
    yield server
    server.close()


def _payload(tag: str, knocks: _Knocks) -> str:
    """Python source that, if it ever runs, leaves /work/pwned-<tag> or /pkgs/pwned-<tag> and knocks."""
    return (
        "import socket\n"
        f"for folder in ('/work', '/pkgs'):\n"
        "    try:\n"
        f"        open(folder + '/pwned-{tag}', 'w').write('ran')\n"
        "    except OSError:\n"
        "        pass\n"
        f"for host in {knocks.addresses()!r}:\n"
        "    try:\n"
        f"        socket.create_connection((host, {knocks.port}), timeout=1).close()\n"
        "    except OSError:\n"
        "        pass\n"
    )


def _pwned(session) -> list[str]:
    return sorted(p.name for folder in (session.dirs.work, session.dirs.pkgs) for p in folder.glob("pwned-*"))


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


def test_installer_never_runs_what_the_kernel_or_a_package_wrote(sandbox_name, knocks):
    """Exploit 3: /work/pip/__main__.py (and friends) written by the kernel ran as the installer, with
    network; a planted /pkgs/sitecustomize.py then ran at every kernel start."""
    require(_pypi_reachable(), "PyPI (pypi.org:443) is not reachable from this machine")
    session = new_session(sandbox_name)
    try:
        payload = _payload("installer", knocks)
        plant = (
            "import os\nos.makedirs('/work/pip', exist_ok=True)\n"
            "for path in ('/work/pip/__main__.py', '/work/pip/__init__.py', '/work/sitecustomize.py',\n"
            "             '/work/usercustomize.py', '/work/runpy.py'):\n"
            f"    open(path, 'w').write({payload!r})\n"
            "print('planted')"
        )
        assert session.run(plant).stdout == "planted\n"
        # What a malicious wheel could put into /pkgs (the kernel itself cannot write there).
        (session.dirs.pkgs / "sitecustomize.py").write_text(payload)
        (session.dirs.pkgs / "zz-evil.pth").write_text(
            "import os; exec(open('/pkgs/sitecustomize.py').read())\n"
        )
        result = session.run_block("sh", "pip install six==1.16.0")
        assert result.status == STATUS_OK, result
        assert "installed six==1.16.0" in result.message
        session.restart()  # a new kernel start must not run the /pkgs hooks either
        after = session.run("import six; print(six.__version__, six.__file__)")
        assert after.status == STATUS_OK, after
        assert after.stdout == "1.16.0 /pkgs/six.py\n"
        time.sleep(0.5)
        assert _pwned(session) == []
        assert knocks.count == 0, "a planted payload reached the host's network"
    finally:
        session.close()


def test_kernel_start_never_runs_modules_planted_in_the_workdir_or_pkgs(sandbox_name, knocks):
    """Exploit 4: /work/ipykernel_launcher.py ran at every restart and broke `Session.run`."""
    session = new_session(sandbox_name)
    try:
        payload = _payload("start", knocks) + "raise SystemExit(3)\n"
        plant = (
            "for name in ('ipykernel_launcher.py', 'sitecustomize.py', 'usercustomize.py', 'debugpy.py',\n"
            "             'ipython_config.py', 'ipython_kernel_config.py', 'jupyter_config.py'):\n"
            f"    open('/work/' + name, 'w').write({payload!r})\n"
            "import os\nos.makedirs('/work/ipykernel', exist_ok=True)\n"
            f"open('/work/ipykernel/__init__.py', 'w').write({payload!r})\n"
            "open('/work/helper_mod.py', 'w').write('VALUE = 42\\n')\n"
            "print('planted')"
        )
        assert session.run(plant).stdout == "planted\n"
        (session.dirs.pkgs / "sitecustomize.py").write_text(payload)
        (session.dirs.pkgs / "zz-evil.pth").write_text("import sitecustomize\n")
        (session.dirs.pkgs / "debugpy.py").write_text(payload)  # the launch hides debugpy; nothing imports it
        (session.dirs.pkgs / "pkgs_probe.py").write_text("VALUE = 'from /pkgs'\n")
        for _ in range(2):
            session.restart()
            result = session.run("import helper_mod, pkgs_probe; print(helper_mod.VALUE, pkgs_probe.VALUE)")
            # The code's own imports still see the workdir and /pkgs once the kernel is up.
            assert result.status == STATUS_OK, result
            assert result.stdout == "42 from /pkgs\n"
        time.sleep(0.5)
        assert _pwned(session) == []
        assert knocks.count == 0
    finally:
        session.close()


def _rss() -> int:
    return psutil.Process().memory_info().rss


FLOOD_CODE = """
import threading, time
sock = get_ipython().kernel.iopub_socket
payload = b'x' * 10_000_000

def flood():
    time.sleep(0.5)  # after this execution ended: nobody on the host reads now
    for _ in range(COUNT):
        sock.send_multipart([payload])

threading.Thread(target=flood, daemon=True).start()
print('armed')
"""


def test_a_flood_between_executions_does_not_grow_the_host(sandbox_name):
    """Raw 10 MB messages on the kernel's own iopub socket, sent while the host reads nothing, grew the
    app from 28 MB to 1.35 GB; the host's queues are finite now."""
    session = new_session(sandbox_name, limits=Limits(memory_mb=1536, max_processes=64))
    try:
        session.run("print('warm')")
        before = _rss()
        assert session.run(FLOOD_CODE.replace("COUNT", "60")).stdout == "armed\n"
        time.sleep(6)  # 600 MB sent; the host reads nothing meanwhile
        grown = _rss() - before
        assert grown < 250 * 1024 * 1024, f"the host grew by {grown / 2**20:.0f} MB"
        # The next executions get a result (the queued junk counts against the first one's budget).
        first = session.run("print('next')", timeout_s=60)
        assert first.status in (STATUS_OK, STATUS_ERROR), first
        assert session.run("print('fine')").stdout == "fine\n"
    finally:
        session.close()


def test_a_flood_within_one_execution_ends_in_a_restart_with_a_clear_result(sandbox_name):
    session = new_session(sandbox_name, limits=Limits(memory_mb=1024, max_processes=64))
    try:
        session.run("kept = 1")
        code = (
            "import time\nsock = get_ipython().kernel.iopub_socket\npayload = b'x' * 10_000_000\n"
            "for _ in range(40):\n    sock.send_multipart([payload])\n    time.sleep(0.02)\ntime.sleep(20)"
        )
        started = time.monotonic()
        result = session.run(code, timeout_s=60)
        assert result.status == STATUS_ERROR, result
        assert result.state_lost
        assert "MB of messages to the host in one execution" in result.message
        assert "kernel restarted" in result.message
        assert time.monotonic() - started < 20  # it did not wait for the cell to finish
        assert session.run("print('kept' in dir())").stdout == "False\n"
    finally:
        session.close()


def test_an_oversized_message_cuts_the_channel_and_the_kernel_is_restarted(sandbox_name):
    session = new_session(sandbox_name, limits=Limits(memory_mb=1024, max_processes=64))
    try:
        size = MAX_MESSAGE_BYTES + 1024 * 1024
        code = (
            f"import time\nget_ipython().kernel.iopub_socket.send_multipart([b'x' * {size}])\n"
            "time.sleep(10)\nprint('never seen')"
        )
        result = session.run(code, timeout_s=30)
        assert result.status == STATUS_ERROR, result
        assert f"over {MAX_MESSAGE_BYTES // 2**20} MB" in result.message
        assert result.state_lost
        after = session.run("print('output flows again')")
        assert after.status == STATUS_OK and after.stdout == "output flows again\n"
    finally:
        session.close()


def test_the_disk_quota_gives_the_code_enospc_and_the_session_survives(sandbox_name):
    session = new_session(sandbox_name, limits=Limits(memory_mb=512, max_processes=64, disk_mb=64))
    try:
        require(session.dirs.quota, "no disk quota here (needs root, mkfs.ext4 and loop devices)")
        code = (
            "import errno, json\nwritten = 0\nout = {}\n"
            "try:\n"
            "    for i in range(40):\n"
            "        with open(f'/work/fill-{i}', 'wb') as handle:\n"
            "            for _ in range(4):\n"
            "                handle.write(b'x' * 2**20)\n"
            "                written += 2**20\n"
            "except OSError as exc:\n"
            "    out['error'] = errno.errorcode[exc.errno]\n"
            "out['written_mb'] = written >> 20\nprint(json.dumps(out))"
        )
        result = session.run(code)
        assert result.status == STATUS_OK, result
        outcome = json.loads(result.stdout)
        assert outcome["error"] == "ENOSPC"
        assert 32 <= outcome["written_mb"] <= 64
        image = session.dirs.root.with_name(session.dirs.root.name + ".disk")
        assert image.stat().st_blocks * 512 <= 66 * 2**20  # the host disk holds at most the quota
        # The session carries on: a restart (connection file, sockets) works on a full disk, and freeing
        # space makes writing possible again.
        session.restart()
        freed = session.run(
            "import os\nos.remove('/work/fill-0')\nopen('/work/small', 'w').write('ok')\nprint('ok')"
        )
        assert freed.stdout == "ok\n", freed
        # The installer's /pkgs is on the same filesystem: it cannot be filled past the quota either.
        assert (
            session.run("import shutil; print(shutil.disk_usage('/work').total < 70 * 2**20)").stdout
            == "True\n"
        )
    finally:
        root = session.dirs.root
        session.close()
    assert not root.exists() and not root.with_name(root.name + ".disk").exists()


def test_ptrace_traceme_and_io_uring_are_refused_and_the_kernel_lives_on(sandbox_name):
    """ptrace(PTRACE_TRACEME) used to end the docker kernel's container (docker-init, its parent, exited)."""
    session = new_session(sandbox_name)
    try:
        code = (
            "import ctypes, errno, json, platform\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "out = {}\n"
            "params = ctypes.create_string_buffer(120)\n"
            "for name in ('io_uring_setup',):\n"
            "    out[name] = [libc.syscall(425, 8, params), errno.errorcode.get(ctypes.get_errno())]\n"
            "out['io_uring_register'] = [libc.syscall(427, 0, 0, 0, 0), errno.errorcode.get(ctypes.get_errno())]\n"
            "out['ptrace_traceme'] = [libc.ptrace(0, 0, 0, 0), errno.errorcode.get(ctypes.get_errno())]\n"
            "print(json.dumps(out))"
        )
        result = session.run(code)
        assert result.status == STATUS_OK, result
        assert json.loads(result.stdout) == {
            "io_uring_setup": [-1, "EPERM"],
            "io_uring_register": [-1, "EPERM"],
            "ptrace_traceme": [-1, "EPERM"],
        }
        time.sleep(1)  # a dying container would be noticed by now
        after = session.run("print('alive')")
        assert after.status == STATUS_OK and after.stdout == "alive\n" and not after.state_lost
    finally:
        session.close()


def test_one_shot_commands_get_the_same_refusals(sandbox_name, tmp_path):
    session = new_session(sandbox_name, limits=TEST_LIMITS)
    try:
        code = (
            "import ctypes, errno; libc = ctypes.CDLL(None, use_errno=True); "
            "r = libc.syscall(425, 8, ctypes.create_string_buffer(120)); "
            "print(r, errno.errorcode.get(ctypes.get_errno()))"
        )
        done = session.sandbox.run_command(["python", "-c", code], session.dirs, 30)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "-1 EPERM\n"
    finally:
        session.close()
