"""Docker sandbox specifics, against the real engine and the real sandbox image: labels, limits as the engine
records them, removal on close and at process exit, orphans of a crashed run, death detection, one-shot
commands. The adversarial properties shared with the local sandbox live in test_sandbox_security.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from interpreter.kernel import STATUS_MEMORY, STATUS_OK
from interpreter.sandboxes.base import SANDBOX_LABEL, Limits, SandboxUnavailable, SessionDirs
from interpreter.sandboxes.docker_api import DockerAPI
from interpreter.session import Session
from tests.conftest import require

pytestmark = [pytest.mark.docker]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def docker_image() -> str:
    require(DockerAPI().ping(), "no Docker daemon answers (start dockerd)")
    from interpreter.sandboxes.docker_image import build_image

    return build_image()  # skipped in well under a second when the image for this Dockerfile exists


@pytest.fixture
def sandbox(docker_image):
    from interpreter.sandboxes.docker import DockerSandbox

    return DockerSandbox(limits=Limits(memory_mb=256, cpus=1.0, max_processes=64, max_file_size_mb=16))


@pytest.fixture
def dirs(tmp_path):
    made = SessionDirs.create(tmp_path / "sessions")
    yield made
    made.remove()


def _containers(label: str) -> list[dict]:
    return DockerAPI().list_containers(label)


def _session_containers(session: Session) -> list[dict]:
    return _containers(f"autocoder.session={session.id}")


def test_kernel_container_is_labelled_with_its_owner(sandbox, tmp_path):
    with Session(sandbox, base_dir=tmp_path) as session:
        assert session.run("print(6 * 7)").stdout == "42\n"
        (container,) = _session_containers(session)
        labels = container["Labels"]
        assert labels[SANDBOX_LABEL] == "1"
        assert labels["autocoder.owner_pid"] == str(os.getpid())
        assert labels["autocoder.owner_host"] == socket.gethostname()
        assert labels["autocoder.owner_start"]


def test_limits_and_isolation_are_recorded_by_the_engine(sandbox, tmp_path):
    with Session(sandbox, base_dir=tmp_path) as session:
        session.start()
        (container,) = _session_containers(session)
        info = DockerAPI().inspect(container["Id"])
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"]
    assert host["Memory"] == 256 * 1024 * 1024
    assert host["MemorySwap"] == host["Memory"]  # no swap beyond the limit
    assert host["NanoCpus"] == 1_000_000_000
    assert host["PidsLimit"] == 64
    ulimits = {u["Name"]: u["Hard"] for u in host["Ulimits"]}
    assert ulimits["fsize"] == 16 * 1024 * 1024
    assert "/tmp" in host["Tmpfs"]
    assert info["Config"]["User"] == "65534:65534"
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert set(mounts) == {"/work", "/ipc", "/pkgs"}  # nothing else of the host, no docker socket
    assert mounts["/pkgs"]["RW"] is False
    assert mounts["/work"]["RW"] is True
    assert not any("docker.sock" in m["Source"] for m in info["Mounts"])


def test_container_removed_when_session_closes(sandbox, tmp_path):
    session = Session(sandbox, base_dir=tmp_path)
    session.start()
    assert len(_session_containers(session)) == 1
    session.close()
    assert _session_containers(session) == []


def test_restart_replaces_the_container(sandbox, tmp_path):
    with Session(sandbox, base_dir=tmp_path) as session:
        session.run("x = 1")
        (before,) = _session_containers(session)
        session.restart()
        (after,) = _session_containers(session)
        assert before["Id"] != after["Id"]
        assert session.run("print('x' in globals())").stdout == "False\n"


def _run_child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


CHILD_SESSION = """
    import os, sys
    from interpreter.sandboxes.base import Limits
    from interpreter.sandboxes.docker import DockerSandbox
    from interpreter.session import Session
    s = Session(DockerSandbox(limits=Limits(memory_mb=256)), base_dir={base!r})
    s.start()
    print(s.id, flush=True)
