"""Fixtures for the evaluation suites: the real local sandbox, a reference cache shared by the session.

The reference outputs of a benchmark (the canonical solutions run in the sandbox) are computed once per test
session into a temporary cache, so the suites that score wrong or mixed sample sets reuse them; the user's
own cache (~/.cache/autocoder) is never touched.
"""

from __future__ import annotations

import pytest

from evaluation.datasets import load_humaneval, load_humaneval_plus, load_mbpp
from evaluation.scoring import make_eval_sandbox
from interpreter.sandboxes.base import SandboxUnavailable
from tests.conftest import require


@pytest.fixture(scope="session")
def eval_sandbox():
    try:
        return make_eval_sandbox("local")
    except SandboxUnavailable as exc:
        require(False, f"local sandbox unavailable: {exc}")


@pytest.fixture(scope="session")
def reference_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("evaluation-reference-cache")


@pytest.fixture(scope="session")
def humaneval():
    return load_humaneval()


@pytest.fixture(scope="session")
def humaneval_plus():
    return load_humaneval_plus()


@pytest.fixture(scope="session")
def mbpp():
    return load_mbpp()
