"""Fixtures for the interpreter suites: sandboxes by name and shared sessions.

Sessions are expensive to start (a kernel boot), so tests that leave a session intact share a module-scoped
one; tests that break theirs (bombs, crashes, restarts) make their own. Sandboxes that cannot run here go
through `tests.conftest.require`, which skips locally and fails in CI.
"""

from __future__ import annotations

import pytest

from interpreter.sandboxes.base import Limits, SandboxUnavailable
from interpreter.sandboxes.select import make_sandbox
from interpreter.session import Session
from tests.conftest import require

# Small limits keep the bombs quick; big enough for numpy and matplotlib.
TEST_LIMITS = Limits(memory_mb=512, max_processes=64, cpus=1.0)

SANDBOX_PARAMS = [
    pytest.param("local", marks=pytest.mark.local_sandbox),
    pytest.param("docker", marks=pytest.mark.docker),
]


def sandbox_or_skip(name: str, limits: Limits = TEST_LIMITS):
    try:
        return make_sandbox(name, limits)
    except SandboxUnavailable as exc:
        require(False, f"{name} sandbox unavailable: {exc}")


def new_session(name: str, *, limits: Limits = TEST_LIMITS, timeout_s: float = 20, **kwargs) -> Session:
    session = Session(sandbox_or_skip(name, limits), timeout_s=timeout_s, **kwargs)
    try:
        session.start()
    except BaseException:
        session.close()
        raise
    return session


@pytest.fixture(scope="module", params=SANDBOX_PARAMS)
def sandbox_name(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def shared_session(sandbox_name):
    """One session per sandbox kind for the tests that do not break it."""
    session = new_session(sandbox_name)
    yield session
    session.close()


@pytest.fixture
def fresh_session(sandbox_name):
    """A session of the test's own, for tests that crash, bomb or restart it."""
    session = new_session(sandbox_name)
    yield session
    session.close()


@pytest.fixture(scope="module")
def local_session():
    """A local-sandbox session for the kernel behaviour tests (sandbox-independent behaviour)."""
    session = new_session("local")
    yield session
    session.close()
