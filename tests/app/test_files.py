"""Files in and out of the workdir: sandboxed code must not be able to make the server touch host files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.files import safe_name, snapshot_for_download, upload_into, workdir_files


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
