"""The session layer's side of issue 7: a session base folder that someone else owns (or could write) is
refused, and the process-wide cap on sessions (what the app's --max-sessions uses) holds, warm pool included."""

from __future__ import annotations

import os
import stat

import pytest

from interpreter.pool import SessionPool
from interpreter.session import (
    Session,
    SessionFolderError,
    SessionLimitReached,
    default_base_dir,
    free_session_slots,
    open_session_count,
    prepare_base_dir,
    set_max_sessions,
)
from tests.conftest import require
from tests.interpreter.conftest import TEST_LIMITS, sandbox_or_skip

pytestmark = pytest.mark.local_sandbox


@pytest.fixture
def cap():
    """Set a cap relative to the sessions other tests of this process still hold; always lifted after."""

    def set_cap(extra: int) -> int:
        limit = open_session_count() + extra
        set_max_sessions(limit)
        return limit

    yield set_cap
    set_max_sessions(None)


def test_a_base_folder_owned_by_someone_else_is_refused(tmp_path):
    require(os.geteuid() == 0, "needs root to give the folder to another user")
    base = tmp_path / "sessions"
    base.mkdir(mode=0o700)
    os.chown(base, 65534, 65534)  # e.g. pre-created in /tmp by another local user
    with pytest.raises(SessionFolderError) as caught:
        prepare_base_dir(base)
    message = str(caught.value)
    assert "belongs to uid 65534" in message and "\n" not in message
    before = open_session_count()
    with pytest.raises(SessionFolderError):
        Session(sandbox_or_skip("local", TEST_LIMITS), base_dir=base)
    assert os.listdir(base) == []  # nothing was made inside
    assert open_session_count() == before  # and the slot was given back


def test_a_link_as_base_folder_is_refused(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir(mode=0o700)
    base = tmp_path / "sessions"
    base.symlink_to(real)
    with pytest.raises(SessionFolderError) as caught:
        prepare_base_dir(base)
    assert "not a plain folder" in str(caught.value)


def test_an_open_base_folder_of_ours_is_made_private(tmp_path):
    base = tmp_path / "sessions"
    base.mkdir()
    base.chmod(0o777)
    prepare_base_dir(base)
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    prepare_base_dir(base, others_may_enter=True)  # the `none` sandbox's kernel walks host paths
    assert stat.S_IMODE(base.stat().st_mode) == 0o711
    prepare_base_dir(base)  # and keeps doing so while another session starts
    assert stat.S_IMODE(base.stat().st_mode) == 0o711


def test_the_default_base_folder_is_ours_and_private():
    base = default_base_dir()
    prepare_base_dir(base)
    info = base.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    assert stat.S_IMODE(info.st_mode) in (0o700, 0o711)  # 0711 after a `none` session


def test_the_session_cap_refuses_with_one_line_and_frees_on_close(tmp_path, cap):
    sandbox = sandbox_or_skip("local", TEST_LIMITS)
    limit = cap(2)
    first = Session(sandbox, base_dir=tmp_path)
    second = Session(sandbox, base_dir=tmp_path)
    try:
        assert free_session_slots() == 0
        with pytest.raises(SessionLimitReached) as caught:
            Session(sandbox, base_dir=tmp_path)
        message = str(caught.value)
        assert f"all {limit} interpreter sessions are in use" in message and "\n" not in message
        assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2  # the refused one made no folder
        first.close()
        third = Session(sandbox, base_dir=tmp_path)
        third.close()
    finally:
        first.close()
        second.close()
    assert free_session_slots() == 2


def test_the_warm_pool_counts_against_the_cap(tmp_path, cap):
    sandbox = sandbox_or_skip("local", TEST_LIMITS)
    cap(1)
    pool = SessionPool(lambda: Session(sandbox, base_dir=tmp_path), size=1)
    try:
        assert pool.wait_ready(60)
        session = pool.acquire()
        try:
            assert session.run("print(1)").stdout == "1\n"
            with pytest.raises(SessionLimitReached):
                pool.acquire()
            assert pool.ready_count == 0  # it did not warm a session beyond the cap
            assert pool.last_error is None
        finally:
            session.close()
    finally:
        pool.close()


def test_without_the_tools_for_a_quota_sessions_get_plain_folders_and_a_warning(
    tmp_path, monkeypatch, capsys
):
    from interpreter.sandboxes import disk
    from interpreter.sandboxes.base import SessionDirs

    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no mkfs.ext4, no mount
    monkeypatch.setattr(disk, "TOOL_DIRS", ())
    monkeypatch.setattr(disk, "_warned", False)
    dirs = SessionDirs.create(tmp_path / "base", disk_mb=64)
    try:
        assert not dirs.quota
        assert dirs.work.is_dir() and dirs.pkgs.is_dir() and dirs.ipc.is_dir()
        assert not os.path.ismount(dirs.root)
        warning = capsys.readouterr().err
        assert "no disk quota for sessions" in warning and "per-file size limit" in warning
    finally:
        dirs.remove()
    assert not dirs.root.exists()


def test_with_root_a_session_folder_is_a_filesystem_of_the_quota_size(tmp_path):
    from interpreter.sandboxes import disk
    from interpreter.sandboxes.base import SessionDirs

    require(disk.available() is None, f"no quota here: {disk.available()}")
    dirs = SessionDirs.create(tmp_path / "base", disk_mb=64)
    try:
        assert dirs.quota and os.path.ismount(dirs.root) and os.path.ismount(dirs.ipc)
        total = os.statvfs(dirs.work)
        assert 50 * 2**20 < total.f_blocks * total.f_frsize <= 64 * 2**20
        assert stat.S_IMODE(dirs.work.stat().st_mode) == 0o770
    finally:
        dirs.remove()
    assert not dirs.root.exists() and not (tmp_path / "base" / (dirs.root.name + ".disk")).exists()
    assert not os.path.ismount(dirs.root)


def test_a_killed_runs_session_folders_and_disks_are_removed_by_the_next_run(tmp_path, monkeypatch):
    import subprocess

    from interpreter import session as session_module
    from interpreter.sandboxes.base import SessionDirs

    base = tmp_path / "base"
    prepare_base_dir(base)
    # One killed after its disk was mounted but before its owner file was written, one whose owner died.
    unowned = SessionDirs.create(base, disk_mb=64)
    orphan = SessionDirs.create(base, disk_mb=64)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (orphan.root / session_module.OWNER_FILE).write_text(f"{dead.pid} 1")
    mine = SessionDirs.create(base, disk_mb=64)
    (mine.root / session_module.OWNER_FILE).write_text(session_module._owner_id(os.getpid()))
    try:
        monkeypatch.setattr(session_module, "_stale_checked", set())
        monkeypatch.setattr(session_module, "UNOWNED_STALE_S", 0)
        session_module._remove_stale_sessions(base)
        assert sorted(p.name for p in base.iterdir()) == sorted(
            [mine.root.name] + ([mine.root.name + ".disk"] if mine.quota else [])
        )
        for gone in (unowned, orphan):
            assert not os.path.ismount(gone.root) and not gone.root.exists()
    finally:
        for dirs in (unowned, orphan, mine):
            dirs.remove()
