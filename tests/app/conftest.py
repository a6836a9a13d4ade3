"""Fixtures for the app's end-to-end tests: a real `python -m app` subprocess and a real headless Chromium.

The app runs the tiny trained model (tests.fixtures.tiny_models) in the local bubblewrap sandbox. Its
TMPDIR is a per-test folder, so the tests can see every session folder it creates and check that none
outlives the process. Chromium is Debian's (/usr/bin/chromium), driven through playwright; no browser is
ever downloaded, and the flags keep it from calling home.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import require
from tests.fixtures.browser import CHROMIUM, CHROMIUM_FLAGS

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppProcess:
    """`python -m app ...` in a subprocess, its log in a file, its temp folder known."""

    def __init__(self, args: list[str], log_dir: Path, startup_s: float = 180.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        # A short TMPDIR of its own: session folders hold IPC sockets, whose paths are limited to ~100 bytes.
        self.tmp = Path(tempfile.mkdtemp(prefix="acapp-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / "app.log"
        env = {**os.environ, "TMPDIR": str(self.tmp), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        # The chat history's default folder is under $XDG_DATA_HOME: a test's own, never the user's.
        env["XDG_DATA_HOME"] = str(self.tmp / "data")
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "--port", str(self.port), *args],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(startup_s)

    @property
    def sessions_dir(self) -> Path:
        return self.tmp / "autocoder-sessions"

    def session_dirs(self) -> list[Path]:
        # Folders only: with the disk quota each session also has its `<id>.disk` image beside its folder.
        return (
            sorted(p for p in self.sessions_dir.iterdir() if p.is_dir()) if self.sessions_dir.exists() else []
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            if "AutoCoder chat on" in self.log():
                try:
                    urllib.request.urlopen(self.url, timeout=5).read()
                    return
                except urllib.error.HTTPError:
                    return  # it answers (with --auth, a 401 until one logs in)
                except OSError:
                    pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"app did not come up in {timeout_s:.0f} s:\n{self.log()[-3000:]}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (as `docker stop` does), then wait; kill the group if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        if not self.session_dirs():
            shutil.rmtree(self.tmp, ignore_errors=True)
        return self.proc.returncode


@pytest.fixture
def start_app(tiny_autocoder_path, tmp_path):
    """Start `python -m app` on the tiny model in the local sandbox: start_app(*extra_flags) -> AppProcess.
    With tiny_model=False no --model is given: the app picks its default (here: the small stand-in)."""
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox

    try:
        make_sandbox("local")
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")
    started: list[AppProcess] = []

    def start(*flags: str, tiny_model: bool = True) -> AppProcess:
        model = ["--model", str(tiny_autocoder_path)] if tiny_model else []
        app = AppProcess(
            [*model, "--sandbox", "local", *flags], tmp_path / f"app{len(started)}", startup_s=600
        )
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()


@pytest.fixture(scope="session")
def browser():
    require(Path(CHROMIUM).exists(), f"Debian's Chromium is needed at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is needed (pip install -r requirements-dev.txt)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def page(browser, request):
    """A fresh browser tab that records every request leaving 127.0.0.1 (there must be none).
    A failing test leaves a screenshot of the page as it was in artifacts/screenshots/FAILED-<test>.png."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.external_requests = []
    tab.on(
        "request",
        lambda request: (
            tab.external_requests.append(request.url)
            if not request.url.startswith(("http://127.0.0.1", "data:", "blob:"))
            else None
        ),
    )
    yield tab
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and not tab.is_closed():
        with contextlib.suppress(Exception):
            screenshot(tab, f"FAILED-{request.node.name}")
    context.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
