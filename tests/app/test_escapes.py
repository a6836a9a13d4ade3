"""The upload and download escapes of the adversarial review, replayed as the attack, in both sandboxes.

Code in a real kernel races the host: it swaps names in its workdir in a tight loop (renameat2 with
RENAME_EXCHANGE through ctypes) while the host side runs exactly as the app calls it (`upload_into` from the
Upload box, `snapshot_for_download` after every answer). Each race runs for a bounded time and checks its
own premise (the kernel really swapped, the host really uploaded/snapshotted), so a pass means the host held,
not that the race never happened.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from app.files import UPLOAD_TEMP_PREFIX, snapshot_for_download, upload_into, workdir_files
from interpreter.kernel import STATUS_OK
from tests.interpreter.conftest import SANDBOX_PARAMS, new_session

pytestmark = pytest.mark.slow

RACE_S = 4.0

_RENAMEAT2 = """
import ctypes, json, os, time
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
def exchange(a, b):
    return libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), RENAME_EXCHANGE) == 0
"""


@pytest.fixture(params=SANDBOX_PARAMS)
def session(request):
    session = new_session(request.param, timeout_s=60)
    yield session
    session.close()


def _race(session, kernel_code: str, host_step) -> tuple[dict, int]:
    """Run `kernel_code` (prints one JSON line) in the kernel while `host_step()` repeats on the host."""
    outcome: dict = {}
    kernel = threading.Thread(target=lambda: outcome.update(result=session.run(kernel_code, timeout_s=60)))
    kernel.start()
    steps = 0
    while kernel.is_alive():
        host_step()
        steps += 1
    kernel.join()
    result = outcome["result"]
    assert result.status == STATUS_OK, result
    return json.loads(result.stdout.strip().splitlines()[-1]), steps


def test_download_snapshot_never_copies_host_files_while_folders_are_swapped_for_links(session, tmp_path):
    marker = f"HOST-SECRET-{os.getpid()}-{time.time_ns()}"
    host_dir = tmp_path / "host-etc"
    host_dir.mkdir()
    (host_dir / "shadow").write_text(marker)
    (host_dir / "data.txt").write_text(marker)  # same name as the sandbox's own file
    os.chmod(host_dir / "shadow", 0o600)
    code = _RENAMEAT2 + (
        f"os.makedirs('/work/d', exist_ok=True)\n"
        f"open('/work/d/data.txt', 'w').write('sandbox data')\n"
        f"os.symlink({str(host_dir)!r}, '/work/x')\n"
        f"swaps, end = 0, time.monotonic() + {RACE_S}\n"
        f"while time.monotonic() < end:\n"
        f"    swaps += exchange('/work/d', '/work/x')\n"
        f"print(json.dumps({{'swaps': swaps}}))\n"
    )
    snapshot = tmp_path / "snapshot"
    seen: list[str] = []

    def host_step() -> None:
        workdir_files(session.workdir)
        for copy in snapshot_for_download(session.workdir, snapshot):
            seen.append(copy)
            assert marker not in Path(copy).read_text(errors="replace"), f"host file leaked into {copy}"
            assert not copy.endswith("shadow"), f"host file listed in the snapshot: {copy}"

    kernel, steps = _race(session, code, host_step)
    assert kernel["swaps"] > 100, kernel  # premise: the kernel really raced
    assert steps > 10 and any(c.endswith("data.txt") for c in seen), (steps, seen[-5:])


def test_upload_never_chmods_or_chowns_a_host_file_the_temp_file_was_swapped_for(session, tmp_path):
    host_file = tmp_path / "root-only"
    host_file.write_text("root's secret")
    os.chmod(host_file, 0o600)
    before = os.stat(host_file)
    upload = tmp_path / "big.bin"
    upload.write_bytes(os.urandom(4 * 1024 * 1024))  # long enough to write that the kernel sees the temp name
    code = _RENAMEAT2 + (
        f"os.symlink({str(host_file)!r}, '/work/.lnk')\n"
        f"swaps, end = 0, time.monotonic() + {RACE_S}\n"
        f"while time.monotonic() < end:\n"
        f"    for name in os.listdir('/work'):\n"
        f"        if name.startswith({UPLOAD_TEMP_PREFIX!r}) and exchange('/work/' + name, '/work/.lnk'):\n"
        f"            swaps += 1\n"
        f"print(json.dumps({{'swaps': swaps}}))\n"
    )
    outcomes = {"placed": 0, "refused": 0}

    def host_step() -> None:
        try:
            upload_into(session.workdir, upload, name="data.bin")
            outcomes["placed"] += 1
        except OSError:  # the app shows these as a one-line error; what matters is the host file below
            outcomes["refused"] += 1
        after = os.stat(host_file)
        assert (after.st_mode, after.st_uid, after.st_gid) == (before.st_mode, before.st_uid, before.st_gid)

    kernel, _ = _race(session, code, host_step)
    assert kernel["swaps"] > 0 and outcomes["placed"] > 0, (kernel, outcomes)  # premise: both sides ran
    after = os.stat(host_file)
    assert stat_triplet(after) == stat_triplet(before) and host_file.read_text() == "root's secret"


def stat_triplet(info: os.stat_result) -> tuple[int, int, int]:
    return info.st_mode, info.st_uid, info.st_gid