"""


def test_containers_removed_when_the_process_exits_without_closing(docker_image, tmp_path):
    done = _run_child(CHILD_SESSION.format(base=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    session_id = done.stdout.split()[-1]
    assert _containers(f"autocoder.session={session_id}") == []


def test_orphans_of_a_crashed_run_are_removed_at_start(sandbox, docker_image, tmp_path):
    # A run that dies without any cleanup (SIGKILL-like os._exit) leaves its container behind...
    done = _run_child(CHILD_SESSION.format(base=str(tmp_path)) + "    os._exit(9)\n")
    assert done.returncode == 9, done.stderr
    session_id = done.stdout.split()[-1]
    assert len(_containers(f"autocoder.session={session_id}")) == 1
    # ...and a container of a live owner (this process) must survive the cleanup.
    with Session(sandbox, base_dir=tmp_path) as mine:
        mine.start()
        removed = sandbox.cleanup_orphans()
        assert removed >= 1
        assert _containers(f"autocoder.session={session_id}") == []
        assert len(_session_containers(mine)) == 1
        assert mine.run("print('alive')").stdout == "alive\n"


def test_first_launch_in_a_process_cleans_orphans(docker_image, tmp_path):
    done = _run_child(CHILD_SESSION.format(base=str(tmp_path)) + "    os._exit(9)\n")
    orphan = done.stdout.split()[-1]
    assert len(_containers(f"autocoder.session={orphan}")) == 1
    # A fresh process that only starts a session removes it on its first launch.
    again = _run_child(CHILD_SESSION.format(base=str(tmp_path)))
    assert again.returncode == 0, again.stderr
    assert _containers(f"autocoder.session={orphan}") == []


def test_container_death_is_seen_at_once(sandbox, dirs):
    from interpreter.sandboxes.docker import DockerKernelProcess

    (dirs.ipc / "unused.json").write_text("{}")
    process = sandbox.launch_kernel(dirs, "unused.json", {})
    assert isinstance(process, DockerKernelProcess)
    try:
        assert process.is_alive()
        assert process.exit_reason() is None
        # Yardstick: the engine's pace right now (the machine is shared). Noticing a death takes the wait
        # call's return plus an inspect and a logs request, so a few round trips, not a polling interval.
        api = DockerAPI()
        round_trips = []
        for _ in range(5):
            began = time.monotonic()
            api.inspect(process.container_id)
            round_trips.append(time.monotonic() - began)
        trip = sorted(round_trips)[2]
        limit = max(1.0, 20 * trip)
        subprocess.run(["docker", "kill", process.container_id], check=True, capture_output=True)
        started = time.monotonic()
        assert process.wait(timeout=30), "death not noticed within 30 s"
        noticed = time.monotonic() - started
        # The tight number (tens of ms when idle) is measured by `python -m benchmarks.sandbox_latency`.
        assert noticed < limit, f"death noticed after {noticed:.2f} s; an API round trip takes {trip:.3f} s"
        assert not process.is_alive()
        assert process.exit_reason() == "crashed"
    finally:
        process.kill()
    assert DockerAPI().inspect(process.container_id) is None


def test_out_of_memory_kill_is_reported_as_memory(sandbox, tmp_path):
    with Session(sandbox, base_dir=tmp_path, timeout_s=60) as session:
        result = session.run("x = b'x' * (1024 * 1024 * 1024)")
        assert result.status == STATUS_MEMORY, result
        assert result.state_lost
        assert session.run("print('back')").stdout == "back\n"


def test_run_command_never_has_a_network_not_even_the_installer(sandbox, dirs, tmp_path):
    probe = [
        "python",
        "-c",
        "import socket; socket.create_connection(('pypi.org', 443), timeout=5); print('up')",
    ]
    wheels = tmp_path / "wheels"
    wheels.mkdir(mode=0o755)
    for extra in ({}, {"wheels": wheels}):
        done = sandbox.run_command(probe, dirs, 30, **extra)
        assert done.returncode != 0
        assert "up" not in done.stdout


def test_run_command_writes_pkgs_only_as_the_installer_which_sees_no_workdir(sandbox, dirs, tmp_path):
    write = ["python", "-c", "open('/pkgs/marker', 'w').write('x')"]
    refused = sandbox.run_command(write, dirs, 30)
    assert refused.returncode != 0
    assert "Read-only file system" in refused.stderr
    assert not (dirs.pkgs / "marker").exists()
    wheels = tmp_path / "wheels"
    wheels.mkdir(mode=0o755)
    (wheels / "listed.whl").write_text("w")
    (wheels / "listed.whl").chmod(0o644)
    (dirs.work / "kernel-file").write_text("k")
    # The image has empty /work and /ipc folders of its own: the session's are not mounted over them.
    look = "import os; print(os.getcwd(), os.listdir('/wheels'), os.listdir('/work'), os.listdir('/ipc'))"
    allowed = sandbox.run_command(["python", "-c", look + "; " + write[2]], dirs, 30, wheels=wheels)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout == "/tmp ['listed.whl'] [] []\n"
    assert (dirs.pkgs / "marker").read_text() == "x"


def test_run_command_passes_stdin_and_env_and_runs_unprivileged(sandbox, dirs):
    code = "import os, sys; print(os.getuid(), os.environ['GREETING'], sys.stdin.read())"
    done = sandbox.run_command(["python", "-c", code], dirs, 30, stdin=b"hello", env={"GREETING": "hi"})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "65534 hi hello\n"


def test_run_command_timeout_removes_the_container(sandbox, dirs):
    started = time.monotonic()
    # 10 MB on stdin that nobody reads must not block past the timeout either.
    done = sandbox.run_command(["sleep", "60"], dirs, 1.0, stdin=b"x" * 10_000_000)
    assert done.timed_out
    assert done.returncode is None
    assert time.monotonic() - started < 15
    assert _containers(f"autocoder.session={dirs.root.name}") == []


def test_run_command_output_is_capped(sandbox, dirs):
    from interpreter.sandboxes.docker import COMMAND_OUTPUT_CAP

    done = sandbox.run_command(["python", "-c", "print('y' * 5_000_000)"], dirs, 60)
    assert done.returncode == 0
    assert len(done.stdout) < COMMAND_OUTPUT_CAP + 200
    assert "bytes of output dropped" in done.stdout


def test_run_command_memory_kill_is_reported(sandbox, dirs):
    done = sandbox.run_command(["python", "-c", "x = b'x' * 1024 ** 3"], dirs, 60)
    assert done.returncode != 0
    assert done.memory_exceeded


def test_missing_image_is_a_one_line_how_to(docker_image):
    from interpreter.sandboxes.docker import DockerSandbox

    with pytest.raises(SandboxUnavailable) as caught:
        DockerSandbox.check_available(image="autocoder-sandbox:does-not-exist")
    message = str(caught.value)
    assert "\n" not in message
    assert "python -m interpreter image build" in message


def test_no_daemon_is_a_one_line_how_to(monkeypatch, tmp_path):
    from interpreter.sandboxes.docker import DockerSandbox

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/missing.sock")
    with pytest.raises(SandboxUnavailable) as caught:
        DockerSandbox.check_available()
    assert "\n" not in str(caught.value)
    assert "--sandbox local" in str(caught.value)


def test_session_runs_code_with_state_in_the_workdir(sandbox, tmp_path):
    with Session(sandbox, base_dir=tmp_path) as session:
        assert session.run("import numpy as np\na = np.arange(10)").status == STATUS_OK
        result = session.run("import os\nopen('out.txt', 'w').write(str(a.sum()))\nprint(os.getcwd())")
        assert result.stdout == "/work\n"
        assert (session.workdir / "out.txt").read_text() == "45"


def test_kernel_that_dies_at_start_leaves_its_log(sandbox, dirs):
    (dirs.ipc / "broken.json").write_text("{not json")
    process = sandbox.launch_kernel(dirs, "broken.json", {})
    try:
        assert process.wait(timeout=30), "a kernel with a broken connection file kept running"
        assert process.exit_reason() == "crashed"
        assert "Error" in (dirs.root / "kernel.log").read_text()
    finally:
        process.kill()
