"""The sandbox image build: tag hashing, registry probe, mirror discovery, the image's contents, the
up-to-date skip, and (slow) a complete offline build from nothing into throwaway repositories."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from interpreter.sandboxes import docker_image as image
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def test_image_hash_covers_every_file_of_the_image_folder(tmp_path, monkeypatch):
    copy = tmp_path / "image"
    shutil.copytree(image.IMAGE_DIR, copy)
    monkeypatch.setattr(image, "IMAGE_DIR", copy)
    original = image.image_hash()
    assert original == image.image_hash()  # stable
    for path in sorted(copy.iterdir()):
        saved = path.read_bytes()
        path.write_bytes(saved + b"\n# changed\n")
        assert image.image_hash() != original, f"{path.name} does not change the tag"
        path.write_bytes(saved)
    assert image.image_hash() == original
    assert image.image_tag().startswith("autocoder-sandbox:")


def test_registry_probe_is_quick_when_nothing_answers():
    started = time.monotonic()
    assert image.registry_reachable("http://127.0.0.1:9/v2/", timeout_s=3) is False
    assert time.monotonic() - started < 3.5


def test_registry_probe_counts_an_auth_challenge_as_reachable():
    class Unauthorized(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert image.registry_reachable(f"http://127.0.0.1:{server.server_port}/v2/", timeout_s=3) is True
    finally:
        server.shutdown()


def test_debian_mirror_is_read_from_apt_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "other.sources").write_text(
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n"
    )
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# URIs: http://commented.example/debian\nURIs: http://mirror.example/debian/\n"
    )
    assert image.debian_mirror(tmp_path) == "http://mirror.example/debian"
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "deb [arch=amd64 signed-by=/k.gpg] http://old.example/debian bookworm main\n"
    )
    assert image.debian_mirror(tmp_path) == "http://old.example/debian"
    (tmp_path / "sources.list").write_text("deb http://ports.example/ubuntu jammy main\n")
    assert image.debian_mirror(tmp_path) == image.DEFAULT_MIRROR


# ---- against the engine -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built() -> str:
    from interpreter.sandboxes.docker_api import DockerAPI

    require(DockerAPI().ping(), "no Docker daemon answers (start dockerd)")
    return image.build_image()


@pytest.mark.docker
def test_build_is_skipped_when_the_image_is_up_to_date(built):
    lines: list[str] = []
    started = time.monotonic()
    assert image.build_image(log=lines.append) == built
    assert time.monotonic() - started < 5
    assert any("is up to date" in line for line in lines)
    assert image.image_exists("autocoder-sandbox:latest")


@pytest.mark.docker
def test_cli_build_prints_the_tag(built):
    done = subprocess.run(
        [sys.executable, "-m", "interpreter", "image", "build", "--offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == built
    assert "[image]" in done.stderr  # progress goes to stderr


def _in_image(tag: str, code: str) -> str:
    done = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", tag, "python", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.docker
def test_image_has_python311_the_packages_and_an_unprivileged_user(built):
    out = _in_image(
        built,
        "import os, sys, numpy, pandas, matplotlib, scipy, sympy, ipykernel\n"
        "print(sys.version_info[:2], os.getuid(), os.getgid(), os.getcwd(), os.environ['PYTHONPATH'])",
    )
    assert out.strip() == "(3, 11) 65534 65534 /work /pkgs"


@pytest.mark.docker
def test_image_packages_match_the_pinned_list(built):
    frozen = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", built, "pip", "freeze"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    pinned = {
        line.strip().lower()
        for line in (image.IMAGE_DIR / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {line.strip().lower() for line in frozen.splitlines() if line.strip()} == pinned


@pytest.mark.docker
@pytest.mark.slow
def test_offline_build_from_nothing(built):
    """debootstrap + docker import + docker build into throwaway repositories (about 1.5 minutes)."""
    require(
        shutil.which("debootstrap") is not None, "debootstrap is not installed (apt-get install debootstrap)"
    )
    repo, base_repo = "autocoder-sandbox-test", "autocoder-sandbox-base-test"
    lines: list[str] = []
    try:
        tag = image.build_image(offline=True, log=lines.append, repo=repo, base_repo=base_repo)
        assert tag == image.image_tag(repo)
        assert any(line.startswith("$ debootstrap") for line in lines)
        assert any("docker import" in line for line in lines)
        assert image.image_exists(image.base_tag(base_repo))
        assert _in_image(tag, "import numpy; print(numpy.arange(10).sum())").strip() == "45"
    finally:
        for name in (image.image_tag(repo), f"{repo}:latest", image.base_tag(base_repo)):
            subprocess.run(["docker", "rmi", "-f", name], capture_output=True)
