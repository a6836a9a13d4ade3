"""Files in and out of the workdir: sandboxed code must not be able to make the server touch host files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.files import safe_name, snapshot_for_download, upload_into, workdir_files
from interpreter.sandboxes.base import SANDBOX_GID, SANDBOX_UID


def test_upload_replaces_a_planted_symlink_instead_of_writing_through_it(tmp_path):
    host_file = tmp_path / "host-secret.txt"
    host_file.write_text("keep me")
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.csv").symlink_to(host_file)  # what hostile code in the sandbox could plant
    source = tmp_path / "data.csv"
    source.write_text("a,b\n1,2\n")
    target = upload_into(work, source)
    assert target == work / "data.csv" and not target.is_symlink()
    assert target.read_text() == "a,b\n1,2\n"
    assert host_file.read_text() == "keep me"
    assert [p.name for p in work.iterdir()] == ["data.csv"]  # no temporary file left behind


def test_upload_keeps_only_the_file_name(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("x")
    work = tmp_path / "work"
    work.mkdir()
    assert upload_into(work, source, name="../../etc/passwd") == work / "passwd"
    for bad in ("", "..", "/"):
        with pytest.raises(ValueError):
            safe_name(bad)


def test_download_copies_regular_files_and_never_follows_links(tmp_path):
    host_file = tmp_path / "host-secret.txt"
    host_file.write_text("secret")
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    (host_dir / "inner.txt").write_text("secret too")
    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "result.txt").write_text("42")
    (work / "out" / "plot.png").write_bytes(b"\x89PNG")
    (work / ".hidden").write_text("h")
    (work / "__pycache__").mkdir()
    (work / "__pycache__" / "x.pyc").write_bytes(b"")
    (work / "leak.txt").symlink_to(host_file)
    (work / "leakdir").symlink_to(host_dir)
    os.mkfifo(work / "pipe")  # opening a FIFO for reading must not hang the server
    assert sorted(map(str, workdir_files(work))) == ["out/plot.png", "result.txt"]
    copies = snapshot_for_download(work, tmp_path / "snap")
    assert sorted(os.path.relpath(c, tmp_path / "snap") for c in copies) == ["out/plot.png", "result.txt"]
    assert all(b"secret" not in Path(c).read_bytes() for c in copies)


def test_snapshot_mirrors_changes_and_skips_unchanged_files(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("one")
    (work / "b.txt").write_text("two")
    snap = tmp_path / "snap"
    snapshot_for_download(work, snap)
    (work / "b.txt").unlink()
    (work / "a.txt").write_text("one, changed")
    os.utime(work / "a.txt", ns=(1, 10**18))
    copies = snapshot_for_download(work, snap)
    assert [Path(c).name for c in copies] == ["a.txt"] and not (snap / "b.txt").exists()
    assert (snap / "a.txt").read_text() == "one, changed"
    # Unchanged since the last copy (same size and time): not copied again. Proven by marking the copy.
    (snap / "a.txt").write_text("ONE, CHANGED")
    os.utime(snap / "a.txt", ns=(1, 10**18))
    (work / "c.txt").write_text("three")
    snapshot_for_download(work, snap)
    assert (snap / "a.txt").read_text() == "ONE, CHANGED" and (snap / "c.txt").read_text() == "three"


def test_walk_is_bounded_in_depth_and_leaves_no_descriptor_open(tmp_path):
    from app.files import MAX_DEPTH

    work = tmp_path / "work"
    deep = work
    for level in range(MAX_DEPTH + 10):
        deep = deep / f"d{level}"
    deep.mkdir(parents=True)
    (deep / "too-deep.txt").write_text("x")
    (work / "d0" / "shallow.txt").write_text("y")
    before = len(os.listdir("/proc/self/fd"))
    found = [str(p) for p in workdir_files(work)]
    copies = snapshot_for_download(work, tmp_path / "snap")
    assert found == ["d0/shallow.txt"] and len(copies) == 1
    assert len(os.listdir("/proc/self/fd")) == before


def test_upload_sets_mode_on_the_file_and_leaves_no_temp_file(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 7))
    target = upload_into(work, source)
    assert target.read_bytes() == source.read_bytes()
    assert oct(target.stat().st_mode & 0o777) == oct(0o664)
    if os.geteuid() == 0:
        assert (target.stat().st_uid, target.stat().st_gid) == (SANDBOX_UID, SANDBOX_GID)
    assert [p.name for p in work.iterdir()] == ["in.bin"]
