"""Shared test policy: when a test may skip, and the Hypothesis settings.

Heavy suites carry markers (see pyproject.toml). A test that cannot run here goes through `require`: it skips
with the reason; under CI (`CI` set to a true value: true, 1, yes or on, any case) or AUTOCODER_REQUIRE_ALL
such a skip becomes a failure, so no suite the issues ask for is silently skipped there. No test uses
`pytest.skip`/`skipif` directly.

Some requirements are facts about the kind of host rather than something CI must provide, and say so with
`in_ci=False`. The GPU is the one such fact:

- CI runs on machines without a GPU, where the default model cannot run and the stand-in takes its place.
  Tests of the GPU path (`require_gpu`) therefore skip with their reason on a GPU-less machine even under CI;
  set AUTOCODER_EXPECT_GPU=1 on a GPU host to make a missing or unusable GPU a failure instead.
- On a GPU host the default model is loaded, not the stand-in, so the stand-in's tests (`require_no_gpu`)
  skip with their reason there, even under CI; the GPU tests cover that host instead.

The package index (PyPI) is expected in CI: `require(package_index_reachable(), ...)` fails there without it.
"""

import functools
import os
import socket

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_TRUE_VALUES = frozenset({"1", "true", "yes", "on"})


def env_flag(name: str) -> bool:
    """A boolean environment variable: true, 1, yes or on (any case, surrounding spaces ignored)."""
    return os.environ.get(name, "").strip().lower() in _TRUE_VALUES


REQUIRE_ALL = env_flag("CI") or env_flag("AUTOCODER_REQUIRE_ALL")
GPU_EXPECTED = env_flag("AUTOCODER_EXPECT_GPU")


def require(condition: bool, reason: str, *, in_ci: bool = True) -> None:
    """Skip (locally) or fail (in CI) when a test's requirement is missing.

    in_ci=False: the requirement is a property of the host that CI need not have (see the module docstring);
    the test then skips with the reason everywhere.
    """
    if condition:
        return
    if REQUIRE_ALL and in_ci:
        pytest.fail(f"required in CI but missing: {reason}", pytrace=False)
    pytest.skip(reason)


@functools.cache
def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def require_gpu(reason: str) -> None:
    """For tests of what only a GPU host does; they skip on GPU-less machines, CI included (no GPU expected)."""
    if GPU_EXPECTED and not has_gpu():
        pytest.fail(f"AUTOCODER_EXPECT_GPU is set but no GPU is usable: {reason}", pytrace=False)
    require(has_gpu(), reason, in_ci=False)


def require_no_gpu(reason: str) -> None:
    """For tests of the GPU-less path (the stand-in); on a GPU host they skip with the reason, CI included."""
    require(not has_gpu(), reason, in_ci=False)


@functools.cache
def package_index_reachable() -> bool:
    """Whether pypi.org:443 answers (once per test run)."""
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


def pytest_configure(config) -> None:
    # Hypothesis's default 200 ms deadline per example measures the machine's load, not the code: a shared,
    # busy 2-core runner trips it. No deadline; examples stay bounded by their own sizes. Under CI its "ci"
    # profile (derandomized, so a red run reproduces) is the parent.
    try:
        from hypothesis import settings
    except ImportError:  # a dev-only requirement
        return
    parent = settings.get_profile("ci") if REQUIRE_ALL else settings.get_profile("default")
    settings.register_profile("autocoder", parent=parent, deadline=None)
    settings.load_profile("autocoder")


pytest_plugins = ["tests.fixtures.tiny_models"]
