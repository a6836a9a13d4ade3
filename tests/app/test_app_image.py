"""The app's image (top-level Dockerfile) built, started and used: the chat answers through it.

Built from the offline base the sandbox image uses (`autocoder-sandbox-base:*`, debootstrapped by
`python -m interpreter image build`: no container registry needed) with `--build-arg BASE_IMAGE`; the build
installs requirements.txt from PyPI as the Dockerfile says. The build context is a copy of exactly what the
.dockerignore lets in, plus the host's CA bundle as build-ca.crt (for a TLS-intercepting proxy), so nothing
is written into the checkout. Docker's layer cache keeps the dependency layer between runs: only the first
build on a machine downloads the requirements (several GB with torch's CUDA wheels).

The container runs as the README says (host network, the Docker socket, session folders at the same path
on both sides, sandboxes as sibling containers) with the tiny model mounted read-only, and the test talks to
it through the public /chat API: the model's code runs in a sandbox container and the reply comes back.
Two departures from the README's command, both to protect a shared test machine: TMPDIR is a private
folder (not /tmp/autocoder-sessions, where other runs keep their sessions) and the container shares the
host's PID namespace, so its orphan cleanup can see that the host's other sandbox owners are alive.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from tests.app.conftest import REPO, free_port
from tests.conftest import require

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "autocoder-app:ci"
CONTEXT_ITEMS = (
    "Dockerfile",
    ".dockerignore",
    "requirements.txt",
    "pyproject.toml",
    "app",
    "interpreter",
    "llm",
)
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


def build_context(folder: Path) -> Path:
    for name in CONTEXT_ITEMS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, folder / name)
    if os.path.isfile(HOST_CA):
        shutil.copy2(HOST_CA, folder / "build-ca.crt")
    return folder


def build_image(base: str, log: Path) -> float:
    """`docker build` of the app image on `base`; returns the seconds it took."""
    with tempfile.TemporaryDirectory(prefix="acimg-ctx-") as context:
        build_context(Path(context))
        started = time.monotonic()
        with open(log, "w") as out:
            done = subprocess.run(
                ["docker", "build", "-t", IMAGE, "--build-arg", f"BASE_IMAGE={base}", context],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=3600,
            )
        took = time.monotonic() - started
    assert done.returncode == 0, log.read_text()[-4000:]
    return took


def container_logs(name: str) -> str:
    done = subprocess.run(
        ["docker", "logs", name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60
    )
    return done.stdout


# The first build on a machine downloads and installs the requirements (about 15 min on a loaded 2-core
# machine); later ones take seconds from the layer cache. Past the suite's 900 s default, so its own limit.
@pytest.mark.timeout(3600)
def test_the_app_image_builds_on_the_offline_base_and_answers_a_chat(tiny_autocoder_path, tmp_path):
    from gradio_client import Client

    from interpreter.sandboxes.docker_image import base_tag, image_exists, image_tag

    require(shutil.which("docker") is not None, "the docker CLI is needed")
    base = base_tag()
    require(
        image_exists(base) and image_exists(image_tag()),
        f"the offline base {base} and the sandbox image are needed: python -m interpreter image build",
    )
    took = build_image(base, tmp_path / "build.log")
    print(f"app image built in {took:.0f} s")

    sessions = Path(tempfile.mkdtemp(prefix="acimg-"))  # same path inside and out
    port = free_port()
    name = f"autocoder-app-test-{uuid.uuid4().hex[:8]}"
    run = [
        "docker",
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "--pid",
        "host",
        "-e",
        f"TMPDIR={sessions}",
        "-e",
        "HF_HUB_OFFLINE=1",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        f"{sessions}:{sessions}",
        "-v",
        f"{tiny_autocoder_path}:/models/tiny:ro",
        IMAGE,
        "--model",
        "/models/tiny",
        "--sandbox",
        "docker",
        "--warm-kernels",
        "0",
        "--port",
        str(port),
    ]
    subprocess.run(run, check=True, capture_output=True, timeout=120)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 300
        logs = ""
        while time.monotonic() < deadline:
            logs = container_logs(name)
            state = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True
            ).stdout.strip()
            assert state == "true", f"the app container exited:\n{logs[-3000:]}"
            if "AutoCoder chat on" in logs:
                break
            time.sleep(1)
        assert "AutoCoder chat on" in logs, logs[-3000:]
        reply = Client(url, verbose=False).predict("print", api_name="/chat")
        (execution,) = reply["executions"]
        assert execution["result"]["stdout"] == "42\n", execution
        assert reply["dialogue"]["meta"]["sandbox"] == "docker"
        # `docker stop` is SIGTERM through tini: a clean exit that closes every kernel.
        subprocess.run(["docker", "stop", "-t", "60", name], check=True, capture_output=True, timeout=120)
        status = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.ExitCode}}", name], capture_output=True, text=True
        ).stdout.strip()
        logs = container_logs(name)
        assert status == "0", logs[-3000:]
        left = [p for p in (sessions / "autocoder-sessions").glob("*") if p.is_dir()]
        assert left == [], f"session folders left after docker stop: {left}"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)
        shutil.rmtree(sessions, ignore_errors=True)
